//! Every connection counted once: after a mixed run (served, refused for
//! each reason the test can provoke, closed by the reaper before its PROXY
//! header, reaped after admission, drained), the counters add up.
//!
//! `busy` (no thread could be started) is not provoked: it needs the
//! process out of threads. A connection reaped before its header is
//! refused `proxy_header` (src/server/outcome.rs).

use super::common::scrape::samples;
use super::common::*;
use super::support::connect_from;
use super::v1_header;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;
use tcp_heartbeat::server::address::Addressing;
use tcp_heartbeat::server::compat::Compat;
use tcp_heartbeat::server::{Server, ServerConfig};
use tcp_heartbeat::sockopt::SocketOptions;

const IDLE: Duration = Duration::from_millis(1500);
const MAX_CONNECTIONS: usize = 4;

fn value(samples: &BTreeMap<String, f64>, series: &str) -> u64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} missing")) as u64
}

fn sum(samples: &BTreeMap<String, f64>, prefix: &str) -> u64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| *v as u64)
        .sum()
}

/// The invariants at a quiet moment, with `seen` connections made so far;
/// returns the page's samples.
fn check(server: &Server, seen: u64, step: &str) -> BTreeMap<String, f64> {
    let s = samples(&server.metrics_text());
    let accepted = value(&s, "hb_connections_accepted_total");
    let refused = sum(&s, "hb_connections_refused_total{");
    let closed = sum(&s, "hb_connections_closed_total{");
    let open = value(&s, "hb_connections_open");
    let idle = value(&s, "hb_connections_closed_total{reason=\"idle_timeout\"}");
    let lateness = value(&s, "hb_reaper_lateness_seconds_count");
    assert_eq!(
        accepted + refused,
        seen,
        "{step}: accepted + refused = seen: {s:#?}"
    );
    assert_eq!(
        open,
        accepted - closed,
        "{step}: open = accepted - closed: {s:#?}"
    );
    assert_eq!(
        lateness, idle,
        "{step}: lateness count = idle closes: {s:#?}"
    );
    assert_eq!(
        value(&s, "hb_connection_duration_seconds_count"),
        closed,
        "{step}: a duration per close"
    );
    s
}

/// Waits until the server has no connection thread but `open`.
fn wait_open(server: &Server, open: usize, what: &str) {
    wait_for(what, || server.stats().open == open);
}

/// Keeps `c` busy with a heartbeat every 200 ms until the server closes it.
fn keep_alive(mut c: TcpStream) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("test-keepalive".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            while c.write_all(b"HeartBeat\n").is_ok() {
                match c.read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .expect("spawn keepalive")
}

#[test]
fn every_connection_is_counted_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::start_with(
        listener,
        ServerConfig {
            idle_timeout: Some(IDLE),
            max_connections: MAX_CONNECTIONS,
            socket_options: SocketOptions::default(),
            compat: Compat::None,
            proxy_protocol: false,
            max_connections_per_ip: 1,
        },
        Addressing {
            proxy_protocol_from: vec!["127.0.0.1/32".parse().unwrap()],
            ..Addressing::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    let mut seen = 0;

    // Three from the balancer's address that never send their header: the
    // reaper closes them (1.5 s) before the header timeout (5 s).
    let mut silent: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.1", addr)).collect();
    seen += 3;
    for c in &mut silent {
        assert_eq!(read_to_eof(c), b"", "reaped before the header");
    }
    wait_open(&server, 0, "the silent connections reaped");
    let s = check(&server, seen, "reaped before the header");
    assert_eq!(
        value(&s, "hb_connections_refused_total{reason=\"proxy_header\"}"),
        3
    );
    assert_eq!(value(&s, "hb_reaper_lateness_seconds_count"), 0);

    // A bad header, and two served: one through the balancer, one direct.
    let mut bad = connect_from("127.0.0.1", addr);
    bad.write_all(b"PROXY TCP4 nonsense\r\n").unwrap();
    assert_eq!(read_to_eof(&mut bad), b"");
    let mut balanced = connect_from("127.0.0.1", addr);
    balanced.write_all(&v1_header("192.0.2.1", 1)).unwrap();
    round_trip(&mut balanced, b"HeartBeat\n", b"OK\n");
    let mut direct = connect_from("127.0.0.2", addr);
    round_trip(&mut direct, b"HeartBeat\n", b"OK\n");
    seen += 3;
    for mut c in [balanced, direct] {
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(&mut c), b"");
    }
    wait_open(&server, 0, "the served connections closed");
    check(&server, seen, "served");

    // Per address: the second from 127.0.0.3 is refused. The first is then
    // reaped after admission, idle.
    let mut first = connect_from("127.0.0.3", addr);
    round_trip(&mut first, b"HeartBeat\n", b"OK\n");
    let mut second = connect_from("127.0.0.3", addr);
    seen += 2;
    assert_eq!(
        read_to_eof(&mut second),
        b"ERR too many connections from your address\n"
    );
    assert_eq!(read_to_eof(&mut first), b"", "reaped");
    wait_open(&server, 0, "the idle one reaped");
    let s = check(&server, seen, "per address and reaped");
    assert_eq!(value(&s, "hb_reaper_lateness_seconds_count"), 1);

    // Full: MAX_CONNECTIONS kept busy from distinct addresses, one more
    // refused; then the busy ones are drained.
    let keepers: Vec<_> = (0..MAX_CONNECTIONS)
        .map(|i| {
            let mut c = connect_from(&format!("127.0.1.{}", i + 1), addr);
            round_trip(&mut c, b"HeartBeat\n", b"OK\n");
            keep_alive(c)
        })
        .collect();
    let mut full = connect_from("127.0.2.1", addr);
    seen += MAX_CONNECTIONS as u64 + 1;
    assert_eq!(read_to_eof(&mut full), b"ERR server full\n");
    let s = check(&server, seen, "full");
    assert_eq!(value(&s, "hb_connections_open"), MAX_CONNECTIONS as u64);

    let summary = server.drain(Duration::from_millis(200));
    for keeper in keepers {
        keeper.join().expect("keepalive thread");
    }
    assert_eq!(summary.served + summary.refused, seen, "{summary:?}");
    assert_eq!(summary.closed, summary.served, "{summary:?}");
    assert_eq!(summary.reaped, 1, "{summary:?}");
    assert_eq!((summary.served, summary.refused), (7, 6), "{summary:?}");
}
