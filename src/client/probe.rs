//! Probe connections: the I/O of the idle-timeout search
//! ([`idle_search`](super::idle_search) decides; this module connects,
//! keeps silent, asks, and reports).
//!
//! A probe is one connection on its own thread (`hb-probe`). It connects
//! (through the client's [`connect`], so with TLS when the session would
//! be) and exchanges a first heartbeat (`open`), which measures the round
//! trip and stamps the last byte received. It then stays silent for its
//! chosen time, reading all along so that a close or a reset during the
//! silence is seen when it happens, and sends `HeartBeat`: a reply within
//! the reply timeout (4 round trips, at least [`REPLY_TIMEOUT_MIN`]) means
//! the path held the silence.
//!
//! Probes run without TCP keepalive: a keepalive packet during the silence
//! would refresh the very mapping being measured. Each costs the server a
//! connection (a thread) for its silence; [`search`] keeps at most
//! `parallel` open, and closes the ones whose outcome a shorter failure has
//! already told (it wakes them with [`wake`], so no probe outlives the
//! search).

use super::check::{CheckError, RoundTripError, heartbeat_round_trip};
use super::idle_search::{Bracket, IdleSearch, Probe, ProbeOutcome, SearchSettings, State};
use super::{ClientConfig, ClientError, connect};
use crate::config::display_duration;
use crate::sockopt::SocketOptions;
use crate::tls::stream::ClientStream;
use crate::wake;
use crossbeam::channel::{self, Receiver, Sender};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The shortest wait for a heartbeat's reply: a reply slower than a second
/// on a path whose round trip is milliseconds is as good as lost.
pub const REPLY_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// Reply timeouts are this many round trips of the first exchange (when
/// that is more than [`REPLY_TIMEOUT_MIN`]): room for a retransmission.
const REPLY_ROUND_TRIPS: u32 = 4;

/// What a search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub bracket: Bracket,
    /// Probes started.
    pub probes: u32,
    /// From the start of the search to its deciding outcome.
    pub elapsed: Duration,
}

/// Why a search found nothing.
#[derive(Debug)]
pub enum SearchError {
    /// No probe ever connected: the first one's error.
    Connect(ClientError),
    /// Probes connected at first, then kept failing to tell (the last
    /// one's reason).
    GaveUp(String),
    /// Asked to stop.
    Stopped,
    /// A probe thread could not be started.
    Spawn(io::Error),
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => e.fmt(f),
            Self::GaveUp(why) => write!(f, "probe connections keep failing: {why}"),
            Self::Stopped => f.write_str("stopped"),
            Self::Spawn(e) => write!(f, "cannot start a probe thread: {e}"),
        }
    }
}

impl std::error::Error for SearchError {}

/// A probe connection after its first exchange.
struct ProbeConnection {
    /// Plain or TLS, as the session's would be.
    stream: ClientStream,
    round_trip: Duration,
    /// When the first exchange's reply arrived: the silence starts here.
    last_received: Instant,
}

/// Connects to `addr` and exchanges a first heartbeat. Everything a probe
/// says before its silence is here (and the heartbeat after it is the same
/// [`heartbeat_round_trip`] as `--check`'s), over the client's stream: with
/// TLS, the handshake is part of the connect, and what arrives during the
/// silence (the server's session tickets came before its first reply) is
/// read through the session.
fn open(addr: &str, config: &ClientConfig) -> Result<ProbeConnection, Failure> {
    let config = ClientConfig {
        socket_options: SocketOptions::default(),
        ..config.clone()
    };
    let stream = connect(addr, &config).map_err(Failure::Connect)?;
    let sent = Instant::now();
    let deadline = sent + config.connect_timeout;
    match heartbeat_round_trip(stream.socket(), &mut &stream, deadline) {
        // Any answer is a server that answers heartbeats.
        Ok(()) | Err(RoundTripError::Check(CheckError::Answered(_))) => Ok(ProbeConnection {
            stream,
            round_trip: sent.elapsed(),
            last_received: Instant::now(),
        }),
        Err(RoundTripError::Late) => Err(Failure::Other(
            "the first heartbeat went unanswered".to_string(),
        )),
        Err(RoundTripError::Check(e)) => Err(Failure::Other(e.to_string())),
    }
}

/// The time until `deadline`, or `None` once it has passed (a read timeout
/// must not be zero).
fn time_left(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

/// A read timeout: `WouldBlock` on Unix, `TimedOut` on Windows.
fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Why a probe could not tell.
enum Failure {
    Connect(ClientError),
    Other(String),
}

/// What a probe thread reports.
enum Event {
    /// Connected: its socket, to close it early.
    Opened { id: u64, socket: ClientStream },
    /// Its last word.
    Done {
        id: u64,
        outcome: ProbeOutcome,
        /// How it ended, for `-v`.
        detail: String,
        connect_error: Option<ClientError>,
    },
}

/// One probe's life, on its own thread: reports `Opened`, then `Done`.
fn run_probe(addr: &str, config: &ClientConfig, probe: Probe, events: &Sender<Event>) {
    let id = probe.id;
    let conn = match open(addr, config) {
        Ok(conn) => conn,
        Err(failure) => {
            let (detail, connect_error) = match failure {
                Failure::Connect(e) => (e.to_string(), Some(e)),
                Failure::Other(why) => (why, None),
            };
            let _ = events.send(Event::Done {
                id,
                outcome: ProbeOutcome::Inconclusive,
                detail,
                connect_error,
            });
            return;
        }
    };
    let opened = Event::Opened {
        id,
        socket: conn.stream.clone(),
    };
    if events.send(opened).is_err() {
        return;
    }
    let (outcome, detail) = hold(&conn, probe.silence);
    let _ = events.send(Event::Done {
        id,
        outcome,
        detail,
        connect_error: None,
    });
}

/// Keeps `conn` silent for `silence` from its last byte received, then asks
/// for a heartbeat's reply.
fn hold(conn: &ProbeConnection, silence: Duration) -> (ProbeOutcome, String) {
    let mut stream = &conn.stream;
    let end = conn.last_received + silence;
    let failed_now = |how: &str| {
        let after = conn.last_received.elapsed();
        (
            ProbeOutcome::Failed(after),
            format!("failed after {} ({how})", display_duration(after)),
        )
    };
    let mut byte = [0; 1];
    while let Some(left) = time_left(end) {
        if let Err(e) = stream.socket().set_read_timeout(Some(left)) {
            return failed_now(&e.to_string());
        }
        // `Read` (through the TLS session, if any), not the reader
        // thread's `ClientStream::read`.
        match Read::read(&mut stream, &mut byte) {
            Ok(0) => return failed_now("closed by the other end"),
            Ok(_) => {
                let why = "the server spoke during the silence".to_string();
                return (ProbeOutcome::Inconclusive, why);
            }
            Err(e) if timed_out(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return failed_now(&e.to_string()),
        }
    }
    let reply_timeout = (conn.round_trip * REPLY_ROUND_TRIPS).max(REPLY_TIMEOUT_MIN);
    // A busy machine may send the heartbeat late: what failed is the
    // silence it was actually sent after (what held is at least `silence`).
    let sent_after = conn.last_received.elapsed().max(silence);
    let failed = |how: String| {
        let detail = format!("failed after {} ({how})", display_duration(sent_after));
        (ProbeOutcome::Failed(sent_after), detail)
    };
    let deadline = Instant::now() + reply_timeout;
    match heartbeat_round_trip(stream.socket(), &mut stream, deadline) {
        Ok(()) | Err(RoundTripError::Check(CheckError::Answered(_))) => {
            (ProbeOutcome::Held, "held".to_string())
        }
        Err(RoundTripError::Late) => failed(format!(
            "no reply within {}",
            display_duration(reply_timeout)
        )),
        Err(RoundTripError::Check(e)) => failed(e.to_string()),
    }
}

/// Runs an idle-timeout search against `addr` (connecting as `config`
/// says, without keepalive) until it has a bracket, gives up, or a message
/// (or hang-up) arrives on `stop`. Each probe's silence and outcome is
/// logged at debug.
pub fn search(
    addr: &str,
    config: &ClientConfig,
    settings: SearchSettings,
    stop: &Receiver<()>,
) -> Result<Found, SearchError> {
    let mut run = Run {
        addr,
        config,
        search: IdleSearch::new(settings, Instant::now()),
        silences: HashMap::new(),
        threads: HashMap::new(),
        sockets: HashMap::new(),
        cancelled: HashSet::new(),
        connected_any: false,
        last_failure: String::new(),
    };
    let (tx, rx) = channel::unbounded();
    let result = run.drive(&tx, &rx, stop);
    run.finish(&rx);
    result
}

/// A search in progress: its probe threads and their sockets.
struct Run<'a> {
    addr: &'a str,
    config: &'a ClientConfig,
    search: IdleSearch,
    silences: HashMap<u64, Duration>,
    threads: HashMap<u64, JoinHandle<()>>,
    /// Sockets of the probes connected and not yet done.
    sockets: HashMap<u64, ClientStream>,
    /// Probes whose outcome is no longer wanted: closed when they connect.
    cancelled: HashSet<u64>,
    connected_any: bool,
    last_failure: String,
}

impl Run<'_> {
    fn drive(
        &mut self,
        tx: &Sender<Event>,
        rx: &Receiver<Event>,
        stop: &Receiver<()>,
    ) -> Result<Found, SearchError> {
        loop {
            for probe in self.search.next_probes() {
                self.start(probe, tx)?;
            }
            match self.search.state() {
                State::Done(bracket) => {
                    return Ok(Found {
                        bracket,
                        probes: self.search.probes_started(),
                        elapsed: self.search.time_taken().unwrap_or_default(),
                    });
                }
                State::GaveUp => return Err(SearchError::GaveUp(self.last_failure.clone())),
                State::Searching => {}
            }
            channel::select! {
                recv(rx) -> event => {
                    // `tx` is alive here, so the channel cannot be closed.
                    let Ok(event) = event else { return Err(SearchError::Stopped) };
                    self.on_event(event)?;
                }
                recv(stop) -> _ => return Err(SearchError::Stopped),
            }
        }
    }

    fn start(&mut self, probe: Probe, tx: &Sender<Event>) -> Result<(), SearchError> {
        let (addr, config, events) = (self.addr.to_string(), self.config.clone(), tx.clone());
        let handle = thread::Builder::new()
            .name("hb-probe".into())
            .spawn(move || run_probe(&addr, &config, probe, &events))
            .map_err(SearchError::Spawn)?;
        self.silences.insert(probe.id, probe.silence);
        self.threads.insert(probe.id, handle);
        Ok(())
    }

    fn on_event(&mut self, event: Event) -> Result<(), SearchError> {
        match event {
            Event::Opened { id, socket } => {
                self.connected_any = true;
                if self.cancelled.contains(&id) {
                    close(socket.socket());
                }
                self.sockets.insert(id, socket);
            }
            Event::Done {
                id,
                outcome,
                detail,
                connect_error,
            } => {
                self.join(id);
                self.sockets.remove(&id);
                if self.cancelled.remove(&id) {
                    return Ok(());
                }
                let silence = self.silences.get(&id).copied().unwrap_or_default();
                log::debug!("probe: {} of silence: {detail}", display_duration(silence));
                if let Some(e) = connect_error.filter(|_| !self.connected_any) {
                    return Err(SearchError::Connect(e));
                }
                if outcome == ProbeOutcome::Inconclusive {
                    self.last_failure = detail;
                }
                for known in self.search.on_outcome(id, outcome, Instant::now()) {
                    self.cancel(known, "a shorter silence failed");
                }
            }
        }
        Ok(())
    }

    /// Closes probe `id` early (now if it is connected, else as soon as it
    /// is); its outcome is ignored.
    fn cancel(&mut self, id: u64, why: &str) {
        if let Some(silence) = self.silences.get(&id) {
            log::debug!(
                "probe: {} of silence: cancelled ({why})",
                display_duration(*silence)
            );
        }
        self.cancelled.insert(id);
        if let Some(socket) = self.sockets.get(&id) {
            close(socket.socket());
        }
    }

    fn join(&mut self, id: u64) {
        let joined = self.threads.remove(&id).map(JoinHandle::join);
        if matches!(joined, Some(Err(_))) {
            log::error!("a probe thread panicked");
        }
    }

    /// Closes every probe still running and joins its thread: each reports
    /// `Done` once woken, or once its connect attempt ends.
    fn finish(&mut self, rx: &Receiver<Event>) {
        let running: Vec<u64> = self.threads.keys().copied().collect();
        for id in running {
            self.cancel(id, "the search is over");
        }
        while !self.threads.is_empty() {
            // Every thread sends `Done` before it ends, and `rx` outlives
            // them, so this cannot fail while threads remain.
            let Ok(event) = rx.recv() else { break };
            match event {
                Event::Opened { socket, .. } => close(socket.socket()),
                Event::Done { id, .. } => self.join(id),
            }
        }
    }
}

/// Wakes a probe thread from its silence (see [`wake`]): its read ends.
fn close(socket: &TcpStream) {
    // Fails only when the socket is already shut or reset: nothing to wake.
    let _ = wake::shutdown_and_wake(socket, Shutdown::Both);
}
