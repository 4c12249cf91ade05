//! `hb-server`: parses flags, installs the signal handler, binds, and runs
//! the server. Exit codes: [`EXIT_STATUS`], which the man page lists too.

mod common;

use clap::Parser;
use common::generate::{ExitStatus, GenerateArgs};
use common::{EXIT_SIGNALLED, EXIT_USAGE, LogArgs, parse_args, signal_channel};
use ipnet::IpNet;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;
use tcp_heartbeat::config::{self, KeepaliveArgs};
use tcp_heartbeat::server::address::{Addressing, TrustedProxies};
use tcp_heartbeat::server::compat::Compat;
use tcp_heartbeat::server::{self, Server, ServerConfig};

/// TCP heartbeat echo server: echoes lines uppercased, answers `HeartBeat`
/// with `OK`, and closes connections that stay idle too long.
#[derive(Debug, Parser)]
#[command(name = "hb-server", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port)
    #[arg(
        long,
        env = "HB_LISTEN",
        default_value = "127.0.0.1:5005",
        value_name = "ADDR"
    )]
    listen: String,

    /// Close connections idle this long; 0 turns the app-level reaper off
    #[arg(long, env = "HB_IDLE_TIMEOUT", default_value = "60s", value_name = "DUR",
          allow_negative_numbers = true, value_parser = config::parse_duration)]
    idle_timeout: Duration,

    /// Refuse connections beyond this many with `ERR server full`
    #[arg(long, env = "HB_MAX_CONNECTIONS", default_value_t = 10_000, value_name = "N",
          allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,

    /// On Ctrl-C / SIGTERM, close the connections spread over this long
    /// (at most 1h); 0 closes them at once
    #[arg(long, env = "HB_DRAIN", default_value = "0", value_name = "DUR",
          allow_negative_numbers = true, value_parser = parse_drain)]
    drain: Duration,

    /// Every connection begins with a PROXY protocol header (v1 or v2), as a
    /// load balancer's send-proxy sends it: for a port only load balancers
    /// can reach
    #[arg(long, env = "HB_PROXY_PROTOCOL")]
    proxy_protocol: bool,

    /// Connections from these networks (CIDRs or addresses, comma-separated)
    /// begin with a PROXY header, and only theirs is believed; others are
    /// direct clients
    #[arg(long, env = "HB_PROXY_PROTOCOL_FROM", value_name = "CIDR[,CIDR...]",
          value_parser = parse_networks)]
    proxy_protocol_from: Option<Networks>,

    /// Refuse a client address's connections beyond this many with `ERR too
    /// many connections from your address`; 0 is no limit
    #[arg(long, env = "HB_MAX_CONNECTIONS_PER_IP", default_value_t = 0, value_name = "N",
          allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    max_connections_per_ip: u32,

    /// Count IPv6 clients by this prefix length for
    /// --max-connections-per-ip (48 to 128; 128 counts each address)
    #[arg(long, env = "HB_MAX_CONNECTIONS_PER_IP_V6_PREFIX", value_name = "N",
          default_value_t = server::address::DEFAULT_V6_PREFIX, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u8).range(48..=128))]
    max_connections_per_ip_v6_prefix: u8,

    /// Also accept another program's heartbeat framing: `seed`, the
    /// article's C++ client (an unterminated `HeartBeat` in one read,
    /// answered `OK` with no line end; docs/protocol.md)
    #[arg(long, env = "HB_COMPAT", value_enum, default_value_t = Compat::None, value_name = "MODE")]
    compat: Compat,

    /// Serve Prometheus metrics at http://ADDR/metrics (port 0 picks a free
    /// port) [default: off]
    #[arg(long, env = "HB_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,

    #[command(flatten)]
    keepalive: KeepaliveArgs,

    #[command(flatten)]
    log: LogArgs,

    #[command(flatten)]
    generate: GenerateArgs,
}

const EXIT_RUNTIME: u8 = 1;

/// Every exit code and when: the man page's EXIT STATUS (README's table says
/// the same).
const EXIT_STATUS: &[ExitStatus] = &[
    (
        0,
        "Shut down by Ctrl-C or SIGTERM (after the drain, with --drain).",
    ),
    (
        EXIT_RUNTIME,
        "Runtime error: the server could not start its threads or install the signal handler.",
    ),
    (
        EXIT_USAGE,
        "Bad flag or value, or the address (or the --metrics-listen address) cannot be \
         bound: in use, not local, unresolvable.",
    ),
    (
        EXIT_SIGNALLED,
        "A second Ctrl-C or SIGTERM during shutdown or a drain.",
    ),
];

fn main() -> ExitCode {
    let args = match parse_args::<Args>("hb-server") {
        Ok(args) => args,
        Err(exit) => return exit,
    };
    if let Some(exit) = args.generate.run::<Args>(EXIT_STATUS) {
        return exit;
    }
    args.log.init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("hb-server: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &Args) -> Result<(), (u8, String)> {
    let config = ServerConfig {
        idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
        max_connections: args.max_connections as usize,
        socket_options: args.keepalive.socket_options(),
        proxy_protocol: args.proxy_protocol,
        max_connections_per_ip: args.max_connections_per_ip as usize,
        compat: args.compat,
    };
    let addressing = Addressing {
        proxy_protocol_from: args
            .proxy_protocol_from
            .clone()
            .map(|n| n.0)
            .unwrap_or_default(),
        v6_prefix: args.max_connections_per_ip_v6_prefix,
    };
    let listener = listen(&args.listen)
        .map_err(|e| (EXIT_USAGE, format!("cannot listen on {}: {e}", args.listen)))?;
    let metrics_listener = match &args.metrics_listen {
        Some(spec) => Some(listen(spec).map_err(|e| {
            (
                EXIT_USAGE,
                format!("cannot listen for metrics on {spec}: {e}"),
            )
        })?),
        None => None,
    };
    let shutdown = signal_channel().map_err(|e| {
        (
            EXIT_RUNTIME,
            format!("cannot install the signal handler: {e}"),
        )
    })?;
    raise_fd_limit(config.max_connections);
    log_settings(&config, &addressing, args.drain);
    let mut server = Server::start_with(listener, config, addressing)
        .map_err(|e| (EXIT_RUNTIME, format!("cannot start: {e}")))?;
    let metrics_addr = match metrics_listener {
        Some(listener) => Some(
            server
                .serve_metrics(listener)
                .map_err(|e| (EXIT_RUNTIME, format!("cannot serve metrics: {e}")))?,
        ),
        None => None,
    };
    announce(server.local_addr(), metrics_addr);
    // A signal, or the handler's sender gone, both mean stop.
    let _ = shutdown.recv();
    let summary = server.drain(args.drain);
    log::info!(
        "shut down: {} connections served, {} reaped for idleness, {} heartbeats answered",
        summary.served,
        summary.reaped,
        summary.heartbeats
    );
    Ok(())
}

/// Binds the first address `spec` resolves to (`127.0.0.1:5005`,
/// `[::1]:5005`, `localhost:5005`).
fn listen(spec: &str) -> io::Result<TcpListener> {
    let mut addrs = spec
        .to_socket_addrs()
        .map_err(|e| config::explain_address_error(spec, e))?;
    let addr = addrs.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "address resolves to nothing")
    })?;
    server::bind(addr)
}

/// The stdout lines scripts read to learn the bound addresses, printed once
/// the server accepts: `listening on ADDR`, then with `--metrics-listen`
/// `metrics on http://ADDR/metrics`.
fn announce(local: SocketAddr, metrics: Option<SocketAddr>) {
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {local}");
    if let Some(addr) = metrics {
        let _ = writeln!(stdout, "metrics on http://{addr}/metrics");
    }
    let _ = stdout.flush();
}

/// Each connection holds one descriptor, and a common default soft limit of
/// 1,024 would refuse connections long before `--max-connections` (10,000 by
/// default): accept would fail with EMFILE. So the soft limit goes up to the
/// hard limit, and a limit still too low is said at start, not found later.
fn raise_fd_limit(max_connections: usize) {
    /// Descriptors besides connections: std streams, the listener, the
    /// self-connection that wakes the acceptor at shutdown, log files.
    const SPARE: u64 = 16;
    match tcp_heartbeat::fdlimit::raise_nofile_limit() {
        Ok(Some(limit)) if limit < max_connections as u64 + SPARE => log::warn!(
            "open-file limit {limit} is below --max-connections {max_connections}: \
             raise the hard limit (ulimit -Hn) to serve them all"
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
}

fn log_settings(config: &ServerConfig, addressing: &Addressing, drain: Duration) {
    let reaper = match config.idle_timeout {
        Some(t) => format!("idle timeout {}", humantime::format_duration(t)),
        None => "idle timeout off".to_string(),
    };
    log::info!(
        "{reaper}; max {} connections; {}",
        config.max_connections,
        config::describe(&config.socket_options)
    );
    if config.compat == Compat::Seed {
        log::info!(
            "compat seed: a read of exactly `HeartBeat` at a line start is a heartbeat, answered `OK` with no line end"
        );
    }
    let trusted = TrustedProxies::new(
        config.proxy_protocol,
        addressing.proxy_protocol_from.clone(),
    );
    if trusted.is_on() || config.max_connections_per_ip > 0 || !drain.is_zero() {
        log::info!(
            "{}",
            describe_deployment(config, addressing, &trusted, drain)
        );
    }
}

/// The start-up line for the load-balancer settings, when any is on.
fn describe_deployment(
    config: &ServerConfig,
    addressing: &Addressing,
    trusted: &TrustedProxies,
    drain: Duration,
) -> String {
    let per_ip = match config.max_connections_per_ip {
        0 => "no per-address limit".to_string(),
        n => format!(
            "max {n} connections per address (IPv6 per /{})",
            addressing.v6_prefix
        ),
    };
    let drain = match drain {
        d if d.is_zero() => "no drain".to_string(),
        d => format!("drain over {}", humantime::format_duration(d)),
    };
    format!("{trusted}; {per_ip}; {drain}")
}

/// `--proxy-protocol-from`'s networks (a type of their own, since clap
/// takes a `Vec` value as a repeated flag).
#[derive(Debug, Clone)]
struct Networks(Vec<IpNet>);

fn parse_networks(text: &str) -> Result<Networks, String> {
    server::address::parse_networks(text).map(Networks)
}

/// A drain's length: a duration up to [`server::drain::MAX_DRAIN`].
fn parse_drain(text: &str) -> Result<Duration, String> {
    let duration = config::parse_duration(text)?;
    if duration > server::drain::MAX_DRAIN {
        return Err(format!(
            "{text} is too long (at most {})",
            humantime::format_duration(server::drain::MAX_DRAIN)
        ));
    }
    Ok(duration)
}
