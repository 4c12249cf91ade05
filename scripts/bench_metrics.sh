#!/usr/bin/env bash
# The metrics measurements of issue 11 (docs/benchmarks.md):
#  1. the 50-client echo with metrics off and on (on = --metrics-listen and a
#     scrape every second during the run), alternated ROUNDS times so that a
#     busy machine affects both alike; every run's number is printed;
#     BASELINE=path/to/hb-server adds a third server (e.g. one built before
#     the metrics) to each round;
#  2. the time of one scrape with 10,000 connections open (SCRAPES scrapes).
# Linux only (/proc). Needs curl. Run by `make bench-metrics`.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-8}
SCRAPES=${SCRAPES:-20}
BIN=target/release
OUT=target/bench
mkdir -p "$OUT"
cargo build --release --bins -q

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_server BINARY ARGS... : sets SRV_PID, SRV_ADDR and (with
# --metrics-listen) METRICS_URL.
start_server() {
  local binary=$1; shift
  rm -f "$OUT/metrics-srv.out"
  "$binary" -q --listen 127.0.0.1:0 "$@" > "$OUT/metrics-srv.out" 2>> "$OUT/metrics-srv.err" &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  SRV_ADDR=
  until [ -n "$SRV_ADDR" ]; do
    SRV_ADDR=$(sed -n 's/^listening on //p' "$OUT/metrics-srv.out" 2>/dev/null || true)
    [ -n "$SRV_ADDR" ] || sleep 0.01
  done
  METRICS_URL=
  if [[ " $* " == *" --metrics-listen "* ]]; then
    until [ -n "$METRICS_URL" ]; do
      METRICS_URL=$(sed -n 's/^metrics on //p' "$OUT/metrics-srv.out" 2>/dev/null || true)
      [ -n "$METRICS_URL" ] || sleep 0.01
    done
  fi
}

stop_server() { kill -TERM "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; }

# echo_run : msg/s and p99 (us) of a 50-client echo run against SRV_ADDR,
# scraping METRICS_URL every second meanwhile when it is set.
echo_run() {
  local scraper=
  if [ -n "$METRICS_URL" ]; then
    ( while true; do curl -s -o /dev/null "$METRICS_URL"; sleep 1; done ) &
    scraper=$!
  fi
  "$BIN/hb-bench" --json --target "$SRV_ADDR" echo -c 50 -d "${SECS}s" > "$OUT/metrics-echo.json" || true
  if [ -n "$scraper" ]; then kill "$scraper"; wait "$scraper" 2>/dev/null || true; fi
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["throughput_per_s"]), r["latency"]["p99_us"], r["io_errors"] + r["mismatches"] + r["failed_connects"])' "$OUT/metrics-echo.json"
}

echo "== 50-client echo, metrics off / on, $ROUNDS rounds of ${SECS}s" >&2
declare -a OFF ON BASE
for round in $(seq "$ROUNDS"); do
  if [ -n "${BASELINE:-}" ]; then
    start_server "$BASELINE"; r=$(echo_run); stop_server; BASE+=("$r")
    echo "round $round baseline: $r (msg/s p99_us errors)" >&2
  fi
  start_server "$BIN/hb-server"; r=$(echo_run); stop_server; OFF+=("$r")
  echo "round $round off: $r" >&2
  start_server "$BIN/hb-server" --metrics-listen 127.0.0.1:0; r=$(echo_run); stop_server; ON+=("$r")
  echo "round $round on: $r" >&2
done

summary() { # NAME RUNS... : median msg/s and every run
  local name=$1; shift
  printf '%s\n' "$@" | python3 -c '
import sys, statistics
runs = [l.split() for l in sys.stdin if l.strip()]
tput = [int(r[0]) for r in runs]
print(f"{sys.argv[1]}: median {statistics.median(tput):.0f} msg/s, runs {tput}, p99 us {[float(r[1]) for r in runs]}, errors {sum(int(r[2]) for r in runs)}")' "$name"
}
summary off "${OFF[@]}"
summary on "${ON[@]}"
[ -n "${BASELINE:-}" ] && summary baseline "${BASE[@]}"
printf '%s\n' "${OFF[@]}" > "$OUT/metrics-off.txt"
printf '%s\n' "${ON[@]}" > "$OUT/metrics-on.txt"
python3 -c '
import statistics
off = [int(l.split()[0]) for l in open("target/bench/metrics-off.txt")]
on = [int(l.split()[0]) for l in open("target/bench/metrics-on.txt")]
print(f"on / off (medians): {statistics.median(on) / statistics.median(off):.3f}; per round: {[round(a / b, 3) for a, b in zip(on, off)]}")'

echo "== one scrape with 10,000 connections open, $SCRAPES scrapes" >&2
start_server "$BIN/hb-server" --max-connections 20000 --metrics-listen 127.0.0.1:0
"$BIN/hb-bench" --json --target "$SRV_ADDR" idle -c 10000 --heartbeat 25s -d 120s > /dev/null 2>&1 &
idle=$!
PIDS+=("$idle")
until [ "$(curl -s "$METRICS_URL" | sed -n 's/^hb_connections_open //p')" = 10000 ]; do sleep 0.5; done
: > "$OUT/scrape-times.txt"
for _ in $(seq "$SCRAPES"); do
  curl -s -o /dev/null -w '%{time_total}\n' "$METRICS_URL" >> "$OUT/scrape-times.txt"
  sleep 0.2
done
kill -INT "$idle"; wait "$idle" 2>/dev/null || true
stop_server
python3 -c '
import statistics
t = sorted(float(l) * 1000 for l in open("target/bench/scrape-times.txt"))
print(f"scrape at 10,000 open: median {statistics.median(t):.2f} ms, max {t[-1]:.2f} ms, all {[round(x, 2) for x in t]}")'
