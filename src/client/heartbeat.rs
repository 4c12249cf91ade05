//! The client's heartbeat policy: when to send `HeartBeat` and when to give
//! up on a server, as pure state that takes `now` as an argument.
//!
//! Only bytes from the server count as signs of life; what the client sends
//! does not, so a user who keeps typing to a hung server still sees it given
//! up on. The timeline, from the last byte received:
//!
//! - at `idle`: heartbeat #1;
//! - then every `interval` while unanswered: heartbeats #2 ..= #retries;
//! - at `idle + retries x interval`, with `retries` heartbeats unanswered:
//!   give up.
//!
//! Any byte received starts the timeline over. Deadlines are computed from
//! the last byte received, not from when a heartbeat went out, so a late
//! timer does not push the give-up time back.

use std::time::{Duration, Instant};

/// The heartbeat flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSettings {
    /// Silence from the server before the first heartbeat; `None` turns
    /// heartbeats off (TCP keepalive alone then judges the connection).
    pub idle: Option<Duration>,
    /// Time between unanswered heartbeats.
    pub interval: Duration,
    /// Unanswered heartbeats before giving up; at least 1.
    pub retries: u32,
}

impl HeartbeatSettings {
    /// How long after the last byte received the client gives up:
    /// `idle + retries x interval`, or `None` when heartbeats are off.
    pub fn give_up_after(&self) -> Option<Duration> {
        self.idle.map(|idle| idle + self.interval * self.retries)
    }
}

/// What the caller should do at a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a heartbeat; it is the `n`th unanswered one in a row.
    SendHeartbeat(u32),
    /// `retries` heartbeats went unanswered: the server is unresponsive.
    GiveUp,
}

/// Heartbeat state for one connection.
#[derive(Debug, Clone)]
pub struct HeartbeatPolicy {
    settings: HeartbeatSettings,
    /// When the last byte came from the server (or the connection opened).
    last_received: Instant,
    /// Heartbeat deadlines passed since `last_received`.
    unanswered: u32,
}

impl HeartbeatPolicy {
    /// A policy for a connection opened at `now`.
    pub fn new(settings: HeartbeatSettings, now: Instant) -> Self {
        HeartbeatPolicy {
            settings,
            last_received: now,
            unanswered: 0,
        }
    }

    /// When [`on_deadline`](Self::on_deadline) is next due; `None` when
    /// heartbeats are off.
    pub fn next_deadline(&self) -> Option<Instant> {
        let idle = self.settings.idle?;
        Some(self.last_received + idle + self.settings.interval * self.unanswered)
    }

    /// Records bytes from the server at `now`: the timeline starts over.
    pub fn on_received(&mut self, now: Instant) {
        self.last_received = now;
        self.unanswered = 0;
    }

    /// Changes the silence before the first heartbeat (`--adaptive-heartbeat`
    /// learned the path); the timeline stays counted from the last byte
    /// received, so a shorter idle may make a heartbeat due at once.
    pub fn set_idle(&mut self, idle: Duration) {
        self.settings.idle = Some(idle);
    }

    /// How long the server has been silent at `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_received)
    }

    /// What to do at `now`; `None` if no deadline has passed (heartbeats off,
    /// or called early). One call handles one deadline: after a stall the
    /// next deadline may already be due, and the caller's next call handles
    /// it, so the give-up time stays where the timeline puts it.
    pub fn on_deadline(&mut self, now: Instant) -> Option<Action> {
        if now < self.next_deadline()? {
            return None;
        }
        if self.unanswered >= self.settings.retries {
            return Some(Action::GiveUp);
        }
        self.unanswered += 1;
        Some(Action::SendHeartbeat(self.unanswered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings(idle: u64, interval: u64, retries: u32) -> HeartbeatSettings {
        HeartbeatSettings {
            idle: Some(ms(idle)),
            interval: ms(interval),
            retries,
        }
    }

    #[test]
    fn off_has_no_deadline() {
        let base = Instant::now();
        let off = HeartbeatSettings {
            idle: None,
            ..settings(0, 5, 5)
        };
        let mut policy = HeartbeatPolicy::new(off, base);
        assert_eq!(policy.next_deadline(), None);
        assert_eq!(policy.on_deadline(base + ms(1_000_000)), None);
        assert_eq!(off.give_up_after(), None);
    }

    #[test]
    fn timeline_of_an_unresponsive_server() {
        let base = Instant::now();
        let mut policy = HeartbeatPolicy::new(settings(25_000, 5_000, 5), base);
        for n in 1..=5 {
            let due = base + ms(25_000 + 5_000 * u64::from(n - 1));
            assert_eq!(policy.next_deadline(), Some(due));
            assert_eq!(policy.on_deadline(due), Some(Action::SendHeartbeat(n)));
        }
        let give_up = base + ms(25_000 + 5 * 5_000);
        assert_eq!(policy.next_deadline(), Some(give_up));
        assert_eq!(settings(25_000, 5_000, 5).give_up_after(), Some(ms(50_000)));
        assert_eq!(policy.on_deadline(give_up), Some(Action::GiveUp));
        assert_eq!(policy.on_deadline(give_up + ms(1)), Some(Action::GiveUp));
    }

    #[test]
    fn early_call_does_nothing() {
        let base = Instant::now();
        let mut policy = HeartbeatPolicy::new(settings(100, 50, 2), base);
        assert_eq!(policy.on_deadline(base + ms(99)), None);
        assert_eq!(policy.next_deadline(), Some(base + ms(100)));
    }

    #[test]
    fn any_received_byte_starts_over() {
        let base = Instant::now();
        let mut policy = HeartbeatPolicy::new(settings(100, 50, 2), base);
        assert_eq!(
            policy.on_deadline(base + ms(100)),
            Some(Action::SendHeartbeat(1))
        );
        assert_eq!(
            policy.on_deadline(base + ms(150)),
            Some(Action::SendHeartbeat(2))
        );
        policy.on_received(base + ms(160));
        assert_eq!(policy.silent_for(base + ms(170)), ms(10));
        assert_eq!(policy.next_deadline(), Some(base + ms(260)));
        assert_eq!(
            policy.on_deadline(base + ms(260)),
            Some(Action::SendHeartbeat(1))
        );
    }

    #[test]
    fn a_new_idle_counts_from_the_last_byte_received() {
        let base = Instant::now();
        let mut policy = HeartbeatPolicy::new(settings(20_000, 5_000, 5), base);
        policy.set_idle(ms(6_300));
        assert_eq!(policy.next_deadline(), Some(base + ms(6_300)));
        assert_eq!(
            policy.on_deadline(base + ms(7_000)),
            Some(Action::SendHeartbeat(1))
        );
    }

    #[test]
    fn late_timer_keeps_the_give_up_time() {
        let base = Instant::now();
        let mut policy = HeartbeatPolicy::new(settings(100, 50, 3), base);
        let late = base + ms(240);
        assert_eq!(policy.on_deadline(late), Some(Action::SendHeartbeat(1)));
        assert_eq!(policy.on_deadline(late), Some(Action::SendHeartbeat(2)));
        assert_eq!(policy.on_deadline(late), Some(Action::SendHeartbeat(3)));
        assert_eq!(policy.on_deadline(late), None);
        assert_eq!(policy.next_deadline(), Some(base + ms(250)));
        assert_eq!(policy.on_deadline(base + ms(250)), Some(Action::GiveUp));
    }
}
