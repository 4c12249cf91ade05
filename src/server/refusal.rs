//! Closing a refused connection so that its refusal arrives.
//!
//! A refusal is one `ERR …` line (or nothing, for a bad PROXY header), then
//! the close. Closing a socket whose receive buffer holds unread data makes
//! the kernel send a reset instead of a FIN, and a reset can make the
//! client's TCP drop what it has not yet handed to the application, the
//! `ERR` line with it: a client that sent before it read (hb-client
//! `--reconnect` sends the line it held back at once) would see "connection
//! reset" instead of the reason. So a refusal is a lingering close, as
//! Apache's `lingering_close`: send the line, shut down the sending side (the
//! FIN follows the line), read and discard what the client sends until it
//! closes, at most [`LINGER_BYTES`] and until [`LINGER_TIME`] after the
//! refusal, and only then close.
//!
//! Refusals decided in a connection's own thread (the per-address limit, the
//! PROXY header) linger in that thread. Those of the accept loop (server
//! full, no thread) must not block it: they go to one `hb-linger` thread,
//! which drains them in order, each until its own deadline, so one silent
//! client delays those behind it by at most [`LINGER_TIME`] in all. At most
//! [`LINGER_QUEUE`] wait; beyond that a refusal is closed at once (perhaps
//! with a reset), so that a flood of connects against a full server cannot
//! make it hold more descriptors than that.

use crossbeam::channel::{self, Sender};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What a refused client may still send before the close: more than any
/// line hb-client holds back, small enough to cost nothing.
pub const LINGER_BYTES: usize = 64 * 1024;
/// How long a refusal waits for the client to close: a round trip on any
/// path, short enough that a silent client costs little.
pub const LINGER_TIME: Duration = Duration::from_secs(1);
/// Refusals of the accept loop that may wait for `hb-linger` at once.
pub const LINGER_QUEUE: usize = 1024;
/// How often a lingering read looks at the stop flag, so that shutdown is
/// never held up by a silent refused client for longer than this.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Sends `reason`, shuts down the sending side and drains what the client
/// sends until it closes, [`LINGER_BYTES`] or `deadline` (or, once `stop` is
/// set, only what has already arrived). The caller then drops the socket.
pub fn linger(stream: &TcpStream, reason: &[u8], deadline: Instant, stop: &AtomicBool) {
    send(stream, reason);
    drain(stream, deadline, stop);
}

/// The line and the FIN. A fresh socket's send buffer takes a short line
/// without blocking; a failure means the client is gone already.
fn send(mut stream: &TcpStream, reason: &[u8]) {
    let _ = stream.write_all(reason);
    let _ = stream.shutdown(Shutdown::Write);
}

fn drain(mut stream: &TcpStream, deadline: Instant, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        let until_check = if wait.is_zero() || stop.load(Ordering::Acquire) {
            // What has arrived is read without waiting for more.
            if stream.set_nonblocking(true).is_err() {
                return;
            }
            None
        } else {
            Some(wait.min(STOP_CHECK))
        };
        if until_check.is_some() && stream.set_read_timeout(until_check).is_err() {
            return;
        }
        let want = left.min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => return,
            Ok(n) => left -= n,
            Err(e) if until_check.is_some() && is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// A timed-out read: `WouldBlock` on Unix, `TimedOut` on Windows.
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// The `hb-linger` thread, for the accept loop's refusals. Dropping it stops
/// the lingering (what has arrived is still read) and joins the thread.
pub struct Lingerer {
    /// Refused sockets and when they were refused; dropped to end the thread.
    queue: Option<Sender<(TcpStream, Instant)>>,
    /// Set at shutdown, read by the draining thread between reads.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Lingerer {
    pub fn start() -> io::Result<Self> {
        let (queue, refused) = channel::bounded::<(TcpStream, Instant)>(LINGER_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = thread::Builder::new()
            .name("hb-linger".into())
            .spawn(move || {
                for (stream, refused_at) in refused {
                    drain(&stream, refused_at + LINGER_TIME, &thread_stop);
                }
            })?;
        Ok(Self {
            queue: Some(queue),
            stop,
            thread: Some(thread),
        })
    }

    /// Refuses `stream` with `reason` without blocking the caller.
    pub fn refuse(&self, stream: TcpStream, reason: &[u8]) {
        send(&stream, reason);
        if let Some(queue) = &self.queue {
            // Full: the socket is dropped here, closed at once.
            let _ = queue.try_send((stream, Instant::now()));
        }
    }
}

impl Drop for Lingerer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        drop(self.queue.take());
        if let Some(Err(_)) = self.thread.take().map(JoinHandle::join) {
            log::error!("thread hb-linger panicked");
        }
    }
}
