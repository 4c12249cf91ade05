//! Echo mode: C clients each send a line of S bytes and wait for its reply
//! (closed loop), or send at a fixed rate, and verify every reply byte.
//!
//! Latency is measured from when a request was due, not when it was sent, so
//! a fixed-rate client that falls behind reports the wait too (no
//! coordinated omission). Connections are all open before the clock starts,
//! and stay open until the server has been sampled at the end.

use super::connect::Stream;
use super::connect::{self, Connector};
use super::latency::{self, Latency};
use super::{Common, procstat, progress, runtime};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct EchoConfig {
    pub connections: usize,
    /// Bytes per request, LF included (at least 2).
    pub size: usize,
    /// How long the clients send.
    pub duration: Duration,
    /// Stop each client after this many messages, if sooner.
    pub messages: Option<u64>,
    /// Requests per second per client; `None` is closed loop.
    pub rate: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct EchoReport {
    pub config: EchoConfig,
    pub connected: usize,
    pub failed_connects: usize,
    pub sources: usize,
    pub elapsed: Duration,
    /// When the clock started, wall-clock ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Replies that came back exactly as expected.
    pub verified: u64,
    /// Replies that differed from the expected bytes (each ends its client).
    pub mismatches: u64,
    /// Clients ended by an I/O error.
    pub io_errors: u64,
    pub first_error: Option<String>,
    pub latency: Latency,
    /// The server's numbers, per message, when its pid was given.
    pub server: Option<Value>,
}

impl EchoReport {
    pub fn throughput(&self) -> f64 {
        self.verified as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Whether everything sent came back verified.
    pub fn ok(&self) -> bool {
        self.failed_connects == 0 && self.mismatches == 0 && self.io_errors == 0
    }

    pub fn json(&self) -> Value {
        json!({
            "mode": "echo",
            "connections": self.config.connections,
            "size": self.config.size,
            "rate_per_connection": self.config.rate,
            "connected": self.connected,
            "failed_connects": self.failed_connects,
            "sources": self.sources,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "started_unix_ms": self.started_unix_ms,
            "verified": self.verified,
            "mismatches": self.mismatches,
            "io_errors": self.io_errors,
            "first_error": self.first_error,
            "throughput_per_s": self.throughput().round(),
            "latency": self.latency.json(),
            "server": self.server,
        })
    }
}

impl fmt::Display for EchoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loop_kind = match self.config.rate {
            Some(r) => format!("{r}/s per connection"),
            None => "closed loop".into(),
        };
        writeln!(
            f,
            "echo: {} connections ({} failed, {} source address(es)), {} B messages, {loop_kind}",
            self.connected, self.failed_connects, self.sources, self.config.size
        )?;
        writeln!(
            f,
            "  {} replies verified in {:.2}s: {:.0} msg/s; {} mismatched, {} I/O errors",
            self.verified,
            self.elapsed.as_secs_f64(),
            self.throughput(),
            self.mismatches,
            self.io_errors
        )?;
        writeln!(f, "  latency {}", self.latency)?;
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        if let Some(server) = &self.server {
            writeln!(f, "  server per message: {server}")?;
        }
        Ok(())
    }
}

/// Runs echo mode against `common.target`.
pub fn run(common: &Common, config: &EchoConfig) -> io::Result<EchoReport> {
    if config.size < 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "message size must be at least 2 bytes (one byte and LF)",
        ));
    }
    runtime(common.threads)?.block_on(run_async(common, config))
}

/// What one client did.
struct Outcome {
    histogram: Histogram<u64>,
    verified: u64,
    mismatched: bool,
    error: Option<io::Error>,
    /// Kept open until the server is sampled.
    _stream: Stream,
}

async fn run_async(common: &Common, config: &EchoConfig) -> io::Result<EchoReport> {
    let connector = Arc::new(Connector::new(common.target, common.tls.clone()));
    let bar = progress::counter(config.connections as u64, "connect");
    let (streams, failed_connects, connect_error) =
        connect::open_all(&connector, config.connections, &bar).await;
    bar.finish_and_clear();
    if streams.is_empty() {
        return Err(connect_error.unwrap_or_else(|| io::Error::other("no connections")));
    }
    let before = common.server_pid.map(procstat::sample).transpose()?;
    let verified = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let started_unix_ms = super::unix_millis(std::time::SystemTime::now());
    let end = start + config.duration;
    let mut clients = tokio::task::JoinSet::new();
    for (index, stream) in streams.into_iter().enumerate() {
        let config = config.clone();
        let verified = verified.clone();
        clients.spawn(client(stream, index, config, start, end, verified));
    }
    let bar = progress::timed(config.duration, "echo");
    let ticker = tokio::spawn(tick(bar.clone(), start, verified.clone()));
    let mut outcomes = Vec::new();
    while let Some(joined) = clients.join_next().await {
        outcomes.push(joined.map_err(io::Error::other)?);
    }
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    let mut histogram = latency::histogram();
    let mut report = EchoReport {
        config: config.clone(),
        connected: outcomes.len(),
        failed_connects,
        sources: connector.sources_used(),
        elapsed,
        started_unix_ms,
        verified: 0,
        mismatches: 0,
        io_errors: 0,
        first_error: connect_error.map(|e| format!("connect: {e}")),
        latency: Latency::of(&histogram),
        server: None,
    };
    for o in &outcomes {
        histogram.add(&o.histogram).map_err(io::Error::other)?;
        report.verified += o.verified;
        report.mismatches += u64::from(o.mismatched);
        if let Some(e) = &o.error {
            report.io_errors += 1;
            report.first_error.get_or_insert_with(|| e.to_string());
        }
    }
    report.latency = Latency::of(&histogram);
    if let (Some(pid), Some(before)) = (common.server_pid, before) {
        report.server = Some(before.delta_json(&procstat::sample(pid)?, report.verified));
    }
    drop(outcomes);
    Ok(report)
}

async fn tick(bar: indicatif::ProgressBar, start: Instant, verified: Arc<AtomicU64>) {
    let mut interval = tokio::time::interval(progress::TICK);
    loop {
        interval.tick().await;
        bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
        bar.set_message(format!("{} replies", verified.load(Ordering::Relaxed)));
    }
}

/// Request `i` of a client, and its expected reply: lowercase letters from a
/// rotating offset, so a reordered or repeated reply does not verify.
fn message(size: usize, i: usize) -> (Vec<u8>, Vec<u8>) {
    let mut request: Vec<u8> = (0..size - 1).map(|k| b'a' + ((i + k) % 26) as u8).collect();
    request.push(b'\n');
    let reply = request.to_ascii_uppercase();
    (request, reply)
}

async fn client(
    mut stream: Stream,
    index: usize,
    config: EchoConfig,
    start: Instant,
    end: Instant,
    verified: Arc<AtomicU64>,
) -> Outcome {
    let messages: Vec<_> = (0..26).map(|i| message(config.size, index + i)).collect();
    let interval = config.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut histogram = latency::histogram();
    let mut count = 0;
    let mut mismatched = false;
    let mut error = None;
    let mut reply = vec![0u8; config.size];
    let mut sent: u64 = 0;
    loop {
        if config.messages.is_some_and(|m| sent >= m) {
            break;
        }
        let due = match interval {
            Some(every) => {
                // Spread clients' first sends over one interval.
                let offset = every.mul_f64(index as f64 / config.connections as f64);
                start + offset + every.mul_f64(sent as f64)
            }
            None => Instant::now(),
        };
        if due >= end {
            break;
        }
        if interval.is_some() {
            // Not in closed loop: tokio's timer rounds up to whole
            // milliseconds, even for a deadline already past.
            tokio::time::sleep_until(due).await;
        }
        let (request, expected) = &messages[(sent % 26) as usize];
        let exchanged = async {
            stream.write_all(request).await?;
            stream.read_exact(&mut reply).await
        };
        if let Err(e) = exchanged.await {
            error = Some(e);
            break;
        }
        sent += 1;
        latency::record(&mut histogram, due.elapsed());
        if reply != *expected {
            mismatched = true;
            break;
        }
        count += 1;
        verified.fetch_add(1, Ordering::Relaxed);
    }
    Outcome {
        histogram,
        verified: count,
        mismatched,
        error,
        _stream: stream,
    }
}
