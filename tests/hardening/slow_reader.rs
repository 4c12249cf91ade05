//! Slow readers: a client that sends but never reads. Once its receive
//! buffer and the server's send buffer are full, the server's write blocks.
//! Policy (docs/hardening.md): the idle timeout frees it, since a connection
//! blocked in a write reads nothing and so records no activity; on Linux the
//! TCP user timeout frees it too, even with the idle timeout off. Neither
//! lets it stall any other connection: each has its own thread.

use crate::common::*;
use crate::support::Latencies;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends until the kernel will take no more: the server has stopped reading
/// because its write to this client blocks. Returns the bytes sent.
fn send_until_blocked(c: &mut TcpStream) -> usize {
    c.set_nonblocking(true).expect("set non-blocking");
    let chunk = [b'a'; 64 * 1024];
    let mut sent = 0;
    let deadline = Instant::now() + PATIENCE;
    // Blocked for 200 ms in a row means both directions' buffers are full.
    let mut blocked_since = None;
    loop {
        assert!(Instant::now() < deadline, "the server kept reading");
        match c.write(&chunk) {
            Ok(n) => {
                sent += n;
                blocked_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(200) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5)); // poll interval
            }
            Err(e) => panic!("send: {e}"),
        }
    }
    c.set_nonblocking(false).expect("set blocking");
    sent
}

/// Reads what the server sent the slow reader until its close; an idle
/// timeout's close is a FIN, the user timeout's a reset.
fn drain_until_closed(c: &mut TcpStream) -> usize {
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        match c.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("read from the slow reader's socket: {e}"),
        }
    }
}

#[test]
fn the_idle_timeout_frees_a_slow_reader_without_stalling_others() {
    // Long enough that filling the slow reader's buffers (which takes over
    // half a second on a loaded 2-core machine) ends well before its reap,
    // so the other client's round trips are sampled while it is blocked.
    let timeout = Duration::from_secs(1);
    let server = start_server(Some(timeout), 10);
    let mut other = connect(server.local_addr());
    let mut slow = connect(server.local_addr());
    let start = Instant::now();
    let sent = send_until_blocked(&mut slow);
    let blocked = Instant::now();
    let mut samples = Vec::new();
    loop {
        assert!(
            start.elapsed() < PATIENCE,
            "the slow reader was never freed"
        );
        let t = Instant::now();
        round_trip(&mut other, b"HeartBeat\n", b"OK\n");
        samples.push(t.elapsed());
        if server.stats().open < 2 {
            break;
        }
    }
    let freed = blocked.elapsed();
    let latency = Latencies::of(samples);
    eprintln!(
        "slow reader: sent {sent} bytes unread, freed {freed:?} after its sends blocked \
         (idle timeout {timeout:?}); other client's round trips meanwhile: {latency}"
    );
    assert!(
        latency.max < Duration::from_millis(500),
        "other client stalled: {latency:?}"
    );
    assert!(
        freed <= timeout + Duration::from_millis(500),
        "freed late: {freed:?}"
    );
    assert_eq!(server.stats().summary.reaped, 1);
    drain_until_closed(&mut slow);
    round_trip(&mut other, b"after\n", b"AFTER\n");
}

/// With the idle timeout off, Linux's TCP_USER_TIMEOUT still frees a client
/// that keeps its receive window shut (kernels since 5.11 apply it to
/// zero-window probes).
#[cfg(target_os = "linux")]
#[test]
fn the_user_timeout_frees_a_slow_reader_when_the_idle_timeout_is_off() {
    let server = ServerProcess::start(&["--idle-timeout", "0", "--user-timeout", "1s"]);
    let mut other = connect(server.addr);
    let mut slow = connect(server.addr);
    send_until_blocked(&mut slow);
    let blocked = Instant::now();
    let line = server.wait_log("Connection timed out");
    let freed = blocked.elapsed();
    eprintln!(
        "slow reader with --user-timeout 1s: freed {freed:?} after its sends blocked: {line}"
    );
    assert!(line.contains("closed: timed_out"), "{line}");
    assert!(freed < Duration::from_secs(5), "freed late: {freed:?}");
    drain_until_closed(&mut slow);
    round_trip(&mut other, b"unaffected\n", b"UNAFFECTED\n");
}
