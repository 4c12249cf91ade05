//! The client: connects stdin and stdout to a server, keeps the connection
//! alive with heartbeats, and gives up on a server that stops answering.
//!
//! Threads: `hb-stdin` reads stdin into a channel, `hb-socket-reader` reads
//! the socket into another, `hb-socket-writer` writes what it is handed to
//! the socket, and the caller's thread is the coordinator: one `select!` over
//! stdin, the socket, the writer's progress, the heartbeat timer and the
//! signal channel. The coordinator alone writes stdout and decides what goes
//! to the socket, in what order; nothing it waits for can hide a dead server,
//! as every blocking socket call lives in its own thread. The socket is held
//! once, as `Arc<TcpStream>` shared with the reader and the writer (no
//! `try_clone`), inside a [`ClientStream`].
//!
//! With `--tls` the handshake finishes in [`connect`], before any thread
//! starts or anything of the user's is sent, and the reader and writer share
//! the one TLS session: the reader blocks on the raw socket with no lock
//! held and locks the session only to decrypt what arrived; the writer locks
//! it only to encrypt, and writes with the lock released. So a blocked read
//! never holds up a heartbeat ([`crate::tls::stream`] says why this is
//! safe). Everything else (heartbeats, the give-up timeline, reconnecting,
//! exit codes, stdout) is the same as without TLS.
//!
//! Memory is bounded whatever the server sends: every queue is bounded (see
//! `spawn_socket_reader` for why that cannot deadlock), so a server that
//! sends faster than stdout takes it is held back by TCP flow control.
//!
//! When stdin ends, what remains is sent, the sending side is shut, and
//! replies are shown until the server closes. The heartbeat timer keeps
//! running (sending nothing, as nothing more may be sent), so a server that
//! never closes is still given up on at the same time.
//!
//! Map of the client:
//! - this module: the coordinator, its threads and its errors.
//! - [`heartbeat`]: when to send a heartbeat and when to give up, pure state
//!   that takes `now` as an argument.
//! - [`replies`]: matching the server's replies to the client's requests, so
//!   a heartbeat's reply is hidden; no I/O.
//! - [`refusal`]: telling a refusal (`ERR server full`) from replies, so it
//!   never reaches stdout nor counts as a working connection; no I/O.
//! - [`round_trips`]: heartbeat round-trip times and the session's figures,
//!   pure state that takes `now` as an argument.
//! - [`reconnect`]: `--reconnect`, the loop of sessions over one stdin that
//!   connects again after a loss.
//! - [`backoff`]: when to try again, pure state that takes `now` and a
//!   random source as arguments.
//! - [`check`]: `--check`, one heartbeat round trip as a health check.
//! - [`idle_search`]: the search for a path's idle timeout (which silences
//!   to probe next), pure state; [`probe`]: its probe connections
//!   (`--find-idle-timeout`).
//! - [`adaptive`]: `--adaptive-heartbeat`, the session's heartbeat idle
//!   learned by probe connections beside it.

pub mod adaptive;
pub mod backoff;
pub mod check;
pub mod heartbeat;
pub mod idle_search;
pub mod probe;
pub mod reconnect;
pub mod refusal;
pub mod replies;
pub mod round_trips;

use crate::config::display_duration;
use crate::protocol::HEARTBEAT;
use crate::sockopt::{self, SocketOptions};
use crate::tls::HandshakeError;
use crate::tls::client::{ClientTls, host_of};
use crate::tls::stream::ClientStream;
use crate::wake;
use adaptive::{AdaptiveSettings, Learner};
use crossbeam::channel::{self, Receiver, Sender};
use heartbeat::{Action, HeartbeatPolicy, HeartbeatSettings};
use refusal::{FirstLine, Verdict};
use replies::{ReplyMatcher, Request};
use round_trips::RoundTrips;
use std::fmt;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bytes per socket read, and the longest piece of a stdin line sent at
/// once, so a long line never sits whole in memory.
const CHUNK: usize = 4096;

/// Stdin pieces queued for the coordinator. Small, so a fast stdin waits for
/// a slow server instead of filling memory.
const STDIN_QUEUE: usize = 16;

/// Socket reads (of at most [`CHUNK`] bytes) queued for the coordinator:
/// 64 KiB, the most the client holds of a server that sends faster than
/// stdout takes it.
const SOCKET_QUEUE: usize = 16;

/// Pieces handed to the socket writer and not yet written; the coordinator
/// takes no more stdin until the writer catches up.
const WRITE_QUEUE: usize = 16;

/// A close this soon after the server's last byte is its answer (`ERR
/// server full`, a refusal), not an idle timeout on the path: timeouts worth
/// setting are seconds long.
const IDLE_TIMEOUT_SUSPECTED_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub heartbeat: HeartbeatSettings,
    pub socket_options: SocketOptions,
    /// How long each address may take to connect (`--connect-timeout`),
    /// and then the TLS handshake.
    pub connect_timeout: Duration,
    /// Connect with TLS (`--tls`).
    pub tls: Option<ClientTls>,
    /// `--adaptive-heartbeat`'s bounds; `None` keeps the heartbeat idle.
    pub adaptive: Option<AdaptiveSettings>,
}

/// How a session ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stdin ended and the server closed after its last reply.
    Finished,
    /// A signal arrived.
    Interrupted,
}

/// Why a session failed.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting failed.
    Connect { addr: String, source: io::Error },
    /// The TLS handshake failed (nothing of the user's was sent).
    Tls {
        addr: String,
        source: HandshakeError,
    },
    /// The server closed the connection while stdin was still open,
    /// `silent_for` after its last byte (or the connection's start).
    ServerClosed {
        silent_for: Duration,
        /// `--heartbeat-idle`, to tell an idle timeout on the path.
        heartbeat_idle: Option<Duration>,
    },
    /// Reading or writing the socket failed: reset, TCP keepalive or user
    /// timeout, or any other network error.
    ConnectionLost(io::Error),
    /// The server answered none of the heartbeats, or accepted no write for
    /// the whole give-up time.
    Unresponsive { silent_for: Duration },
    /// The server refused the connection with an `ERR` line (see
    /// [`refusal`]); its reason.
    Refused(String),
    /// Reading stdin failed.
    Input(io::Error),
    /// Writing stdout failed.
    Output(io::Error),
    /// A thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { addr, source } if source.kind() == ErrorKind::TimedOut => {
                write!(f, "cannot connect to {addr}: timed out")
            }
            Self::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Self::Tls { addr, source } => write!(f, "TLS handshake with {addr} failed: {source}"),
            Self::ServerClosed {
                silent_for,
                heartbeat_idle: Some(idle),
            } if (IDLE_TIMEOUT_SUSPECTED_AFTER..*idle).contains(silent_for) => write!(
                f,
                "server closed the connection after {} of silence, before the next heartbeat \
                 was due: if it keeps closing after that much silence, an idle timeout on the \
                 path (the server's or a load balancer's) is shorter than --heartbeat-idle {}; \
                 set --heartbeat-idle below it",
                display_duration(*silent_for),
                display_duration(*idle)
            ),
            Self::ServerClosed { .. } => f.write_str("server closed the connection"),
            Self::ConnectionLost(e) if e.kind() == ErrorKind::TimedOut => {
                write!(f, "connection lost: {e} (TCP keepalive or user timeout)")
            }
            Self::ConnectionLost(e) => write!(f, "connection lost: {e}"),
            Self::Unresponsive { silent_for } => write!(
                f,
                "server unresponsive: nothing received for {}",
                display_duration(*silent_for)
            ),
            Self::Refused(reason) => write!(f, "refused by the server: {reason}"),
            Self::Input(e) => write!(f, "cannot read stdin: {e}"),
            Self::Output(e) => write!(f, "cannot write stdout: {e}"),
            Self::Spawn(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Resolves `addr` and connects to each address it names in turn, each
/// bounded by the connect timeout, until one succeeds; applies the
/// configured socket options that the OS accepts. Fails with the last
/// address's error. (The resolution itself is the OS resolver's and is not
/// bounded.) With TLS, runs the handshake too, bounded by the connect
/// timeout again, checking the certificate against the host of `addr`
/// (unless `--tls-server-name` says otherwise).
pub fn connect(addr: &str, config: &ClientConfig) -> Result<ClientStream, ClientError> {
    let socket = connect_tcp(addr, config)?;
    let Some(tls) = &config.tls else {
        return Ok(ClientStream::plain(socket));
    };
    let deadline = Instant::now() + config.connect_timeout;
    match tls.connect(&socket, host_of(addr), deadline) {
        Ok(session) => Ok(ClientStream::tls(socket, session)),
        // As the first line of a plain connection would be.
        Err(HandshakeError::RefusedInPlainText(reason)) => Err(ClientError::Refused(reason)),
        Err(source) => Err(ClientError::Tls {
            addr: addr.to_string(),
            source,
        }),
    }
}

fn connect_tcp(addr: &str, config: &ClientConfig) -> Result<TcpStream, ClientError> {
    let failed = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    let mut last_error = None;
    let candidates = addr
        .to_socket_addrs()
        .map_err(|e| failed(crate::config::explain_address_error(addr, e)))?;
    for candidate in candidates {
        match connect_to(candidate, config) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                log::debug!("cannot connect to {candidate}: {e}");
                last_error = Some(e);
            }
        }
    }
    Err(failed(last_error.unwrap_or_else(|| {
        io::Error::new(ErrorKind::NotFound, "the address resolves to nothing")
    })))
}

fn connect_to(candidate: SocketAddr, config: &ClientConfig) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&candidate, config.connect_timeout)?;
    // Never fatal: what the OS refuses is skipped and warned about once.
    sockopt::apply(&stream, &config.socket_options);
    Ok(stream)
}

/// Runs a session on `stream` (connected to `addr`) until stdin ends and
/// the server closes, a signal arrives on `signals`, or the connection
/// fails.
pub fn run(
    addr: &str,
    stream: ClientStream,
    config: &ClientConfig,
    stdin: impl Read + Send + 'static,
    mut stdout: impl Write,
    signals: Receiver<()>,
) -> Result<Outcome, ClientError> {
    let input = spawn_stdin_reader(stdin)?;
    let mut carry = Carry::default();
    let mut learner = config.adaptive.map(|a| Learner::new(addr, config, a));
    let session = Link {
        input: &input,
        signals: &signals,
        learner: learner.as_mut(),
    };
    run_session(stream, config, session, &mut stdout, &mut carry).result
}

/// What a session shares with the client around it.
struct Link<'a> {
    /// Stdin's pieces.
    input: &'a Receiver<StdinEvent>,
    signals: &'a Receiver<()>,
    /// The `--adaptive-heartbeat` learner, which outlives sessions.
    learner: Option<&'a mut Learner>,
}

/// What one connection hands the next, under `--reconnect`.
#[derive(Debug, Default)]
struct Carry {
    /// A stdin piece read while disconnected, sent first once connected.
    held: Option<Vec<u8>>,
    /// The lost connection took the start of the current stdin line, so the
    /// rest of it is dropped: the next server would see half a line.
    discard_line: bool,
}

/// How a session ended.
struct SessionEnd {
    result: Result<Outcome, ClientError>,
    /// A byte came from the server: the connection worked.
    received_any: bool,
    /// User lines sent whose reply had not (fully) arrived.
    unanswered_lines: usize,
    /// False once stdin has ended.
    stdin_open: bool,
    /// How long the server had been silent when the session ended.
    silent_for: Duration,
}

/// Runs one session on `stream`, reading stdin from `link.input`. Takes
/// `carry.held` once it can send it, and leaves in `carry` what the next
/// session needs. With a learner, the heartbeat idle is the learner's, and
/// changes when it learns.
fn run_session<W: Write>(
    stream: ClientStream,
    config: &ClientConfig,
    mut link: Link<'_>,
    stdout: W,
    carry: &mut Carry,
) -> SessionEnd {
    let not_started = |e| SessionEnd {
        result: Err(e),
        received_any: false,
        unanswered_lines: 0,
        stdin_open: true,
        silent_for: Duration::ZERO,
    };
    let mut heartbeat = config.heartbeat;
    if let Some(learner) = link.learner.as_deref_mut() {
        if let Err(e) = learner.start() {
            return not_started(e);
        }
        heartbeat.idle = Some(learner.idle());
    }
    // A write blocked for the whole give-up time means the server stopped
    // reading at least that long: as unresponsive as unanswered heartbeats.
    let write_timeout = heartbeat.give_up_after();
    if let Err(e) = stream.socket().set_write_timeout(write_timeout) {
        return not_started(ClientError::ConnectionLost(e));
    }
    let (socket_events, reader) = match spawn_socket_reader(stream.clone()) {
        Ok(spawned) => spawned,
        Err(e) => return not_started(e),
    };
    let (outgoing, written, writer) = match spawn_socket_writer(stream.clone()) {
        Ok(spawned) => spawned,
        Err(e) => {
            stop_socket_threads(stream.socket(), [("reader", reader)]);
            return not_started(e);
        }
    };
    let mut session = Session {
        outgoing,
        unwritten: 0,
        stdout,
        policy: HeartbeatPolicy::new(heartbeat, Instant::now()),
        heartbeat_idle: heartbeat.idle,
        replies: ReplyMatcher::default(),
        round_trips: RoundTrips::default(),
        warned_unexpected: false,
        mid_line: false,
        discard_line: carry.discard_line,
        received_any: false,
        stdin_open: true,
        server_closed: false,
        first_line: FirstLine::default(),
        line_sent: false,
        held_sent: None,
        sent_more_than_held: false,
    };
    let result = session.coordinate(carry, link, socket_events, written);
    if log::log_enabled!(log::Level::Debug) {
        log::debug!("{}", session.round_trips.summary());
    }
    carry.discard_line = session.mid_line || session.discard_line;
    let mut unanswered_lines = session.replies.unanswered_lines();
    // A refusing server discarded what it was sent: the piece held for this
    // connection, if it was all that went, is held again for the next.
    if matches!(result, Err(ClientError::Refused(_))) && !session.sent_more_than_held {
        if let Some(piece) = session.held_sent.take() {
            carry.held = Some(piece);
            carry.discard_line = false;
            unanswered_lines = 0;
        }
    }
    let end = SessionEnd {
        result,
        received_any: session.received_any,
        unanswered_lines,
        stdin_open: session.stdin_open,
        silent_for: session.policy.silent_for(Instant::now()),
    };
    // The coordinator's channels are gone with it, so the reader's and the
    // writer's next sends fail and they end; dropping `outgoing` ends the
    // writer's wait for work, and the wake-up ends a blocked read or write.
    drop(session);
    stop_socket_threads(stream.socket(), [("reader", reader), ("writer", writer)]);
    end
}

/// Wakes the socket reader and writer (or the reader alone, when the writer
/// could not start) from whatever call they are blocked in, on every OS
/// (see [`wake`]), and joins them. The client's one place that stops its
/// socket threads.
fn stop_socket_threads<const N: usize>(socket: &TcpStream, threads: [(&str, JoinHandle<()>); N]) {
    // Fails only if the socket is already shut down or reset: nothing left
    // to wake.
    let _ = wake::shutdown_and_wake(socket, Shutdown::Both);
    for (name, handle) in threads {
        if handle.join().is_err() {
            log::error!("the socket {name} panicked");
        }
    }
}

/// What the coordinator hands the socket writer.
enum Outgoing {
    Data(Vec<u8>),
    /// Stdin ended: shut the sending side, after everything before it.
    ShutDown,
}

/// What the socket reader saw.
enum SocketEvent {
    Data(Vec<u8>),
    Closed,
    Failed(io::Error),
}

/// What the stdin reader saw.
enum StdinEvent {
    /// A line with its LF, or a piece of one (at most [`CHUNK`] bytes, or a
    /// final line without LF).
    Data(Vec<u8>),
    Ended,
    Failed(io::Error),
}

/// Starts `hb-stdin`. It is never joined: a blocking read of stdin cannot be
/// woken, so a thread waiting for a user who never types would hold the exit
/// up forever. It ends itself at stdin's end, or at its next send once the
/// coordinator is gone; otherwise process exit ends it.
fn spawn_stdin_reader(
    stdin: impl Read + Send + 'static,
) -> Result<Receiver<StdinEvent>, ClientError> {
    let (tx, rx) = channel::bounded(STDIN_QUEUE);
    thread::Builder::new()
        .name("hb-stdin".into())
        .spawn(move || read_stdin(stdin, &tx))
        .map_err(ClientError::Spawn)?;
    Ok(rx)
}

fn read_stdin(stdin: impl Read, tx: &Sender<StdinEvent>) {
    let mut reader = BufReader::new(stdin);
    loop {
        let mut piece = Vec::new();
        let event = match (&mut reader)
            .take(CHUNK as u64)
            .read_until(b'\n', &mut piece)
        {
            Ok(0) => StdinEvent::Ended,
            Ok(_) => StdinEvent::Data(piece),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => StdinEvent::Failed(e),
        };
        let last = !matches!(event, StdinEvent::Data(_));
        if tx.send(event).is_err() || last {
            return;
        }
    }
}

/// Starts `hb-socket-reader`, joined by [`run`] after it shuts the socket.
fn spawn_socket_reader(
    stream: ClientStream,
) -> Result<(Receiver<SocketEvent>, JoinHandle<()>), ClientError> {
    // Bounded, so a server that sends faster than stdout takes it (a flood,
    // or stdout's reader not reading) fills the socket buffers and is held
    // back by TCP instead of by the client's memory. This cannot deadlock:
    // the reader waits only for the coordinator, and the coordinator waits
    // only for stdout, never for the socket (writes are the writer thread's,
    // and the coordinator just stops taking stdin while they lag). So a
    // server blocked sending replies while it waits for the client to read
    // is always drained as fast as stdout allows. An unbounded queue here
    // once let a flood with stdout unread grow the client by the flood's
    // size (tests/hardening/client.rs).
    let (tx, rx) = channel::bounded(SOCKET_QUEUE);
    let handle = thread::Builder::new()
        .name("hb-socket-reader".into())
        .spawn(move || read_socket(&stream, &tx))
        .map_err(ClientError::Spawn)?;
    Ok((rx, handle))
}

/// Sends what the server sends, in pieces of at most [`CHUNK`] bytes (a
/// TLS record completed by one read may be longer), then how it ended.
fn read_socket(stream: &ClientStream, tx: &Sender<SocketEvent>) {
    let mut buf = [0; CHUNK];
    let mut received = Vec::new();
    loop {
        received.clear();
        let end = match stream.read(&mut buf, &mut received) {
            Ok(true) => None,
            Ok(false) => Some(SocketEvent::Closed),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => Some(SocketEvent::Failed(e)),
        };
        for piece in received.chunks(CHUNK) {
            if tx.send(SocketEvent::Data(piece.to_vec())).is_err() {
                return;
            }
        }
        if let Some(event) = end {
            let _ = tx.send(event);
            return;
        }
    }
}

/// The result of each piece of work handed to the socket writer, in order.
type WriteResults = Receiver<io::Result<()>>;

/// Starts `hb-socket-writer`, joined by [`run`]. It writes each piece in
/// order and reports each write's result; it ends after a failure, or when
/// the coordinator drops its sender or its receiver.
fn spawn_socket_writer(
    stream: ClientStream,
) -> Result<(Sender<Outgoing>, WriteResults, JoinHandle<()>), ClientError> {
    // Unbounded, but the coordinator keeps at most WRITE_QUEUE pieces (plus
    // the heartbeats the policy allows) in it, counting the results.
    let (work_tx, work_rx) = channel::unbounded();
    let (done_tx, done_rx) = channel::unbounded();
    let handle = thread::Builder::new()
        .name("hb-socket-writer".into())
        .spawn(move || {
            for work in work_rx {
                let result = match work {
                    Outgoing::Data(bytes) => stream.write_all(&bytes),
                    Outgoing::ShutDown => stream.shutdown_write(),
                };
                let failed = result.is_err();
                if done_tx.send(result).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(ClientError::Spawn)?;
    Ok((work_tx, done_rx, handle))
}

/// The coordinator's state.
struct Session<W> {
    /// Work for the socket writer, in the order it must reach the server.
    outgoing: Sender<Outgoing>,
    /// Work handed to the writer whose result has not come back.
    unwritten: usize,
    stdout: W,
    policy: HeartbeatPolicy,
    /// `--heartbeat-idle`, for the message when the server closes.
    heartbeat_idle: Option<Duration>,
    replies: ReplyMatcher,
    round_trips: RoundTrips,
    /// Whether the server has been said to answer heartbeats with something
    /// other than `OK`: said once per session.
    warned_unexpected: bool,
    /// The last stdin piece sent did not end its line: a heartbeat now would
    /// land inside the user's line, so none is sent until it ends.
    mid_line: bool,
    /// Stdin pieces are dropped up to the end of the current line, whose
    /// start went to a lost connection (see [`Carry`]).
    discard_line: bool,
    /// A byte came from the server.
    received_any: bool,
    /// False once stdin ended: nothing more is handed to the writer.
    stdin_open: bool,
    /// The server closed after stdin ended, while the writer was still
    /// sending; the session finishes when the writer is done.
    server_closed: bool,
    /// Watches the server's first line for a refusal.
    first_line: FirstLine,
    /// A user line was sent, so an echo may come (see [`refusal`]).
    line_sent: bool,
    /// The piece held from the last connection, as sent on this one.
    held_sent: Option<Vec<u8>>,
    /// Stdin pieces were sent besides the held one.
    sent_more_than_held: bool,
}

impl<W: Write> Session<W> {
    fn coordinate(
        &mut self,
        carry: &mut Carry,
        link: Link<'_>,
        mut socket_events: Receiver<SocketEvent>,
        written: WriteResults,
    ) -> Result<Outcome, ClientError> {
        let mut input = link.input.clone();
        let mut signals = link.signals.clone();
        let mut learner = link.learner;
        let mut learned = learner
            .as_deref()
            .map_or_else(channel::never, Learner::results);
        // Stands in for stdin while the writer lags.
        let paused = channel::never();
        if let Some(piece) = carry.held.take() {
            self.held_sent = Some(piece.clone());
            self.send_user(piece)?;
            self.sent_more_than_held = false;
        }
        loop {
            if self.server_closed && self.unwritten == 0 {
                return Ok(Outcome::Finished);
            }
            let timer = match self.policy.next_deadline() {
                Some(deadline) => {
                    channel::after(deadline.saturating_duration_since(Instant::now()))
                }
                None => channel::never(),
            };
            let stdin = if self.unwritten < WRITE_QUEUE {
                &input
            } else {
                &paused
            };
            channel::select! {
                recv(stdin) -> event => match event {
                    Ok(StdinEvent::Data(piece)) => self.send_user(piece)?,
                    Ok(StdinEvent::Failed(e)) => return Err(ClientError::Input(e)),
                    Ok(StdinEvent::Ended) | Err(_) => {
                        self.stop_sending()?;
                        input = channel::never();
                    }
                },
                recv(socket_events) -> event => match event {
                    Ok(SocketEvent::Data(bytes)) => self.received(&bytes)?,
                    Ok(SocketEvent::Closed) => {
                        self.closed()?;
                        socket_events = channel::never();
                    }
                    Ok(SocketEvent::Failed(e)) => return Err(ClientError::ConnectionLost(e)),
                    Err(_) => return Err(ClientError::ConnectionLost(io::Error::other("the socket reader stopped"))),
                },
                recv(written) -> result => match result {
                    Ok(Ok(())) => self.unwritten -= 1,
                    Ok(Err(e)) => return Err(self.write_failed(e)),
                    Err(_) => return Err(ClientError::ConnectionLost(io::Error::other("the socket writer stopped"))),
                },
                recv(timer) -> _ => self.on_timer()?,
                recv(learned) -> result => {
                    learned = channel::never();
                    let changed = match (result, learner.as_deref_mut()) {
                        (Ok(result), Some(learner)) => learner.on_result(result),
                        _ => None,
                    };
                    if let Some(idle) = changed {
                        self.policy.set_idle(idle);
                        self.heartbeat_idle = Some(idle);
                    }
                }
                recv(signals) -> signal => match signal {
                    Ok(()) => {
                        log::info!("interrupted; closing the connection");
                        return Ok(Outcome::Interrupted);
                    }
                    // No one can signal any more; stop listening.
                    Err(_) => signals = channel::never(),
                },
            }
        }
    }

    fn send_user(&mut self, piece: Vec<u8>) -> Result<(), ClientError> {
        if self.discard_line {
            self.discard_line = !piece.ends_with(b"\n");
            return Ok(());
        }
        if !self.mid_line {
            self.replies.sent(Request::Line);
        }
        self.line_sent = true;
        self.sent_more_than_held = true;
        self.mid_line = !piece.ends_with(b"\n");
        self.hand_over(Outgoing::Data(piece))
    }

    /// Stdin ended: once everything read has been sent, the writer shuts
    /// the sending side; the server answers what it has and closes.
    fn stop_sending(&mut self) -> Result<(), ClientError> {
        log::info!("stdin ended; waiting for the remaining replies");
        self.stdin_open = false;
        self.hand_over(Outgoing::ShutDown)
    }

    /// The server's bytes: a refusal (see [`refusal`]) ends the session;
    /// replies are shown.
    fn received(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        // After the first line, every read goes straight to stdout, uncopied.
        if self.first_line.is_decided() {
            return self.show(bytes);
        }
        match self.first_line.feed(bytes, self.line_sent) {
            Verdict::Undecided => Ok(()),
            Verdict::Refused(reason) => Err(ClientError::Refused(reason)),
            Verdict::Replies(replies) => self.show(&replies),
        }
    }

    fn show(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let now = Instant::now();
        self.policy.on_received(now);
        self.received_any = true;
        let mut out = Vec::with_capacity(bytes.len());
        let answers = self.replies.feed(bytes, &mut out);
        for _ in 0..answers.answered {
            if let Some(round_trip) = self.round_trips.answered(now) {
                log::debug!("heartbeat answered in {round_trip:.1?}");
            }
        }
        if let Some(answer) = answers.unexpected {
            self.warn_unexpected(&answer);
        }
        self.print(&out)
    }

    /// Says once per session that the server answers heartbeats with
    /// something other than `OK`. Such a reply still counts as a sign of
    /// life, like any byte from the server; it is never printed.
    fn warn_unexpected(&mut self, answer: &[u8]) {
        if std::mem::replace(&mut self.warned_unexpected, true) {
            return;
        }
        let cut = if answer.len() >= replies::PREVIEW_MAX {
            "..."
        } else {
            ""
        };
        log::warn!(
            "the server answered a heartbeat with \"{}{cut}\", not \"OK\": it does not speak \
             this heartbeat protocol; treating any reply as a sign of life",
            answer.escape_ascii()
        );
    }

    /// The server closed: an error while stdin is open; otherwise the
    /// session finishes once the writer has sent everything (or fails if it
    /// cannot).
    fn closed(&mut self) -> Result<(), ClientError> {
        match self.first_line.closed(self.line_sent) {
            Verdict::Refused(reason) => return Err(ClientError::Refused(reason)),
            Verdict::Replies(held) if !held.is_empty() => self.show(&held)?,
            _ => {}
        }
        self.replies.finish();
        if self.stdin_open {
            return Err(ClientError::ServerClosed {
                silent_for: self.policy.silent_for(Instant::now()),
                heartbeat_idle: self.heartbeat_idle,
            });
        }
        log::info!("server closed the connection after the last reply");
        self.server_closed = true;
        Ok(())
    }

    fn on_timer(&mut self) -> Result<(), ClientError> {
        match self.policy.on_deadline(Instant::now()) {
            Some(Action::SendHeartbeat(n)) if self.stdin_open && !self.mid_line => {
                log::debug!("heartbeat sent #{n}");
                self.replies.sent(Request::Heartbeat);
                self.round_trips.sent(Instant::now());
                self.hand_over(Outgoing::Data([HEARTBEAT, b"\n"].concat()))
            }
            Some(Action::SendHeartbeat(n)) => {
                log::debug!("heartbeat #{n} due but not sent: cannot send now");
                Ok(())
            }
            Some(Action::GiveUp) => Err(self.unresponsive()),
            None => Ok(()),
        }
    }

    fn hand_over(&mut self, work: Outgoing) -> Result<(), ClientError> {
        self.unwritten += 1;
        self.outgoing
            .send(work)
            .map_err(|_| ClientError::ConnectionLost(io::Error::other("the socket writer stopped")))
    }

    fn write_failed(&self, e: io::Error) -> ClientError {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => self.unresponsive(),
            _ => ClientError::ConnectionLost(e),
        }
    }

    fn unresponsive(&self) -> ClientError {
        let silent_for = self.policy.silent_for(Instant::now());
        ClientError::Unresponsive { silent_for }
    }

    fn print(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.stdout
            .write_all(bytes)
            .and_then(|()| self.stdout.flush())
            .map_err(ClientError::Output)
    }
}
