//! The `GET /metrics` endpoint: a thread that accepts scrapers and one
//! thread per scraper, at most [`MAX_SCRAPERS`] at once, that no scraper can
//! hold or make allocate without bound.
//!
//! Why not `tiny_http`: it reads a request line or header into a `Vec` that
//! grows until CRLF (a never-ending header is unbounded memory), has no read
//! timeout, and starts a thread for every connection open at once with no
//! cap. Here the request head is parsed by `httparse` (hyper's parser: no
//! allocation, a fixed array of headers) from one fixed buffer, and only
//! three fixed responses are written, so the HTTP code left is the reading
//! loop and a status line.
//!
//! Bounds, per scraper: the whole request head within [`REQUEST_DEADLINE`]
//! (a slow or silent one is answered 408 and dropped), at most
//! [`MAX_REQUEST_HEAD`] bytes (431 past it), and writes that give up after
//! [`WRITE_TIMEOUT`] (a scraper that does not read). Each scraper has its
//! own thread, so a stalled one delays no other (answered one at a time, 20
//! silent connections held a real scrape more than 5 s: docs/hardening.md).
//! Past [`MAX_SCRAPERS`] a connection is answered 503 at once; so memory is
//! at most that many head buffers and pages, whatever the scrapers do. When
//! no thread can be started (the process at its thread limit, when a scrape
//! matters most) the accept thread answers the scraper itself. The
//! echo service shares nothing with these threads but the CPU.

use crate::wake;
use crossbeam::channel::Receiver;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
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

/// Scrapers served at once at most. Prometheus keeps one connection per
/// target, and a few servers scrape each target; 64 leaves room for those and
/// for stalled connections while bounding memory to 64 × (the 8 KiB head
/// buffer and a page of a few KiB).
pub const MAX_SCRAPERS: usize = 64;

/// Stack of a scraper's thread: its 8 KiB head buffer and the encoder's
/// shallow calls (only touched pages count towards memory).
const SCRAPER_STACK_SIZE: usize = 128 * 1024;

/// The function that renders the page, shared by the scrapers' threads.
pub type Render = Arc<dyn Fn() -> Vec<u8> + Send + Sync>;

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
/// accept is woken (by a connection to the listener), each in a thread of
/// its own (`hb-scrape-<n>`); then closes the scrapers still connected and
/// joins their threads. `render` returns the page, in the format of
/// [`CONTENT_TYPE`](super::metrics::CONTENT_TYPE).
pub fn serve(listener: &TcpListener, stop: &Receiver<()>, render: &Render) {
    let mut scrapers: Vec<Scraper> = Vec::new();
    let mut next_id: u64 = 1;
    super::accept::until_stopped(listener, stop, "metrics", |stream, peer| {
        scrapers.retain_mut(|s| !s.join_if_finished());
        if scrapers.len() >= MAX_SCRAPERS {
            log::debug!("metrics scrape from {peer} refused: {MAX_SCRAPERS} scrapers connected");
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            let _ = respond(&stream, "503 Service Unavailable", b"too many scrapers\n");
            return;
        }
        let stream = Arc::new(stream);
        match Scraper::start(stream.clone(), peer, next_id, render.clone()) {
            Ok(scraper) => scrapers.push(scraper),
            // Out of threads is when a scrape matters most: answered here,
            // one at a time, within the same deadlines.
            Err(e) => {
                log::debug!("metrics scrape from {peer} answered inline: no thread: {e}");
                scrape(&stream, peer, &**render);
            }
        }
        next_id += 1;
    });
    for scraper in &scrapers {
        // A scraper mid-request would otherwise hold shutdown for up to
        // REQUEST_DEADLINE.
        let _ = wake::shutdown_and_wake(&scraper.stream, Shutdown::Both);
    }
    for mut scraper in scrapers {
        scraper.join();
    }
}

/// One scraper's thread and its socket, kept to wake it at shutdown.
struct Scraper {
    stream: Arc<TcpStream>,
    thread: Option<JoinHandle<()>>,
}

impl Scraper {
    fn start(
        stream: Arc<TcpStream>,
        peer: SocketAddr,
        id: u64,
        render: Render,
    ) -> io::Result<Self> {
        let theirs = stream.clone();
        let thread = thread::Builder::new()
            .name(format!("hb-scrape-{id}"))
            .stack_size(SCRAPER_STACK_SIZE)
            .spawn(move || scrape(&theirs, peer, &*render))?;
        Ok(Self {
            stream,
            thread: Some(thread),
        })
    }

    /// Joins the thread if it has ended; true if it had.
    fn join_if_finished(&mut self) -> bool {
        if self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            return false;
        }
        self.join();
        true
    }

    fn join(&mut self) {
        if let Some(Err(_)) = self.thread.take().map(JoinHandle::join) {
            log::error!("a metrics scrape thread panicked");
        }
    }
}

/// Answers one scraper, logging (at debug level) what went wrong.
fn scrape(stream: &TcpStream, peer: SocketAddr, render: &dyn Fn() -> Vec<u8>) {
    if let Err(e) = answer(stream, render) {
        log::debug!("metrics scrape from {peer}: {e}");
    }
}

/// Reads one request and writes one response, then closes.
fn answer(stream: &TcpStream, render: &dyn Fn() -> Vec<u8>) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let route = match read_head(stream) {
        Ok(route) => route,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            respond(
                stream,
                "408 Request Timeout",
                b"request head not received in time\n",
            )?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    match route {
        Route::Metrics => respond_with(stream, "200 OK", super::metrics::CONTENT_TYPE, &render()),
        Route::NotFound => respond(
            stream,
            "404 Not Found",
            b"not found; the metrics are at /metrics\n",
        ),
        Route::MethodNotAllowed => respond(stream, "405 Method Not Allowed", b"only GET\n"),
        Route::BadRequest | Route::Incomplete => {
            respond(stream, "400 Bad Request", b"bad request\n")
        }
        Route::TooLarge => respond(
            stream,
            "431 Request Header Fields Too Large",
            b"request head too large\n",
        ),
    }
}

/// Reads until the head is complete, too large, or the deadline passes.
fn read_head(mut stream: &TcpStream) -> io::Result<Route> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    read_request(|space| {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "request head too slow"));
        }
        stream.set_read_timeout(Some(left))?;
        stream.read(space)
    })
}

/// Reads a request head by calls of `read` into one fixed buffer of
/// [`MAX_REQUEST_HEAD`] bytes, until it is complete or too large. An error
/// of `read` other than `Interrupted` ends it; so does EOF.
pub fn read_request(mut read: impl FnMut(&mut [u8]) -> io::Result<usize>) -> io::Result<Route> {
    let mut head = [0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    loop {
        let route = route(&head[..len]);
        if route != Route::Incomplete {
            return Ok(route);
        }
        // `route` says TooLarge before the buffer is full, so space is left.
        let space = &mut head[len..];
        match read(space) {
            Ok(0) => {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed mid-request",
                ));
            }
            Ok(n) => len += n.min(space.len()),
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
