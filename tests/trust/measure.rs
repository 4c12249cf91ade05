//! The before/after numbers of docs/hardening.md (issue 17), as `#[ignore]`d
//! tests that print them: `make hardening-trust` runs them in release
//! against this build, or against another one named by
//! `HB_TEST_SERVER_CMD` (how the "before" column was measured).

use super::common::scrape::metrics_addr;
use super::common::*;
use super::v2_header;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// Connections in the header attacks.
const ATTACKERS: usize = 1000;

#[test]
#[ignore = "a measurement: make hardening-trust"]
fn memory_of_1000_oversized_headers() {
    headers_held(u16::MAX, 60 * 1024);
}

/// The worst a header can cost now: the largest allowed (4 KiB in all),
/// all but its last bytes sent.
#[test]
#[ignore = "a measurement: make hardening-trust"]
fn memory_of_1000_largest_allowed_headers() {
    headers_held(4096 - 16, 4000);
}

/// Peak memory of the server while [`ATTACKERS`] connections each send
/// `sent` bytes of a version 2 header announcing `announced`, never whole,
/// so held until the 5 s header timeout.
fn headers_held(announced: u16, sent: usize) {
    let server = ServerProcess::start(&["--proxy-protocol", "--max-connections", "2000"]);
    let pid = server.pid();
    // A first connection and its refusal, so the baseline has the thread
    // machinery warmed up.
    drop(connect(server.addr));
    thread::sleep(Duration::from_millis(200));
    let before = proc_status(pid, "VmRSS");
    let mut header = v2_header([203, 0, 113, 9], 1, &[]);
    header[14..16].copy_from_slice(&announced.to_be_bytes());
    header.resize(16 + sent, b'x');
    let started = Instant::now();
    let attackers: Vec<TcpStream> = (0..ATTACKERS)
        .map(|_| {
            let mut c = TcpStream::connect(server.addr).expect("connect");
            c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            // A refused connection resets the rest of the write: fine.
            let _ = c.write_all(&header);
            c
        })
        .collect();
    let took = started.elapsed();
    // The peak (VmHWM) is read just before the header timeout.
    let mut held = Vec::new();
    while started.elapsed() < Duration::from_millis(4500) {
        thread::sleep(Duration::from_millis(500));
        held.push(proc_status(pid, "VmRSS"));
    }
    let peak = proc_status(pid, "VmHWM");
    drop(attackers);
    println!(
        "{ATTACKERS} connections sending {sent} bytes of {announced}-byte v2 headers (in {took:?}): \
         RSS {before} kB before, every 0.5 s after: {held:?} kB; peak {peak} kB: peak growth {} kB",
        peak.saturating_sub(before)
    );
}

#[test]
#[ignore = "a measurement: make hardening-trust"]
fn scrape_time_behind_20_stalled_connections() {
    let server = ServerProcess::start(&["--metrics-listen", "127.0.0.1:0"]);
    let m = metrics_addr(&server);
    let stalled: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut c = TcpStream::connect(m).expect("connect");
            if i % 2 == 1 {
                c.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
            }
            c
        })
        .collect();
    let started = Instant::now();
    let mut c = TcpStream::connect(m).expect("connect");
    // One at a time, the stalled ones go first, 2 s each at most.
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut status = [0u8; 12];
    c.read_exact(&mut status).expect("a status line");
    let took = started.elapsed();
    let status = String::from_utf8_lossy(&status[9..12]).into_owned();
    drop(stalled);
    println!("scrape behind 20 stalled connections: {status} after {took:?}");
}
