//! The progress bar on stderr for long runs. indicatif draws nothing when
//! stderr is not a terminal, so scripts and tests see only the report.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// How often the timed bar is redrawn.
pub const TICK: Duration = Duration::from_millis(250);

/// A bar counting `len` items (connections opened, say).
pub fn counter(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// A bar over a run of `duration`, in milliseconds elapsed.
pub fn timed(duration: Duration, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed}/{duration} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}
