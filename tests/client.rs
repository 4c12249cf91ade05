//! The `hb-client` binary against the real `hb-server` and against fake
//! servers: echoes, hidden heartbeat replies, heartbeats outliving the
//! server's idle timeout, giving up on a silent server, and exit codes.

mod common;

use common::{ClientProcess, PATIENCE, ServerProcess};
use crossbeam::channel::{self, RecvTimeoutError};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

/// How late past its formula the client may give up: process start-up and
/// scheduling on a loaded CI machine.
const GIVE_UP_TOLERANCE: Duration = Duration::from_secs(1);

/// A fake server that accepts one connection and holds it, reading nothing
/// and answering nothing, until the returned sender is dropped.
fn silent_server() -> (SocketAddr, channel::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let (hold, until) = channel::bounded::<()>(0);
    thread::Builder::new()
        .name("fake-silent".into())
        .spawn(move || {
            let connection = listener.accept();
            let _ = until.recv();
            drop(connection);
        })
        .expect("spawn fake server");
    (addr, hold)
}

/// A fake server that accepts one connection and closes it at once.
fn closing_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    thread::Builder::new()
        .name("fake-closing".into())
        .spawn(move || drop(listener.accept()))
        .expect("spawn fake server");
    addr
}

#[test]
fn piped_lines_are_echoed_and_exit_0() {
    let server = ServerProcess::start(&[]);
    let mut client = ClientProcess::start(server.addr, &[]);
    client.send(b"a\nb\n");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(String::from_utf8_lossy(&client.output), "A\nB\n");
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
}

#[test]
fn final_line_without_lf_is_answered() {
    let server = ServerProcess::start(&[]);
    let mut client = ClientProcess::start(server.addr, &[]);
    client.send(b"x\ny");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(String::from_utf8_lossy(&client.output), "X\nY");
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
}

#[test]
fn heartbeat_ok_is_hidden_and_typed_ok_is_shown() {
    let server = ServerProcess::start(&[]);
    let mut client = ClientProcess::start(server.addr, &["--heartbeat-idle", "100ms", "-v"]);
    client.wait_log("heartbeat answered");
    client.send(b"ok\n");
    client.wait_output(b"OK\n");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(String::from_utf8_lossy(&client.output), "OK\n");
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
}

#[test]
fn heartbeats_outlive_the_server_idle_timeout() {
    let server = ServerProcess::start(&["--idle-timeout", "600ms"]);
    let mut client = ClientProcess::start(server.addr, &["--heartbeat-idle", "200ms", "-v"]);
    client.send(b"first\n");
    client.wait_output(b"FIRST\n");
    // The span under test, five idle timeouts long, not a synchronisation.
    thread::sleep(Duration::from_secs(3));
    let early_exit = client.child.try_wait().expect("try_wait");
    assert!(early_exit.is_none(), "client exited early: {early_exit:?}");
    client.send(b"later\n");
    client.wait_output(b"LATER\n");
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(String::from_utf8_lossy(&client.output), "FIRST\nLATER\n");
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
    assert!(client.has_logged("heartbeat answered"));
}

/// At the default level a routine heartbeat (sent, answered) logs nothing:
/// at a short heartbeat idle it would fill the terminal.
#[test]
fn routine_heartbeats_are_logged_only_at_debug() {
    let server = ServerProcess::start(&["-v"]);
    let mut client = ClientProcess::start(server.addr, &["--heartbeat-idle", "100ms"]);
    for _ in 0..3 {
        server.wait_log("heartbeat answered");
    }
    client.close_stdin();
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(0), "stderr: {:?}", client.logged);
    let heartbeat_lines: Vec<_> = client
        .logged
        .iter()
        .filter(|l| l.contains("heartbeat sent") || l.contains("heartbeat answered"))
        .collect();
    assert!(heartbeat_lines.is_empty(), "at info: {heartbeat_lines:?}");
}

/// Idle 400ms, then 3 heartbeats 200ms apart: give up at 400 + 3 x 200.
/// `-v` logs each heartbeat sent.
const GIVE_UP_ARGS: [&str; 7] = [
    "-v",
    "--heartbeat-idle",
    "400ms",
    "--heartbeat-interval",
    "200ms",
    "--heartbeat-retries",
    "3",
];
const GIVE_UP_AFTER: Duration = Duration::from_millis(400 + 3 * 200);

/// Checks that `client`, started at `started`, gives up with exit 3 no
/// earlier than [`GIVE_UP_AFTER`] and within the tolerance, and whether it
/// sent its heartbeats.
fn assert_gives_up(client: &mut ClientProcess, started: Instant, sent_heartbeats: bool) {
    let status = client.wait_exit(GIVE_UP_AFTER + GIVE_UP_TOLERANCE + PATIENCE);
    let elapsed = started.elapsed();
    assert_eq!(status.code(), Some(3), "stderr: {:?}", client.logged);
    assert!(elapsed >= GIVE_UP_AFTER, "gave up early, after {elapsed:?}");
    assert!(
        elapsed <= GIVE_UP_AFTER + GIVE_UP_TOLERANCE,
        "gave up late, after {elapsed:?}"
    );
    assert_eq!(
        client.has_logged("heartbeat sent #3"),
        sent_heartbeats,
        "stderr: {:?}",
        client.logged
    );
    assert!(
        client.has_logged("server unresponsive"),
        "stderr: {:?}",
        client.logged
    );
}

#[test]
fn silent_server_is_given_up_on() {
    let (addr, _hold) = silent_server();
    let started = Instant::now();
    let mut client = ClientProcess::start(addr, &GIVE_UP_ARGS);
    assert_gives_up(&mut client, started, true);
    assert!(client.output.is_empty());
}

#[test]
fn silent_server_is_given_up_on_after_stdin_ends() {
    let (addr, _hold) = silent_server();
    let started = Instant::now();
    let mut client = ClientProcess::start(addr, &GIVE_UP_ARGS);
    client.close_stdin();
    client.wait_log("stdin ended");
    assert_gives_up(&mut client, started, false);
}

#[test]
fn silent_server_is_given_up_on_while_the_user_types() {
    let (addr, _hold) = silent_server();
    let started = Instant::now();
    let mut client = ClientProcess::start(addr, &GIVE_UP_ARGS);
    let mut stdin = client.take_stdin();
    let (stop, stopped) = channel::bounded::<()>(0);
    let typist = thread::Builder::new()
        .name("typist".into())
        .spawn(move || {
            use std::io::Write;
            while stopped.recv_timeout(Duration::from_millis(100)) == Err(RecvTimeoutError::Timeout)
            {
                if stdin.write_all(b"still typing\n").is_err() {
                    break;
                }
            }
        })
        .expect("spawn typist");
    assert_gives_up(&mut client, started, true);
    drop(stop);
    typist.join().expect("typist panicked");
}

#[test]
fn server_that_closes_gives_exit_1_promptly() {
    let addr = closing_server();
    let mut client = ClientProcess::start(addr, &[]);
    let status = client.wait_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(1), "stderr: {:?}", client.logged);
    assert!(
        client.has_logged("server closed the connection"),
        "stderr: {:?}",
        client.logged
    );
}

#[test]
fn nothing_listening_gives_exit_1() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut client = ClientProcess::start(addr, &[]);
    let status = client.wait_exit(PATIENCE);
    assert_eq!(status.code(), Some(1), "stderr: {:?}", client.logged);
    let message = format!("hb-client: cannot connect to {addr}: ");
    assert!(client.has_logged(&message), "stderr: {:?}", client.logged);
}

#[test]
fn bad_flags_give_exit_2() {
    for bad in [["--heartbeat-retries", "0"], ["--heartbeat-interval", "0"]] {
        let mut client = ClientProcess::start("127.0.0.1:1".parse().unwrap(), &bad);
        let status = client.wait_exit(PATIENCE);
        assert_eq!(status.code(), Some(2), "{bad:?}: {:?}", client.logged);
    }
}

#[cfg(unix)]
#[test]
fn sigint_and_sigterm_give_exit_130() {
    let server = ServerProcess::start(&[]);
    let signals: &[&str] = if common::skipped_on_other_build(
        "sigint_and_sigterm_give_exit_130 (SIGTERM)",
        "Windows has no SIGTERM, and Wine ends a program at SIGTERM without telling it",
    ) {
        &["INT"]
    } else {
        &["INT", "TERM"]
    };
    for &name in signals {
        let mut client = ClientProcess::start(server.addr, &[]);
        client.wait_log("connected to");
        common::signal(client.child.id(), name);
        let status = client.wait_exit(Duration::from_secs(2));
        assert_eq!(status.code(), Some(130), "SIG{name}: {:?}", client.logged);
    }
}
