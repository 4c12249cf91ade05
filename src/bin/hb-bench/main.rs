//! `hb-bench`: a load generator for any server that speaks the tcp-heartbeat
//! protocol. Parses flags, raises the open-file limit, runs one mode, prints
//! a human summary (or one JSON line with `--json`). Exit codes: 0 when
//! every reply verified, 1 on a runtime error (such as no connection at
//! all), 2 on a bad flag, 3 when the run finished but found errors
//! (mismatched replies, failed connects, connections closed early).

mod loadgen;

use clap::{Args, Parser, Subcommand};
use loadgen::{Common, churn, echo, idle, restart};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tcp_heartbeat::client::backoff::BackoffSettings;
use tcp_heartbeat::config::parse_duration;
use tcp_heartbeat::fdlimit;

/// Load generator for tcp-heartbeat servers: echo throughput and latency,
/// idle connections and their expiry, connection churn, a server restart.
#[derive(Debug, Parser)]
#[command(name = "hb-bench", version)]
struct Cli {
    /// Server address
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:5005",
        value_name = "ADDR"
    )]
    target: String,

    /// Worker threads of the load generator
    #[arg(long, global = true, default_value_t = 1, value_name = "N")]
    threads: usize,

    /// The server's pid, to report its memory and context switches (Linux)
    #[arg(long, global = true, value_name = "PID")]
    server_pid: Option<u32>,

    /// Print one JSON line instead of the summary
    #[arg(long, global = true)]
    json: bool,

    /// Connect with TLS, trusting the CAs in this PEM file (full handshakes:
    /// no session resumption)
    #[arg(long, global = true, value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// With --tls-ca: the name the server's certificate is checked against
    /// [default: the host of --target]
    #[arg(long, global = true, value_name = "NAME")]
    tls_server_name: Option<String>,

    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Clients send lines and verify every reply
    Echo(EchoArgs),
    /// Hold connections that heartbeat, then (optionally) fall silent
    Idle(IdleArgs),
    /// Connect / heartbeat / close cycles
    Churn(ChurnArgs),
    /// Hold connections, and reconnect them with hb-client's backoff when
    /// the server goes away
    Restart(RestartArgs),
}

#[derive(Debug, Args)]
struct EchoArgs {
    /// Concurrent clients
    #[arg(short, long, default_value_t = 50, value_name = "C")]
    connections: usize,
    /// Bytes per message, LF included
    #[arg(short, long, default_value_t = 64, value_name = "S",
          value_parser = clap::value_parser!(u32).range(2..=1_048_576))]
    size: u32,
    /// How long to send
    #[arg(short, long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    duration: Duration,
    /// Stop each client after this many messages
    #[arg(short, long, value_name = "N")]
    messages: Option<u64>,
    /// Messages per second per client (default: closed loop)
    #[arg(short, long, value_name = "PER_S")]
    rate: Option<f64>,
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// Connections to hold
    #[arg(short, long, default_value_t = 10_000, value_name = "C")]
    connections: usize,
    /// Time between a connection's heartbeats
    #[arg(long, default_value = "25s", value_parser = parse_duration, value_name = "DUR")]
    heartbeat: Duration,
    /// How long to hold them, once all are open
    #[arg(short, long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    duration: Duration,
    /// Fall silent this long after all are open (default: never)
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    silent_after: Option<Duration>,
    /// Spread the connections' silent moments over this long
    #[arg(long, default_value = "0", value_parser = parse_duration, value_name = "DUR")]
    stagger: Duration,
    /// The server's idle timeout, to check closes against
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    timeout: Option<Duration>,
}

#[derive(Debug, Args)]
struct ChurnArgs {
    /// Cycles in flight at once
    #[arg(short, long, default_value_t = 8, value_name = "N")]
    concurrency: usize,
    /// How long to run
    #[arg(short, long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    duration: Duration,
    /// Cycles per second in total (default: as fast as they go)
    #[arg(short, long, value_name = "PER_S")]
    rate: Option<f64>,
}

#[derive(Debug, Args)]
struct RestartArgs {
    /// Connections to hold
    #[arg(short, long, default_value_t = 10_000, value_name = "C")]
    connections: usize,
    /// As hb-client's --reconnect-min
    #[arg(long, default_value = "500ms", value_parser = parse_duration, value_name = "DUR")]
    reconnect_min: Duration,
    /// As hb-client's --reconnect-max
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    reconnect_max: Duration,
    /// Wait each whole cap instead of a random part of it
    #[arg(long)]
    no_jitter: bool,
    /// How long to wait for the server to go away, once all are connected
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DUR")]
    wait: Duration,
    /// How long each connection may take to come back after its loss
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DUR")]
    timeout: Duration,
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_FOUND_ERRORS: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FOUND_ERRORS),
        Err((code, message)) => {
            eprintln!("hb-bench: {message}");
            ExitCode::from(code)
        }
    }
}

/// Runs the chosen mode; returns whether it found no errors.
fn run(cli: &Cli) -> Result<bool, (u8, String)> {
    let target = resolve(&cli.target).map_err(|e| (EXIT_USAGE, e))?;
    if let Err(e) = fdlimit::raise_nofile_limit() {
        eprintln!("hb-bench: cannot raise the open-file limit: {e}");
    }
    let tls = match &cli.tls_ca {
        Some(ca) => {
            let host = tcp_heartbeat::tls::client::host_of(&cli.target);
            let name = cli.tls_server_name.as_deref().unwrap_or(host);
            Some(
                loadgen::connect::Tls::new(ca, name)
                    .map_err(|e| (EXIT_USAGE, format!("TLS: {e}")))?,
            )
        }
        None => None,
    };
    let common = Common {
        target,
        threads: cli.threads,
        server_pid: cli.server_pid,
        tls,
    };
    let failed = |e: std::io::Error| (EXIT_RUNTIME, e.to_string());
    let (ok, json, human) = match &cli.mode {
        Mode::Echo(a) => {
            let config = echo::EchoConfig {
                connections: a.connections,
                size: a.size as usize,
                duration: a.duration,
                messages: a.messages,
                rate: a.rate.filter(|r| *r > 0.0),
            };
            let r = echo::run(&common, &config).map_err(failed)?;
            (r.ok(), r.json(), r.to_string())
        }
        Mode::Idle(a) => {
            let config = idle::IdleConfig {
                connections: a.connections,
                heartbeat: a.heartbeat,
                duration: a.duration,
                silent_after: a.silent_after,
                stagger: a.stagger,
                timeout: a.timeout,
            };
            let r = idle::run(&common, &config).map_err(failed)?;
            (r.ok(), r.json(), r.to_string())
        }
        Mode::Churn(a) => {
            let config = churn::ChurnConfig {
                concurrency: a.concurrency,
                duration: a.duration,
                rate: a.rate.filter(|r| *r > 0.0),
            };
            let r = churn::run(&common, &config).map_err(failed)?;
            (r.ok(), r.json(), r.to_string())
        }
        Mode::Restart(a) => {
            if a.reconnect_min.is_zero() || a.reconnect_max < a.reconnect_min {
                return Err((
                    EXIT_USAGE,
                    "--reconnect-min must be more than 0 and at most --reconnect-max".to_string(),
                ));
            }
            let config = restart::RestartConfig {
                connections: a.connections,
                backoff: BackoffSettings {
                    min: a.reconnect_min,
                    max: a.reconnect_max,
                    attempts: None,
                },
                jitter: !a.no_jitter,
                wait: a.wait,
                timeout: a.timeout,
            };
            let r = restart::run(&common, &config).map_err(failed)?;
            (r.ok(), r.json(), r.to_string())
        }
    };
    if cli.json {
        println!("{json}");
    } else {
        print!("{human}");
    }
    Ok(ok)
}

fn resolve(spec: &str) -> Result<SocketAddr, String> {
    spec.to_socket_addrs()
        .map_err(|e| format!("bad --target {spec}: {e}"))?
        .next()
        .ok_or_else(|| format!("--target {spec} resolves to nothing"))
}
