//! `--adaptive-heartbeat`: the session's heartbeat idle learned from the
//! path instead of guessed. A learner runs the idle-timeout search
//! ([`probe::search`]) beside the session, on probe connections, never on
//! the session itself; once it has a bracket the session's heartbeat idle
//! becomes 90 % of the longest silence that held ([`settled_idle`]).
//!
//! - At most one learning run at a time, and none once a bracket is known,
//!   until the session is lost after a silence at least as long as its
//!   heartbeat idle (the path changed: another network, another NAT). Then
//!   the heartbeat idle falls back to `--heartbeat-idle-min` and, with
//!   `--reconnect`, the next session learns again.
//! - A loss after a shorter silence (a server killed, a reset) says nothing
//!   about the path's timeout: the learned idle stays.
//!
//! The decisions are [`AdaptiveIdle`]'s, pure state with no I/O; the
//! [`Learner`] owns the learning thread (`hb-learner`), whose result the
//! session's coordinator receives in its `select!`.

use super::idle_search::{Bracket, SearchSettings};
use super::probe::{self, Found, SearchError};
use super::{ClientConfig, ClientError};
use crate::config::display_duration;
use crossbeam::channel::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The share of the longest silence that held which the session keeps as
/// its heartbeat idle: a 10 % margin for the path's timer granularity and
/// the heartbeat's own scheduling delays.
pub const SHARE: f64 = 0.9;

/// Probe connections at once, the most a learner costs the server.
pub const PARALLEL_PROBES: usize = 8;

/// The `--heartbeat-idle-min` / `--heartbeat-idle-max` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveSettings {
    /// The floor, and the fallback after the path changed.
    pub min: Duration,
    /// The ceiling, and the longest silence the learner probes.
    pub max: Duration,
}

/// The heartbeat idle a bracket allows: [`SHARE`] of the longest silence
/// that held, within `min` and `max`, but never longer than a silence that
/// held (so never at or above one that failed): a path shorter than `min`
/// wins over the flag. `None` when no silence held.
pub fn settled_idle(bracket: Bracket, settings: AdaptiveSettings) -> Option<Duration> {
    if bracket.held.is_zero() {
        return None;
    }
    let share = whole_millis(bracket.held.mul_f64(SHARE));
    let bounded = share.clamp(settings.min, settings.max.max(settings.min));
    Some(if bounded > bracket.held {
        share
    } else {
        bounded
    })
}

fn whole_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The session's heartbeat idle and how it changes.
#[derive(Debug, Clone)]
pub struct AdaptiveIdle {
    settings: AdaptiveSettings,
    current: Duration,
}

impl AdaptiveIdle {
    /// Starts at `initial` (`--heartbeat-idle`).
    pub fn new(settings: AdaptiveSettings, initial: Duration) -> Self {
        AdaptiveIdle {
            settings,
            current: initial,
        }
    }

    /// The heartbeat idle now.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// A learning run found `bracket`: the new heartbeat idle and the line
    /// that says so, or `None` when it does not change.
    pub fn on_found(&mut self, bracket: Bracket) -> Option<(Duration, String)> {
        let idle = settled_idle(bracket, self.settings)?;
        if idle == self.current {
            return None;
        }
        self.current = idle;
        let lost = match bracket.failed {
            Some(failed) => format!("lost after {}", display_duration(failed)),
            None => "no longer silence probed".to_string(),
        };
        let line = format!(
            "heartbeat idle now {} (the path held {}; {lost})",
            display_duration(idle),
            display_duration(bracket.held)
        );
        Some((idle, line))
    }

    /// The session was lost after `silent_for` of silence. When that is at
    /// least the heartbeat idle the path has changed: falls back to the
    /// minimum and returns the line that says so (learning must start
    /// again); otherwise `None`.
    pub fn on_loss(&mut self, silent_for: Duration) -> Option<String> {
        if silent_for < self.current {
            return None;
        }
        self.current = self.settings.min;
        Some(format!(
            "heartbeat idle now {} (--heartbeat-idle-min: the session was lost after {} of \
             silence; learning the path again)",
            display_duration(self.current),
            display_duration(silent_for)
        ))
    }
}

/// A learning run on its thread.
struct Running {
    /// Dropped to stop the run.
    stop: Sender<()>,
    found: Receiver<Result<Found, SearchError>>,
    handle: JoinHandle<()>,
}

/// The learner of one client: its [`AdaptiveIdle`] and its learning runs.
pub struct Learner {
    addr: String,
    config: ClientConfig,
    idle: AdaptiveIdle,
    running: Option<Running>,
    /// A run has ended since the last loss: no other until the next one.
    learned: bool,
}

impl Learner {
    /// A learner for `addr`, starting at `config`'s heartbeat idle.
    pub fn new(addr: &str, config: &ClientConfig, settings: AdaptiveSettings) -> Self {
        let initial = config.heartbeat.idle.unwrap_or(settings.min);
        Learner {
            addr: addr.to_string(),
            config: config.clone(),
            idle: AdaptiveIdle::new(settings, initial),
            running: None,
            learned: false,
        }
    }

    /// The session's heartbeat idle now.
    pub fn idle(&self) -> Duration {
        self.idle.current()
    }

    /// Starts a learning run unless one is running or a bracket is known.
    pub fn start(&mut self) -> Result<(), ClientError> {
        if self.learned || self.running.is_some() {
            return Ok(());
        }
        let (stop, stopped) = channel::bounded::<()>(0);
        let (found_tx, found) = channel::bounded(1);
        let (addr, config) = (self.addr.clone(), self.config.clone());
        let settings = SearchSettings {
            max: self.idle.settings.max,
            parallel: PARALLEL_PROBES,
        };
        let handle = thread::Builder::new()
            .name("hb-learner".into())
            .spawn(move || {
                let _ = found_tx.send(probe::search(&addr, &config, settings, &stopped));
            })
            .map_err(ClientError::Spawn)?;
        log::debug!("learning the path's idle timeout on probe connections");
        self.running = Some(Running {
            stop,
            found,
            handle,
        });
        Ok(())
    }

    /// Where the running learning run's result arrives (never, when none
    /// runs), for the coordinator's `select!`.
    pub fn results(&self) -> Receiver<Result<Found, SearchError>> {
        match &self.running {
            Some(running) => running.found.clone(),
            None => channel::never(),
        }
    }

    /// The run's result arrived: the new heartbeat idle, if it changes.
    pub fn on_result(&mut self, result: Result<Found, SearchError>) -> Option<Duration> {
        self.stop();
        self.learned = true;
        match result {
            Ok(found) => {
                let (idle, line) = self.idle.on_found(found.bracket)?;
                log::info!("{line}");
                Some(idle)
            }
            Err(SearchError::Stopped) => None,
            Err(e) => {
                log::warn!(
                    "cannot learn the path's idle timeout: {e}; keeping the heartbeat idle at {}",
                    display_duration(self.idle.current())
                );
                None
            }
        }
    }

    /// The session was lost after `silent_for` of silence: when the path
    /// has changed, falls back to the minimum and learns again at the next
    /// [`start`](Self::start).
    pub fn on_loss(&mut self, silent_for: Duration) {
        if let Some(line) = self.idle.on_loss(silent_for) {
            log::info!("{line}");
            self.stop();
            self.learned = false;
        }
    }

    /// Stops the running learning run, if any, and joins its thread.
    fn stop(&mut self) {
        if let Some(Running { stop, handle, .. }) = self.running.take() {
            drop(stop);
            if handle.join().is_err() {
                log::error!("the learner panicked");
            }
        }
    }
}

impl Drop for Learner {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    const BOUNDS: AdaptiveSettings = AdaptiveSettings {
        min: Duration::from_secs(5),
        max: Duration::from_secs(600),
    };

    fn bracket(held: f64, failed: Option<f64>) -> Bracket {
        Bracket {
            held: secs(held),
            failed: failed.map(secs),
        }
    }

    #[test]
    fn ninety_percent_of_what_held() {
        assert_eq!(
            settled_idle(bracket(7.4, Some(8.0)), BOUNDS),
            Some(secs(6.66))
        );
        assert_eq!(
            settled_idle(bracket(1638.4, Some(1740.8)), BOUNDS),
            Some(secs(600.0))
        );
        assert_eq!(
            settled_idle(bracket(600.0, None), BOUNDS),
            Some(secs(540.0))
        );
    }

    #[test]
    fn the_minimum_unless_the_path_failed_below_it() {
        assert_eq!(
            settled_idle(bracket(5.0, Some(6.0)), BOUNDS),
            Some(secs(5.0))
        );
        // 3 s failed: 5 s would lose the session.
        assert_eq!(
            settled_idle(bracket(2.0, Some(3.0)), BOUNDS),
            Some(secs(1.8))
        );
        // 5.6 s failed, and 5 s was never shown to hold: the share it is.
        assert_eq!(
            settled_idle(bracket(4.8, Some(5.6)), BOUNDS),
            Some(secs(4.32))
        );
        assert_eq!(settled_idle(bracket(0.0, Some(1.0)), BOUNDS), None);
    }

    #[test]
    fn never_above_a_silence_that_held() {
        for held in 1..200 {
            let held = f64::from(held) / 10.0;
            for width in [0.1, 0.5, 1.0] {
                let b = bracket(held, Some(held + width));
                let idle = settled_idle(b, BOUNDS).unwrap();
                assert!(
                    idle <= b.held && idle < b.failed.unwrap(),
                    "{b:?} gave {idle:?}"
                );
            }
        }
    }

    #[test]
    fn each_change_is_one_line_and_a_loss_falls_back() {
        let mut idle = AdaptiveIdle::new(BOUNDS, secs(20.0));
        let (now, line) = idle.on_found(bracket(7.4, Some(8.0))).unwrap();
        assert_eq!(now, secs(6.66));
        assert_eq!(
            line,
            "heartbeat idle now 6.66s (the path held 7.4s; lost after 8s)"
        );
        assert_eq!(idle.on_found(bracket(7.4, Some(8.0))), None, "no change");
        // Lost after 2 s of silence: not the path's timeout.
        assert_eq!(idle.on_loss(secs(2.0)), None);
        assert_eq!(idle.current(), secs(6.66));
        let line = idle.on_loss(secs(31.0)).unwrap();
        assert!(
            line.starts_with("heartbeat idle now 5s (--heartbeat-idle-min"),
            "{line}"
        );
        assert_eq!(idle.current(), secs(5.0));
    }
}
