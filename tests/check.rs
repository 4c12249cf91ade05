//! `hb-client --check` against real servers: exit 0 and no output when the
//! heartbeat is answered; exit 1 and exactly one stderr line when the port
//! is closed, the server never answers (within --connect-timeout), or it
//! refuses the connection. The client's stdin stays open throughout: the
//! check never reads it.

mod common;

use common::{ClientProcess, PATIENCE, start_server};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Runs `hb-client --check` against `addr`; returns its exit code, stdout
/// and stderr lines, and how long it took.
fn check(addr: SocketAddr, args: &[&str]) -> (Option<i32>, String, Vec<String>, Duration) {
    let started = Instant::now();
    let mut client = ClientProcess::start(addr, &[&["--check"], args].concat());
    let status = client.wait_exit(PATIENCE);
    let took = started.elapsed();
    (
        status.code(),
        String::from_utf8_lossy(&client.output).into_owned(),
        client.logged.clone(),
        took,
    )
}

/// Asserts a failed check: exit 1, nothing on stdout, one line on stderr
/// that says `reason`.
fn assert_failed(result: &(Option<i32>, String, Vec<String>, Duration), reason: &str) {
    let (code, stdout, stderr, _) = result;
    assert_eq!(*code, Some(1), "stderr: {stderr:?}");
    assert_eq!(stdout, "", "stdout must stay empty");
    assert_eq!(stderr.len(), 1, "one stderr line, got {stderr:?}");
    assert!(
        stderr[0].starts_with("hb-client: check failed: ") && stderr[0].contains(reason),
        "{:?} does not say {reason:?}",
        stderr[0]
    );
}

#[test]
fn answered_heartbeat_exits_0_silently() {
    let server = start_server(None, 10);
    let (code, stdout, stderr, _) = check(server.local_addr(), &[]);
    assert_eq!(code, Some(0), "stderr: {stderr:?}");
    assert_eq!(stdout, "");
    assert!(stderr.is_empty(), "stderr: {stderr:?}");
}

#[test]
fn closed_port_fails() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a port to close");
    assert_failed(&check(addr, &[]), "cannot connect to");
}

#[test]
fn silent_server_fails_at_the_connect_timeout() {
    // The kernel completes the handshake from the backlog; nothing answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let timeout = Duration::from_millis(800);
    let result = check(
        listener.local_addr().unwrap(),
        &["--connect-timeout", "800ms"],
    );
    assert_failed(&result, "no reply to HeartBeat within 0.8s");
    // Lower bound strict; the upper one leaves 4 s for starting the process
    // on a busy machine (or under Wine).
    let took = result.3;
    assert!(
        took >= timeout,
        "gave up after {took:?}, before {timeout:?}"
    );
    assert!(took < timeout + Duration::from_secs(4), "took {took:?}");
}

#[test]
fn full_server_fails_with_its_refusal() {
    let server = start_server(None, 1);
    let _held = TcpStream::connect(server.local_addr()).expect("take the one slot");
    common::wait_for("the slot to be taken", || server.stats().open == 1);
    assert_failed(
        &check(server.local_addr(), &[]),
        "refused by the server: server full",
    );
}
