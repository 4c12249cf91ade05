//! What the binaries share at the edge: argument errors, the log-level flags,
//! `--generate` (man page and completions, in `generate.rs`) and the signal
//! handler. Kept out of the library, which never touches process-global
//! state (the logger, signal dispositions).

use clap::error::{ContextKind, ContextValue};
use clap::{CommandFactory, Parser};
use crossbeam::channel;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(windows)]
mod console;
pub mod generate;

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
///
/// On Windows the console's events stand in for signals: Ctrl-C and
/// Ctrl-Break (through ctrlc), and the console closing and system shutdown
/// (through `console.rs`) all send the same message.
pub fn signal_channel() -> Result<channel::Receiver<()>, ctrlc::Error> {
    let (tx, rx) = channel::bounded(1);
    let signalled = Arc::new(AtomicBool::new(false));
    let on_signal = move || {
        if signalled.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_SIGNALLED));
        }
        let _ = tx.try_send(());
    };
    #[cfg(windows)]
    let for_console = on_signal.clone();
    ctrlc::set_handler(on_signal)?;
    // After ctrlc's, so that the console asks this handler first.
    #[cfg(windows)]
    console::on_close(for_console).map_err(ctrlc::Error::System)?;
    Ok(rx)
}

/// Exit code of a bad flag or value, as clap's own.
pub const EXIT_USAGE: u8 = 2;

/// Parses the command line. `--help` and `--version` print as clap prints
/// them and exit 0; every other parse error becomes one line on stderr and
/// exit 2. Clap's own rendering adds a blank line, a usage line and a hint,
/// which scripts and log collectors split into unrelated lines; its first
/// line says it all. A bad value that came from an environment variable is
/// reported under the variable's name, since that is where to fix it.
pub fn parse_args<T: Parser>(program: &str) -> Result<T, ExitCode> {
    T::try_parse().map_err(|e| {
        if !e.use_stderr() {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let mut message = first.strip_prefix("error: ").unwrap_or(first).to_string();
        if let Some((flag, variable)) = value_from_environment::<T>(&e) {
            message = message.replace(&format!("'{flag}'"), &format!("{variable} (environment)"));
        }
        eprintln!("{program}: {message} (see --help)");
        ExitCode::from(EXIT_USAGE)
    })
}

/// For an error about a flag's value, when that value came from the flag's
/// environment variable (the flag is not on the command line and the
/// variable is set): the flag as clap names it (`--idle-timeout <DUR>`) and
/// the variable.
fn value_from_environment<T: CommandFactory>(error: &clap::Error) -> Option<(String, String)> {
    let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = flag.strip_prefix("--")?.split(' ').next()?;
    let command = T::command();
    let variable = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))?
        .get_env()?
        .to_str()?
        .to_string();
    let on_command_line = std::env::args_os().skip(1).any(|arg| {
        arg.to_str()
            .is_some_and(|arg| arg == format!("--{long}") || arg.starts_with(&format!("--{long}=")))
    });
    let set = std::env::var_os(&variable).is_some();
    (!on_command_line && set).then(|| (flag.clone(), variable))
}
