//! Tests of hb-bench: the real binary against the real hb-server on
//! 127.0.0.1:0 (and against a server that answers wrongly). Short runs: they
//! check counting and reporting, not performance.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread;

/// Runs hb-bench against `addr` with `args`; returns its output.
fn bench(addr: std::net::SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hb-bench"))
        .args(["--target", &addr.to_string()])
        .args(args)
        .output()
        .expect("run hb-bench")
}

/// The single JSON line of a `--json` run.
fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stdout:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn echo_verifies_every_reply_and_counts_them() {
    let server = ServerProcess::start(&["-q"]);
    let out = bench(
        server.addr,
        &[
            "--json", "echo", "-c", "4", "-m", "100", "-s", "32", "-d", "30s",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["mode"], "echo");
    assert_eq!(report["verified"], 400);
    assert_eq!(report["mismatches"], 0);
    assert_eq!(report["io_errors"], 0);
    assert_eq!(report["latency"]["count"], 400);
}

#[test]
fn echo_prints_a_human_summary_by_default() {
    let server = ServerProcess::start(&["-q"]);
    let out = bench(server.addr, &["echo", "-c", "2", "-m", "50"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("100 replies verified"), "{stdout}");
    assert!(stdout.contains("latency p50"), "{stdout}");
}

#[test]
fn echo_fails_on_a_server_that_does_not_uppercase() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::Builder::new()
        .name("test-parrot".into())
        .spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                let _ = stream.write_all(&buf[..n]);
            }
        })
        .unwrap();
    let out = bench(addr, &["--json", "echo", "-c", "1", "-m", "5"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["mismatches"], 1);
    assert_eq!(report["verified"], 0);
}

#[test]
fn idle_reports_closes_by_a_short_idle_timeout() {
    let server = ServerProcess::start(&["-q", "--idle-timeout", "300ms"]);
    let out = bench(
        server.addr,
        &[
            "--json",
            "idle",
            "-c",
            "20",
            "--heartbeat",
            "100ms",
            "-d",
            "5s",
            "--silent-after",
            "200ms",
            "--timeout",
            "300ms",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["connected"], 20);
    assert_eq!(report["closed"], 20);
    assert_eq!(report["held"], 0);
    assert_eq!(report["early"], 0, "closed before the timeout: {report}");
    assert_eq!(report["bad_replies"], 0);
    assert!(report["heartbeats"].as_u64().unwrap() >= 20, "{report}");
}

#[cfg(target_os = "linux")]
#[test]
fn idle_holds_connections_and_reports_server_memory() {
    let server = ServerProcess::start(&["-q"]);
    let pid = server.pid().to_string();
    let out = bench(
        server.addr,
        &[
            "--json",
            "--server-pid",
            &pid,
            "idle",
            "-c",
            "50",
            "--heartbeat",
            "100ms",
            "-d",
            "500ms",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["held"], 50);
    assert_eq!(report["closed"], 0);
    assert!(
        report["server_rss_per_connection_kib"].is_number(),
        "{report}"
    );
}

#[test]
fn churn_counts_cycles() {
    let server = ServerProcess::start(&["-q"]);
    let out = bench(server.addr, &["--json", "churn", "-c", "2", "-d", "500ms"]);
    assert!(out.status.success(), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["errors"], 0);
    assert!(report["cycles"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn restart_rides_through_a_real_server_restart() {
    let mut server = ServerProcess::start(&["-q"]);
    let addr = server.addr;
    let mut bench = Command::new(env!("CARGO_BIN_EXE_hb-bench"))
        .args([
            "--target",
            &addr.to_string(),
            "--json",
            "restart",
            "-c",
            "50",
        ])
        .args(["--reconnect-min", "100ms", "--reconnect-max", "400ms"])
        .args(["--wait", "10s", "--timeout", "10s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn hb-bench");
    let log = lines_of(bench.stderr.take().unwrap());
    let holding = log
        .recv_timeout(PATIENCE)
        .expect("hb-bench says it holds them");
    assert_eq!(
        holding,
        "restart: holding 50 connections; restart the server now"
    );
    server.signal("KILL");
    server.wait_exit(PATIENCE);
    let _restarted = ServerProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_hb-server")),
        &addr.to_string(),
        &["-q"],
    );
    wait_exit(&mut bench, PATIENCE);
    let out = bench.wait_with_output().expect("hb-bench output");
    assert!(out.status.success(), "{out:?}");
    let report = json_of(&out);
    assert_eq!(report["mode"], "restart");
    assert_eq!(
        (report["lost"].as_u64(), report["back"].as_u64()),
        (Some(50), Some(50))
    );
    assert!(report["attempts"].as_u64().unwrap() >= 50, "{report}");
    let peak = report["peak_attempts_per_100ms"].as_u64().unwrap();
    assert!(
        (1..=report["attempts"].as_u64().unwrap()).contains(&peak),
        "{report}"
    );
    assert!(report["all_back_after_ms"].as_f64().is_some(), "{report}");
}
