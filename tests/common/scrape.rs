//! Scraping hb-server's `/metrics` in tests: the address it printed, one
//! HTTP GET over a plain socket, and the samples of the text format.

use super::{PATIENCE, ServerProcess};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The metrics address from the server's second stdout line,
/// `metrics on http://ADDR/metrics`.
pub fn metrics_addr(server: &ServerProcess) -> SocketAddr {
    let line = server
        .stdout
        .recv_timeout(PATIENCE)
        .expect("hb-server did not print its metrics address");
    line.strip_prefix("metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("unexpected second stdout line: {line:?}"))
}

/// `GET path` on `stream`'s server; the status code and the body.
pub fn get_on(mut stream: TcpStream, path: &str) -> (u16, String) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let response = String::from_utf8(response).expect("response is UTF-8");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// `GET path` from `addr`.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_on(TcpStream::connect(addr).expect("connect to metrics"), path)
}

/// The scraped page at `addr`, checked to be a 200.
pub fn scrape_text(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "scrape answered {status}: {body}");
    body
}

/// Every sample of a text-format page, by series (`name{labels}`).
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line {l:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {l:?}"));
            (series.to_string(), value)
        })
        .collect()
}

/// The samples at `addr` now.
pub fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    samples(&scrape_text(addr))
}

/// One sample, failing when the series is missing.
pub fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in {samples:#?}"))
}
