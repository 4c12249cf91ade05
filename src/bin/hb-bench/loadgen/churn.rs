//! Churn mode: cycles of connect, one heartbeat and its `OK`, close — the
//! accept path, thread start and registry insert/remove of the server.
//!
//! Closed connections leave this side's ports in TIME_WAIT for a minute;
//! the connector moves to further loopback source addresses when they run
//! out.

use super::connect::Connector;
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

#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// Cycles in flight at once.
    pub concurrency: usize,
    pub duration: Duration,
    /// Cycles per second in total; `None` is as fast as they go.
    pub rate: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct ChurnReport {
    pub config: ChurnConfig,
    pub elapsed: Duration,
    pub cycles: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub sources: usize,
    /// From starting to connect to reading `OK`.
    pub latency: Latency,
    pub server: Option<Value>,
}

impl ChurnReport {
    pub fn rate(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn ok(&self) -> bool {
        self.errors == 0
    }

    pub fn json(&self) -> Value {
        json!({
            "mode": "churn",
            "concurrency": self.config.concurrency,
            "target_rate_per_s": self.config.rate,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "cycles": self.cycles,
            "errors": self.errors,
            "first_error": self.first_error,
            "sources": self.sources,
            "cycles_per_s": self.rate().round(),
            "latency": self.latency.json(),
            "server": self.server,
        })
    }
}

impl fmt::Display for ChurnReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "churn: {} in flight, {} cycles in {:.2}s: {:.0} cycles/s, {} errors, {} source address(es)",
            self.config.concurrency,
            self.cycles,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.errors,
            self.sources
        )?;
        writeln!(f, "  cycle latency {}", self.latency)?;
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        if let Some(server) = &self.server {
            writeln!(f, "  server per cycle: {server}")?;
        }
        Ok(())
    }
}

/// Runs churn mode against `common.target`.
pub fn run(common: &Common, config: &ChurnConfig) -> io::Result<ChurnReport> {
    runtime(common.threads)?.block_on(run_async(common, config))
}

struct Outcome {
    histogram: hdrhistogram::Histogram<u64>,
    cycles: u64,
    errors: u64,
    first_error: Option<io::Error>,
}

async fn run_async(common: &Common, config: &ChurnConfig) -> io::Result<ChurnReport> {
    let connector = Arc::new(Connector::new(common.target, common.tls.clone()));
    let before = common.server_pid.map(procstat::sample).transpose()?;
    let start = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let workers = config.concurrency.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..workers {
        let pace = config
            .rate
            .map(|r| Duration::from_secs_f64(workers as f64 / r));
        let first = start
            + pace
                .unwrap_or_default()
                .mul_f64(index as f64 / workers as f64);
        let end = start + config.duration;
        tasks.spawn(worker(connector.clone(), first, pace, end, done.clone()));
    }
    let bar = progress::timed(config.duration, "churn");
    let ticker = tokio::spawn({
        let bar = bar.clone();
        let done = done.clone();
        async move {
            let mut interval = tokio::time::interval(progress::TICK);
            loop {
                interval.tick().await;
                bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
                bar.set_message(format!("{} cycles", done.load(Ordering::Relaxed)));
            }
        }
    });
    let mut histogram = latency::histogram();
    let mut report = ChurnReport {
        config: config.clone(),
        elapsed: Duration::ZERO,
        cycles: 0,
        errors: 0,
        first_error: None,
        sources: 0,
        latency: Latency::of(&histogram),
        server: None,
    };
    while let Some(joined) = tasks.join_next().await {
        let o = joined.map_err(io::Error::other)?;
        histogram.add(&o.histogram).map_err(io::Error::other)?;
        report.cycles += o.cycles;
        report.errors += o.errors;
        if report.first_error.is_none() {
            report.first_error = o.first_error.map(|e| e.to_string());
        }
    }
    report.elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    report.sources = connector.sources_used();
    report.latency = Latency::of(&histogram);
    if let (Some(pid), Some(before)) = (common.server_pid, before) {
        report.server = Some(before.delta_json(&procstat::sample(pid)?, report.cycles));
    }
    Ok(report)
}

async fn worker(
    connector: Arc<Connector>,
    first: Instant,
    pace: Option<Duration>,
    end: Instant,
    done: Arc<AtomicU64>,
) -> Outcome {
    let mut outcome = Outcome {
        histogram: latency::histogram(),
        cycles: 0,
        errors: 0,
        first_error: None,
    };
    let mut due = first;
    loop {
        if pace.is_some() {
            tokio::time::sleep_until(due).await;
        } else {
            due = Instant::now();
        }
        if due >= end {
            return outcome;
        }
        match cycle(&connector).await {
            Ok(()) => {
                outcome.cycles += 1;
                done.fetch_add(1, Ordering::Relaxed);
                latency::record(&mut outcome.histogram, due.elapsed());
            }
            Err(e) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert(e);
            }
        }
        due += pace.unwrap_or_default();
    }
}

async fn cycle(connector: &Connector) -> io::Result<()> {
    let mut stream = connector.connect().await?;
    stream.write_all(b"HeartBeat\n").await?;
    let mut reply = [0u8; 3];
    stream.read_exact(&mut reply).await?;
    if &reply != b"OK\n" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected OK, got {:?}", String::from_utf8_lossy(&reply)),
        ));
    }
    Ok(())
}
