//! `--reconnect`: one stdin, a series of connections. When a connection is
//! refused, lost, closed by the server while stdin is open, or the server
//! is unresponsive, the client waits as [`Backoff`] says and connects
//! again, instead of exiting.
//!
//! What the user sees and what happens to their lines:
//! - each event is one line on stderr: the loss and its reason,
//!   `reconnecting in 1.3s (attempt 2)`, `reconnected to ADDR`, and a failed
//!   attempt's reason;
//! - a line sent whose reply had not arrived at the loss is not sent again
//!   (the server may have acted on it): it is counted on stderr instead;
//!   the rest of a line whose start went to the lost connection is dropped;
//! - while disconnected, stdin is not read beyond one piece (held for the
//!   next connection), so its pipe holds the rest back; stdin's end while
//!   disconnected, or a loss after stdin ended, leaves nothing to send:
//!   exit 0;
//! - after `attempts` consecutive failed attempts the last failure is
//!   returned, so the exit code is the one it would have had without
//!   `--reconnect`.
//!
//! A signal is noticed at once while waiting, and after the current connect
//! attempt (each address bounded by `--connect-timeout`) while connecting.

use super::adaptive::Learner;
use super::backoff::{Attempt, Backoff, Jitter};
use super::{
    Carry, ClientConfig, ClientError, Link, Outcome, StdinEvent, connect, run_session,
    spawn_stdin_reader,
};
use crate::config::display_duration;
use crate::tls::stream::ClientStream;
use crossbeam::channel::{self, Receiver};
use std::io::{ErrorKind, Read, Write};
use std::time::Instant;

/// Runs sessions against `addr` until one ends without a failure worth
/// retrying, a signal arrives on `signals`, or `backoff` gives up.
pub fn run<J: Jitter>(
    addr: &str,
    config: &ClientConfig,
    backoff: Backoff<J>,
    stdin: impl Read + Send + 'static,
    mut stdout: impl Write,
    signals: Receiver<()>,
) -> Result<Outcome, ClientError> {
    let mut client = Reconnecting {
        addr,
        config,
        backoff,
        input: spawn_stdin_reader(stdin)?,
        signals,
        carry: Carry::default(),
    };
    let mut learner = config.adaptive.map(|a| Learner::new(addr, config, a));
    let mut stream = match connect(addr, config) {
        Ok(stream) => {
            log::info!("connected to {addr}");
            stream
        }
        Err(e) if worth_retrying(&e) => {
            log::warn!("{e}");
            match client.reconnect(e)? {
                Next::Connected(stream) => stream,
                Next::Done(outcome) => return Ok(outcome),
            }
        }
        Err(e) => return Err(e),
    };
    loop {
        let link = Link {
            input: &client.input,
            signals: &client.signals,
            learner: learner.as_mut(),
        };
        let end = run_session(stream, config, link, &mut stdout, &mut client.carry);
        if end.received_any {
            client.backoff.on_received();
        }
        let error = match end.result {
            Ok(outcome) => return Ok(outcome),
            Err(e) if worth_retrying(&e) => e,
            Err(e) => return Err(e),
        };
        log::warn!("{error}");
        if let Some(learner) = learner.as_mut() {
            learner.on_loss(end.silent_for);
        }
        if end.unanswered_lines > 0 {
            log::warn!(
                "{} line(s) sent without a reply before the connection was lost",
                end.unanswered_lines
            );
        }
        if !end.stdin_open {
            log::info!("stdin had ended: nothing is left to send, so not reconnecting");
            return Ok(Outcome::Finished);
        }
        stream = match client.reconnect(error)? {
            Next::Connected(stream) => stream,
            Next::Done(outcome) => return Ok(outcome),
        };
    }
}

/// Whether `--reconnect` tries again after `error`: every network failure,
/// but not a malformed address, a TLS handshake refused for its
/// certificates or protocol (trying again cannot change them), stdin,
/// stdout or a thread.
fn worth_retrying(error: &ClientError) -> bool {
    match error {
        ClientError::Connect { source, .. } => source.kind() != ErrorKind::InvalidInput,
        ClientError::Tls { source, .. } => source.is_transient(),
        ClientError::ServerClosed { .. }
        | ClientError::Refused(_)
        | ClientError::ConnectionLost(_)
        | ClientError::Unresponsive { .. } => true,
        ClientError::Input(_) | ClientError::Output(_) | ClientError::Spawn(_) => false,
    }
}

/// What follows a loss.
enum Next {
    Connected(ClientStream),
    /// Stdin ended, or a signal arrived, while disconnected.
    Done(Outcome),
}

/// The state that outlives each connection.
struct Reconnecting<'a, J> {
    addr: &'a str,
    config: &'a ClientConfig,
    backoff: Backoff<J>,
    /// Stdin's pieces, for every session and for the waits between them.
    input: Receiver<StdinEvent>,
    signals: Receiver<()>,
    carry: Carry,
}

impl<J: Jitter> Reconnecting<'_, J> {
    /// Waits and connects until an attempt connects; `last_error` is the
    /// loss's, returned if the backoff gives up before any attempt fails.
    fn reconnect(&mut self, mut last_error: ClientError) -> Result<Next, ClientError> {
        loop {
            let Some(attempt) = self.backoff.next_attempt(Instant::now()) else {
                log::warn!("giving up: the attempts allowed by --reconnect-attempts failed");
                return Err(last_error);
            };
            log::info!(
                "reconnecting in {} (attempt {})",
                display_duration(attempt.delay),
                attempt.number
            );
            if let Some(outcome) = self.wait(&attempt)? {
                return Ok(Next::Done(outcome));
            }
            match connect(self.addr, self.config) {
                Ok(stream) => {
                    match stream.socket().peer_addr() {
                        Ok(peer) => log::info!("reconnected to {peer}"),
                        Err(_) => log::info!("reconnected to {}", self.addr),
                    }
                    return Ok(Next::Connected(stream));
                }
                Err(e) if worth_retrying(&e) => {
                    log::warn!("attempt {} failed: {e}", attempt.number);
                    last_error = e;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until `attempt` is due. Meanwhile takes at most one stdin piece
    /// (dropping the rest of a lost line); returns an outcome when stdin
    /// ends with nothing held, or a signal arrives.
    fn wait(&mut self, attempt: &Attempt) -> Result<Option<Outcome>, ClientError> {
        let due = channel::after(attempt.at.saturating_duration_since(Instant::now()));
        let holding = channel::never();
        loop {
            let stdin = if self.carry.held.is_none() {
                &self.input
            } else {
                &holding
            };
            channel::select! {
                recv(due) -> _ => return Ok(None),
                recv(stdin) -> event => match event {
                    Ok(StdinEvent::Data(piece)) => self.hold(piece),
                    Ok(StdinEvent::Failed(e)) => return Err(ClientError::Input(e)),
                    Ok(StdinEvent::Ended) | Err(_) => {
                        log::info!("stdin ended while disconnected: nothing is left to send");
                        return Ok(Some(Outcome::Finished));
                    }
                },
                recv(self.signals) -> signal => match signal {
                    Ok(()) => {
                        log::info!("interrupted while disconnected");
                        return Ok(Some(Outcome::Interrupted));
                    }
                    // No one can signal any more; stop listening.
                    Err(_) => self.signals = channel::never(),
                },
            }
        }
    }

    /// Keeps `piece` for the next connection, unless it belongs to a line
    /// whose start was lost.
    fn hold(&mut self, piece: Vec<u8>) {
        if self.carry.discard_line {
            self.carry.discard_line = !piece.ends_with(b"\n");
        } else {
            self.carry.held = Some(piece);
        }
    }
}
