//! A metrics endpoint that stalled connections cannot block: scrapes are
//! served concurrently, up to a cap, past which a connection is answered
//! 503 at once.

use super::common::scrape::*;
use super::common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tcp_heartbeat::server::metrics_http::MAX_SCRAPERS;

#[test]
fn a_scrape_is_answered_behind_20_stalled_connections() {
    let server = ServerProcess::start(&["--metrics-listen", "127.0.0.1:0"]);
    let m = metrics_addr(&server);
    // Ten that send nothing, ten whose head never ends.
    let stalled: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut c = TcpStream::connect(m).expect("connect to metrics");
            if i % 2 == 1 {
                c.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
            }
            c
        })
        .collect();
    let started = Instant::now();
    let page = scrape_text(m);
    let took = started.elapsed();
    assert!(page.contains("hb_connections_open 0"), "{page}");
    // The bound: 1.5 s (one at a time, this took over 5 s: the
    // stalled ones' 2 s deadlines, each waited out in turn).
    assert!(took < Duration::from_millis(1500), "scrape took {took:?}");
    drop(stalled);
}

#[test]
fn past_the_cap_a_connection_is_answered_503() {
    let server = ServerProcess::start(&["--metrics-listen", "127.0.0.1:0"]);
    let m = metrics_addr(&server);
    let stalled: Vec<TcpStream> = (0..MAX_SCRAPERS)
        .map(|_| TcpStream::connect(m).expect("connect to metrics"))
        .collect();
    // The accept thread takes the stalled connections in order; the next
    // is past the cap until one of them times out (2 s).
    let (status, body) = get(m, "/metrics");
    assert_eq!((status, body.as_str()), (503, "too many scrapers\n"));
    drop(stalled);
    wait_for("a scrape answered once the stalled ones are gone", || {
        get(m, "/metrics").0 == 200
    });
}
