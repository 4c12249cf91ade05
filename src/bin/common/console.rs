//! Windows only: the console closing and system shutdown stop the program
//! as Ctrl-C does, where ctrlc alone would let Windows kill it mid-shutdown.
//!
//! On Windows there are no signals; the console sends events to the
//! handlers registered with `SetConsoleCtrlHandler`, the last registered
//! first. ctrlc's handler takes every event, wakes its thread and returns
//! TRUE at once. That is right for Ctrl-C and Ctrl-Break, but after
//! CTRL_CLOSE_EVENT and CTRL_SHUTDOWN_EVENT Windows ends the process as soon
//! as the handler returns: the shutdown would be cut short. So this handler,
//! registered after ctrlc's, starts the same shutdown for those two and then
//! holds on until the program exits (Windows waits up to about 5 s for a
//! closing console, then ends the process anyway).
//!
//! CTRL_LOGOFF_EVENT is taken and ignored: the SetConsoleCtrlHandler
//! documentation says only services receive it (interactive programs end
//! with the session), and a service receives it whenever any user logs off,
//! which must not stop a server. Ctrl-C and Ctrl-Break go on to ctrlc.

use std::io;
use std::sync::OnceLock;
use windows_sys::Win32::System::Console::{
    CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT, SetConsoleCtrlHandler,
};
use windows_sys::core::BOOL;

/// What a closing console does: the binary's signal action. Set once, by
/// [`on_close`], read by the handler on the console's thread.
static ON_CLOSE: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// Runs `action` when the console closes or the system shuts down, and
/// keeps the process alive until it exits by itself. Call after ctrlc's
/// handler is installed, so this one is asked first.
pub fn on_close(action: impl Fn() + Send + Sync + 'static) -> io::Result<()> {
    if ON_CLOSE.set(Box::new(action)).is_err() {
        return Err(io::Error::other("console handler already installed"));
    }
    // SAFETY: `handler` is a plain function that lives as long as the
    // process; TRUE adds it to the list.
    if unsafe { SetConsoleCtrlHandler(Some(handler), 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

unsafe extern "system" fn handler(event: u32) -> BOOL {
    match event {
        CTRL_CLOSE_EVENT | CTRL_SHUTDOWN_EVENT => {
            if let Some(action) = ON_CLOSE.get() {
                action();
            }
            // Returning would let Windows end the process now. The program's
            // exit ends this thread with every other one.
            loop {
                std::thread::park();
            }
        }
        CTRL_LOGOFF_EVENT => 1,
        // FALSE: not handled here; Ctrl-C and Ctrl-Break go on to ctrlc.
        _ => 0,
    }
}
