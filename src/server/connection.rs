//! One client's connection on the server: the read/echo loop, its activity
//! stamp, and how it is closed from outside.
//!
//! The socket is held once, in the `Arc<Connection>` shared by the
//! connection's thread, the registry and the reaper: `&TcpStream` both reads
//! and writes, so no `try_clone` (which would spend a second descriptor per
//! connection). The reaper and shutdown close a connection by recording why
//! and calling `shutdown` on the socket, which wakes the thread's blocking
//! read or write.

use super::address;
use super::compat::Compat;
use super::proxy_header::{self, HeaderError, Source};
use super::reaper::ConnId;
use super::refusal;
use super::timeout_queue::{Activity, Tracked};
use crate::protocol::LineHandler;
use crate::wake;
use parking_lot::Mutex;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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

/// Why a connection ended: the word in its log line and the `reason` label
/// of `hb_connections_closed_total`.
///
/// Adding a reason: a variant, its place in [`ALL`] and its [`label`]; the
/// metric gets a series for it, starting at 0, and the log's summary of
/// left-out lines counts it, with no other change.
///
/// [`ALL`]: CloseReason::ALL
/// [`label`]: CloseReason::label
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (EOF); every reply was sent.
    PeerClosed,
    /// The reaper closed it: the service judged dead.
    IdleTimeout,
    /// ETIMEDOUT from TCP keepalive or the user timeout: the network judged
    /// dead.
    TimedOut,
    /// Any other I/O error, e.g. a reset.
    IoError,
    /// The server shut down.
    Shutdown,
    /// Closed in its turn during a drain (`--drain`).
    Drain,
}

impl CloseReason {
    /// Every reason, in declaration order (counters are indexed by
    /// `reason as usize`).
    pub const ALL: [CloseReason; 6] = [
        Self::PeerClosed,
        Self::IdleTimeout,
        Self::TimedOut,
        Self::IoError,
        Self::Shutdown,
        Self::Drain,
    ];

    /// The word for logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::PeerClosed => "peer_closed",
            Self::IdleTimeout => "idle_timeout",
            Self::TimedOut => "timed_out",
            Self::IoError => "io_error",
            Self::Shutdown => "shutdown",
            Self::Drain => "drain",
        }
    }

    /// Why a connection whose loop ended with `error` closed, when nothing
    /// closed it from outside.
    fn of_error(error: &io::Error) -> Self {
        match error.kind() {
            ErrorKind::TimedOut => Self::TimedOut,
            _ => Self::IoError,
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a connection was refused: the `reason` label of
/// `hb_connections_refused_total`, and (by `Display`) the words of its log
/// line.
///
/// Adding a reason: a variant, its place in [`ALL`](Self::ALL) and its
/// [`label`](Self::label); the metric gets a series for it, starting at 0,
/// and the log's summary of left-out lines counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// `--max-connections` were open.
    Full,
    /// No thread could be started for it.
    Busy,
    /// Its address already holds `--max-connections-per-ip` connections.
    PerIp,
    /// It came from where a PROXY header is expected (`--proxy-protocol`,
    /// `--proxy-protocol-from`) and its header was missing, malformed,
    /// longer than 4 KiB or late, or the server closed it (the reaper, a
    /// drain, shutdown) before the header arrived: a connection is admitted
    /// only once its address is known.
    ProxyHeader,
}

impl RefuseReason {
    /// Every reason, in declaration order (counters are indexed by
    /// `reason as usize`).
    pub const ALL: [RefuseReason; 4] = [Self::Full, Self::Busy, Self::PerIp, Self::ProxyHeader];

    /// The word for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Busy => "busy",
            Self::PerIp => "per_ip",
            Self::ProxyHeader => "proxy_header",
        }
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "server full",
            Self::Busy => "cannot start a thread",
            Self::PerIp => "too many connections from this address",
            Self::ProxyHeader => "no valid PROXY header",
        })
    }
}

/// What a connection has received and answered, counted by its own thread.
///
/// Written only by the connection's thread, with plain relaxed stores of its
/// own running totals (no read-modify-write, no cache line shared with other
/// connections); read by whoever folds them into the server's totals: a
/// scrape, the exit summary, and the thread itself at close. So the read
/// path adds no shared write.
#[derive(Debug, Default)]
pub struct Traffic {
    pub received_bytes: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub heartbeats: AtomicU64,
    pub lines: AtomicU64,
}

/// A connection's shared state.
#[derive(Debug)]
pub struct Connection {
    pub id: ConnId,
    /// The TCP peer: the client, or the load balancer in front of it. An
    /// IPv4-mapped address is stored as IPv4 (see [`super::address`]).
    pub peer: SocketAddr,
    /// When the connection was admitted, for `hb_connection_duration_seconds`.
    pub started: Instant,
    /// What its PROXY header said, set once by the connection's thread
    /// before it serves; read by whoever logs.
    header: OnceLock<Source>,
    stream: TcpStream,
    activity: Activity,
    pub traffic: Traffic,
    /// The part of [`traffic`](Self::traffic) already added to the server's
    /// totals. Locked only by whoever folds (a scrape, the summary, the close),
    /// never by the read path, so a fold from two places counts each part once.
    pub folded: Mutex<TrafficTotals>,
    /// 0 until the reaper or shutdown closes the connection; then the
    /// [`CloseReason`] code, set once. Read by the connection's thread when
    /// its I/O ends, to tell a close from outside from one by the peer.
    /// Release/Acquire, so that [`reaped_late_by`](Self::reaped_late_by),
    /// written before it, is seen by whoever sees the reason.
    closed_by: AtomicU8,
    /// Nanoseconds from the connection's idle deadline to the reaper's
    /// close, written by the reaper just before it sets `closed_by`; read
    /// when the idle close is recorded, so the lateness histogram counts
    /// exactly the `idle_timeout` closes.
    reaped_late_by: AtomicU64,
}

impl Connection {
    pub fn new(id: ConnId, peer: SocketAddr, stream: TcpStream, now: Instant) -> Self {
        Self {
            id,
            peer: address::canonical_socket(peer),
            started: now,
            header: OnceLock::new(),
            stream,
            activity: Activity::new(now),
            traffic: Traffic::default(),
            folded: Mutex::new(TrafficTotals::default()),
            closed_by: AtomicU8::new(0),
            reaped_late_by: AtomicU64::new(0),
        }
    }

    /// Closes the connection from outside its thread: the one way to, so the
    /// thread is woken on every OS. `Shutdown::Read` lets the thread finish
    /// the reply it is writing (on Unix; see [`wake::shutdown_and_wake`]);
    /// `Both` aborts it too.
    pub fn close(&self, reason: CloseReason, how: Shutdown) {
        // Release, paired with the Acquire in `closed_by`: the thread that
        // sees the reason also sees what the closer did before setting it.
        let _ =
            self.closed_by
                .compare_exchange(0, reason.code(), Ordering::Release, Ordering::Relaxed);
        // Fails only if the socket is already shut down or reset: nothing left
        // to wake.
        let _ = wake::shutdown_and_wake(&self.stream, how);
    }

    /// The reaper's close of an idle connection, `late_by` after its
    /// deadline.
    pub fn reap(&self, late_by: Duration) {
        let nanos = u64::try_from(late_by.as_nanos()).unwrap_or(u64::MAX);
        self.reaped_late_by.store(nanos, Ordering::Relaxed);
        self.close(CloseReason::IdleTimeout, Shutdown::Both);
    }

    /// How late the reaper closed it; meaningful once
    /// [`closed_by`](Self::closed_by) says `idle_timeout`.
    pub fn reaped_late_by(&self) -> Duration {
        Duration::from_nanos(self.reaped_late_by.load(Ordering::Relaxed))
    }

    /// The client's address: the PROXY header's source once read, else the
    /// TCP peer.
    pub fn client_addr(&self) -> SocketAddr {
        match self.header.get() {
            Some(Source::Client(addr)) => *addr,
            _ => self.peer,
        }
    }

    /// Whether this is a load balancer's own connection, a health check: a
    /// PROXY header without a client address (HAProxy's v2 LOCAL), or with
    /// v1 naming the TCP peer itself. Its lines log at debug level.
    pub fn is_health_check(&self) -> bool {
        match self.header.get() {
            Some(Source::Local) => true,
            Some(Source::Client(addr)) => *addr == self.peer,
            None => false,
        }
    }

    /// Reads the PROXY protocol header, within
    /// [`proxy_header::HEADER_TIMEOUT`]. Records whose address it carried
    /// (a client's becomes [`client_addr`](Self::client_addr)) and returns
    /// the bytes that followed it, the client's first data.
    pub fn read_proxy_header(&self) -> Result<Vec<u8>, HeaderError> {
        let deadline = Instant::now() + proxy_header::HEADER_TIMEOUT;
        let (source, early) = proxy_header::read(&self.stream, deadline)?;
        let source = match source {
            Source::Client(addr) => Source::Client(address::canonical_socket(addr)),
            Source::Local => Source::Local,
        };
        let _ = self.header.set(source);
        Ok(early)
    }

    /// Why the connection was closed from outside (reaper, shutdown, drain),
    /// if it was.
    pub fn closed_by(&self) -> Option<CloseReason> {
        let code = self.closed_by.load(Ordering::Acquire);
        CloseReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The socket, for setting its options before it is served.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `reason` to a connection that will not be served and lingers
    /// until the client closes (at most [`refusal::LINGER_TIME`]; see
    /// [`refusal`]), in the connection's thread. A close from outside
    /// (shutdown, the reaper) ends the wait.
    pub fn refuse(&self, reason: &[u8]) {
        let deadline = Instant::now() + refusal::LINGER_TIME;
        refusal::linger(&self.stream, reason, deadline, &AtomicBool::new(false));
    }

    /// The socket of a connection no thread serves, for a refusal.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Why the connection ended, given how its loop ended.
    pub fn close_reason(&self, served: &io::Result<()>) -> CloseReason {
        if let Some(reason) = self.closed_by() {
            return reason;
        }
        match served {
            Ok(()) => CloseReason::PeerClosed,
            Err(e) => CloseReason::of_error(e),
        }
    }

    /// The counts of [`traffic`](Self::traffic) not yet folded into the
    /// server's totals; marks them folded. The counts are read under the
    /// lock: read before it, a fold racing another (a scrape and the close)
    /// could write back an older snapshot and count bytes twice.
    pub fn unfolded_traffic(&self) -> TrafficTotals {
        let mut folded = self.folded.lock();
        let now = TrafficTotals::read(&self.traffic);
        let delta = now.minus(&folded);
        *folded = now;
        delta
    }

    /// Echoes lines until the peer stops sending, then sends the rest of the
    /// replies and closes the sending side. Returns the I/O error that ended
    /// it early, if any. Counts what it does in [`traffic`](Self::traffic).
    /// `compat` sees each read's bytes as they came, for framings defined by
    /// read boundaries. `early` is data already read (what followed a PROXY
    /// header), answered first as if just read.
    pub fn serve(&self, compat: Compat, early: &[u8]) -> io::Result<()> {
        let mut stream = &self.stream;
        let mut lines = LineHandler::default();
        let mut input = ReadBuffer::default();
        // Sized by what arrives, not allocated at READ_CHUNK up front: most
        // connections only heartbeat, and a 4 KiB buffer each was a quarter
        // of the server's memory per connection (docs/benchmarks.md).
        let mut replies = Vec::new();
        let mut counts = TrafficTotals::default();
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
            counts.received_bytes += chunk.len() as u64;
            if answered > 0 {
                counts.heartbeats += u64::from(answered);
                log::debug!("conn {}: heartbeat answered", self.id);
            }
            counts.lines = lines.lines();
            // Counted before the write, so that a scrape made after the
            // client has its reply counts it: a write that fails counts one
            // reply too many, on a connection that ends with the error.
            counts.sent_bytes += replies.len() as u64;
            counts.store(&self.traffic);
            stream.write_all(&replies)?;
            if read.is_some_and(|n| input.fit(n)) {
                replies = Vec::new();
            }
        }
        replies.clear();
        lines.finish(&mut replies);
        counts.lines = lines.lines();
        counts.sent_bytes += replies.len() as u64;
        counts.store(&self.traffic);
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

/// Plain totals of a [`Traffic`]: a connection's running counts, a snapshot,
/// or the difference between two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    pub received_bytes: u64,
    pub sent_bytes: u64,
    pub heartbeats: u64,
    pub lines: u64,
}

impl TrafficTotals {
    fn read(traffic: &Traffic) -> Self {
        Self {
            received_bytes: traffic.received_bytes.load(Ordering::Relaxed),
            sent_bytes: traffic.sent_bytes.load(Ordering::Relaxed),
            heartbeats: traffic.heartbeats.load(Ordering::Relaxed),
            lines: traffic.lines.load(Ordering::Relaxed),
        }
    }

    /// Publishes these running counts; only the connection's own thread
    /// calls this.
    fn store(&self, traffic: &Traffic) {
        traffic
            .received_bytes
            .store(self.received_bytes, Ordering::Relaxed);
        traffic.sent_bytes.store(self.sent_bytes, Ordering::Relaxed);
        traffic.heartbeats.store(self.heartbeats, Ordering::Relaxed);
        traffic.lines.store(self.lines, Ordering::Relaxed);
    }

    /// What `self` counts beyond `earlier`. The running counts only grow,
    /// but each is read separately, so saturate rather than trust that.
    fn minus(&self, earlier: &Self) -> Self {
        Self {
            received_bytes: self.received_bytes.saturating_sub(earlier.received_bytes),
            sent_bytes: self.sent_bytes.saturating_sub(earlier.sent_bytes),
            heartbeats: self.heartbeats.saturating_sub(earlier.heartbeats),
            lines: self.lines.saturating_sub(earlier.lines),
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

    /// Two folds racing while the connection counts (a scrape and the
    /// close) add up to the count exactly. With the counters read before
    /// the lock, the slower fold wrote back an older snapshot and the next
    /// fold counted the difference again.
    #[test]
    fn racing_folds_count_each_byte_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let conn = Connection::new(1, stream.peer_addr().unwrap(), stream, Instant::now());
        const COUNT: u64 = 200_000;
        let folded: u64 = std::thread::scope(|s| {
            let folders: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut sum = 0;
                        while conn.traffic.received_bytes.load(Ordering::Relaxed) < COUNT {
                            sum += conn.unfolded_traffic().received_bytes;
                        }
                        sum
                    })
                })
                .collect();
            let mut counts = TrafficTotals::default();
            for _ in 0..COUNT {
                counts.received_bytes += 1;
                counts.store(&conn.traffic);
            }
            folders.into_iter().map(|f| f.join().unwrap()).sum()
        });
        assert_eq!(folded + conn.unfolded_traffic().received_bytes, COUNT);
    }
}
