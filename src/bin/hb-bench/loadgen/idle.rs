//! Idle mode: hold C connections that send `HeartBeat` every H, and record
//! when the server closes them.
//!
//! With `silent_after`, each connection sends one last heartbeat at its own
//! moment (spread evenly over `stagger` after `silent_after`; all at once
//! with no stagger) and then stays silent, so a server with an idle timeout
//! T should close it T after that heartbeat: the report gives how long each
//! closed connection had been silent, and, given T, how many were closed
//! early and how late the others were. The silence is timed from the send,
//! which is before the server read it, so "early" is never a false alarm;
//! "late" includes one loopback trip and this process's wake-up.

use super::connect::Stream;
use super::connect::{self, Connector};
use super::latency::{self, Latency};
use super::{Common, procstat, progress, runtime};
use serde_json::{Value, json};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const HEARTBEAT: &[u8] = b"HeartBeat\n";
const REPLY: &[u8] = b"OK\n";
/// Lateness beyond which a close counts as far too late (the bound).
const FAR_LATE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct IdleConfig {
    pub connections: usize,
    /// Time between a connection's heartbeats.
    pub heartbeat: Duration,
    /// How long to hold the connections, counted once all are open.
    pub duration: Duration,
    /// When connections fall silent, counted once all are open.
    pub silent_after: Option<Duration>,
    /// Spread of the silent moments.
    pub stagger: Duration,
    /// The server's idle timeout, to judge closes against.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct IdleReport {
    pub config: IdleConfig,
    pub connected: usize,
    pub failed_connects: usize,
    pub sources: usize,
    /// Open at the end of the run.
    pub held: usize,
    /// Closed by the server (EOF or reset).
    pub closed: usize,
    /// Replies other than `OK`.
    pub bad_replies: u64,
    pub heartbeats: u64,
    pub first_error: Option<String>,
    /// When closes were seen, after all connections were open.
    pub first_close: Option<Duration>,
    pub last_close: Option<Duration>,
    /// When all connections were open, wall-clock ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// How long each closed connection had been silent.
    pub silence: Latency,
    /// Closed before `timeout` of silence.
    pub early: usize,
    /// Closed more than [`FAR_LATE`] after `timeout` of silence.
    pub far_late: usize,
    /// Lateness past `timeout`, of the ones not early.
    pub lateness: Option<Latency>,
    /// Server memory: before connecting, and with everything open.
    pub server_rss_kib: Option<(u64, u64)>,
    /// The server's other numbers at the end, per heartbeat.
    pub server: Option<Value>,
}

impl IdleReport {
    /// Server memory per held connection above its idle baseline, KiB.
    pub fn rss_per_connection_kib(&self) -> Option<f64> {
        let (idle, loaded) = self.server_rss_kib?;
        (self.held > 0).then(|| loaded.saturating_sub(idle) as f64 / self.held as f64)
    }

    pub fn ok(&self) -> bool {
        self.failed_connects == 0 && self.bad_replies == 0 && self.early == 0
    }

    pub fn json(&self) -> Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        json!({
            "mode": "idle",
            "connections": self.config.connections,
            "heartbeat_s": self.config.heartbeat.as_secs_f64(),
            "duration_s": self.config.duration.as_secs_f64(),
            "silent_after_s": self.config.silent_after.map(|d| d.as_secs_f64()),
            "stagger_s": self.config.stagger.as_secs_f64(),
            "timeout_s": self.config.timeout.map(|d| d.as_secs_f64()),
            "connected": self.connected,
            "failed_connects": self.failed_connects,
            "sources": self.sources,
            "held": self.held,
            "closed": self.closed,
            "bad_replies": self.bad_replies,
            "heartbeats": self.heartbeats,
            "first_error": self.first_error,
            "first_close_ms": ms(self.first_close),
            "last_close_ms": ms(self.last_close),
            "started_unix_ms": self.started_unix_ms,
            "silence_before_close": self.silence.json(),
            "early": self.early,
            "late_over_100ms": self.far_late,
            "lateness": self.lateness.map(|l| l.json()),
            "server_rss_idle_kib": self.server_rss_kib.map(|r| r.0),
            "server_rss_loaded_kib": self.server_rss_kib.map(|r| r.1),
            "server_rss_per_connection_kib": self.rss_per_connection_kib()
                .map(|k| (k * 100.0).round() / 100.0),
            "server": self.server,
        })
    }
}

impl fmt::Display for IdleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "idle: {} connections ({} failed, {} source address(es)), heartbeat every {:?}",
            self.connected, self.failed_connects, self.sources, self.config.heartbeat
        )?;
        writeln!(
            f,
            "  {} held to the end, {} closed by the server; {} heartbeats, {} bad replies",
            self.held, self.closed, self.heartbeats, self.bad_replies
        )?;
        if let (Some(first), Some(last)) = (self.first_close, self.last_close) {
            writeln!(
                f,
                "  closes seen from {first:.3?} to {last:.3?} after all were open"
            )?;
            writeln!(f, "  silence before close: {}", self.silence)?;
        }
        if let Some(lateness) = &self.lateness {
            writeln!(
                f,
                "  vs timeout {:?}: {} early, {} over 100ms late; lateness {lateness}",
                self.config.timeout.unwrap_or_default(),
                self.early,
                self.far_late
            )?;
        }
        if let Some(per) = self.rss_per_connection_kib() {
            let (idle, loaded) = self.server_rss_kib.unwrap_or_default();
            writeln!(
                f,
                "  server RSS {idle} KiB idle, {loaded} KiB loaded: {per:.2} KiB per held connection"
            )?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        Ok(())
    }
}

/// How one connection ended.
enum End {
    /// Still open at the end of the run (kept open until the server is
    /// sampled).
    Held {
        _stream: Stream,
    },
    /// The server closed it; how long it had been silent by then, and when
    /// (after all were open).
    Closed {
        silence: Duration,
        at: Duration,
    },
    Failed(io::Error),
}

struct Outcome {
    end: End,
    heartbeats: u64,
    bad_replies: u64,
}

/// Runs idle mode against `common.target`.
pub fn run(common: &Common, config: &IdleConfig) -> io::Result<IdleReport> {
    runtime(common.threads)?.block_on(run_async(common, config))
}

async fn run_async(common: &Common, config: &IdleConfig) -> io::Result<IdleReport> {
    let rss_idle = common.server_pid.map(procstat::sample).transpose()?;
    let connector = Arc::new(Connector::new(common.target, common.tls.clone()));
    let bar = progress::counter(config.connections as u64, "connect");
    let (streams, failed_connects, connect_error) =
        connect::open_all(&connector, config.connections, &bar).await;
    bar.finish_and_clear();
    let before = common.server_pid.map(procstat::sample).transpose()?;
    let start = Instant::now();
    let started_unix_ms = super::unix_millis(std::time::SystemTime::now());
    let closed = Arc::new(AtomicU64::new(0));
    let count = streams.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, stream) in streams.into_iter().enumerate() {
        let schedule = Schedule::new(config, start, index, count);
        tasks.spawn(hold(stream, schedule, closed.clone()));
    }
    let bar = progress::timed(config.duration, "idle");
    let ticker = tokio::spawn(tick(bar.clone(), start, closed, count));
    let mut outcomes = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined.map_err(io::Error::other)?);
    }
    ticker.abort();
    bar.finish_and_clear();
    let after = common.server_pid.map(procstat::sample).transpose()?;
    Ok(summarize(
        config,
        started_unix_ms,
        outcomes,
        (failed_connects, connect_error, connector.sources_used()),
        rss_idle.zip(after).map(|(i, a)| (i.rss_kib, a.rss_kib)),
        before.zip(after),
    ))
}

fn summarize(
    config: &IdleConfig,
    started_unix_ms: u64,
    outcomes: Vec<Outcome>,
    (failed_connects, connect_error, sources): (usize, Option<io::Error>, usize),
    server_rss_kib: Option<(u64, u64)>,
    server: Option<(procstat::Sample, procstat::Sample)>,
) -> IdleReport {
    let mut silence = latency::histogram();
    let mut lateness = latency::histogram();
    let mut report = IdleReport {
        config: config.clone(),
        connected: outcomes.len(),
        failed_connects,
        sources,
        held: 0,
        closed: 0,
        bad_replies: 0,
        heartbeats: 0,
        first_error: connect_error.map(|e| format!("connect: {e}")),
        first_close: None,
        last_close: None,
        started_unix_ms,
        silence: Latency::of(&silence),
        early: 0,
        far_late: 0,
        lateness: None,
        server_rss_kib,
        server: None,
    };
    for o in &outcomes {
        report.heartbeats += o.heartbeats;
        report.bad_replies += o.bad_replies;
        match &o.end {
            End::Held { .. } => report.held += 1,
            End::Failed(e) => {
                report.first_error.get_or_insert_with(|| e.to_string());
            }
            End::Closed { silence: s, at } => {
                report.closed += 1;
                report.first_close = report.first_close.min(Some(*at)).or(Some(*at));
                report.last_close = report.last_close.max(Some(*at));
                latency::record(&mut silence, *s);
                if let Some(timeout) = config.timeout {
                    match s.checked_sub(timeout) {
                        None => report.early += 1,
                        Some(late) => {
                            report.far_late += usize::from(late > FAR_LATE);
                            latency::record(&mut lateness, late);
                        }
                    }
                }
            }
        }
    }
    report.silence = Latency::of(&silence);
    report.lateness = config.timeout.map(|_| Latency::of(&lateness));
    report.server = server.map(|(b, a)| b.delta_json(&a, report.heartbeats));
    report
}

async fn tick(bar: indicatif::ProgressBar, start: Instant, closed: Arc<AtomicU64>, count: usize) {
    let mut interval = tokio::time::interval(progress::TICK);
    loop {
        interval.tick().await;
        bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
        let closed = closed.load(Ordering::Relaxed);
        bar.set_message(format!("{} open, {closed} closed", count as u64 - closed));
    }
}

/// One connection's heartbeat times.
struct Schedule {
    start: Instant,
    end: Instant,
    every: Duration,
    /// The first heartbeat: connections are spread over one period so their
    /// heartbeats do not arrive in a burst.
    first: Instant,
    /// The last heartbeat, after which the connection is silent.
    silent_at: Option<Instant>,
}

impl Schedule {
    fn new(config: &IdleConfig, start: Instant, index: usize, count: usize) -> Self {
        let share = index as f64 / count.max(1) as f64;
        Self {
            start,
            end: start + config.duration,
            every: config.heartbeat,
            first: start + config.heartbeat.mul_f64(share),
            silent_at: config
                .silent_after
                .map(|s| start + s + config.stagger.mul_f64(share)),
        }
    }

    /// The heartbeat after the one due at `due`, if any.
    fn after(&self, due: Instant) -> Option<Instant> {
        let next = due + self.every;
        match self.silent_at {
            Some(silent) if due >= silent => None,
            Some(silent) => Some(next.min(silent)),
            None => Some(next),
        }
    }
}

async fn hold(mut stream: Stream, schedule: Schedule, closed: Arc<AtomicU64>) -> Outcome {
    let mut heartbeats = 0;
    let mut bad_replies = 0;
    let mut last_send = Instant::now();
    let mut next = Some(
        schedule
            .first
            .min(schedule.silent_at.unwrap_or(schedule.first)),
    );
    let mut reply_pos = 0;
    let mut buf = [0u8; 256];
    let end = loop {
        let wake = next.unwrap_or(schedule.end).min(schedule.end);
        tokio::select! {
            read = stream.read(&mut buf) => {
                let n = match read {
                    Ok(0) => 0,
                    Ok(n) => n,
                    Err(e) if is_close(&e) => 0,
                    Err(e) => {
                        break End::Failed(e);
                    }
                };
                if n == 0 {
                    let now = Instant::now();
                    closed.fetch_add(1, Ordering::Relaxed);
                    break End::Closed {
                        silence: now - last_send,
                        at: now - schedule.start,
                    };
                }
                for &byte in &buf[..n] {
                    if byte != REPLY[reply_pos] {
                        bad_replies += 1;
                    }
                    reply_pos = (reply_pos + 1) % REPLY.len();
                }
            }
            () = tokio::time::sleep_until(wake) => {
                if wake >= schedule.end {
                    break End::Held { _stream: stream };
                }
                // Stamped before the write: the server may read and stamp the
                // heartbeat before write_all returns here, and a stamp taken
                // after it made closes look early by those microseconds.
                let sending_at = Instant::now();
                if let Err(e) = stream.write_all(HEARTBEAT).await {
                    break End::Failed(e);
                }
                last_send = sending_at;
                heartbeats += 1;
                next = next.and_then(|due| schedule.after(due));
            }
        }
    };
    Outcome {
        end,
        heartbeats,
        bad_replies,
    }
}

/// A reset or abort from the server is a close too (it shut the socket down
/// with our data unread, or the kernel dropped it).
fn is_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}
