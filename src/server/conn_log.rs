//! Per-connection log lines that stay useful at 10,000 connections per
//! second.
//!
//! At the default level each connect, close and refusal is a line, but only
//! up to [`LINES_PER_SECOND`]; past that a line is left out and counted, and
//! every [`REPORT_EVERY`] one line says how many were left out, closes by
//! reason (`... and 141,233 more connections closed in the last 10s:
//! 141,200 peer_closed, 33 idle_timeout; also left out: 141,240 connects`). With debug logging on (`-v`)
//! nothing is left out. The metrics and the exit summary count every
//! connection either way.
//!
//! [`LogLimiter`] is the pure core (it takes `now`); [`ConnLog`] shares it
//! between the connection threads (one short lock per connection event,
//! never per read) and runs the `hb-log` thread that writes the report.

use super::connection::CloseReason;
use super::connection::RefuseReason;
use crossbeam::channel::{self, Receiver, Sender};
use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Per-connection lines written per second at most, at the default level:
/// enough to follow a handful of clients by eye, few enough that a flood
/// costs a few KB of log per second.
pub const LINES_PER_SECOND: u32 = 20;

/// How often the count of left-out lines is written.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// A per-connection log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Connected,
    Closed(CloseReason),
    Refused(RefuseReason),
}

/// Decides which per-connection lines are written, and counts the rest.
///
/// Lines are admitted in one-second windows, [`LINES_PER_SECOND`] per
/// window; the window starts at the first line after the previous one
/// ended.
#[derive(Debug)]
pub struct LogLimiter {
    window_start: Instant,
    written_in_window: u32,
    left_out: LeftOut,
}

/// Lines left out since the last report, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub since: Instant,
    pub connected: u64,
    /// By [`CloseReason::ALL`] position.
    pub closed: [u64; CloseReason::ALL.len()],
    /// By [`RefuseReason::ALL`] position.
    pub refused: [u64; RefuseReason::ALL.len()],
}

/// A report of left-out lines, ready to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub left_out: LeftOut,
    pub period: Duration,
}

impl LogLimiter {
    pub fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            written_in_window: 0,
            left_out: LeftOut::new(now),
        }
    }

    /// Whether the line for `event` at `now` is written; if not, it is
    /// counted for the next report.
    pub fn admit(&mut self, event: Event, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.written_in_window = 0;
        }
        if self.written_in_window < LINES_PER_SECOND {
            self.written_in_window += 1;
            return true;
        }
        match event {
            Event::Connected => self.left_out.connected += 1,
            Event::Closed(reason) => self.left_out.closed[reason as usize] += 1,
            Event::Refused(reason) => self.left_out.refused[reason as usize] += 1,
        }
        false
    }

    /// The lines left out since the last report, if any; starts counting
    /// anew at `now`.
    pub fn report(&mut self, now: Instant) -> Option<Report> {
        let left_out = std::mem::replace(&mut self.left_out, LeftOut::new(now));
        if left_out.is_empty() {
            return None;
        }
        Some(Report {
            period: now.saturating_duration_since(left_out.since),
            left_out,
        })
    }
}

impl LeftOut {
    fn new(since: Instant) -> Self {
        Self {
            since,
            connected: 0,
            closed: [0; CloseReason::ALL.len()],
            refused: [0; RefuseReason::ALL.len()],
        }
    }

    fn is_empty(&self) -> bool {
        self.connected == 0
            && self.closed.iter().all(|&n| n == 0)
            && self.refused.iter().all(|&n| n == 0)
    }
}

impl fmt::Display for Report {
    /// `... and 1,234 more connections closed in the last 10s: 1,200
    /// peer_closed, 34 idle_timeout; also left out: 1,240 connects, 3
    /// refusals (3 full)`, without the parts that are zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let left_out = &self.left_out;
        let secs = self.period.as_secs_f64().round();
        let closed: u64 = left_out.closed.iter().sum();
        write!(
            f,
            "... and {} more connections closed in the last {secs}s",
            thousands(closed)
        )?;
        if closed > 0 {
            let labels = CloseReason::ALL.map(CloseReason::label);
            write!(f, ": {}", by_reason(&left_out.closed, labels))?;
        }
        let mut also = Vec::new();
        if left_out.connected > 0 {
            also.push(format!("{} connects", thousands(left_out.connected)));
        }
        let refused: u64 = left_out.refused.iter().sum();
        if refused > 0 {
            let labels = RefuseReason::ALL.map(RefuseReason::label);
            let reasons = by_reason(&left_out.refused, labels);
            also.push(format!("{} refusals ({reasons})", thousands(refused)));
        }
        if !also.is_empty() {
            write!(f, "; also left out: {}", also.join(", "))?;
        }
        Ok(())
    }
}

/// `1,200 peer_closed, 34 idle_timeout`: the non-zero counts.
fn by_reason<const N: usize>(counts: &[u64; N], labels: [&str; N]) -> String {
    counts
        .iter()
        .zip(labels)
        .filter(|(n, _)| **n > 0)
        .map(|(n, label)| format!("{} {label}", thousands(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `141233` as `141,233`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The limiter shared by the server's threads.
pub struct ConnLog {
    /// `None` when debug logging is on: then every line is written.
    limiter: Option<Arc<Mutex<LogLimiter>>>,
}

/// The `hb-log` thread, which writes the limiter's report every
/// [`REPORT_EVERY`]; owned by the server, stopped at shutdown.
pub struct Reporter {
    /// Dropped to stop the thread.
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl ConnLog {
    /// Limits the lines unless debug logging is on, and then starts the
    /// thread that reports what was left out.
    pub fn start() -> std::io::Result<(Self, Option<Reporter>)> {
        if log::log_enabled!(log::Level::Debug) {
            return Ok((Self { limiter: None }, None));
        }
        let limiter = Arc::new(Mutex::new(LogLimiter::new(Instant::now())));
        let (stop, stop_rx) = channel::bounded::<()>(0);
        let thread_limiter = limiter.clone();
        let thread = thread::Builder::new()
            .name("hb-log".into())
            .spawn(move || report_until_stopped(&thread_limiter, &stop_rx))?;
        let log = Self {
            limiter: Some(limiter),
        };
        Ok((log, Some(Reporter { stop, thread })))
    }

    /// Whether to write the line for `event` now.
    pub fn admit(&self, event: Event) -> bool {
        match &self.limiter {
            Some(limiter) => limiter.lock().admit(event, Instant::now()),
            None => true,
        }
    }

    /// Writes what was left out since the last report, e.g. at shutdown.
    pub fn flush(&self) {
        if let Some(limiter) = &self.limiter {
            write_report(limiter);
        }
    }
}

impl Reporter {
    /// Stops and joins the thread.
    pub fn stop(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            log::error!("thread hb-log panicked");
        }
    }
}

fn report_until_stopped(limiter: &Mutex<LogLimiter>, stop: &Receiver<()>) {
    let tick = channel::tick(REPORT_EVERY);
    loop {
        channel::select! {
            recv(stop) -> _ => return,
            recv(tick) -> _ => write_report(limiter),
        }
    }
}

fn write_report(limiter: &Mutex<LogLimiter>) {
    let report = limiter.lock().report(Instant::now());
    if let Some(report) = report {
        log::info!("{report}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn writes_up_to_the_rate_then_counts() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(t0);
        for i in 0..LINES_PER_SECOND {
            assert!(limiter.admit(Event::Connected, t0 + ms(u64::from(i))));
        }
        assert!(!limiter.admit(Event::Connected, t0 + ms(500)));
        assert!(!limiter.admit(Event::Closed(CloseReason::PeerClosed), t0 + ms(600)));
        assert!(!limiter.admit(Event::Closed(CloseReason::PeerClosed), t0 + ms(700)));
        assert!(!limiter.admit(Event::Closed(CloseReason::IdleTimeout), t0 + ms(800)));
        assert!(!limiter.admit(Event::Refused(RefuseReason::Full), t0 + ms(999)));
        // A new second, a new allowance.
        assert!(limiter.admit(Event::Connected, t0 + ms(1000)));
        let report = limiter
            .report(t0 + ms(10_000))
            .expect("lines were left out");
        assert_eq!(report.period, ms(10_000));
        assert_eq!(report.left_out.connected, 1);
        let closed = &report.left_out.closed;
        assert_eq!(closed[CloseReason::PeerClosed as usize], 2);
        assert_eq!(closed[CloseReason::IdleTimeout as usize], 1);
        assert_eq!(closed.iter().sum::<u64>(), 3);
        let refused = &report.left_out.refused;
        assert_eq!(refused[RefuseReason::Full as usize], 1);
        assert_eq!(refused.iter().sum::<u64>(), 1);
        assert_eq!(
            report.to_string(),
            "... and 3 more connections closed in the last 10s: 2 peer_closed, 1 idle_timeout; \
             also left out: 1 connects, 1 refusals (1 full)"
        );
    }

    #[test]
    fn nothing_left_out_no_report_and_counts_start_anew() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(t0);
        assert!(limiter.admit(Event::Connected, t0));
        assert_eq!(limiter.report(t0 + ms(10_000)), None);
        for _ in 0..=LINES_PER_SECOND {
            limiter.admit(Event::Closed(CloseReason::TimedOut), t0 + ms(10_001));
        }
        let report = limiter.report(t0 + ms(15_000)).unwrap();
        assert_eq!(report.period, ms(5_000));
        let closed = &report.left_out.closed;
        assert_eq!(closed[CloseReason::TimedOut as usize], 1);
        assert_eq!(closed.iter().sum::<u64>(), 1);
        assert_eq!(limiter.report(t0 + ms(16_000)), None);
    }

    #[test]
    fn a_flood_writes_twenty_lines_a_second() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(t0);
        // 10,000 closes a second for 10 s, one every 100 us.
        let written = (0..100_000u64)
            .filter(|i| {
                limiter.admit(
                    Event::Closed(CloseReason::PeerClosed),
                    t0 + Duration::from_micros(i * 100),
                )
            })
            .count();
        assert_eq!(written, 10 * LINES_PER_SECOND as usize);
        let report = limiter.report(t0 + ms(10_000)).unwrap();
        assert_eq!(report.left_out.closed[0], 100_000 - written as u64);
        assert!(
            report.to_string().starts_with(
                "... and 99,800 more connections closed in the last 10s: 99,800 peer_closed"
            ),
            "{report}"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(141_233), "141,233");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
