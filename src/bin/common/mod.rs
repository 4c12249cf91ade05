//! What the binaries share at the edge: the log-level flags and the signal
//! handler. Kept out of the library, which never touches process-global
//! state (the logger, signal dispositions).

use crossbeam::channel;
use std::sync::atomic::{AtomicBool, Ordering};

/// `-v` / `-q`, identical in every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log more (-v: debug, including heartbeats; -vv: trace)
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Log only warnings and errors
    #[arg(short, long)]
    quiet: bool,
}

impl LogArgs {
    /// Logs to stderr at the level the flags ask for; `RUST_LOG`, when set,
    /// overrides them.
    pub fn init(&self) {
        let level = match (self.quiet, self.verbose) {
            (true, _) => log::LevelFilter::Warn,
            (false, 0) => log::LevelFilter::Info,
            (false, 1) => log::LevelFilter::Debug,
            (false, _) => log::LevelFilter::Trace,
        };
        env_logger::Builder::new()
            .filter_level(level)
            .parse_default_env()
            .format_target(false)
            .init();
    }
}

/// Exit code after Ctrl-C / SIGTERM when not shut down cleanly, by the
/// shell's convention (128 + SIGINT).
pub const EXIT_SIGNALLED: u8 = 130;

/// Turns Ctrl-C / SIGTERM into a message on the returned channel; a second
/// one exits at once with [`EXIT_SIGNALLED`]. The handler does nothing
/// else: the program decides what a signal means.
pub fn signal_channel() -> Result<channel::Receiver<()>, ctrlc::Error> {
    let (tx, rx) = channel::bounded(1);
    let signalled = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if signalled.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_SIGNALLED));
        }
        let _ = tx.try_send(());
    })?;
    Ok(rx)
}
