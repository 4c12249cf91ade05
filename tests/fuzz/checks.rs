//! The properties the fuzz targets check, shared by the proptest targets
//! here and the cargo-afl ones of `fuzz/` (which include this file): each
//! function feeds one input in reads of the given sizes and panics if a
//! parser panics, passes its bound, or decides differently than it does on
//! the bytes read all at once.

use std::io;
use tcp_heartbeat::protocol::LineHandler;
use tcp_heartbeat::server::compat::Compat;
use tcp_heartbeat::server::metrics_http::{self, MAX_REQUEST_HEAD, Route};
use tcp_heartbeat::server::proxy_header::{self, Decision, HeaderReader, MAX_HEADER};

/// What a read's replies may add beyond its own length: the held start of
/// a line that could have been `HeartBeat\r`.
const REPLY_SLACK: usize = 16;

/// The line protocol: the same replies and counts whatever the split, and
/// each read's replies within its length plus [`REPLY_SLACK`].
pub fn lines(bytes: &[u8], reads: &[usize]) {
    let whole = answer(Compat::None, bytes, &[bytes.len().max(1)]);
    let split = answer(Compat::None, bytes, reads);
    assert_eq!(split, whole, "the replies depend on the split");
    // The seed framing depends on read boundaries by design: only the
    // bounds are checked.
    answer(Compat::Seed, bytes, reads);
}

/// The replies to `bytes` read in pieces of `reads` sizes, in turn, with
/// the heartbeats and lines counted.
fn answer(compat: Compat, bytes: &[u8], reads: &[usize]) -> (Vec<u8>, u32, u64) {
    let mut lines = LineHandler::default();
    let (mut out, mut heartbeats) = (Vec::new(), 0);
    let mut rest = bytes;
    for &size in reads.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        let before = out.len();
        heartbeats += compat.feed(&mut lines, chunk, &mut out);
        assert!(
            out.len() - before <= chunk.len() + REPLY_SLACK,
            "replies past the bound"
        );
        rest = after;
    }
    let before = out.len();
    lines.finish(&mut out);
    assert!(
        out.len() - before <= REPLY_SLACK,
        "final replies past the bound"
    );
    (out, heartbeats, lines.lines())
}

/// The PROXY header reader: its buffer never passes [`MAX_HEADER`], it
/// always has room while undecided, and it decides as [`proxy_header::parse`]
/// does on the bytes it took.
pub fn header(bytes: &[u8], reads: &[usize]) {
    let (fed, decision) = read_header(bytes, reads);
    let taken = &bytes[..fed];
    match (decision, proxy_header::parse(taken)) {
        (Ok(Some((source, early))), Ok(Some(whole))) => {
            assert_eq!(source, whole.source);
            assert_eq!(early, &taken[whole.len..]);
        }
        (Ok(None), Ok(None)) => assert_eq!(fed, bytes.len()),
        (Err(_), Err(_)) => {}
        (split, whole) => panic!("split {split:?}, whole {whole:?}"),
    }
}

/// Feeds `bytes` to a reader until it decides or the bytes run out; how
/// many bytes it took, and its decision.
fn read_header(bytes: &[u8], reads: &[usize]) -> (usize, Decision) {
    let mut reader = HeaderReader::default();
    let mut fed = 0;
    for &size in reads.iter().cycle() {
        let space = reader.space();
        assert!(!space.is_empty(), "no space left while undecided");
        let n = space.len().min(size).min(bytes.len() - fed);
        if n == 0 {
            return (fed, Ok(None));
        }
        space[..n].copy_from_slice(&bytes[fed..fed + n]);
        fed += n;
        let decision = reader.filled(n);
        assert!(
            reader.capacity() <= MAX_HEADER,
            "buffer of {}",
            reader.capacity()
        );
        if !matches!(decision, Ok(None)) {
            return (fed, decision);
        }
    }
    unreachable!("reads cycle until a decision or the end of the bytes")
}

/// The metrics request reader: it reads at most [`MAX_REQUEST_HEAD`] bytes
/// and routes the same whatever the split.
pub fn request(bytes: &[u8], reads: &[usize]) {
    let (split, fed) = read_request(bytes, reads);
    assert!(fed <= MAX_REQUEST_HEAD, "read {fed} bytes");
    let (whole, _) = read_request(bytes, &[MAX_REQUEST_HEAD]);
    assert_eq!(split, whole, "the route depends on the split");
    let route = metrics_http::route(&bytes[..fed]);
    assert_eq!(route, split.unwrap_or(Route::Incomplete));
}

/// The route (or the error's kind) and how many bytes were read.
fn read_request(bytes: &[u8], reads: &[usize]) -> (Result<Route, io::ErrorKind>, usize) {
    let mut fed = 0;
    let mut sizes = reads.iter().cycle();
    let route = metrics_http::read_request(|space| {
        let size = sizes.next().copied().unwrap_or(1);
        let n = space.len().min(size).min(bytes.len() - fed);
        space[..n].copy_from_slice(&bytes[fed..fed + n]);
        fed += n;
        Ok::<_, io::Error>(n)
    });
    (route.map_err(|e| e.kind()), fed)
}
