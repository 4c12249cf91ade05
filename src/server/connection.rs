//! One client's connection on the server: the read/echo loop, its activity
//! stamp, and how it is closed from outside.
//!
//! The socket is held once, in the `Arc<Connection>` shared by the
//! connection's thread, the registry and the reaper: `&TcpStream` both reads
//! and writes, so no `try_clone` (which would spend a second descriptor per
//! connection). The reaper and shutdown close a connection by recording why
//! and calling `shutdown` on the socket, which wakes the thread's blocking
//! read or write.

use super::compat::Compat;
use super::proxy_header::{self, HeaderError, Source};
use super::reaper::ConnId;
use super::timeout_queue::{Activity, Tracked};
use crate::protocol::LineHandler;
use crate::wake;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Bytes read per `read` call at most. The reply buffer grows to this plus
/// a few bytes, so a connection's buffers stay this size however long its
/// lines.
pub const READ_CHUNK: usize = 4096;

/// Bytes read per `read` call while a connection sends little: a heartbeat
/// (10 bytes) or a short line fits. Most connections only heartbeat, and a
/// READ_CHUNK buffer each, on the thread's stack, was a page of every
/// thread's touched stack: 12 of the 13.7 KiB RSS per connection were
/// stack (docs/benchmarks.md). An eighth of a page keeps short lines in one
/// read.
const SMALL_READ: usize = 512;

/// How much longer than its input a reply can be: `LineHandler::feed` may
/// add the few held bytes of a line start that could have been `HeartBeat\r`.
const REPLY_SLACK: usize = 16;

/// Why a connection ended, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    PeerClosed,
    IdleTimeout,
    Shutdown,
    /// Closed in its turn during a drain (`--drain`).
    Drain,
}

impl CloseReason {
    const ALL: [CloseReason; 4] = [
        Self::PeerClosed,
        Self::IdleTimeout,
        Self::Shutdown,
        Self::Drain,
    ];

    fn code(self) -> u8 {
        self as u8 + 1
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PeerClosed => "peer closed",
            Self::IdleTimeout => "idle timeout",
            Self::Shutdown => "shutdown",
            Self::Drain => "drain",
        })
    }
}

/// Why a connection was refused after it was accepted, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// Its address already holds `--max-connections-per-ip` connections.
    PerIp,
    /// `--proxy-protocol` is on and its PROXY header is missing, malformed
    /// or late.
    ProxyHeader,
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PerIp => "too many connections from this address",
            Self::ProxyHeader => "no valid PROXY header",
        })
    }
}

/// A connection's shared state.
#[derive(Debug)]
pub struct Connection {
    pub id: ConnId,
    /// The TCP peer: the client, or the load balancer in front of it.
    pub peer: SocketAddr,
    /// The client's address from its PROXY header, set once by the
    /// connection's thread before it serves; read by whoever logs.
    source: OnceLock<SocketAddr>,
    stream: TcpStream,
    activity: Activity,
    /// 0 until the reaper or shutdown closes the connection; then the
    /// [`CloseReason`] code, set once. Read by the connection's thread when
    /// its I/O ends, to tell a close from outside from one by the peer.
    closed_by: AtomicU8,
}

impl Connection {
    pub fn new(id: ConnId, peer: SocketAddr, stream: TcpStream, now: Instant) -> Self {
        Self {
            id,
            peer,
            source: OnceLock::new(),
            stream,
            activity: Activity::new(now),
            closed_by: AtomicU8::new(0),
        }
    }

    /// Closes the connection from outside its thread: the one way to, so the
    /// thread is woken on every OS. `Shutdown::Read` lets the thread finish
    /// the reply it is writing (on Unix; see [`wake::shutdown_and_wake`]);
    /// `Both` aborts it too.
    pub fn close(&self, reason: CloseReason, how: Shutdown) {
        let _ =
            self.closed_by
                .compare_exchange(0, reason.code(), Ordering::Relaxed, Ordering::Relaxed);
        // Fails only if the socket is already shut down or reset: nothing left
        // to wake.
        let _ = wake::shutdown_and_wake(&self.stream, how);
    }

    /// The client's address: the PROXY header's source once read, else the
    /// TCP peer.
    pub fn client_addr(&self) -> SocketAddr {
        self.source.get().copied().unwrap_or(self.peer)
    }

    /// Reads the PROXY protocol header, within
    /// [`proxy_header::HEADER_TIMEOUT`]. Returns whose address it carried
    /// (a client's becomes [`client_addr`](Self::client_addr)) and the bytes
    /// that followed it, the client's first data.
    pub fn read_proxy_header(&self) -> Result<(Source, Vec<u8>), HeaderError> {
        let deadline = Instant::now() + proxy_header::HEADER_TIMEOUT;
        let (source, early) = proxy_header::read(&self.stream, deadline)?;
        if let Source::Client(addr) = source {
            let _ = self.source.set(addr);
        }
        Ok((source, early))
    }

    /// Why the connection was closed from outside (reaper, shutdown, drain),
    /// if it was.
    pub fn closed_by(&self) -> Option<CloseReason> {
        let code = self.closed_by.load(Ordering::Relaxed);
        CloseReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Sends `reason` to a connection that will not be served, and closes it.
    pub fn refuse(&self, reason: &[u8]) {
        let _ = (&self.stream).write_all(reason);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Why the connection ended, given how its loop ended.
    pub fn close_reason(&self, served: &io::Result<()>) -> Result<CloseReason, String> {
        if let Some(reason) = self.closed_by() {
            return Ok(reason);
        }
        match served {
            Ok(()) => Ok(CloseReason::PeerClosed),
            Err(e) => Err(format!("I/O error: {e}")),
        }
    }

    /// Echoes lines until the peer stops sending, then sends the rest of the
    /// replies and closes the sending side. Returns the I/O error that ended
    /// it early, if any. Adds each answered heartbeat to `heartbeats`.
    /// `compat` sees each read's bytes as they came, for framings defined by
    /// read boundaries. `early` is data already read (what followed a PROXY
    /// header), answered first as if just read.
    pub fn serve(&self, heartbeats: &AtomicU64, compat: Compat, early: &[u8]) -> io::Result<()> {
        let mut stream = &self.stream;
        let mut lines = LineHandler::default();
        let mut input = ReadBuffer::default();
        // Sized by what arrives, not allocated at READ_CHUNK up front: most
        // connections only heartbeat, and a 4 KiB buffer each was a quarter
        // of the server's memory per connection (docs/benchmarks.md).
        let mut replies = Vec::new();
        let mut early = Some(early).filter(|bytes| !bytes.is_empty());
        loop {
            // `read`: how many bytes the socket gave, to size the buffer by.
            let (chunk, read) = match early.take() {
                Some(bytes) => (bytes, None),
                None => match stream.read(input.space()) {
                    Ok(0) => break,
                    Ok(n) => (input.filled(n), Some(n)),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                },
            };
            self.activity.touch(Instant::now());
            replies.clear();
            replies.reserve_exact(chunk.len() + REPLY_SLACK);
            let answered = compat.feed(&mut lines, chunk, &mut replies);
            if answered > 0 {
                heartbeats.fetch_add(u64::from(answered), Ordering::Relaxed);
                log::debug!("conn {}: heartbeat answered", self.id);
            }
            stream.write_all(&replies)?;
            if read.is_some_and(|n| input.fit(n)) {
                replies = Vec::new();
            }
        }
        replies.clear();
        lines.finish(&mut replies);
        stream.write_all(&replies)?;
        stream.flush()?;
        // Other holders of the Arc may outlive this thread for a moment; the
        // peer sees EOF now, not when the last holder lets go.
        match self.stream.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        }
    }
}

/// A connection's read buffer, on the heap and sized by the traffic:
/// [`SMALL_READ`] bytes while reads are small, [`READ_CHUNK`] once a read
/// fills it (more is likely waiting: a long line or a burst), and small again
/// after a read that a small buffer would have held (the burst is over).
/// Growing and shrinking are a `realloc` each, only when the traffic changes
/// size, against a syscall per read.
struct ReadBuffer(Vec<u8>);

impl Default for ReadBuffer {
    fn default() -> Self {
        Self(vec![0; SMALL_READ])
    }
}

impl ReadBuffer {
    /// Where the next read goes.
    fn space(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// The `n` bytes the last read put in.
    fn filled(&self, n: usize) -> &[u8] {
        &self.0[..n]
    }

    /// Resizes for the next read after one of `n` bytes; true when it shrank
    /// (the caller's buffers sized by the burst can shrink too).
    fn fit(&mut self, n: usize) -> bool {
        let len = self.0.len();
        if n == len && len < READ_CHUNK {
            self.0.resize(READ_CHUNK, 0);
        } else if n <= SMALL_READ && len > SMALL_READ {
            self.0.truncate(SMALL_READ);
            self.0.shrink_to_fit();
            return true;
        }
        false
    }
}

impl Tracked for Arc<Connection> {
    fn last_activity(&self) -> Instant {
        self.activity.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_buffer_grows_on_a_full_read_and_shrinks_after_a_small_one() {
        let mut buffer = ReadBuffer::default();
        assert_eq!(buffer.space().len(), SMALL_READ);
        assert!(!buffer.fit(10), "a heartbeat keeps it small");
        assert_eq!(buffer.space().len(), SMALL_READ);
        assert!(!buffer.fit(SMALL_READ));
        assert_eq!(buffer.space().len(), READ_CHUNK, "a full read grows it");
        assert!(!buffer.fit(READ_CHUNK));
        assert!(!buffer.fit(SMALL_READ + 1), "still a burst");
        assert_eq!(buffer.space().len(), READ_CHUNK);
        assert!(buffer.fit(SMALL_READ), "the burst is over");
        assert_eq!(buffer.space().len(), SMALL_READ);
        assert!(buffer.0.capacity() <= SMALL_READ + 64, "memory given back");
    }
}
