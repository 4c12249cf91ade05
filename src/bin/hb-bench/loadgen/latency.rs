//! Latency histograms (HdrHistogram, microseconds) and their summary.
//!
//! HdrHistogram keeps every percentile to 3 significant digits in fixed
//! memory, so each client records into its own and they are merged at the
//! end: no lock and no allocation on the measured path.

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

/// The largest latency recorded exactly; longer ones are clamped to it.
const MAX_MICROS: u64 = 600_000_000;

/// A histogram of durations in microseconds.
pub fn histogram() -> Histogram<u64> {
    // Bounds are constants that satisfy the constructor's rules.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// Records `d`, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(MAX_MICROS);
    h.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// The percentiles a report shows, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "count": self.count,
            "mean_us": (self.mean * 10.0).round() / 10.0,
            "p50_us": self.p50,
            "p90_us": self.p90,
            "p99_us": self.p99,
            "p999_us": self.p999,
            "max_us": self.max,
        })
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.1}, {} samples)",
            micros(self.p50),
            micros(self.p90),
            micros(self.p99),
            micros(self.p999),
            micros(self.max),
            self.mean,
            self.count
        )
    }
}

/// Microseconds as a short human duration: 850us, 12.3ms, 1.25s.
pub fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}us"),
        1_000..1_000_000 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.3}s", us as f64 / 1e6),
    }
}
