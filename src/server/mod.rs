//! The server: accept loop, connection limit, one thread per connection, the
//! reaper thread, and shutdown.
//!
//! [`Server::start`] takes an already-bound listener (tests bind port 0) and
//! returns a handle that serves until [`Server::shutdown`]. Threads:
//! `hb-accept` (accept loop), `hb-reaper` (when an idle timeout is set) and one `hb-conn-<id>` per connection;
//! `hb-log` (unless debug logging is on) and `hb-metrics` (after
//! [`Server::serve_metrics`]). Shutdown drops the
//! acceptor's stop channel and wakes its blocking `accept` by connecting to
//! the listener; closes the reading side of every connection so each thread
//! finishes the reply it is writing and ends (on Windows a pending write is
//! cancelled too: see [`crate::wake`]); after a grace period aborts any
//! still blocked in a write; then waits for every thread. A drain
//! ([`Server::drain`]) first closes the connections one by one over a chosen
//! time, then shuts down the same way.
//!
//! Map of the server:
//! - this module: the accept loop, the connection limit and shutdown.
//! - [`connection`]: one client's read/echo loop, in its own thread.
//! - [`timeout_queue`]: connections by deadline in a timing wheel, pure data
//!   that takes `now` as an argument.
//! - [`reaper`]: the registry of live connections and the thread that closes
//!   expired ones.
//! - [`compat`]: `--compat seed`, the article's unterminated heartbeat, read
//!   by read, on top of the line protocol.
//! - [`admission`]: what a connection passes before it is served: the PROXY
//!   header, the per-address limit.
//! - [`outcome`]: the one place a connection's outcome (admitted, refused,
//!   closed) is counted and logged.
//! - [`address`]: addresses as subscribers (mapped IPv4, IPv6 prefixes) and
//!   the networks whose PROXY headers are believed.
//! - [`refusal`]: the lingering close that makes a refusal's line arrive.
//! - [`drain`]: the schedule that spreads a drain's closes evenly.
//! - [`proxy_header`]: the PROXY protocol header a load balancer sends first.
//! - [`per_ip`]: the per-address connection limit.
//! - [`metrics`]: the Prometheus metrics, and how the connections' own
//!   counts are folded into them; [`metrics_http`]: the `hb-metrics` thread
//!   that serves them at `GET /metrics` ([`Server::serve_metrics`]).
//! - [`conn_log`]: the rate limit of per-connection log lines, and the
//!   `hb-log` thread that reports what it left out.

pub mod accept;
pub mod address;
pub mod admission;
pub mod compat;
pub mod conn_log;
pub mod connection;
pub mod drain;
pub mod metrics;
pub mod metrics_http;
pub mod outcome;
pub mod per_ip;
pub mod proxy_header;
pub mod reaper;
pub mod refusal;
pub mod timeout_queue;

use crate::sockopt::{self, SocketOptions};
use address::{Addressing, TrustedProxies};
use conn_log::{ConnLog, Reporter};
use connection::{CloseReason, Connection, RefuseReason};
use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use metrics::{Metrics, Settings};
use outcome::{Outcome, Outcomes};
use per_ip::AddressLimits;
use reaper::{ConnId, Registry};
use refusal::Lingerer;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use timeout_queue::Tracked;

/// Stack size of a connection thread. A connection's loop needs its 4 KiB
/// read buffer and shallow calls; only touched pages count towards RSS, but a
/// small reservation keeps 10,000 threads' address space modest.
const CONN_STACK_SIZE: usize = 64 * 1024;

/// How long shutdown lets connection threads finish the reply they are
/// writing before aborting them, keeping shutdown well under a second.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

/// Sent to a connection refused at the connection limit.
pub const SERVER_FULL: &[u8] = b"ERR server full\n";
/// Sent to a connection whose thread could not be created.
pub const SERVER_BUSY: &[u8] = b"ERR server busy\n";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Close connections idle this long; `None` turns the reaper off.
    pub idle_timeout: Option<Duration>,
    pub max_connections: usize,
    pub socket_options: SocketOptions,
    /// Framings accepted besides lines (`--compat`).
    pub compat: compat::Compat,
    /// Every connection must begin with a PROXY protocol header
    /// (`--proxy-protocol`), unless [`Addressing::proxy_protocol_from`]
    /// names who must.
    pub proxy_protocol: bool,
    /// Connections one client (an IPv4 address, an IPv6 prefix of
    /// [`Addressing::v6_prefix`]) may hold; 0 is no limit.
    pub max_connections_per_ip: usize,
}

/// Counts over the server's lifetime, reported at exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Connections admitted (`hb_connections_accepted_total`).
    pub served: u64,
    /// Connections refused, for any reason.
    pub refused: u64,
    /// Admitted connections closed, for any reason: `served` once all are.
    pub closed: u64,
    /// Closed by the reaper (`idle_timeout`).
    pub reaped: u64,
    pub heartbeats: u64,
}

/// A moment's view of the server, for tests and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Connections whose thread is running.
    pub open: usize,
    /// Connections in the timeout queue.
    pub tracked: usize,
    pub summary: Summary,
}

/// State shared by the acceptor, the reaper and every connection thread.
struct Shared {
    config: ServerConfig,
    /// From `config.proxy_protocol` and the [`Addressing`], built once.
    trusted: TrustedProxies,
    registry: Registry<Arc<Connection>>,
    per_ip: AddressLimits,
    /// Connection threads running (admitted or awaiting admission): the
    /// count `--max-connections` limits. Incremented only by the acceptor
    /// (so check-then-admit is race free), decremented by each connection
    /// thread as it ends.
    open: AtomicUsize,
    /// Every count of the server (also for the exit summary) and the
    /// connection log, fed only by [`Outcomes::record`].
    outcomes: Outcomes,
}

/// A running server. Dropping it shuts it down too.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropped to tell the acceptor to stop.
    stop_accepting: Option<Sender<()>>,
    acceptor: Option<JoinHandle<()>>,
    reaper: Option<JoinHandle<()>>,
    /// Writes the log's count of left-out per-connection lines.
    log_reporter: Option<Reporter>,
    /// The `/metrics` endpoint's thread, its stop channel and address.
    metrics_endpoint: Option<MetricsEndpoint>,
    /// Disconnects when every connection thread has ended: each holds a
    /// clone of the sender, which only the acceptor hands out.
    threads_done: Receiver<()>,
}

/// Backlog of the listening socket. std's 128 drops SYNs when thousands of
/// clients connect at once (each then waits a second to retry); the kernel
/// caps this at net.core.somaxconn.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listener for [`Server::start`], with a backlog sized for bursts
/// of connections.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Like std: a restarted server can bind while old connections linger
    // in TIME_WAIT. Windows' SO_REUSEADDR means something else (port theft).
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

impl Server {
    /// [`start_with`](Self::start_with) the default [`Addressing`]: PROXY
    /// headers as `config.proxy_protocol` says, IPv6 clients per /64.
    pub fn start(listener: TcpListener, config: ServerConfig) -> io::Result<Server> {
        Self::start_with(listener, config, Addressing::default())
    }

    /// Serves `listener` until shut down, telling clients apart as
    /// `addressing` says.
    pub fn start_with(
        listener: TcpListener,
        config: ServerConfig,
        addressing: Addressing,
    ) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        let (conn_log, log_reporter) = ConnLog::start()?;
        let metrics = Metrics::new(Settings {
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
        });
        let shared = Arc::new(Shared {
            registry: Registry::new(config.idle_timeout),
            outcomes: Outcomes::new(metrics, conn_log),
            per_ip: AddressLimits::new(config.max_connections_per_ip, addressing.v6_prefix),
            trusted: TrustedProxies::new(config.proxy_protocol, addressing.proxy_protocol_from),
            config,
            open: AtomicUsize::new(0),
        });
        let reaper = match shared.config.idle_timeout {
            Some(_) => Some(spawn_reaper(shared.clone())?),
            None => None,
        };
        let (stop_tx, stop_rx) = channel::bounded::<()>(0);
        let (done_tx, done_rx) = channel::bounded::<()>(0);
        let acceptor_shared = shared.clone();
        // Started here rather than by the acceptor, so that the server's
        // threads are all running once `start` returns; the acceptor owns
        // it and joins it as it ends.
        let lingerer = Lingerer::start()?;
        let acceptor = thread::Builder::new()
            .name("hb-accept".into())
            .spawn(move || accept_loop(&listener, &acceptor_shared, &lingerer, &stop_rx, &done_tx));
        let mut server = Server {
            local_addr,
            shared,
            stop_accepting: Some(stop_tx),
            acceptor: None,
            reaper,
            log_reporter,
            metrics_endpoint: None,
            threads_done: done_rx,
        };
        server.acceptor = Some(acceptor?);
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the metrics at `GET /metrics` on `listener`, from a thread of
    /// its own (`hb-metrics`), until shutdown. Returns the bound address.
    pub fn serve_metrics(&mut self, listener: TcpListener) -> io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = channel::bounded::<()>(0);
        let shared = self.shared.clone();
        let thread = thread::Builder::new()
            .name("hb-metrics".into())
            .spawn(move || {
                let render: metrics_http::Render = Arc::new(move || shared.scrape());
                metrics_http::serve(&listener, &stop_rx, &render)
            })?;
        self.metrics_endpoint = Some(MetricsEndpoint {
            addr,
            stop: stop_tx,
            thread,
        });
        Ok(addr)
    }

    /// The metrics page, as a scrape of `/metrics` would see it now.
    pub fn metrics_text(&self) -> String {
        String::from_utf8_lossy(&self.shared.scrape()).into_owned()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            open: self.shared.open.load(Ordering::Relaxed),
            tracked: self.shared.registry.len(),
            summary: self.shared.summary(),
        }
    }

    /// How long the registry's lock (shared by the acceptor, every
    /// connection's start and end, and the reaper) has been held in total
    /// since the server started: what a burst of connects or closes costs
    /// everyone else waiting for it.
    pub fn registry_lock_held(&self) -> Duration {
        self.shared.registry.lock_held()
    }

    /// Stops accepting, closes every connection, joins every thread.
    pub fn shutdown(mut self) -> Summary {
        self.stop();
        self.shared.summary()
    }

    /// Closes the listener at once (new connections are refused), then
    /// closes the open connections spread evenly over `duration`, each after
    /// the reply it is writing, then shuts down as [`shutdown`](Self::shutdown)
    /// does. A zero `duration` is [`shutdown`](Self::shutdown).
    pub fn drain(mut self, duration: Duration) -> Summary {
        self.close_listener();
        if !duration.is_zero() {
            // The registry's order is arbitrary: the longest idle go first.
            let mut connections = Vec::new();
            self.shared
                .registry
                .for_each(|c| connections.push((c.last_activity(), Arc::downgrade(c))));
            connections.sort_by_key(|(last, _)| *last);
            let connections = connections.into_iter().map(|(_, c)| c).collect();
            drain::run(connections, duration, &self.threads_done, &self.shared.open);
        }
        self.shutdown()
    }

    /// Stops the acceptor, which drops the listening socket. Idempotent.
    fn close_listener(&mut self) {
        if let Some(stop_tx) = self.stop_accepting.take() {
            drop(stop_tx);
            wake_acceptor(self.local_addr);
            join("hb-accept", self.acceptor.take());
        }
    }

    /// Idempotent: a second call finds no connection and no thread left.
    fn stop(&mut self) {
        self.close_listener();
        if let Some(endpoint) = self.metrics_endpoint.take() {
            drop(endpoint.stop);
            wake_acceptor(endpoint.addr);
            join("hb-metrics", Some(endpoint.thread));
        }
        self.close_connections();
        self.shared.registry.stop();
        join("hb-reaper", self.reaper.take());
        if let Some(reporter) = self.log_reporter.take() {
            reporter.stop();
        }
        self.shared.outcomes.log().flush();
    }

    fn close_connections(&self) {
        let registry = &self.shared.registry;
        registry.for_each(|c| c.close(CloseReason::Shutdown, Shutdown::Read));
        let grace_end = Instant::now() + SHUTDOWN_GRACE;
        if let Err(RecvTimeoutError::Timeout) = self.threads_done.recv_deadline(grace_end) {
            log::warn!("aborting connections still writing after {SHUTDOWN_GRACE:?}");
            registry.for_each(|c| c.close(CloseReason::Shutdown, Shutdown::Both));
            // Nothing is ever sent: this returns when the last sender is gone.
            let _ = self.threads_done.recv();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `/metrics` endpoint of a running server.
struct MetricsEndpoint {
    addr: SocketAddr,
    /// Dropped to tell the endpoint's thread to stop.
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Shared {
    fn summary(&self) -> Summary {
        self.fold_live_traffic();
        let metrics = self.outcomes.metrics();
        Summary {
            served: metrics.accepted_total(),
            refused: RefuseReason::ALL
                .map(|r| metrics.refused_total(r))
                .iter()
                .sum(),
            closed: CloseReason::ALL
                .map(|r| metrics.closed_total(r))
                .iter()
                .sum(),
            reaped: metrics.closed_total(CloseReason::IdleTimeout),
            heartbeats: metrics.heartbeats_total(),
        }
    }

    /// Adds the open connections' own counts to the totals.
    fn fold_live_traffic(&self) {
        let metrics = self.outcomes.metrics();
        self.registry.for_each(|conn| metrics.fold(conn));
    }

    /// The metrics page, with every connection's traffic so far.
    fn scrape(&self) -> Vec<u8> {
        self.fold_live_traffic();
        self.outcomes.metrics().render()
    }
}

fn spawn_reaper(shared: Arc<Shared>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("hb-reaper".into())
        .spawn(move || {
            let timeout = shared.config.idle_timeout.unwrap_or_default();
            shared.registry.run_reaper(Instant::now, |conn| {
                let deadline = conn.last_activity() + timeout;
                // Observed when the close is recorded (super::outcome), so
                // the histogram counts exactly the idle_timeout closes.
                conn.reap(Instant::now().saturating_duration_since(deadline));
            })
        })
}

/// Joins a thread, logging (never propagating) a panic.
fn join(name: &str, handle: Option<JoinHandle<()>>) {
    if let Some(Err(_)) = handle.map(JoinHandle::join) {
        log::error!("thread {name} panicked");
    }
}

/// Wakes a blocking `accept` by connecting to the listener. An unspecified
/// bind address (0.0.0.0, ::) is reached through loopback.
fn wake_acceptor(addr: SocketAddr) {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    if let Err(e) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
        log::warn!("could not wake the accept loop at {target}: {e}");
    }
}

fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    lingerer: &Lingerer,
    stop: &Receiver<()>,
    done: &Sender<()>,
) {
    let mut next_id: ConnId = 1;
    accept::until_stopped(listener, stop, "connection", |stream, peer| {
        admit(shared, lingerer, stream, peer, next_id, done);
        next_id += 1;
    });
}

/// Starts a thread for a new connection, or refuses it with a reason.
fn admit(
    shared: &Arc<Shared>,
    lingerer: &Lingerer,
    stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    done: &Sender<()>,
) {
    let now = Instant::now();
    let conn = Connection::new(id, peer, stream, now);
    if shared.open.load(Ordering::Relaxed) >= shared.config.max_connections {
        let (reason, detail) = (RefuseReason::Full, None);
        shared
            .outcomes
            .record(&conn, Outcome::Refused { reason, detail });
        lingerer.refuse(conn.into_stream(), SERVER_FULL);
        return;
    }
    // What the OS refuses is skipped and warned about once per process.
    sockopt::set_nodelay(conn.stream());
    sockopt::apply(conn.stream(), &shared.config.socket_options);
    let conn = Arc::new(conn);
    shared.open.fetch_add(1, Ordering::Relaxed);
    shared.registry.insert(id, conn.clone(), now);
    let thread_shared = shared.clone();
    let thread_conn = conn.clone();
    let done = done.clone();
    let spawned = thread::Builder::new()
        .name(format!("hb-conn-{id}"))
        .stack_size(CONN_STACK_SIZE)
        .spawn(move || connection_thread(&thread_shared, &thread_conn, done));
    match spawned {
        Ok(_detached) => {
            // Joined through `threads_done` at shutdown instead of by handle:
            // a handle per connection would have to be collected as each ends.
        }
        Err(e) => {
            shared.registry.remove(id);
            shared.open.fetch_sub(1, Ordering::Relaxed);
            let (reason, detail) = (RefuseReason::Busy, Some(&e as &dyn std::fmt::Display));
            shared
                .outcomes
                .record(&conn, Outcome::Refused { reason, detail });
            // The failed spawn dropped the thread's clone: this is the last.
            if let Ok(conn) = Arc::try_unwrap(conn) {
                lingerer.refuse(conn.into_stream(), SERVER_BUSY);
            }
        }
    }
}

fn connection_thread(shared: &Shared, conn: &Connection, _done: Sender<()>) {
    let _slot = OpenSlot {
        shared,
        id: conn.id,
    };
    let admitted = match admission::admit(conn, &shared.trusted, &shared.per_ip) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let detail = refusal.detail.as_ref().map(|d| d as &dyn std::fmt::Display);
            let reason = refusal.reason;
            shared
                .outcomes
                .record(conn, Outcome::Refused { reason, detail });
            conn.refuse(&refusal.reply);
            return;
        }
    };
    // Recorded before the first reply, so a scrape after it counts the
    // connection.
    shared.outcomes.record(conn, Outcome::Admitted);
    let served = conn.serve(shared.config.compat, &admitted.early);
    // The address's slot goes back before the close is logged, so that
    // whoever sees the line may connect again from that address.
    drop(admitted.address);
    let reason = conn.close_reason(&served);
    let error = served.as_ref().err();
    shared
        .outcomes
        .record(conn, Outcome::Closed { reason, error });
}

/// A connection's place in the registry and the open count, given back when
/// its thread ends, even by a panic.
struct OpenSlot<'a> {
    shared: &'a Shared,
    id: ConnId,
}

impl Drop for OpenSlot<'_> {
    fn drop(&mut self) {
        self.shared.registry.remove(self.id);
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}
