//! Restart mode: hold C connections, wait for the server to go away, and
//! reconnect each with hb-client's own backoff policy
//! (`tcp_heartbeat::client::backoff`), to see what a restart looks like
//! from the server's side: how many connection attempts arrive in the
//! busiest 100 ms, and how long until every client is back.
//!
//! A connection is back when it has connected and had `OK` for a
//! `HeartBeat` (the byte from the server that resets hb-client's counter);
//! an attempt refused, timed out, or closed before the `OK` is a failed
//! attempt, as in hb-client. `--no-jitter` waits each whole cap (plain
//! exponential backoff), to show what jitter buys. Restarting the server is
//! the caller's part (scripts/restart-bench.sh): this mode says on stderr
//! when it holds every connection.

use super::connect::Stream;
use super::connect::{self, Connector};
use super::latency::{self, Latency};
use super::{Common, progress, runtime};
use serde_json::{Value, json};
use std::fmt;
use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::time::Duration;
use tcp_heartbeat::client::backoff::{Backoff, BackoffSettings, Jitter, NoJitter};
use tcp_heartbeat::config::display_duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// The window the busiest moment is counted in (the 100 ms).
const WINDOW: Duration = Duration::from_millis(100);

/// How long a connected attempt may wait for its `OK`.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RestartConfig {
    pub connections: usize,
    /// hb-client's `--reconnect-min` / `--reconnect-max` (no attempt limit).
    pub backoff: BackoffSettings,
    /// Draw each wait from `[0, cap]` (hb-client's policy); `false` waits the
    /// whole cap.
    pub jitter: bool,
    /// How long to wait for the server to go away, once all are connected.
    pub wait: Duration,
    /// How long each connection may take to come back after its loss.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RestartReport {
    pub config: RestartConfig,
    pub connected: usize,
    pub failed_connects: usize,
    /// Connections that saw the server go away within `wait`.
    pub lost: usize,
    /// Of those, how many came back within `timeout`.
    pub back: usize,
    /// Connection attempts after the losses, and how many failed.
    pub attempts: usize,
    pub failed_attempts: usize,
    /// The most attempts any one connection needed.
    pub most_attempts: usize,
    pub first_error: Option<String>,
    /// From the first loss to the last.
    pub loss_spread: Option<Duration>,
    /// Attempts, and successful reconnects, in the busiest [`WINDOW`].
    pub peak_attempts: usize,
    pub peak_reconnects: usize,
    /// From the first loss until every lost connection was back.
    pub all_back_after: Option<Duration>,
    /// Per connection, from its loss to its `OK`.
    pub time_back: Latency,
}

impl RestartReport {
    pub fn ok(&self) -> bool {
        self.failed_connects == 0 && self.lost == self.connected && self.back == self.lost
    }

    pub fn json(&self) -> Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
        json!({
            "mode": "restart",
            "connections": self.config.connections,
            "reconnect_min_s": self.config.backoff.min.as_secs_f64(),
            "reconnect_max_s": self.config.backoff.max.as_secs_f64(),
            "jitter": self.config.jitter,
            "connected": self.connected,
            "failed_connects": self.failed_connects,
            "lost": self.lost,
            "back": self.back,
            "attempts": self.attempts,
            "failed_attempts": self.failed_attempts,
            "most_attempts": self.most_attempts,
            "first_error": self.first_error,
            "loss_spread_ms": ms(self.loss_spread),
            "peak_attempts_per_100ms": self.peak_attempts,
            "peak_reconnects_per_100ms": self.peak_reconnects,
            "all_back_after_ms": ms(self.all_back_after),
            "time_back": self.time_back.json(),
        })
    }
}

impl fmt::Display for RestartReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |d: Option<Duration>| d.map_or("-".to_string(), display_duration);
        writeln!(
            f,
            "restart: {} connected ({} failed), {} lost, {} back; backoff {}..{} {}",
            self.connected,
            self.failed_connects,
            self.lost,
            self.back,
            display_duration(self.config.backoff.min),
            display_duration(self.config.backoff.max),
            if self.config.jitter {
                "with full jitter"
            } else {
                "without jitter"
            }
        )?;
        writeln!(
            f,
            "  losses spread over {}; all back {} after the first loss",
            shown(self.loss_spread),
            shown(self.all_back_after)
        )?;
        writeln!(
            f,
            "  peak per 100 ms: {} attempts, {} reconnects; {} attempts ({} failed), at most {} by one connection",
            self.peak_attempts,
            self.peak_reconnects,
            self.attempts,
            self.failed_attempts,
            self.most_attempts
        )?;
        writeln!(f, "  time back per connection {}", self.time_back)?;
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        Ok(())
    }
}

/// Runs restart mode against `common.target`.
pub fn run(common: &Common, config: &RestartConfig) -> io::Result<RestartReport> {
    runtime(common.threads)?.block_on(run_async(common, config))
}

/// One connection's ride through the restart.
struct Ride {
    lost_at: Option<Instant>,
    attempts: Vec<Instant>,
    failed_attempts: usize,
    back_at: Option<Instant>,
    /// Held until every ride has ended, so the server keeps them all.
    _stream: Option<Stream>,
    error: Option<io::Error>,
}

async fn run_async(common: &Common, config: &RestartConfig) -> io::Result<RestartReport> {
    let connector = Arc::new(Connector::new(common.target, common.tls.clone()));
    let bar = progress::counter(config.connections as u64, "connecting");
    let (streams, failed_connects, connect_error) =
        connect::open_all(&connector, config.connections, &bar).await;
    bar.finish_and_clear();
    if streams.is_empty() {
        return Err(connect_error.unwrap_or_else(|| io::Error::other("no connection opened")));
    }
    let connected = streams.len();
    eprintln!("restart: holding {connected} connections; restart the server now");
    let wait_end = Instant::now() + config.wait;
    let mut tasks = tokio::task::JoinSet::new();
    for stream in streams {
        let (connector, config) = (connector.clone(), config.clone());
        if config.jitter {
            let backoff = Backoff::new(config.backoff, fastrand::Rng::new());
            tasks.spawn(ride(connector, stream, backoff, wait_end, config.timeout));
        } else {
            let backoff = Backoff::new(config.backoff, NoJitter);
            tasks.spawn(ride(connector, stream, backoff, wait_end, config.timeout));
        }
    }
    let mut rides = Vec::with_capacity(connected);
    while let Some(joined) = tasks.join_next().await {
        rides.push(joined.map_err(io::Error::other)?);
    }
    let mut report = summarise(config, &rides);
    report.connected = connected;
    report.failed_connects = failed_connects;
    if report.first_error.is_none() {
        report.first_error = connect_error.map(|e| e.to_string());
    }
    Ok(report)
}

/// Waits for the server to close `stream` (until `wait_end`), then
/// reconnects with `backoff` until back or `timeout` after the loss.
async fn ride<J: Jitter>(
    connector: Arc<Connector>,
    mut stream: Stream,
    mut backoff: Backoff<J>,
    wait_end: Instant,
    timeout: Duration,
) -> Ride {
    let mut ride = Ride {
        lost_at: None,
        attempts: Vec::new(),
        failed_attempts: 0,
        back_at: None,
        _stream: None,
        error: None,
    };
    let mut buf = [0u8; 64];
    let loss = async { while let Ok(1..) = stream.read(&mut buf).await {} };
    if tokio::time::timeout_at(wait_end, loss).await.is_err() {
        ride._stream = Some(stream);
        return ride;
    }
    drop(stream);
    let lost_at = Instant::now();
    ride.lost_at = Some(lost_at);
    let reconnecting = async {
        loop {
            // No attempt limit: the policy always has a next attempt.
            let Some(attempt) = backoff.next_attempt(std::time::Instant::now()) else {
                return;
            };
            tokio::time::sleep_until(Instant::from_std(attempt.at)).await;
            ride.attempts.push(Instant::now());
            match attempt_once(&connector).await {
                Ok(stream) => {
                    backoff.on_received();
                    ride.back_at = Some(Instant::now());
                    ride._stream = Some(stream);
                    return;
                }
                Err(e) => {
                    ride.failed_attempts += 1;
                    ride.error.get_or_insert(e);
                }
            }
        }
    };
    if tokio::time::timeout_at(lost_at + timeout, reconnecting)
        .await
        .is_err()
    {
        ride.error.get_or_insert(io::Error::new(
            ErrorKind::TimedOut,
            format!("not back within {}", display_duration(timeout)),
        ));
    }
    ride
}

/// Connects and waits for the `OK` to a `HeartBeat`.
async fn attempt_once(connector: &Connector) -> io::Result<Stream> {
    let mut stream = connector.connect().await?;
    stream.write_all(b"HeartBeat\n").await?;
    let mut reply = [0u8; 3];
    tokio::time::timeout(REPLY_TIMEOUT, stream.read_exact(&mut reply))
        .await
        .map_err(|_| io::Error::new(ErrorKind::TimedOut, "no reply to HeartBeat"))??;
    if &reply != b"OK\n" {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("expected OK, got {:?}", String::from_utf8_lossy(&reply)),
        ));
    }
    Ok(stream)
}

fn summarise(config: &RestartConfig, rides: &[Ride]) -> RestartReport {
    let lost: Vec<&Ride> = rides.iter().filter(|r| r.lost_at.is_some()).collect();
    let first_loss = lost.iter().filter_map(|r| r.lost_at).min();
    let last_loss = lost.iter().filter_map(|r| r.lost_at).max();
    let since_first = |at: &Instant| first_loss.map_or(Duration::ZERO, |first| *at - first);
    let attempts: Vec<Duration> = lost
        .iter()
        .flat_map(|r| r.attempts.iter().map(since_first))
        .collect();
    let backs: Vec<Duration> = lost
        .iter()
        .filter_map(|r| r.back_at.as_ref().map(since_first))
        .collect();
    let mut time_back = latency::histogram();
    for ride in &lost {
        if let (Some(lost_at), Some(back_at)) = (ride.lost_at, ride.back_at) {
            latency::record(&mut time_back, back_at - lost_at);
        }
    }
    let all_back = !lost.is_empty() && backs.len() == lost.len();
    RestartReport {
        config: config.clone(),
        connected: 0,
        failed_connects: 0,
        lost: lost.len(),
        back: backs.len(),
        attempts: attempts.len(),
        failed_attempts: lost.iter().map(|r| r.failed_attempts).sum(),
        most_attempts: lost.iter().map(|r| r.attempts.len()).max().unwrap_or(0),
        first_error: rides
            .iter()
            .find_map(|r| r.error.as_ref())
            .map(|e| e.to_string()),
        loss_spread: first_loss.zip(last_loss).map(|(first, last)| last - first),
        peak_attempts: peak_in_window(attempts),
        peak_reconnects: peak_in_window(backs.clone()),
        all_back_after: all_back.then(|| backs.iter().max().copied()).flatten(),
        time_back: Latency::of(&time_back),
    }
}

/// The most `times` within any [`WINDOW`]-long span (a sliding window).
fn peak_in_window(mut times: Vec<Duration>) -> usize {
    times.sort_unstable();
    let mut start = 0;
    let mut peak = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= WINDOW {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn peak_counts_the_busiest_100ms_anywhere() {
        assert_eq!(peak_in_window(vec![]), 0);
        assert_eq!(peak_in_window(vec![ms(5)]), 1);
        let times = vec![ms(0), ms(150), ms(160), ms(240), ms(249), ms(250), ms(400)];
        assert_eq!(peak_in_window(times), 4);
    }
}
