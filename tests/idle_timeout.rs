//! `hb-client --find-idle-timeout` and `--adaptive-heartbeat` against real
//! paths (issue 18): the server's own idle timeout on 127.0.0.1, and a
//! stateful firewall in a network namespace that black-holes a connection
//! after 8 s of silence ([`Lab::with_black_hole`]).
//!
//! The black-hole scenarios take a minute or more each, most of it the
//! silences being measured, so [`through_a_conntrack_black_hole`] runs them
//! side by side, each in its own pair of namespaces. Without root, `ip` or
//! `nft` they say SKIPPED (under CI they fail).

mod common;

use common::netns::{Lab, SERVER_IP, Side};
use common::*;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

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

/// Runs hb-client `--find-idle-timeout -v` through `command` (the binary,
/// or a wrapper ending with it) against `addr`; returns its bracket and how
/// long it took.
fn find(command: std::process::Command, addr: SocketAddr) -> ((f64, Option<f64>), Duration) {
    let started = Instant::now();
    let mut client = ClientProcess::spawn(command, addr, &["--find-idle-timeout", "-v"]);
    let status = client.wait_exit(Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&client.output).into_owned();
    assert!(
        status.success(),
        "{status}; stdout {stdout:?}; stderr {:?}",
        client.logged
    );
    (bracket(&stdout), started.elapsed())
}

#[test]
fn find_idle_timeout_brackets_the_servers_own_idle_timeout() {
    let server = ServerProcess::start(&["--idle-timeout", "6s", "-q"]);
    let client = launcher("HB_TEST_CLIENT_CMD", env!("CARGO_BIN_EXE_hb-client"));
    let ((held, failed), took) = find(client, server.addr);
    let failed = failed.expect("a silence failed");
    // The server closes 6 s after the last byte it received, which is half
    // a round trip before the client's last byte; its reaper is at most a
    // few milliseconds late.
    assert!(
        held < 6.0 && (5.9..6.2).contains(&failed),
        "{held} .. {failed}"
    );
    assert!(failed - held <= 1.0, "bracket too wide: {held} .. {failed}");
    // The exponential round fails at 6 s; at most two rounds of probes
    // shorter than 6 s follow.
    assert!(took < Duration::from_secs(25), "took {took:?}");
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
        (
            &["--find-idle-timeout", "--adaptive-heartbeat"][..],
            None,
            "cannot be used with",
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

/// The black-hole scenarios, side by side; fails with every scenario's
/// failure.
#[test]
fn through_a_conntrack_black_hole() {
    let scenarios: [(&str, fn(&Lab) -> Result<String, String>); 3] = [
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

fn server_in(lab: &Lab) -> ServerProcess {
    lab.start_server(&["-q"])
}

fn client_command(lab: &Lab) -> std::process::Command {
    lab.command(Side::Client, env!("CARGO_BIN_EXE_hb-client"))
}

fn find_brackets_the_firewall(lab: &Lab) -> Result<String, String> {
    let server = server_in(lab);
    assert!(server.addr.ip().to_string() == SERVER_IP);
    let ((held, failed), took) = find(client_command(lab), server.addr);
    let failed = failed.ok_or("no silence failed")?;
    let firewall = f64::from(FIREWALL_SECS);
    // Measured: 7.9 s holds, 8.1 s does not.
    if !(held < firewall + 0.1 && failed > firewall - 0.1 && failed - held <= 1.0) {
        return Err(format!("bracket {held}s .. {failed}s"));
    }
    Ok(format!("between {held}s and {failed}s in {took:.1?}"))
}

/// The adaptive client's settled heartbeat idle, in seconds, from its
/// `heartbeat idle now 6.48s (the path held 7.2s; lost after 8s)` line.
fn settled(line: &str) -> Option<f64> {
    line.split("heartbeat idle now ")
        .nth(1)?
        .split_once("s (the path held")?
        .0
        .parse()
        .ok()
}

/// Runs an adaptive client with `args` behind the black hole until it has
/// settled and then held for [`HOLD`]; fails if it is lost more than
/// `losses_allowed` times, or does not settle in [5 s, 8 s) within
/// [`SETTLE_LIMIT`]. Then checks the session still answers.
fn adaptive(lab: &Lab, args: &[&str], losses_allowed: usize) -> Result<String, String> {
    let server = server_in(lab);
    let mut all = vec!["--adaptive-heartbeat"];
    all.extend_from_slice(args);
    let mut client = ClientProcess::spawn(client_command(lab), server.addr, &all);
    let started = Instant::now();
    let limit = started + SETTLE_LIMIT + HOLD;
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
        if line.contains("reconnecting in") || line.contains("hb-client:") {
            losses += 1;
            settled_at = None;
            if losses > losses_allowed {
                return Err(format!("lost {losses} times: {:?}", client.logged));
            }
        }
        if let Some(idle) = settled(&line) {
            if Instant::now() > started + SETTLE_LIMIT {
                return Err(format!(
                    "settled after {SETTLE_LIMIT:?}: {:?}",
                    client.logged
                ));
            }
            settled_at = Some((idle, Instant::now()));
        }
    }
    let (idle, at) = settled_at.expect("settled");
    if !(5.0..f64::from(FIREWALL_SECS)).contains(&idle) {
        return Err(format!("settled at {idle}s: {:?}", client.logged));
    }
    client.send(b"still there\n");
    client.wait_output(b"STILL THERE\n");
    Ok(format!(
        "settled at {idle}s after {:.1?}, lost {losses} times, then held {HOLD:?}",
        at - started
    ))
}

fn adaptive_from_3s(lab: &Lab) -> Result<String, String> {
    adaptive(lab, &["--heartbeat-idle", "3s"], 0)
}

fn adaptive_from_20s_with_reconnect(lab: &Lab) -> Result<String, String> {
    adaptive(lab, &["--heartbeat-idle", "20s", "--reconnect"], 2)
}
