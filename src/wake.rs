//! Waking a thread blocked in `read` or `write` on a socket, from another
//! thread: the one OS difference every close-from-outside depends on.
//!
//! Server and client each hold a connection's socket once, shared with the
//! thread that blocks on it, and stop that thread by shutting the socket
//! down. Each side calls [`shutdown_and_wake`] from one place: the server
//! from `Connection::close` (the reaper, shutdown, and anything else that
//! ends a connection from outside its thread), the client from
//! `stop_socket_threads`.
//!
//! - **Linux, the BSDs, macOS:** `shutdown` wakes a blocked `recv` (it
//!   returns 0) and a blocked `send` (EPIPE). On Linux the tests show it; on
//!   macOS it was established by reading XNU, not by running it: in
//!   apple/darwin-xnu's `bsd/kern/uipc_socket.c`, `soshutdownlock` calls
//!   `sorflush` for SHUT_RD and SHUT_RDWR, which marks the receive buffer
//!   `SS_CANTRCVMORE` and wakes its sleepers, as in the BSDs it comes from.
//! - **Windows:** `shutdown` sends the FIN but leaves a thread blocked in
//!   `recv` waiting (CPython issue 91913 on Windows 10; EPICS: "recv() is
//!   interrupted by shutdown() on all targets except WIN32"; Wine 8 does the
//!   same). std creates its sockets overlapped, so a blocking call is
//!   pending I/O on the socket's handle, and `CancelIoEx(handle, NULL)`
//!   cancels it from any thread: the call fails with ERROR_OPERATION_ABORTED
//!   (995) at once. Under Wine this was measured; on real Windows it is what
//!   the documentation of `CancelIoEx` promises, not yet run here. A call
//!   that starts after the wake-up does not block either: after `shutdown`,
//!   Windows disallows further receives (SD_RECEIVE) or sends (SD_SEND).
//!
//! No read timeouts or polling stand in for this: a blocked thread costs
//! nothing until it is woken, and is woken at once.

use std::io;
use std::net::{Shutdown, TcpStream};

/// Shuts `stream` down (`how`) and wakes any thread blocked reading or
/// writing it. With `Shutdown::Read` a thread blocked in `write` may finish
/// it on Unix; on Windows every pending call on the socket is cancelled
/// whatever `how` is, since cancellation cannot pick a direction.
///
/// Errors are those of `shutdown`: the socket was already shut down or
/// reset, so there was nothing left to wake.
pub fn shutdown_and_wake(stream: &TcpStream, how: Shutdown) -> io::Result<()> {
    let shut = stream.shutdown(how);
    cancel_pending_io(stream);
    shut
}

#[cfg(windows)]
fn cancel_pending_io(stream: &TcpStream) {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Foundation::HANDLE;
    use windows_sys::Win32::System::IO::CancelIoEx;
    // A SOCKET is a kernel handle that CancelIoEx accepts. It fails only
    // with ERROR_NOT_FOUND, when nothing is pending: nothing to wake.
    // SAFETY: the handle is valid while `stream` is borrowed, and a null
    // OVERLAPPED means "every pending operation on it"; nothing is freed.
    unsafe {
        CancelIoEx(stream.as_raw_socket() as HANDLE, std::ptr::null());
    }
}

#[cfg(not(windows))]
fn cancel_pending_io(_stream: &TcpStream) {
    // `shutdown` itself wakes blocked calls here (see the module doc).
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam::channel;
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    /// A thread blocked in `read` returns promptly once another thread wakes
    /// it, while the peer keeps its end open and silent.
    #[test]
    fn a_blocked_read_returns_when_woken() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let stream = Arc::new(accepted);
        let (tx, rx) = channel::bounded(1);
        let reader = {
            let stream = stream.clone();
            let (started_tx, started_rx) = channel::bounded(0);
            let handle = thread::Builder::new()
                .name("test-blocked-read".into())
                .spawn(move || {
                    started_tx.send(()).unwrap();
                    let result = (&*stream).read(&mut [0; 16]);
                    tx.send(result.map_err(|e| e.kind())).unwrap();
                })
                .unwrap();
            started_rx.recv().unwrap();
            handle
        };
        // Not a synchronisation: a wake-up before the read blocks would make
        // the test pass for the wrong reason, so give the read time to block.
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "read returned before it was woken"
        );
        shutdown_and_wake(&stream, Shutdown::Both).unwrap();
        let result = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the blocked read was not woken");
        // EOF on Unix; ERROR_OPERATION_ABORTED on Windows.
        assert!(matches!(result, Ok(0) | Err(_)), "{result:?}");
        reader.join().unwrap();
    }
}
