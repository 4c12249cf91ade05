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

/// Bytes read per `read` call. The reply buffer grows to this plus a few
/// bytes, so a connection's buffers stay this size however long its lines.
pub const READ_CHUNK: usize = 4096;

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
        let mut input = [0u8; READ_CHUNK];
        // Sized by what arrives, not allocated at READ_CHUNK up front: most
        // connections only heartbeat, and a 4 KiB buffer each was a quarter
        // of the server's memory per connection (docs/benchmarks.md).
        let mut replies = Vec::new();
        let mut early = Some(early).filter(|bytes| !bytes.is_empty());
        loop {
            let chunk = match early.take() {
                Some(bytes) => bytes,
                None => match stream.read(&mut input) {
                    Ok(0) => break,
                    Ok(n) => &input[..n],
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

impl Tracked for Arc<Connection> {
    fn last_activity(&self) -> Instant {
        self.activity.last()
    }
}
