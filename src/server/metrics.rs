//! The server's Prometheus metrics: what they count, and how a scrape reads
//! them without the read path paying for it.
//!
//! Events that happen once per connection (admitted, refused, closed, its
//! duration, the reaper's lateness) are counted as they happen, with the
//! `prometheus` crate's atomic counters and histograms. What happens per
//! read (bytes, heartbeats, other lines) is counted by each connection in
//! its own [`Traffic`](super::connection::Traffic), and folded into the
//! totals here when the connection closes and when a scrape or the exit
//! summary asks ([`Metrics::fold`]); so the read path writes nothing that
//! another connection writes too.
//!
//! The metric names, their help texts and the label values are the ones the
//! README's "Metrics" section lists; a new close or refuse reason gets its
//! series by being added to [`CloseReason::ALL`] or [`RefuseReason::ALL`].

use super::connection::{CloseReason, Connection, RefuseReason, TrafficTotals};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// Bucket bounds of `hb_reaper_lateness_seconds`: 100 us to 1 s in 1-2.5-5
/// steps. The reaper's design target is p99 under 10 ms, with nothing over
/// 100 ms (docs/benchmarks.md), so the buckets are finest there.
const LATENESS_BUCKETS: [f64; 13] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Bucket bounds of `hb_connection_duration_seconds`: 1 ms to 1 day, from
/// refused-looking blips through heartbeating sessions of hours.
const DURATION_BUCKETS: [f64; 11] = [
    0.001,
    0.01,
    0.1,
    1.0,
    10.0,
    60.0,
    600.0,
    3600.0,
    6.0 * 3600.0,
    12.0 * 3600.0,
    86_400.0,
];

/// The configuration that the `hb_idle_timeout_seconds` and
/// `hb_max_connections` gauges show.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `None`: the reaper is off, shown as 0.
    pub idle_timeout: Option<Duration>,
    pub max_connections: usize,
}

/// Every metric of one server, registered in its own registry (not the
/// process-global one, so two servers in one test process do not collide).
pub struct Metrics {
    registry: Registry,
    open: IntGauge,
    accepted: IntCounter,
    /// One counter per [`RefuseReason::ALL`], in that order.
    refused: Vec<IntCounter>,
    /// One counter per [`CloseReason::ALL`], in that order.
    closed: Vec<IntCounter>,
    heartbeats: IntCounter,
    lines: IntCounter,
    received_bytes: IntCounter,
    sent_bytes: IntCounter,
    reaper_lateness: Histogram,
    duration: Histogram,
}

impl Metrics {
    pub fn new(settings: Settings) -> Self {
        let registry = Registry::new();
        let metrics = Self {
            open: register(
                &registry,
                IntGauge::new(
                    "hb_connections_open",
                    "Connections being served now: admitted and not yet closed.",
                ),
            ),
            accepted: register(
                &registry,
                IntCounter::new(
                    "hb_connections_accepted_total",
                    "Connections admitted to be served (refused ones count only in hb_connections_refused_total).",
                ),
            ),
            refused: labelled(
                &registry,
                ("hb_connections_refused_total", "reason"),
                "Connections refused, by reason: full (--max-connections), busy (no thread), \
                 per_ip (--max-connections-per-ip), proxy_header (a PROXY header expected and missing, malformed, over 4 KiB or late, or closed before it arrived).",
                RefuseReason::ALL.map(RefuseReason::label),
            ),
            closed: labelled(
                &registry,
                ("hb_connections_closed_total", "reason"),
                "Connections closed, by reason: peer_closed, idle_timeout (the reaper: the service judged dead), \
                 timed_out (TCP keepalive or user timeout: the network judged dead), io_error (any other error), \
                 shutdown, drain (closed in its turn during --drain).",
                CloseReason::ALL.map(CloseReason::label),
            ),
            heartbeats: register(
                &registry,
                IntCounter::new("hb_heartbeats_total", "Heartbeats answered."),
            ),
            lines: register(
                &registry,
                IntCounter::new("hb_lines_total", "Lines echoed, other than heartbeats."),
            ),
            received_bytes: register(
                &registry,
                IntCounter::new("hb_received_bytes_total", "Bytes received from clients."),
            ),
            sent_bytes: register(
                &registry,
                IntCounter::new(
                    "hb_sent_bytes_total",
                    "Bytes of replies sent to clients (counted as each write starts).",
                ),
            ),
            reaper_lateness: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "hb_reaper_lateness_seconds",
                        "For each idle close, the time from the connection's deadline (last activity + idle timeout) to the reaper's shutdown call.",
                    )
                    .buckets(LATENESS_BUCKETS.to_vec()),
                ),
            ),
            duration: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "hb_connection_duration_seconds",
                        "Time from a connection's admission to its close.",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                ),
            ),
            registry,
        };
        metrics.register_settings(settings);
        metrics.register_process();
        metrics
    }

    fn register_settings(&self, settings: Settings) {
        let idle = register(
            &self.registry,
            Gauge::new(
                "hb_idle_timeout_seconds",
                "The configured --idle-timeout; 0 when the reaper is off.",
            ),
        );
        idle.set(settings.idle_timeout.map_or(0.0, |t| t.as_secs_f64()));
        let max = register(
            &self.registry,
            IntGauge::new("hb_max_connections", "The configured --max-connections."),
        );
        max.set(i64::try_from(settings.max_connections).unwrap_or(i64::MAX));
        let build = register(
            &self.registry,
            IntGaugeVec::new(
                Opts::new(
                    "hb_build_info",
                    "Always 1; the version label says which hb-server this is.",
                ),
                &["version"],
            ),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    }

    /// The standard `process_*` metrics (open descriptors, resident memory,
    /// threads, start time, CPU), which the `prometheus` crate reads from
    /// /proc on Linux only.
    #[cfg(target_os = "linux")]
    fn register_process(&self) {
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = self.registry.register(Box::new(collector)) {
            log::warn!("process metrics unavailable: {e}");
        }
    }

    /// Elsewhere the process metrics are left out.
    #[cfg(not(target_os = "linux"))]
    fn register_process(&self) {}

    /// Counts an admission; the connection is open until [`closed`](Self::closed).
    pub fn admitted(&self) {
        self.accepted.inc();
        self.open.inc();
    }

    pub fn refused(&self, reason: RefuseReason) {
        self.refused[reason as usize].inc();
    }

    /// Counts a connection's close, its duration, and the rest of its
    /// traffic.
    pub fn closed(&self, conn: &Connection, reason: CloseReason) {
        self.fold(conn);
        self.duration.observe(conn.started.elapsed().as_secs_f64());
        self.closed[reason as usize].inc();
        self.open.dec();
    }

    /// How late the reaper closed an idle connection: after its deadline.
    pub fn reaped_late_by(&self, lateness: Duration) {
        self.reaper_lateness.observe(lateness.as_secs_f64());
    }

    /// Adds what `conn` counted since it was last folded to the totals.
    pub fn fold(&self, conn: &Connection) {
        let TrafficTotals {
            received_bytes,
            sent_bytes,
            heartbeats,
            lines,
        } = conn.unfolded_traffic();
        self.received_bytes.inc_by(received_bytes);
        self.sent_bytes.inc_by(sent_bytes);
        self.heartbeats.inc_by(heartbeats);
        self.lines.inc_by(lines);
    }

    /// Connections admitted so far.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.get()
    }

    pub fn refused_total(&self, reason: RefuseReason) -> u64 {
        self.refused[reason as usize].get()
    }

    pub fn closed_total(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize].get()
    }

    /// Heartbeats answered, as far as folded.
    pub fn heartbeats_total(&self) -> u64 {
        self.heartbeats.get()
    }

    /// The text exposition (format 0.0.4) of every metric; the live
    /// connections' traffic must have been folded first.
    pub fn render(&self) -> Vec<u8> {
        let mut text = Vec::new();
        // Encoding into a Vec fails only on metric families without a type,
        // which the registry never holds.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            log::error!("cannot encode the metrics: {e}");
        }
        text
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Registers `metric`. The names are constants, valid and distinct, so a
/// failure here is a bug found by every test that starts a server.
fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("metric definition is valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are distinct");
    metric
}

/// A counter with one label, and its series for each of `values`, in
/// order, so that every series shows from the start (a reason never seen
/// is 0, not missing, so `rate()` works from the first scrape).
fn labelled<const N: usize>(
    registry: &Registry,
    (name, label): (&str, &str),
    help: &str,
    values: [&str; N],
) -> Vec<IntCounter> {
    let vec = register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]),
    );
    values.iter().map(|v| vec.with_label_values(&[v])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &Metrics) -> String {
        String::from_utf8(metrics.render()).unwrap()
    }

    /// The counters are indexed by `reason as usize`: `ALL` must list the
    /// variants in their declaration order, each once.
    #[test]
    fn all_lists_the_reasons_in_declaration_order() {
        for (i, reason) in CloseReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i, "{reason:?}");
        }
        for (i, reason) in RefuseReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i, "{reason:?}");
        }
    }

    #[test]
    fn every_reason_has_a_series_from_the_start() {
        let metrics = Metrics::new(Settings {
            idle_timeout: Some(Duration::from_millis(1500)),
            max_connections: 7,
        });
        let text = text(&metrics);
        for reason in CloseReason::ALL {
            let series = format!(
                "hb_connections_closed_total{{reason=\"{}\"}} 0\n",
                reason.label()
            );
            assert!(text.contains(&series), "{series} missing from:\n{text}");
        }
        for reason in RefuseReason::ALL {
            let series = format!(
                "hb_connections_refused_total{{reason=\"{}\"}} 0\n",
                reason.label()
            );
            assert!(text.contains(&series), "{series} missing from:\n{text}");
        }
        assert!(text.contains("hb_idle_timeout_seconds 1.5\n"), "{text}");
        assert!(text.contains("hb_max_connections 7\n"), "{text}");
        let build = format!(
            "hb_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
    }

    #[test]
    fn counts_go_to_their_reason() {
        let metrics = Metrics::new(Settings {
            idle_timeout: None,
            max_connections: 1,
        });
        metrics.refused(RefuseReason::Busy);
        metrics.reaped_late_by(Duration::from_micros(300));
        let text = text(&metrics);
        assert!(
            text.contains("hb_connections_refused_total{reason=\"busy\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hb_connections_refused_total{reason=\"full\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("hb_reaper_lateness_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("hb_reaper_lateness_seconds_bucket{le=\"0.00025\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("hb_idle_timeout_seconds 0\n"), "{text}");
    }
}
