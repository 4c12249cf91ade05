//! `hb-client --find-idle-timeout` and `--adaptive-heartbeat` against real
//! paths (issue 18): the server's own idle timeout on 127.0.0.1, and a
//! stateful firewall in a network namespace that black-holes a connection
//! after 8 s of silence ([`Lab::with_black_hole`]).
//!
//! The black-hole scenarios take a minute or more each, most of it the
//! silences being measured, so [`through_a_conntrack_black_hole`] runs them
//! side by side, each in its own pair of namespaces. Without root, `ip` or
//! `nft` they say SKIPPED (under CI they fail).
//!
//! `make idle-report` ([`idle_report`]) measures the search behind black
//! holes of 5, 8, 15 and 30 s, simulates it on 350 s and 30 min paths,
//! writes the table of docs/idle-timeout.md and draws docs/idle-timeout.svg
//! ([`chart`]).

#[path = "idle_timeout/chart.rs"]
mod chart;
mod common;

use common::netns::{Lab, SERVER_IP, Side};
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};
use tcp_heartbeat::client::adaptive::{AdaptiveSettings, PARALLEL_PROBES, settled_idle};
use tcp_heartbeat::client::idle_search::{Bracket, SearchSettings, SimulatedPath, State, simulate};
use tcp_heartbeat::client::probe::REPLY_TIMEOUT_MIN;

/// The black hole's timeout: silence of 7.9 s holds, 8.1 s does not.
const FIREWALL_SECS: u32 = 8;

/// How long a settled session is watched for a loss: four heartbeats at
/// the interval it settles on (about 6.5 s under an 8 s firewall).
const HOLD: Duration = Duration::from_secs(26);

/// The adaptive scenarios' bound, from the issue: settled within 100 s.
const SETTLE_LIMIT: Duration = Duration::from_secs(100);

/// The bracket of `idle timeout of the path: between 7.2s and 8s`, in
/// seconds; the upper end `None` for `longer than ...`.
fn bracket(stdout: &str) -> (f64, Option<f64>) {
    let line = stdout.trim_end();
    let rest = line
        .strip_prefix("idle timeout of the path: ")
        .unwrap_or_else(|| panic!("unexpected stdout {stdout:?}"));
    if rest.starts_with("longer than ") {
        return (f64::INFINITY, None);
    }
    let (held, failed) = rest
        .strip_prefix("between ")
        .and_then(|r| r.split_once(" and "))
        .unwrap_or_else(|| panic!("unexpected stdout {stdout:?}"));
    let secs = |s: &str| -> f64 {
        s.strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not seconds: {s:?} in {stdout:?}"))
    };
    (secs(held), Some(secs(failed)))
}

/// What a `--find-idle-timeout` run printed and took.
struct Measured {
    /// Seconds; the upper end `None` for `longer than ...`.
    held: f64,
    failed: Option<f64>,
    took: Duration,
    /// From its `N probes in ...` line.
    probes: u32,
}

/// Runs hb-client `--find-idle-timeout -v` through `command` (the binary,
/// or a wrapper ending with it) against `addr`.
fn find(command: std::process::Command, addr: SocketAddr) -> Measured {
    let started = Instant::now();
    let mut client = ClientProcess::spawn(command, addr, &["--find-idle-timeout", "-v"]);
    let status = client.wait_exit(Duration::from_secs(120));
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&client.output).into_owned();
    assert!(
        status.success(),
        "{status}; stdout {stdout:?}; stderr {:?}",
        client.logged
    );
    let probes = client
        .logged
        .iter()
        .find_map(|l| {
            l.split(" probes in ")
                .next()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no probe count in {:?}", client.logged));
    let (held, failed) = bracket(&stdout);
    Measured {
        held,
        failed,
        took,
        probes,
    }
}

#[test]
fn find_idle_timeout_brackets_the_servers_own_idle_timeout() {
    let server = ServerProcess::start(&["--idle-timeout", "6s", "-q"]);
    let client = launcher("HB_TEST_CLIENT_CMD", env!("CARGO_BIN_EXE_hb-client"));
    let Measured {
        held, failed, took, ..
    } = find(client, server.addr);
    let failed = failed.expect("a silence failed");
    // The server closes 6 s after the last byte it received, which is half
    // a round trip before the client's last byte, and the close is rounded
    // up to the search's 100 ms grid; the reaper is never early, and late
    // by more than half a second only on a machine far busier than this
    // test allows for.
    assert!(
        held < 6.0 && (5.9..6.6).contains(&failed),
        "{held} .. {failed}"
    );
    assert!(failed - held <= 1.0, "bracket too wide: {held} .. {failed}");
    // The exponential round fails at 6 s; at most two rounds of probes
    // shorter than 6 s follow (about 12 s).
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn find_idle_timeout_exits_1_when_it_cannot_connect() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut client = ClientProcess::start(closed, &["--find-idle-timeout"]);
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "{:?}", client.logged);
    assert!(client.output.is_empty());
    assert!(client.has_logged("cannot connect"), "{:?}", client.logged);
}

#[test]
fn the_bounds_are_checked() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (args, env, says) in [
        (
            &[
                "--adaptive-heartbeat",
                "--heartbeat-idle-min",
                "20s",
                "--heartbeat-idle-max",
                "10s",
            ][..],
            None,
            "--heartbeat-idle-max must be at least --heartbeat-idle-min",
        ),
        (
            &["--adaptive-heartbeat", "--heartbeat-idle", "0"][..],
            None,
            "--adaptive-heartbeat needs heartbeats",
        ),
        (
            &["--heartbeat-idle-max", "0"][..],
            None,
            "must be more than 0",
        ),
        (
            &[][..],
            Some(("HB_ADAPTIVE_HEARTBEAT", "maybe")),
            "HB_ADAPTIVE_HEARTBEAT",
        ),
        (
            &[][..],
            Some(("HB_HEARTBEAT_IDLE_MAX", "soon")),
            "HB_HEARTBEAT_IDLE_MAX",
        ),
    ] {
        let mut command = launcher("HB_TEST_CLIENT_CMD", env!("CARGO_BIN_EXE_hb-client"));
        if let Some((var, value)) = env {
            command.env(var, value);
        }
        let mut client = ClientProcess::spawn(command, addr, args);
        let status = client.wait_exit(PATIENCE);
        assert_eq!(
            status.code(),
            Some(2),
            "{args:?} {env:?}: {:?}",
            client.logged
        );
        assert!(
            client.has_logged(says),
            "{args:?} {env:?}: {:?}",
            client.logged
        );
    }
}

/// A black-hole scenario: a summary of what it saw, or why it failed.
type Scenario = fn(&Lab) -> Result<String, String>;

/// The black-hole scenarios, side by side; fails with every scenario's
/// failure.
#[test]
fn through_a_conntrack_black_hole() {
    let scenarios: [(&str, Scenario); 3] = [
        ("find-idle-timeout brackets 8 s", find_brackets_the_firewall),
        ("adaptive from 3 s", adaptive_from_3s),
        (
            "adaptive from 20 s with --reconnect",
            adaptive_from_20s_with_reconnect,
        ),
    ];
    let labs: Vec<Lab> = scenarios
        .iter()
        .map_while(|_| Lab::with_black_hole("through_a_conntrack_black_hole", FIREWALL_SECS))
        .collect();
    if labs.len() < scenarios.len() {
        return;
    }
    let results: Vec<(&str, Result<String, String>)> = thread::scope(|scope| {
        let running: Vec<_> = scenarios
            .iter()
            .zip(&labs)
            .map(|((name, scenario), lab)| (*name, scope.spawn(move || scenario(lab))))
            .collect();
        running
            .into_iter()
            .map(|(name, handle)| {
                let result = handle.join().unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                    Err(message.unwrap_or_else(|| "panicked".to_string()))
                });
                (name, result)
            })
            .collect()
    });
    let mut failures = Vec::new();
    for (name, result) in results {
        match result {
            Ok(summary) => println!("{name}: {summary}"),
            Err(why) => failures.push(format!("{name}: {why}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// hb-server with its defaults (TCP keepalive after 10 s of idleness,
/// longer than the black hole's 8 s, so it keeps nothing alive).
fn server_in(lab: &Lab) -> ServerProcess {
    lab.start_server(&["-q"])
}

fn client_command(lab: &Lab) -> std::process::Command {
    lab.command(Side::Client, env!("CARGO_BIN_EXE_hb-client"))
}

fn find_brackets_the_firewall(lab: &Lab) -> Result<String, String> {
    let server = server_in(lab);
    assert!(server.addr.ip().to_string() == SERVER_IP);
    let Measured {
        held, failed, took, ..
    } = find(client_command(lab), server.addr);
    let failed = failed.ok_or("no silence failed")?;
    let firewall = f64::from(FIREWALL_SECS);
    // Measured: the black hole closes between 7.2 s and 8 s of silence
    // (this machine's kernel expires conntrack entries about 2 % early).
    if !(held < firewall + 0.1 && failed > firewall - 0.5 && failed - held <= 1.0) {
        return Err(format!("bracket {held}s .. {failed}s"));
    }
    Ok(format!("between {held}s and {failed}s in {took:.1?}"))
}

/// The heartbeat idle, in seconds, of a `heartbeat idle now 6.48s (...)`
/// line, and whether it was learned (`the path held ...`) rather than the
/// fallback after a loss.
fn idle_now(line: &str) -> Option<(f64, bool)> {
    let (idle, rest) = line
        .split("heartbeat idle now ")
        .nth(1)?
        .split_once("s (")?;
    Some((idle.parse().ok()?, rest.starts_with("the path held")))
}

/// What an adaptive client did, for the report's chart: seconds from its
/// start, and the heartbeat idle from then (`None`: the session was lost).
type Timeline = Vec<(f64, Option<f64>)>;

/// Runs an adaptive client with `args` behind the black hole until it has
/// settled and then held for [`HOLD`]; fails if it is lost more than
/// `losses_allowed` times, or does not settle in [5 s, 8 s) within
/// [`SETTLE_LIMIT`]. Then checks the session still answers.
fn adaptive(lab: &Lab, args: &[&str], losses_allowed: usize) -> Result<(String, Timeline), String> {
    let server = server_in(lab);
    let mut all = vec!["--adaptive-heartbeat"];
    all.extend_from_slice(args);
    let mut client = ClientProcess::spawn(client_command(lab), server.addr, &all);
    let started = Instant::now();
    let limit = started + SETTLE_LIMIT + HOLD;
    // The idle it starts with, `--heartbeat-idle`.
    let initial = args
        .iter()
        .skip_while(|a| **a != "--heartbeat-idle")
        .nth(1)
        .and_then(|v| v.strip_suffix('s')?.parse().ok());
    let mut timeline: Timeline = vec![(0.0, initial)];
    let mut losses = 0;
    // The last settled idle and when it was logged.
    let mut settled_at: Option<(f64, Instant)> = None;
    loop {
        let wait_until = settled_at.map_or(limit, |(_, at)| (at + HOLD).min(limit));
        let Some(line) = client.next_log(wait_until) else {
            match settled_at {
                Some((_, at)) if Instant::now() >= at + HOLD => break,
                _ => {
                    return Err(format!(
                        "did not settle and hold within {:?}: {:?}",
                        SETTLE_LIMIT + HOLD,
                        client.logged
                    ));
                }
            }
        };
        let now = Instant::now();
        let t = (now - started).as_secs_f64();
        if line.contains("reconnecting in") || line.contains("hb-client:") {
            losses += 1;
            settled_at = None;
            timeline.push((t, None));
            if losses > losses_allowed {
                return Err(format!("lost {losses} times: {:?}", client.logged));
            }
        }
        if let Some((idle, learned)) = idle_now(&line) {
            timeline.push((t, Some(idle)));
            if learned {
                if now > started + SETTLE_LIMIT {
                    return Err(format!(
                        "settled after {SETTLE_LIMIT:?}: {:?}",
                        client.logged
                    ));
                }
                settled_at = Some((idle, now));
            }
        }
    }
    let (idle, at) = settled_at.expect("settled");
    if !(5.0..f64::from(FIREWALL_SECS)).contains(&idle) {
        return Err(format!("settled at {idle}s: {:?}", client.logged));
    }
    client.send(b"still there\n");
    client.wait_output(b"STILL THERE\n");
    timeline.push(((Instant::now() - started).as_secs_f64(), Some(idle)));
    let summary = format!(
        "settled at {idle}s after {:.1?}, lost {losses} times, then held {HOLD:?}",
        at - started
    );
    Ok((summary, timeline))
}

fn adaptive_from_3s(lab: &Lab) -> Result<String, String> {
    adaptive(lab, &["--heartbeat-idle", "3s"], 0).map(|(summary, _)| summary)
}

/// The scenario the report's chart draws.
const FROM_20S: [&str; 3] = ["--heartbeat-idle", "20s", "--reconnect"];

fn adaptive_from_20s_with_reconnect(lab: &Lab) -> Result<String, String> {
    adaptive(lab, &FROM_20S, 2).map(|(summary, _)| summary)
}

/// The black holes the report measures, in seconds.
const REPORT_FIREWALLS: [u32; 4] = [5, 8, 15, 30];

/// Heartbeats an hour at the article's fixed 25 s.
const FIXED_PER_HOUR: f64 = 3600.0 / 25.0;

const REPORT_BEGIN: &str = "<!-- idle-report: begin (make idle-report writes this table) -->";
const REPORT_END: &str = "<!-- idle-report: end -->";

/// A row of the report's table.
struct Row {
    path: String,
    bracket: Bracket,
    took: Duration,
    probes: u32,
    /// `--heartbeat-idle-max` of the run.
    max: Duration,
}

impl Row {
    fn markdown(&self, timeout: f64) -> String {
        let settled = settled_idle(
            self.bracket,
            AdaptiveSettings {
                min: Duration::from_secs(5),
                max: self.max,
            },
        );
        let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        let failed = self.bracket.failed.map_or("none".to_string(), secs);
        let (settled, per_hour) = match settled {
            Some(idle) => (secs(idle), format!("{:.1}", 3600.0 / idle.as_secs_f64())),
            None => ("—".to_string(), "—".to_string()),
        };
        let fixed = if timeout <= 25.0 {
            format!("{FIXED_PER_HOUR:.0}, and the session is lost")
        } else {
            format!("{FIXED_PER_HOUR:.0}")
        };
        format!(
            "| {} | {} – {failed} | {} | {} | {settled} | {per_hour} | {fixed} |\n",
            self.path,
            secs(self.bracket.held),
            secs(self.took),
            self.probes,
        )
    }
}

/// `make idle-report`: measures the search behind each of
/// [`REPORT_FIREWALLS`] (side by side, each in its own namespaces, the
/// server without keepalive or idle timeout so the firewall alone is
/// measured), simulates 350 s and 30 min paths, and runs the adaptive
/// client from 20 s for the chart; writes the table into
/// docs/idle-timeout.md and README.md, and draws docs/idle-timeout.svg.
#[test]
#[ignore = "about two minutes, and rewrites docs: make idle-report"]
fn idle_report() {
    let Some(labs) = REPORT_FIREWALLS
        .iter()
        .chain(&[FIREWALL_SECS])
        .map(|secs| Lab::with_black_hole("idle_report", *secs))
        .collect::<Option<Vec<Lab>>>()
    else {
        return;
    };
    let (measured, timeline) = thread::scope(|scope| {
        let finds: Vec<_> = labs[..REPORT_FIREWALLS.len()]
            .iter()
            .map(|lab| {
                scope.spawn(move || {
                    let server = lab.start_server(&["-q", "--no-keepalive", "--idle-timeout", "0"]);
                    find(client_command(lab), server.addr)
                })
            })
            .collect();
        let chart_lab = &labs[REPORT_FIREWALLS.len()];
        let chart_run = scope.spawn(move || adaptive(chart_lab, &FROM_20S, 2));
        let measured: Vec<Measured> = finds
            .into_iter()
            .map(|h| h.join().expect("a measurement panicked"))
            .collect();
        let (_, timeline) = chart_run
            .join()
            .expect("the chart run panicked")
            .expect("the chart run failed");
        (measured, timeline)
    });
    let mut table = String::from(
        "| path | bracket (held – failed) | time to bracket | probes | settled heartbeat idle | heartbeats an hour | fixed 25 s: heartbeats an hour |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (secs, m) in REPORT_FIREWALLS.iter().zip(&measured) {
        let row = Row {
            path: format!("black hole after {secs} s (measured)"),
            bracket: Bracket {
                // `longer than 10m`: the longest silence searched held.
                held: Duration::from_secs_f64(m.held.min(600.0)),
                failed: m.failed.map(Duration::from_secs_f64),
            },
            took: m.took,
            probes: m.probes,
            max: Duration::from_secs(600),
        };
        table.push_str(&row.markdown(f64::from(*secs)));
    }
    for (timeout, max, name) in [
        (350, 600, "AWS NLB, 350 s (simulated)"),
        (
            1800,
            3600,
            "NAT, 30 min (simulated, `--heartbeat-idle-max 1h`)",
        ),
    ] {
        let timeout = Duration::from_secs(timeout);
        let path = SimulatedPath {
            timeout: &|_| timeout,
            round_trip: Duration::from_millis(50),
            reply_timeout: REPLY_TIMEOUT_MIN,
        };
        let settings = SearchSettings {
            max: Duration::from_secs(max),
            parallel: PARALLEL_PROBES,
        };
        let sim = simulate(settings, &path, Instant::now(), Duration::from_secs(86_400));
        let State::Done(bracket) = sim.state else {
            panic!("the simulation of {name} found no bracket: {sim:?}");
        };
        let row = Row {
            path: name.to_string(),
            bracket,
            took: sim.elapsed,
            probes: sim.probes,
            max: settings.max,
        };
        table.push_str(&row.markdown(timeout.as_secs_f64()));
    }
    println!("{table}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for page in ["docs/idle-timeout.md", "README.md"] {
        let path = root.join(page);
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {page}: {e}"));
        let (Some(begin), Some(end)) = (doc.find(REPORT_BEGIN), doc.find(REPORT_END)) else {
            panic!("{page} lacks the report markers");
        };
        let updated = format!("{}{REPORT_BEGIN}\n{table}{}", &doc[..begin], &doc[end..]);
        std::fs::write(&path, updated).unwrap_or_else(|e| panic!("write {page}: {e}"));
    }
    let docs = root.join("docs");
    chart::draw(
        &timeline,
        f64::from(FIREWALL_SECS),
        &docs.join("idle-timeout.svg"),
    )
    .expect("draw docs/idle-timeout.svg");
}

#[test]
fn find_idle_timeout_on_a_full_server_exits_1_and_says_why() {
    let server = ServerProcess::start(&["--max-connections", "1", "-q"]);
    // Admitted (answered) before the client starts, so every probe is the
    // one too many.
    let mut holder = connect(server.addr);
    round_trip(&mut holder, b"HeartBeat\n", b"OK\n");
    let mut client = ClientProcess::start(server.addr, &["--find-idle-timeout"]);
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "{:?}", client.logged);
    assert!(client.output.is_empty());
    assert!(
        client.has_logged("probe connections keep failing: refused by the server: server full"),
        "{:?}",
        client.logged
    );
}

/// The server's own idle timeout is part of the path: an adaptive client
/// from 20 s is closed at 6 s of silence until its learner has bracketed
/// it, then settles under it and holds (no root needed).
#[test]
fn adaptive_heartbeat_settles_under_the_servers_idle_timeout() {
    let server = ServerProcess::start(&["--idle-timeout", "6s", "-q"]);
    let mut client = ClientProcess::start(
        server.addr,
        &[
            "--adaptive-heartbeat",
            "--heartbeat-idle",
            "20s",
            "--reconnect",
        ],
    );
    let line = client.wait_log_within("heartbeat idle now", Duration::from_secs(40));
    let (idle, learned) = idle_now(&line).unwrap_or_else(|| panic!("unexpected {line:?}"));
    assert!(learned, "{line}");
    // 90 % of what held (at least 5.3 s) is under the 5 s minimum, which
    // held, so the minimum it is.
    assert!((4.7..6.0).contains(&idle), "{line}");
    let losses_before = client
        .logged
        .iter()
        .filter(|l| l.contains("reconnecting in"))
        .count();
    // Three heartbeats' worth: any loss now would be a wrong interval.
    let deadline = Instant::now() + Duration::from_secs(16);
    while let Some(line) = client.next_log(deadline) {
        assert!(
            !line.contains("reconnecting in"),
            "lost after settling: {:?}",
            client.logged
        );
    }
    client.send(b"still there\n");
    client.wait_output(b"STILL THERE\n");
    // Closed after each 6 s of silence (plus the backoff) while learning,
    // which takes about 17 s.
    assert!(losses_before <= 4, "{:?}", client.logged);
}
