//! Issue 10 test 7: `--drain` on its own. The listener closes at once, the
//! connections close spread over the drain, and the server exits 0 at its
//! end; a second signal ends everything at once with 130.

use super::common::*;
use super::support::watch_eof;
use crossbeam::channel;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How soon after SIGTERM new connections must be refused (the issue's).
const REFUSED_WITHIN: Duration = Duration::from_millis(100);

/// Opens `n` connections and makes sure each is served.
fn open_served(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut c = connect(addr);
            round_trip(
                &mut c,
                format!("c{i}\n").as_bytes(),
                format!("C{i}\n").as_bytes(),
            );
            c
        })
        .collect()
}

/// How often [`first_refusal`] tries: its resolution, and few enough probes
/// that the drain's count stays close to the connections held.
const PROBE_EVERY: Duration = Duration::from_millis(5);

/// Connects until refused; returns when the first refusal came.
fn first_refusal(addr: std::net::SocketAddr) -> Instant {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Instant::now(),
            // Queued just as the listener closed, and reset with it.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connect failed other than refused: {e}"),
            // Accepted before the listener closed: let it go at once.
            Ok(accepted) => drop(accepted),
        }
        assert!(Instant::now() < deadline, "never refused");
        std::thread::sleep(PROBE_EVERY);
    }
}

#[test]
fn drain_refuses_new_connections_and_spreads_closes_over_its_length() {
    const CONNECTIONS: usize = 100;
    let drain = Duration::from_secs(2);
    let mut server = ServerProcess::start(&["--drain", "2s", "--max-connections", "1000"]);
    let (ended_tx, ended_rx) = channel::unbounded();
    for c in open_served(server.addr, CONNECTIONS) {
        watch_eof(c, ended_tx.clone());
    }
    let signalled = Instant::now();
    server.signal("TERM");
    let refused = first_refusal(server.addr);
    assert!(
        refused - signalled <= REFUSED_WITHIN,
        "new connections refused only {:?} after SIGTERM",
        refused - signalled
    );
    // Probes accepted before the listener closed (one per PROBE_EVERY, in
    // the 100 ms allowed) may still be open when the drain begins.
    let line = server.wait_log("connections over 2s");
    let drained: u32 = line
        .split("draining ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert!(
        (CONNECTIONS as u32..=CONNECTIONS as u32 + 21).contains(&drained),
        "{line}"
    );
    let mut closes: Vec<Duration> = (0..CONNECTIONS)
        .map(|i| {
            ended_rx
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("only {i} connections were closed"))
                - signalled
        })
        .collect();
    let status = server.wait_exit(Duration::from_millis(2500).saturating_sub(signalled.elapsed()));
    assert_eq!(status.code(), Some(0), "exit status after the drain");
    server.wait_log("drain ended after");
    closes.sort();
    // The k-th close is due 2s * k / drained after the drain began, which
    // was after the signal: never earlier.
    for (k, at) in closes.iter().enumerate() {
        let due = drain * (k as u32 + 1) / drained;
        assert!(
            *at >= due,
            "close #{} after {at:?}, due no earlier than {due:?}",
            k + 1
        );
    }
    let most = most_in_any_window(&closes, Duration::from_millis(200));
    assert!(
        most <= CONNECTIONS / 3,
        "{most} of {CONNECTIONS} closes fell in one 200 ms window: {closes:?}"
    );
}

/// The most instants of sorted `times` inside any window of length `window`.
fn most_in_any_window(times: &[Duration], window: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, at) in times.iter().enumerate() {
        while *at - times[first] >= window {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

#[test]
fn a_second_signal_mid_drain_exits_130_at_once() {
    let mut server = ServerProcess::start(&["--drain", "10s"]);
    let (ended_tx, ended_rx) = channel::unbounded();
    for c in open_served(server.addr, 10) {
        watch_eof(c, ended_tx.clone());
    }
    server.signal("TERM");
    server.wait_log("draining 10 connections over 10s");
    let second = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_millis(500));
    assert_eq!(
        status.code(),
        Some(130),
        "exit status after a second SIGTERM"
    );
    for i in 0..10 {
        ended_rx
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_else(|_| panic!("connection {i} still open after the exit"));
    }
    assert!(second.elapsed() < Duration::from_secs(2));
}

#[test]
fn drain_zero_is_the_usual_quick_shutdown() {
    let mut server = ServerProcess::start(&["--drain", "0"]);
    let _open = open_served(server.addr, 3);
    let signalled = Instant::now();
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(1)).code(), Some(0));
    assert!(signalled.elapsed() < Duration::from_secs(1));
}

#[test]
fn drain_longer_than_an_hour_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hb-server"))
        .args(["--drain", "61m", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run hb-server");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--drain") && stderr.contains("at most 1h"),
        "{stderr}"
    );
}

/// Issue 16: a connection whose client leaves during a drain, before its
/// turn, gives back its descriptor at once, not at the drain's end.
#[cfg(target_os = "linux")]
#[test]
fn a_connection_that_ends_mid_drain_is_let_go_at_once() {
    const CONNECTIONS: usize = 40;
    let mut server = ServerProcess::start(&["--drain", "60s"]);
    let mut clients = open_served(server.addr, CONNECTIONS);
    server.signal("TERM");
    server.wait_log(&format!("draining {CONNECTIONS} connections over 1m"));
    let during = open_fds(server.pid());
    // The last ones are the drain's last turns, a minute away.
    let leaving = clients.split_off(CONNECTIONS / 2);
    drop(leaving);
    wait_for(
        "the server to close the descriptors of the clients that left",
        || open_fds(server.pid()) + CONNECTIONS / 2 <= during,
    );
    drop(clients);
    server.signal("KILL");
    server.wait_exit(PATIENCE);
}
