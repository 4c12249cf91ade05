//! Unix only: SIGHUP as a request to reload (hb-server's certificates), sent
//! on a channel like the other signals.
//!
//! ctrlc (with its `termination` feature) takes SIGHUP as a stop, as it
//! takes SIGINT and SIGTERM. A binary that reloads on SIGHUP installs this
//! handler after ctrlc's, replacing it for SIGHUP alone. A signal handler
//! may do almost nothing (only async-signal-safe calls), so it writes a byte
//! to a pipe; the `hb-sighup` thread reads the pipe and sends on the
//! channel. That thread is never joined, like `hb-stdin`: it blocks reading
//! a pipe that only a signal writes to, and process exit ends it.

use crossbeam::channel::{Sender, TrySendError};
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;

/// The pipe's write end, for the handler; -1 until installed.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_hangup(_signal: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; errno is saved and restored so
    // the interrupted code never sees it change. A full pipe (EAGAIN: the
    // write end is non-blocking) already holds a reload request.
    unsafe {
        let errno = *errno_location();
        libc::write(fd, [1u8].as_ptr().cast(), 1);
        *errno_location() = errno;
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno.
    unsafe { libc::__errno_location() }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno (macOS, the BSDs).
    unsafe { libc::__error() }
}

/// Makes SIGHUP send `()` on `tx`, from now on. A reload already waiting
/// on a full channel covers the signals that come meanwhile.
pub fn install(tx: Sender<()>) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_end, write_end] = fds;
    for fd in fds {
        // SAFETY: fcntl on descriptors this function just created.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    // SAFETY: as above; a non-blocking write end never blocks the handler.
    unsafe {
        let flags = libc::fcntl(write_end, libc::F_GETFL);
        libc::fcntl(write_end, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    PIPE_WRITE.store(write_end, Ordering::Relaxed);
    thread::Builder::new()
        .name("hb-sighup".into())
        .spawn(move || {
            let mut byte = 0u8;
            loop {
                // SAFETY: reads one byte into `byte`, which outlives the call.
                let n = unsafe { libc::read(read_end, (&raw mut byte).cast(), 1) };
                if n == 1 {
                    if let Err(TrySendError::Disconnected(())) = tx.try_send(()) {
                        return;
                    }
                } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted
                {
                    return;
                }
            }
        })?;
    // SAFETY: installs a handler that only calls async-signal-safe
    // functions; SA_RESTART keeps other threads' blocking calls going.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_hangup as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGHUP, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
