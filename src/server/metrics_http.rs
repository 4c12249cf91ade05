//! The `GET /metrics` endpoint: one thread of its own that answers scrapers
//! one at a time, and that no scraper can hold or make allocate without
//! bound.
//!
//! Why not `tiny_http`: it reads a request line or header into a `Vec` that
//! grows until CRLF (a never-ending header is unbounded memory), has no read
//! timeout, and starts a thread for every connection open at once (100
//! parallel scrapers are 100 threads). Here the request head is parsed by
//! `httparse` (hyper's parser: no allocation, a fixed array of headers) from
//! one fixed buffer, and only three fixed responses are written, so the HTTP
//! code left is the reading loop and a status line.
//!
//! Bounds, per scraper: the whole request head within [`REQUEST_DEADLINE`]
//! (a slow or silent one is answered 408 and dropped), at most
//! [`MAX_REQUEST_HEAD`] bytes (431 past it), and writes that give up after
//! [`WRITE_TIMEOUT`] (a scraper that does not read). One connection is
//! answered and closed before the next is accepted, so memory is one buffer
//! and one rendered page whatever the scrapers do; the others wait in the
//! listener's backlog. The echo service shares nothing with this thread but
//! the CPU.

use crossbeam::channel::Receiver;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long a scraper has to send its whole request head. Prometheus sends
/// it in one segment; two seconds leave room for a slow network while
/// bounding how long one bad scraper keeps the others waiting.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// The largest request head read. Prometheus sends about 300 bytes; 8 KiB
/// is the common server default (nginx's, Apache's).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Headers parsed at most; more is answered 431. Prometheus sends five.
const MAX_HEADERS: usize = 32;

/// How long a write of the response may block on a scraper that does not
/// read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a request head asks for, or that it is not complete yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// More bytes are needed.
    Incomplete,
    /// `GET /metrics` (any query string).
    Metrics,
    /// Any other path.
    NotFound,
    /// `/metrics` with another method than GET.
    MethodNotAllowed,
    /// Not HTTP/1.x.
    BadRequest,
    /// Head longer than [`MAX_REQUEST_HEAD`] or with too many headers.
    TooLarge,
}

/// Parses the request head received so far. Pure: bytes in, route out.
pub fn route(head: &[u8]) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) if head.len() >= MAX_REQUEST_HEAD => Route::TooLarge,
        Ok(httparse::Status::Partial) => Route::Incomplete,
        Ok(httparse::Status::Complete(_)) => {
            let path = request.path.unwrap_or_default();
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            match (request.method, path) {
                (Some("GET"), "/metrics") => Route::Metrics,
                (_, "/metrics") => Route::MethodNotAllowed,
                _ => Route::NotFound,
            }
        }
        Err(httparse::Error::TooManyHeaders) => Route::TooLarge,
        Err(_) => Route::BadRequest,
    }
}

/// Serves scrapes from `listener` until `stop` is disconnected and the
/// accept is woken (by a connection to the listener). `render` returns the
/// page, in the format of [`CONTENT_TYPE`](super::metrics::CONTENT_TYPE).
pub fn serve(listener: &TcpListener, stop: &Receiver<()>, render: impl Fn() -> Vec<u8>) {
    super::accept::until_stopped(listener, stop, "metrics", |stream, peer| {
        if let Err(e) = answer(stream, &render) {
            log::debug!("metrics scrape from {peer}: {e}");
        }
    });
}

/// Reads one request and writes one response, then closes.
fn answer(stream: TcpStream, render: &impl Fn() -> Vec<u8>) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let route = match read_head(&stream) {
        Ok(route) => route,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            respond(
                &stream,
                "408 Request Timeout",
                b"request head not received in time\n",
            )?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    match route {
        Route::Metrics => respond_with(&stream, "200 OK", super::metrics::CONTENT_TYPE, &render()),
        Route::NotFound => respond(
            &stream,
            "404 Not Found",
            b"not found; the metrics are at /metrics\n",
        ),
        Route::MethodNotAllowed => respond(&stream, "405 Method Not Allowed", b"only GET\n"),
        Route::BadRequest | Route::Incomplete => {
            respond(&stream, "400 Bad Request", b"bad request\n")
        }
        Route::TooLarge => respond(
            &stream,
            "431 Request Header Fields Too Large",
            b"request head too large\n",
        ),
    }
}

/// Reads until the head is complete, too large, or the deadline passes.
fn read_head(mut stream: &TcpStream) -> io::Result<Route> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut head = [0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    loop {
        let route = route(&head[..len]);
        if route != Route::Incomplete {
            return Ok(route);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "request head too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut head[len..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed mid-request",
                ));
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn respond(stream: &TcpStream, status: &str, body: &[u8]) -> io::Result<()> {
    respond_with(stream, status, "text/plain; charset=utf-8", body)
}

fn respond_with(
    mut stream: &TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let allow = if status.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    stream.shutdown(Shutdown::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_get_metrics_and_nothing_else() {
        let get = |path: &str| route(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(get("/metrics"), Route::Metrics);
        assert_eq!(get("/metrics?x=1"), Route::Metrics);
        assert_eq!(get("/"), Route::NotFound);
        assert_eq!(get("/metrics/"), Route::NotFound);
        assert_eq!(get("/metricsx"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics HTTP/1.0\r\n\r\n"), Route::Metrics);
    }

    #[test]
    fn waits_for_the_end_of_the_head() {
        assert_eq!(route(b""), Route::Incomplete);
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Route::Incomplete
        );
        assert_eq!(route(b"GET /metr"), Route::Incomplete);
    }

    #[test]
    fn bounds_and_garbage() {
        let long = format!("GET /{} HTTP/1.1", "a".repeat(MAX_REQUEST_HEAD));
        assert_eq!(route(long.as_bytes()), Route::TooLarge);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            route(format!("GET /metrics HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Route::TooLarge
        );
        assert_eq!(route(b"\x16\x03\x01\x02\x00"), Route::BadRequest);
        assert_eq!(route(b"HeartBeat\n"), Route::BadRequest);
    }
}
