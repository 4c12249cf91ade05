//! `hb-client --check`: one heartbeat round trip as a health check, for a
//! container's health command, a Kubernetes exec probe, a script or a
//! monitoring system. It asks what HAProxy's check in `deploy/haproxy.cfg`
//! asks (`HeartBeat` answered `OK`), so it fails for a dead, frozen or
//! draining server alike, where a bare TCP connect would pass a frozen one.
//!
//! The connection is made by [`super::connect`], the client's own connect
//! path, so what configures a session's connection (socket options, and any
//! transport added there) configures the check's too. Judging the reply is
//! `judge`, with no I/O.

use super::{ClientConfig, ClientError, refusal};
use crate::config::display_duration;
use crate::protocol::{HEARTBEAT, HEARTBEAT_REPLY};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The most of a reply the check reads: `OK` and a line end, or a refusal
/// such as `ERR too many connections from your address`. A longer first
/// line is not this protocol's answer, whatever follows.
const REPLY_MAX: usize = 64;

/// Why a check failed.
#[derive(Debug)]
pub enum CheckError {
    /// Connecting failed (refused, timed out, unresolvable).
    Connect(ClientError),
    /// No complete reply within the timeout, counted from the start.
    TimedOut { timeout: Duration },
    /// The server closed the connection before a complete reply, after
    /// sending these bytes (none, mostly).
    Closed { received: String },
    /// The server refused the connection (`ERR server full`); its reason.
    Refused(String),
    /// The reply was something other than `OK` or a refusal.
    Answered(String),
    /// Sending or receiving failed.
    Io(io::Error),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => e.fmt(f),
            Self::TimedOut { timeout } => write!(
                f,
                "no reply to HeartBeat within {}",
                display_duration(*timeout)
            ),
            Self::Closed { received } if received.is_empty() => {
                f.write_str("the server closed the connection without answering")
            }
            Self::Closed { received } => write!(
                f,
                "the server closed the connection after {received:?}, with no line end"
            ),
            Self::Refused(reason) => write!(f, "refused by the server: {reason}"),
            Self::Answered(reply) => write!(f, "the server answered {reply:?}, not \"OK\""),
            Self::Io(e) => write!(f, "connection lost: {e}"),
        }
    }
}

impl std::error::Error for CheckError {}

/// Connects to `addr`, sends `HeartBeat` and waits for `OK`, all within
/// `config.connect_timeout` of the start (each address the name resolves to
/// is given at most that to connect).
pub fn check(addr: &str, config: &ClientConfig) -> Result<(), CheckError> {
    let start = Instant::now();
    let timeout = config.connect_timeout;
    let deadline = start + timeout;
    let stream = super::connect(addr, config).map_err(CheckError::Connect)?;
    heartbeat_round_trip(stream.socket(), &mut &stream, deadline).map_err(|e| match e {
        RoundTripError::Late => CheckError::TimedOut { timeout },
        RoundTripError::Check(e) => e,
    })
}

pub(super) enum RoundTripError {
    /// The deadline passed.
    Late,
    Check(CheckError),
}

impl From<io::Error> for RoundTripError {
    fn from(e: io::Error) -> Self {
        // A socket timeout is the deadline passing (Unix says WouldBlock).
        match e.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Self::Late,
            _ => Self::Check(CheckError::Io(e)),
        }
    }
}

/// Sends the heartbeat through `io` and reads until the reply is judged,
/// each call bounded by what is left before `deadline` through `socket`'s
/// timeouts. `io` is the socket itself, or a layer over it (TLS) whose
/// reads and writes wait on that socket.
pub(super) fn heartbeat_round_trip(
    socket: &TcpStream,
    io: &mut (impl Read + Write),
    deadline: Instant,
) -> Result<(), RoundTripError> {
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero())
            .then_some(left)
            .ok_or(RoundTripError::Late)
    };
    socket.set_write_timeout(Some(left()?))?;
    io.write_all(&[HEARTBEAT, b"\n"].concat())?;
    io.flush()?;
    let mut reply = Vec::with_capacity(REPLY_MAX);
    let mut buf = [0; REPLY_MAX];
    loop {
        socket.set_read_timeout(Some(left()?))?;
        let n = io.read(&mut buf[..REPLY_MAX - reply.len()])?;
        reply.extend_from_slice(&buf[..n]);
        if let Some(verdict) = judge(&reply, n == 0) {
            return verdict.map_err(RoundTripError::Check);
        }
    }
}

/// The verdict on the bytes received so far, once there is one: `OK` as a
/// whole line (LF or CRLF) passes; a refusal (`ERR ` and a reason: no line
/// was sent before the heartbeat, so it cannot be an echo), any other line,
/// or [`REPLY_MAX`] bytes without a line end, fail; `closed` with no
/// complete line fails.
/// `None`: not known yet, read on.
fn judge(reply: &[u8], closed: bool) -> Option<Result<(), CheckError>> {
    let Some(end) = reply.iter().position(|&b| b == b'\n') else {
        return if reply.len() >= REPLY_MAX {
            Some(Err(CheckError::Answered(lossy(reply))))
        } else if closed {
            Some(Err(CheckError::Closed {
                received: lossy(reply),
            }))
        } else {
            None
        };
    };
    let line = &reply[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some(if line == HEARTBEAT_REPLY {
        Ok(())
    } else if let Some(reason) = line.strip_prefix(refusal::PREFIX) {
        Err(CheckError::Refused(lossy(reason)))
    } else {
        Err(CheckError::Answered(lossy(line)))
    })
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(reply: &[u8], closed: bool) -> Option<Result<(), String>> {
        judge(reply, closed).map(|v| v.map_err(|e| e.to_string()))
    }

    #[test]
    fn ok_line_passes_with_either_line_end() {
        assert_eq!(verdict(b"OK\n", false), Some(Ok(())));
        assert_eq!(verdict(b"OK\r\n", false), Some(Ok(())));
        assert_eq!(verdict(b"OK\n", true), Some(Ok(())));
    }

    #[test]
    fn incomplete_reply_waits_until_closed() {
        assert_eq!(verdict(b"", false), None);
        assert_eq!(verdict(b"OK", false), None);
        assert_eq!(
            verdict(b"", true),
            Some(Err(
                "the server closed the connection without answering".to_string()
            ))
        );
        assert_eq!(
            verdict(b"OK", true),
            Some(Err(
                "the server closed the connection after \"OK\", with no line end".to_string()
            ))
        );
    }

    #[test]
    fn refusal_or_other_reply_fails_with_what_was_said() {
        assert_eq!(
            verdict(b"ERR server full\n", true),
            Some(Err("refused by the server: server full".to_string()))
        );
        // The article's server echoes the heartbeat uppercased.
        assert_eq!(
            verdict(b"HEARTBEAT\n", false),
            Some(Err(
                "the server answered \"HEARTBEAT\", not \"OK\"".to_string()
            ))
        );
        assert_eq!(
            verdict(b"ok\n", false),
            Some(Err("the server answered \"ok\", not \"OK\"".to_string()))
        );
    }

    #[test]
    fn endless_line_fails_at_the_cap() {
        assert_eq!(verdict(&[b'x'; REPLY_MAX - 1], false), None);
        assert!(matches!(verdict(&[b'x'; REPLY_MAX], false), Some(Err(_))));
    }
}
