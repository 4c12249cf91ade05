//! The blocking accept loop that both listeners of the server run (the
//! protocol's and the metrics endpoint's): accept until the stop channel is
//! closed, skip errors about one aborted connection, and back off on errors
//! of the listener itself (EMFILE) instead of spinning.
//!
//! A blocking `accept` cannot watch a channel, so whoever closes `stop` also
//! wakes the accept by connecting to the listener; the loop checks `stop`
//! after every accept returns.

use crossbeam::channel::{Receiver, RecvTimeoutError, TryRecvError};
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Pause after an accept error such as EMFILE, so a full descriptor table
/// does not spin the CPU; short, so accepting resumes soon after it frees.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Hands every accepted connection to `on_accept` until `stop` is closed.
/// `what` names the listener in the log line of a failing accept.
pub fn until_stopped(
    listener: &TcpListener,
    stop: &Receiver<()>,
    what: &str,
    mut on_accept: impl FnMut(TcpStream, SocketAddr),
) {
    let mut failing = false;
    loop {
        let accepted = listener.accept();
        if stop.try_recv() == Err(TryRecvError::Disconnected) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                failing = false;
                on_accept(stream, peer);
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                if !failing {
                    log::error!("{what} accept failed: {e}; retrying every {ACCEPT_BACKOFF:?}");
                    failing = true;
                }
                if stop.recv_timeout(ACCEPT_BACKOFF) == Err(RecvTimeoutError::Disconnected) {
                    return;
                }
            }
        }
    }
}

/// Errors about one aborted connection, not about the listener.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Interrupted | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
