//! The before/after numbers of docs/hardening.md (issue 17), as `#[ignore]`d
//! tests that print them: `make hardening-trust` runs them in release
//! against this build, or against another one named by
//! `HB_TEST_SERVER_CMD` (how the "before" column was measured).

use super::common::scrape::*;
use super::common::*;
use super::v2_header;
use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// Connections in the oversized-header attack, and what each announces and
/// sends.
const ATTACKERS: usize = 1000;
const ANNOUNCED: u16 = 60 * 1024;

#[test]
#[ignore = "a measurement: make hardening-trust"]
fn memory_of_1000_oversized_headers() {
    let server = ServerProcess::start(&["--proxy-protocol", "--max-connections", "2000"]);
    let pid = server.pid();
    // A first connection and its refusal, so the baseline has the thread
    // machinery warmed up.
    drop(connect(server.addr));
    thread::sleep(Duration::from_millis(200));
    let before = proc_status(pid, "VmRSS");
    let mut header = v2_header([203, 0, 113, 9], 1, &[]);
    header[14..16].copy_from_slice(&ANNOUNCED.to_be_bytes());
    header.resize(16 + usize::from(ANNOUNCED), b'x');
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
    let sent = started.elapsed();
    // The server holds what it buffered until each header's 5 s timeout.
    thread::sleep(Duration::from_secs(1));
    let peak = proc_status(pid, "VmHWM");
    let held = proc_status(pid, "VmRSS");
    drop(attackers);
    println!(
        "{ATTACKERS} connections x {ANNOUNCED}-byte announced v2 headers (sent in {sent:?}): \
         RSS {before} kB before, {held} kB 1 s after, peak {peak} kB: peak growth {} kB",
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
    let (status, _) = get(m, "/metrics");
    let took = started.elapsed();
    drop(stalled);
    println!("scrape behind 20 stalled connections: {status} after {took:?}");
}
