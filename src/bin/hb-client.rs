//! `hb-client`: parses flags, installs the signal handler, connects, and runs
//! the client. Stdin lines go to the server; the server's replies go to
//! stdout byte for byte, except the reply to a heartbeat, which is never
//! printed; diagnostics go to stderr only.
//!
//! Heartbeats: after `--heartbeat-idle` with nothing from the server, the
//! client sends `HeartBeat`, then again every `--heartbeat-interval` while
//! unanswered. Any byte from the server starts over; what the user sends does
//! not. It gives up at
//! `last byte received + heartbeat-idle + heartbeat-retries x heartbeat-interval`
//! (defaults: 25s + 5 x 5s = 50s).
//!
//! With `--reconnect`, a lost connection is followed by another, after an
//! exponential backoff with full jitter (`client::reconnect`,
//! `client::backoff`).
//!
//! `--find-idle-timeout` measures the longest silence the path holds on
//! probe connections (`client::probe`, `client::idle_search`), prints
//! `idle timeout of the path: ...` and exits 0 (1 when it cannot connect or
//! its probes keep failing, 130 on a signal). `--adaptive-heartbeat` runs
//! the same search beside the session and keeps its heartbeat idle under
//! what it finds (`client::adaptive`).
//!
//! With `--check`, it makes one heartbeat round trip instead
//! (`client::check`) and exits 0 or 1, for health checks.
//!
//! With `--tls` (or any `--tls-*` flag) the connection is TLS, for a
//! session, a check and the idle-timeout probes alike; the handshake
//! finishes before anything is sent (`tls::client`).
//!
//! Exit codes: [`EXIT_STATUS`], which the man page lists too.

mod common;

use clap::Parser;
use common::generate::{ExitStatus, GenerateArgs};
use common::{EXIT_SIGNALLED, EXIT_USAGE, LogArgs, parse_args, signal_channel};
use crossbeam::channel;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tcp_heartbeat::client::adaptive::{AdaptiveSettings, PARALLEL_PROBES};
use tcp_heartbeat::client::backoff::{Backoff, BackoffSettings};
use tcp_heartbeat::client::heartbeat::HeartbeatSettings;
use tcp_heartbeat::client::idle_search::{Bracket, SearchSettings};
use tcp_heartbeat::client::probe::{self, SearchError};
use tcp_heartbeat::client::{self, ClientConfig, ClientError, Outcome};
use tcp_heartbeat::config::{self, KeepaliveArgs};
use tcp_heartbeat::tls::client::{ClientTls, ClientTlsSettings, host_of};

/// TCP heartbeat client: sends stdin lines to the server, prints its replies,
/// and keeps the connection alive with heartbeats.
#[derive(Debug, Parser)]
#[command(name = "hb-client", version)]
struct Args {
    /// Server address
    #[arg(
        long,
        env = "HB_CONNECT",
        default_value = "127.0.0.1:5005",
        value_name = "ADDR"
    )]
    connect: String,

    /// Send a heartbeat after this long with nothing from the server; 0 turns
    /// heartbeats off
    #[arg(long, env = "HB_HEARTBEAT_IDLE", default_value = "25s", value_name = "DUR", allow_negative_numbers = true,
          value_parser = config::parse_duration)]
    heartbeat_idle: Duration,

    /// Time between unanswered heartbeats
    #[arg(long, env = "HB_HEARTBEAT_INTERVAL", default_value = "5s", value_name = "DUR", allow_negative_numbers = true,
          value_parser = parse_interval)]
    heartbeat_interval: Duration,

    /// Unanswered heartbeats before giving up (exit 3)
    #[arg(long, env = "HB_HEARTBEAT_RETRIES", default_value_t = 5, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    heartbeat_retries: u32,

    /// Give up on a connect after this long (per address)
    #[arg(long, env = "HB_CONNECT_TIMEOUT", default_value = "10s", value_name = "DUR", allow_negative_numbers = true,
          value_parser = parse_interval)]
    connect_timeout: Duration,

    /// Connect again after a refused or lost connection, instead of exiting
    #[arg(long, env = "HB_RECONNECT")]
    reconnect: bool,

    /// With --reconnect: the longest wait before the first attempt, doubled
    /// for each attempt after it
    #[arg(long, env = "HB_RECONNECT_MIN", default_value = "500ms", value_name = "DUR", allow_negative_numbers = true,
          value_parser = parse_interval)]
    reconnect_min: Duration,

    /// With --reconnect: the longest wait between attempts
    #[arg(long, env = "HB_RECONNECT_MAX", default_value = "30s", value_name = "DUR", allow_negative_numbers = true,
          value_parser = parse_interval)]
    reconnect_max: Duration,

    /// Measure the longest silence the path to --connect holds (on probe
    /// connections), print it, and exit; the session's flags are ignored
    #[arg(long)]
    find_idle_timeout: bool,

    /// Learn the path's idle timeout on probe connections beside the session
    /// and keep the heartbeat idle at 90 % of the longest silence that held
    #[arg(long, env = "HB_ADAPTIVE_HEARTBEAT")]
    adaptive_heartbeat: bool,

    /// With --adaptive-heartbeat: the shortest heartbeat idle, and the one
    /// after the path changed
    #[arg(long, env = "HB_HEARTBEAT_IDLE_MIN", default_value = "5s", value_name = "DUR", allow_negative_numbers = true,
          value_parser = parse_interval)]
    heartbeat_idle_min: Duration,

    /// The longest silence probed (--find-idle-timeout, --adaptive-heartbeat)
    /// and the longest heartbeat idle learned
    #[arg(long, env = "HB_HEARTBEAT_IDLE_MAX", default_value = "10m", value_name = "DUR", allow_negative_numbers = true,
          value_parser = parse_interval)]
    heartbeat_idle_max: Duration,

    /// With --reconnect: consecutive failed attempts before exiting; 0 never
    /// gives up
    #[arg(long, env = "HB_RECONNECT_ATTEMPTS", default_value_t = 0, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32))]
    reconnect_attempts: u32,

    /// Check the server and exit, for health checks: connect, send
    /// `HeartBeat` and expect `OK`, all within --connect-timeout; exit 0 if
    /// answered, else 1 with one line on stderr; nothing on stdout
    #[arg(long, conflicts_with = "reconnect")]
    check: bool,

    #[command(flatten)]
    tls: TlsArgs,

    #[command(flatten)]
    keepalive: KeepaliveArgs,

    #[command(flatten)]
    log: LogArgs,

    #[command(flatten)]
    generate: GenerateArgs,
}

/// The TLS flags. Any of them but `--tls` itself implies `--tls`.
#[derive(Debug, Clone, clap::Args)]
struct TlsArgs {
    /// Connect with TLS, checking the server's certificate against the
    /// system's root CAs
    #[arg(long, env = "HB_TLS")]
    tls: bool,

    /// Trust the CAs in this PEM file instead of the system's (implies
    /// --tls)
    #[arg(long, env = "HB_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// Check the server's certificate against this name instead of the
    /// host of --connect (implies --tls)
    #[arg(long, env = "HB_TLS_SERVER_NAME", value_name = "NAME")]
    tls_server_name: Option<String>,

    /// Present this client certificate chain (PEM); needs --tls-key
    /// (implies --tls)
    #[arg(long, env = "HB_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "HB_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS configuration these flags ask for, if any; files that cannot
    /// be used are an error message.
    fn client_tls(&self) -> Result<Option<ClientTls>, String> {
        let settings = ClientTlsSettings {
            ca: self.tls_ca.clone(),
            server_name: self.tls_server_name.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        };
        if !self.tls && settings == ClientTlsSettings::default() {
            return Ok(None);
        }
        ClientTls::new(&settings)
            .map(Some)
            .map_err(|e| format!("TLS: {e}"))
    }
}

const EXIT_FAILURE: u8 = 1;
const EXIT_UNRESPONSIVE: u8 = 3;

/// Every exit code and when: the man page's EXIT STATUS (README's table says
/// the same).
const EXIT_STATUS: &[ExitStatus] = &[
    (
        0,
        "Stdin ended and the server closed the connection after sending every reply \
         (or stdout was closed by its reader); with --reconnect, also stdin ending while \
         disconnected, or a loss after stdin ended. With --check: the server answered OK. \
         With --find-idle-timeout: it printed its line.",
    ),
    (
        EXIT_FAILURE,
        "The server closed the connection while stdin was still open; the connection was \
         refused, timed out (--connect-timeout) or lost (including TCP keepalive and user \
         timeout errors), or the address is unusable; the TLS handshake failed (one line \
         says why, nothing is sent); stdin or stdout failed. With --reconnect, only a \
         malformed address, a server certificate or TLS protocol refused, stdin, stdout, \
         or the last of --reconnect-attempts failed attempts when it failed this way. With \
         --check: no OK within --connect-timeout, for any reason. With \
         --find-idle-timeout: no probe could connect, or the probes kept failing.",
    ),
    (
        EXIT_USAGE,
        "Bad flag or value, or TLS files or a --tls-server-name that cannot be used.",
    ),
    (
        EXIT_UNRESPONSIVE,
        "The server is unresponsive: --heartbeat-retries heartbeats went unanswered, or it \
         accepted no data for the whole give-up time (with --reconnect: when the last \
         allowed attempt failed this way).",
    ),
    (EXIT_SIGNALLED, "Ctrl-C or SIGTERM."),
];

fn main() -> ExitCode {
    let args = match parse_args::<Args>("hb-client") {
        Ok(args) => args,
        Err(exit) => return exit,
    };
    if let Some(exit) = args.generate.run::<Args>(EXIT_STATUS) {
        return exit;
    }
    if args.reconnect_max < args.reconnect_min {
        eprintln!("hb-client: --reconnect-max must be at least --reconnect-min (see --help)");
        return ExitCode::from(EXIT_USAGE);
    }
    let tls = match args.tls.client_tls() {
        Ok(tls) => tls,
        Err(message) => {
            eprintln!("hb-client: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = client_config(&args, tls);
    if args.check {
        return check(&args, &config);
    }
    if args.adaptive_heartbeat && args.heartbeat_idle_max < args.heartbeat_idle_min {
        eprintln!(
            "hb-client: --heartbeat-idle-max must be at least --heartbeat-idle-min (see --help)"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if args.adaptive_heartbeat && args.heartbeat_idle.is_zero() {
        eprintln!(
            "hb-client: --adaptive-heartbeat needs heartbeats: --heartbeat-idle must be more \
             than 0 (see --help)"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    args.log.init();
    let signals = match signal_channel(None) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("hb-client: cannot install the signal handler: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if args.find_idle_timeout {
        return find_idle_timeout(&args, &config, &signals);
    }
    match run(&args, &config, signals) {
        Ok(Outcome::Finished) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(EXIT_SIGNALLED),
        // Like `head` closing a pipe: the reader has what it wanted.
        Err(ClientError::Output(e)) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hb-client: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `--check`: no logger and no signal handler, so stdout stays empty and
/// stderr has at most the one line that says why it failed.
fn check(args: &Args, config: &ClientConfig) -> ExitCode {
    match client::check::check(&args.connect, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hb-client: check failed: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::Unresponsive { .. } => EXIT_UNRESPONSIVE,
        _ => EXIT_FAILURE,
    }
}

fn client_config(args: &Args, tls: Option<ClientTls>) -> ClientConfig {
    ClientConfig {
        heartbeat: HeartbeatSettings {
            idle: (!args.heartbeat_idle.is_zero()).then_some(args.heartbeat_idle),
            interval: args.heartbeat_interval,
            retries: args.heartbeat_retries,
        },
        socket_options: args.keepalive.socket_options(),
        connect_timeout: args.connect_timeout,
        adaptive: args.adaptive_heartbeat.then_some(AdaptiveSettings {
            min: args.heartbeat_idle_min,
            max: args.heartbeat_idle_max,
        }),
        tls,
    }
}

/// `--find-idle-timeout`: one stdout line, exit 0; exit 1 when no probe
/// could connect or the probes kept failing; 130 on a signal.
fn find_idle_timeout(
    args: &Args,
    config: &ClientConfig,
    signals: &channel::Receiver<()>,
) -> ExitCode {
    let settings = SearchSettings {
        max: args.heartbeat_idle_max,
        parallel: PARALLEL_PROBES,
    };
    log::info!(
        "measuring the idle timeout of the path to {}, up to {}, with up to {} probe \
         connections at once",
        args.connect,
        humantime::format_duration(settings.max),
        settings.parallel
    );
    match probe::search(&args.connect, config, settings, signals) {
        Ok(found) => {
            log::info!(
                "{} probes in {}",
                found.probes,
                config::display_duration(found.elapsed)
            );
            println!(
                "idle timeout of the path: {}",
                describe_bracket(&found.bracket, settings.max)
            );
            ExitCode::SUCCESS
        }
        Err(SearchError::Stopped) => ExitCode::from(EXIT_SIGNALLED),
        Err(e) => {
            eprintln!("hb-client: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `between 7.4s and 8s`, or `longer than 10m` when no silence failed.
fn describe_bracket(bracket: &Bracket, max: Duration) -> String {
    match bracket.failed {
        Some(failed) => format!(
            "between {} and {}",
            config::display_duration(bracket.held),
            config::display_duration(failed)
        ),
        None => format!("longer than {}", humantime::format_duration(max)),
    }
}

fn run(
    args: &Args,
    config: &ClientConfig,
    signals: channel::Receiver<()>,
) -> Result<Outcome, ClientError> {
    if args.reconnect {
        let settings = BackoffSettings {
            min: args.reconnect_min,
            max: args.reconnect_max,
            attempts: (args.reconnect_attempts > 0).then_some(args.reconnect_attempts),
        };
        log_settings(config, &args.connect);
        log::info!("{}", describe_reconnect(&settings));
        return client::reconnect::run(
            &args.connect,
            config,
            Backoff::new(settings, fastrand::Rng::new()),
            std::io::stdin(),
            std::io::stdout().lock(),
            signals,
        );
    }
    let stream = client::connect(&args.connect, config)?;
    log::info!("connected to {}", args.connect);
    log_settings(config, &args.connect);
    client::run(
        &args.connect,
        stream,
        config,
        std::io::stdin(),
        std::io::stdout().lock(),
        signals,
    )
}

/// A duration that must not be 0: a heartbeat interval (0 would send every
/// retry at once), a connect timeout (0 could never connect), a backoff
/// bound (0 would retry in a tight loop).
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = config::parse_duration(text)?;
    if interval.is_zero() {
        return Err("must be more than 0".to_string());
    }
    Ok(interval)
}

fn describe_reconnect(settings: &BackoffSettings) -> String {
    let attempts = match settings.attempts {
        Some(n) => format!("give up after {n} failed attempts"),
        None => "never give up".to_string(),
    };
    format!(
        "reconnect: wait up to {} before attempt 1, doubling up to {}; {attempts}",
        config::display_duration(settings.min),
        config::display_duration(settings.max)
    )
}

fn log_settings(config: &ClientConfig, addr: &str) {
    let heartbeat = match (config.heartbeat.idle, config.heartbeat.give_up_after()) {
        (Some(idle), Some(give_up)) => format!(
            "heartbeat after {} idle, every {}, give up after {} without a reply",
            humantime::format_duration(idle),
            humantime::format_duration(config.heartbeat.interval),
            humantime::format_duration(give_up)
        ),
        _ => "heartbeats off".to_string(),
    };
    log::info!("{heartbeat}; {}", config::describe(&config.socket_options));
    if let Some(adaptive) = config.adaptive {
        log::info!(
            "adaptive heartbeat: learning the path's idle timeout on up to {PARALLEL_PROBES} \
             probe connections; heartbeat idle within {} and {}",
            humantime::format_duration(adaptive.min),
            humantime::format_duration(adaptive.max)
        );
    }
    if let Some(tls) = &config.tls {
        log::info!("{}", tls.describe(host_of(addr)));
    }
}
