#!/usr/bin/env python3
"""Prints the markdown table of scripts/bench.sh from its results.jsonl.

Each comparison is reported as the median over rounds, with the ratio the
issue's target is stated in; perf numbers are per message (syscalls and
context switches of the server process, measured with `perf stat -p`)."""
import json
import statistics
import sys
from collections import defaultdict

runs = defaultdict(list)
for line in open(sys.argv[1]):
    row = json.loads(line)
    runs[row["label"]].append(row["result"])


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def echo_stats(label):
    rs = runs.get(label, [])
    tput = med([r["echo"]["throughput_per_s"] for r in rs])
    p99 = med([r["echo"]["latency"]["p99_us"] for r in rs])
    per = {}
    for key in ("syscalls_per_s", "switches_per_s", "cpu_ms_per_s"):
        vals = [r["perf"][key] / r["echo"]["throughput_per_s"] for r in rs if r.get("perf")]
        per[key] = med(vals)
    errors = sum(r["echo"]["io_errors"] + r["echo"]["mismatches"] + r["echo"]["failed_connects"] for r in rs)
    return tput, p99, per, [round(r["echo"]["throughput_per_s"]) for r in rs], errors


def verdict(ok):
    return "met" if ok else "**missed**"


print("| measurement | result | target | verdict |")
print("|---|---|---|---|")
starts = [r["start_us"] / 1000 for r in runs["start"]]
if starts:
    print(f"| start to accepting (exec to `listening on`, {len(starts)} runs) | median {med(starts):.1f} ms, max {max(starts):.1f} ms | < 50 ms | {verdict(max(starts) < 50)} |")
for name in ("hb", "plain", "tokio"):
    for r in runs.get(f"memory-{name}", []):
        per = r["server_rss_per_connection_kib"]
        ok = r["held"] == r["connections"] and r["bad_replies"] == 0 and r["closed"] == 0
        target = "<= 16 KiB, all held" if name == "hb" else "(scale)"
        v = verdict(ok and per is not None and per <= 16) if name == "hb" else ""
        print(f"| RSS per connection, {name}, 10,000 heartbeating every 25 s | {per} KiB ({r['server_rss_idle_kib']} -> {r['server_rss_loaded_kib']} KiB; {r['held']} held, {r['closed']} closed, {r['bad_replies']} bad replies) | {target} | {v} |")
for conns in (50, 1000):
    hb, plain, tok = (echo_stats(f"echo-{n}-{conns}") for n in ("hb", "plain", "tokio"))
    for name, (t, p, per, all_t, errs) in (("hb-server", hb), ("no-tracking", plain), ("tokio", tok)):
        print(f"| echo {conns} clients, {name} | {t:.0f} msg/s (runs {all_t}), p99 {p} us; per msg: {per['syscalls_per_s']:.2f} syscalls, {per['switches_per_s']:.2f} switches, {per['cpu_ms_per_s'] * 1000:.1f} us CPU; {errs} errors | | |")
    r_plain = hb[0] / plain[0]
    r_tok = hb[0] / tok[0]
    print(f"| tracking / no-tracking, {conns} clients | {r_plain:.3f} | >= 0.95 | {verdict(r_plain >= 0.95)} |")
    print(f"| hb-server / tokio throughput, {conns} clients | {r_tok:.3f} (p99 {hb[1]} vs {tok[1]} us) | match or beat | {verdict(r_tok >= 1.0 and hb[1] <= tok[1])} |")
i0, i10 = echo_stats("idle0-echo"), echo_stats("idle10k-echo")
if i0[3] and i10[3]:
    r = i10[0] / i0[0]
    print(f"| echo 50 clients with 10,000 idle open / none | {r:.3f} ({i10[0]:.0f} vs {i0[0]:.0f} msg/s; {i10[4] + i0[4]} errors) | >= 0.95 | {verdict(r >= 0.95 and i10[4] == 0)} |")
for r in runs.get("precision", []):
    lat = r["lateness"]
    ok = r["early"] == 0 and lat["p99_us"] <= 10_000 and r["late_over_100ms"] == 0 and r["closed"] == r["connections"]
    print(f"| reaper precision, 10,000 staggered over 5 s | {r['closed']} closed, {r['early']} early, late p50 {lat['p50_us']} us p99 {lat['p99_us']} us max {lat['max_us']} us, {r['late_over_100ms']} over 100 ms | none early, p99 <= 10 ms, none > 100 ms | {verdict(ok)} |")
for r in runs.get("mass", []):
    idle = r["idle"]
    lat = idle["lateness"]
    sweep_from = idle["started_unix_ms"] + (idle["first_close_ms"] or 0)
    sweep_to = idle["started_unix_ms"] + (idle["last_close_ms"] or 0)
    during, outside = [], []
    for w in r["windows"]:
        start, end = w["started_unix_ms"], w["started_unix_ms"] + w["elapsed_s"] * 1000
        (during if start < sweep_to and end > sweep_from else outside).append(w["latency"]["p99_us"])
    ok = idle["closed"] == idle["connections"] and idle["early"] == 0 and lat["max_us"] <= 1_000_000
    print(f"| mass expiry of 10,000 | {idle['closed']} closed, {idle['early']} early, last {lat['max_us'] / 1000:.1f} ms after its deadline (sweep {sweep_to - sweep_from} ms) | all within 1 s | {verdict(ok)} |")
    print(f"| echo p99 of 50 clients during the sweep / outside | {max(during, default='-')} us / median {med(outside)} us ({len(during)} / {len(outside)} windows of 0.5 s) | reported | |")
shut = [r["shutdown_ms"] for r in runs.get("shutdown", [])]
if shut:
    print(f"| shutdown with 10,000 open (SIGTERM to exit, {len(shut)} runs) | max {max(shut)} ms | < 1 s | {verdict(max(shut) < 1000)} |")
