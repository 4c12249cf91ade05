//! The one place a connection's outcome is recorded (style rule 15).
//!
//! Every connection the accept loop hands over ends in exactly one of:
//! refused with a [`RefuseReason`], or admitted and later closed with a
//! [`CloseReason`]. [`Outcomes::record`] is the only function that counts
//! these: it feeds the Prometheus counters and gauges, the reaper's lateness
//! histogram, the duration histogram, the rate-limited log (and so its
//! summary of left-out lines) and, through the counters, the exit summary.
//! Because they are all fed from here, these hold once every connection
//! has ended (tests/outcomes.rs checks them after a mixed run):
//!
//! - `accepted + Σ refused = connections seen`
//! - `Σ closed = accepted`, and `hb_connections_open = accepted − Σ closed`
//!   at any quiet moment
//! - the lateness histogram's count = `closed{reason="idle_timeout"}`
//!
//! A connection closed from outside (the reaper, a drain, shutdown) while
//! its PROXY header is awaited was never admitted: its address was not yet
//! known. It is refused `proxy_header`, its log line saying what closed it,
//! and its lateness is not observed.
//!
//! Adding a refuse or close reason is one variant of [`RefuseReason`] or
//! [`CloseReason`] (with its label); nothing here changes.

use super::conn_log::{ConnLog, Event};
use super::connection::{CloseReason, Connection, RefuseReason};
use super::metrics::Metrics;
use log::Level;
use std::fmt;
use std::io;

/// What became of a connection.
#[derive(Clone, Copy)]
pub enum Outcome<'a> {
    /// Let through to be served (its PROXY header read, its address's
    /// place taken).
    Admitted,
    /// Not served. `detail` is added to its log line.
    Refused {
        reason: RefuseReason,
        detail: Option<&'a dyn fmt::Display>,
    },
    /// Served, then closed; `error` is what ended its loop, if anything.
    Closed {
        reason: CloseReason,
        error: Option<&'a io::Error>,
    },
}

/// The counters and the log that every outcome goes to.
pub struct Outcomes {
    metrics: Metrics,
    log: ConnLog,
}

impl Outcomes {
    pub fn new(metrics: Metrics, log: ConnLog) -> Self {
        Self { metrics, log }
    }

    /// The metrics, for scrapes and the exit summary to read.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The log, for shutdown to flush.
    pub fn log(&self) -> &ConnLog {
        &self.log
    }

    /// Records what became of `conn`: counts it, and writes its log line
    /// within the log's rate limit (a load balancer's health check logs at
    /// debug level, outside the limit). Counted before the line, and callers
    /// record before they write the client its refusal or close its socket,
    /// so a scrape made after the client saw the end counts it.
    pub fn record(&self, conn: &Connection, outcome: Outcome<'_>) {
        let health_check = conn.is_health_check();
        let event = match outcome {
            Outcome::Admitted => {
                self.metrics.admitted();
                Event::Connected
            }
            Outcome::Refused { reason, .. } => {
                self.metrics.refused(reason);
                Event::Refused(reason)
            }
            Outcome::Closed { reason, .. } => {
                if reason == CloseReason::IdleTimeout {
                    self.metrics.reaped_late_by(conn.reaped_late_by());
                }
                self.metrics.closed(conn, reason);
                Event::Closed(reason)
            }
        };
        if health_check || self.log.admit(event) {
            write_line(conn, outcome, health_check);
        }
    }
}

/// The log line of an outcome.
fn write_line(conn: &Connection, outcome: Outcome<'_>, health_check: bool) {
    let (id, client) = (conn.id, conn.client_addr());
    let level = |usual| if health_check { Level::Debug } else { usual };
    match outcome {
        Outcome::Admitted if client == conn.peer => {
            log::log!(level(Level::Info), "conn {id} from {client} connected");
        }
        Outcome::Admitted => log::log!(
            level(Level::Info),
            "conn {id} from {client} connected via {}",
            conn.peer
        ),
        Outcome::Refused { reason, detail } => {
            let usual = match reason {
                RefuseReason::Busy => Level::Error,
                _ => Level::Warn,
            };
            match detail {
                Some(detail) => log::log!(
                    level(usual),
                    "conn {id} from {client} refused: {reason}: {detail}"
                ),
                None => log::log!(level(usual), "conn {id} from {client} refused: {reason}"),
            }
        }
        Outcome::Closed {
            reason: reason @ (CloseReason::TimedOut | CloseReason::IoError),
            error: Some(error),
        } => log::log!(
            level(Level::Warn),
            "conn {id} from {client} closed: {reason} ({error})"
        ),
        Outcome::Closed { reason, .. } => {
            log::log!(
                level(Level::Info),
                "conn {id} from {client} closed: {reason}"
            );
        }
    }
}
