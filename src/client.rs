//! The client: connects stdin and stdout to a server, keeps the connection
//! alive with heartbeats, and gives up on a server that stops answering.
//!
//! Threads: `hb-stdin` reads stdin into a channel, `hb-socket-reader` reads
//! the socket into another, and the caller's thread is the coordinator: one
//! `select!` over stdin, the socket, the heartbeat timer and the signal
//! channel. The coordinator is the only one who writes to the socket or to
//! stdout, so neither needs a lock, and nothing it waits for can hide a dead
//! server: a blocking read lives in its own thread. The socket is held once,
//! as `Arc<TcpStream>` shared with the reader (no `try_clone`).
//!
//! When stdin ends, what remains is sent, the sending side is shut, and
//! replies are shown until the server closes. The heartbeat timer keeps
//! running (sending nothing, as nothing more may be sent), so a server that
//! never closes is still given up on at the same time.

use crate::heartbeat::{Action, HeartbeatPolicy, HeartbeatSettings};
use crate::protocol::HEARTBEAT;
use crate::replies::{ReplyMatcher, Request};
use crate::sockopt::{self, SocketOptions};
use crossbeam::channel::{self, Receiver, Sender};
use std::fmt;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bytes per socket read, and the longest piece of a stdin line sent at
/// once, so a long line never sits whole in memory.
const CHUNK: usize = 4096;

/// Stdin pieces queued for the coordinator. Small, so a fast stdin waits for
/// a slow server instead of filling memory.
const STDIN_QUEUE: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    pub heartbeat: HeartbeatSettings,
    pub socket_options: SocketOptions,
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
    /// Connecting (or setting socket options) failed.
    Connect { addr: String, source: io::Error },
    /// The server closed the connection while stdin was still open.
    ServerClosed,
    /// Reading or writing the socket failed: reset, TCP keepalive or user
    /// timeout, or any other network error.
    ConnectionLost(io::Error),
    /// The server answered none of the heartbeats, or accepted no write for
    /// the whole give-up time.
    Unresponsive { silent_for: Duration },
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
            Self::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Self::ServerClosed => f.write_str("server closed the connection"),
            Self::ConnectionLost(e) if e.kind() == ErrorKind::TimedOut => {
                write!(f, "connection lost: {e} (TCP keepalive or user timeout)")
            }
            Self::ConnectionLost(e) => write!(f, "connection lost: {e}"),
            Self::Unresponsive { silent_for } => write!(
                f,
                "server unresponsive: nothing received for {}",
                humantime::format_duration(*silent_for)
            ),
            Self::Input(e) => write!(f, "cannot read stdin: {e}"),
            Self::Output(e) => write!(f, "cannot write stdout: {e}"),
            Self::Spawn(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Connects to `addr` and applies the configured socket options.
pub fn connect(addr: &str, config: &ClientConfig) -> Result<TcpStream, ClientError> {
    let failed = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    let stream = TcpStream::connect(addr).map_err(failed)?;
    sockopt::apply(&stream, &config.socket_options).map_err(failed)?;
    Ok(stream)
}

/// Runs a session on `stream` until stdin ends and the server closes, a
/// signal arrives on `signals`, or the connection fails.
pub fn run(
    stream: TcpStream,
    config: &ClientConfig,
    stdin: impl Read + Send + 'static,
    stdout: impl Write,
    signals: Receiver<()>,
) -> Result<Outcome, ClientError> {
    // A write blocked for the whole give-up time means the server stopped
    // reading at least that long: as unresponsive as unanswered heartbeats.
    let write_timeout = config.heartbeat.give_up_after();
    stream
        .set_write_timeout(write_timeout)
        .map_err(ClientError::ConnectionLost)?;
    let socket = Arc::new(stream);
    let input = spawn_stdin_reader(stdin)?;
    let (socket_events, reader) = spawn_socket_reader(Arc::clone(&socket))?;
    let mut session = Session {
        socket: Arc::clone(&socket),
        stdout,
        policy: HeartbeatPolicy::new(config.heartbeat, Instant::now()),
        replies: ReplyMatcher::default(),
        mid_line: false,
        sending: true,
    };
    let result = session.coordinate(input, socket_events, signals);
    // Wakes the reader's blocking read so it can be joined.
    let _ = socket.shutdown(Shutdown::Both);
    if reader.join().is_err() {
        log::error!("the socket reader panicked");
    }
    result
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
    socket: Arc<TcpStream>,
) -> Result<(Receiver<SocketEvent>, JoinHandle<()>), ClientError> {
    // Unbounded: the reader must keep draining the socket while the
    // coordinator is blocked writing to it, or a server blocked writing its
    // replies would stop reading and both would wait on each other. The
    // server only sends replies to what the coordinator sent, so the backlog
    // is bounded by what is in flight.
    let (tx, rx) = channel::unbounded();
    let handle = thread::Builder::new()
        .name("hb-socket-reader".into())
        .spawn(move || read_socket(&socket, &tx))
        .map_err(ClientError::Spawn)?;
    Ok((rx, handle))
}

fn read_socket(socket: &TcpStream, tx: &Sender<SocketEvent>) {
    let mut buf = [0; CHUNK];
    loop {
        let event = match (&*socket).read(&mut buf) {
            Ok(0) => SocketEvent::Closed,
            Ok(n) => SocketEvent::Data(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => SocketEvent::Failed(e),
        };
        let last = !matches!(event, SocketEvent::Data(_));
        if tx.send(event).is_err() || last {
            return;
        }
    }
}

/// The coordinator's state.
struct Session<W> {
    socket: Arc<TcpStream>,
    stdout: W,
    policy: HeartbeatPolicy,
    replies: ReplyMatcher,
    /// The last stdin piece sent did not end its line: a heartbeat now would
    /// land inside the user's line, so none is sent until it ends.
    mid_line: bool,
    /// False once stdin ended and the sending side is shut.
    sending: bool,
}

impl<W: Write> Session<W> {
    fn coordinate(
        &mut self,
        mut input: Receiver<StdinEvent>,
        socket_events: Receiver<SocketEvent>,
        mut signals: Receiver<()>,
    ) -> Result<Outcome, ClientError> {
        loop {
            let timer = match self.policy.next_deadline() {
                Some(deadline) => {
                    channel::after(deadline.saturating_duration_since(Instant::now()))
                }
                None => channel::never(),
            };
            channel::select! {
                recv(input) -> event => match event {
                    Ok(StdinEvent::Data(piece)) => self.send_user(&piece)?,
                    Ok(StdinEvent::Failed(e)) => return Err(ClientError::Input(e)),
                    Ok(StdinEvent::Ended) | Err(_) => {
                        self.stop_sending()?;
                        input = channel::never();
                    }
                },
                recv(socket_events) -> event => match event {
                    Ok(SocketEvent::Data(bytes)) => self.show(&bytes)?,
                    Ok(SocketEvent::Closed) => return self.closed(),
                    Ok(SocketEvent::Failed(e)) => return Err(ClientError::ConnectionLost(e)),
                    Err(_) => return Err(ClientError::ConnectionLost(io::Error::other("the socket reader stopped"))),
                },
                recv(timer) -> _ => self.on_timer()?,
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

    fn send_user(&mut self, piece: &[u8]) -> Result<(), ClientError> {
        if !self.mid_line {
            self.replies.sent(Request::Line);
        }
        self.mid_line = !piece.ends_with(b"\n");
        self.write(piece)
    }

    /// Stdin ended: everything read has been sent, so shut the sending side;
    /// the server answers what it has and closes.
    fn stop_sending(&mut self) -> Result<(), ClientError> {
        log::info!("stdin ended; waiting for the remaining replies");
        self.sending = false;
        self.socket
            .shutdown(Shutdown::Write)
            .map_err(ClientError::ConnectionLost)
    }

    fn show(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.policy.on_received(Instant::now());
        let mut out = Vec::with_capacity(bytes.len());
        let answered = self.replies.feed(bytes, &mut out);
        for _ in 0..answered {
            log::info!("heartbeat answered");
        }
        self.print(&out)
    }

    fn closed(&mut self) -> Result<Outcome, ClientError> {
        let mut out = Vec::new();
        self.replies.finish(&mut out);
        self.print(&out)?;
        if self.sending {
            return Err(ClientError::ServerClosed);
        }
        log::info!("server closed the connection after the last reply");
        Ok(Outcome::Finished)
    }

    fn on_timer(&mut self) -> Result<(), ClientError> {
        match self.policy.on_deadline(Instant::now()) {
            Some(Action::SendHeartbeat(n)) if self.sending && !self.mid_line => {
                log::info!("heartbeat sent #{n}");
                self.replies.sent(Request::Heartbeat);
                self.write(&[HEARTBEAT, b"\n"].concat())
            }
            Some(Action::SendHeartbeat(n)) => {
                log::debug!("heartbeat #{n} due but not sent: cannot send now");
                Ok(())
            }
            Some(Action::GiveUp) => Err(self.unresponsive()),
            None => Ok(()),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        match (&*self.socket).write_all(bytes) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(self.unresponsive())
            }
            Err(e) => Err(ClientError::ConnectionLost(e)),
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
