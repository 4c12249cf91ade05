//! Heartbeat round-trip times: which heartbeat a reply answers, how long it
//! took, and the session's figures (sent, answered, min / median / max), as
//! pure state that takes `now` as an argument.
//!
//! The server answers in order, so the first reply to a heartbeat answers
//! the oldest heartbeat still unanswered. A round trip runs from when the
//! coordinator hands the heartbeat to the socket writer to when its reply
//! line has arrived, so it includes the replies to lines sent before it.
//! Memory is bounded: the median is over the last [`SAMPLES_MAX`] round
//! trips (min and max over all of them), and the heartbeats in flight are
//! at most `--heartbeat-retries`, as the heartbeat policy sends no more.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// Round trips kept for the median: at the default heartbeat (one per 25 s
/// of silence) about three days of them, in 160 KB at most.
pub const SAMPLES_MAX: usize = 10_000;

/// The session's heartbeat round trips.
#[derive(Debug, Default)]
pub struct RoundTrips {
    /// When each unanswered heartbeat was sent, oldest first.
    in_flight: VecDeque<Instant>,
    sent: u64,
    answered: u64,
    /// The last [`SAMPLES_MAX`] round trips; `next` is where the next one
    /// goes once it is full.
    samples: Vec<Duration>,
    next: usize,
    min: Option<Duration>,
    max: Option<Duration>,
}

/// The figures of a session, for the summary line at exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub sent: u64,
    pub answered: u64,
    /// Min, median and max round trip; `None` when nothing was answered.
    pub round_trip: Option<(Duration, Duration, Duration)>,
}

impl RoundTrips {
    /// Records a heartbeat sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.in_flight.push_back(now);
        self.sent += 1;
    }

    /// Records the reply to the oldest unanswered heartbeat, arrived at
    /// `now`; returns its round trip, or `None` if no heartbeat was in
    /// flight.
    pub fn answered(&mut self, now: Instant) -> Option<Duration> {
        let sent = self.in_flight.pop_front()?;
        let round_trip = now.saturating_duration_since(sent);
        self.answered += 1;
        self.min = Some(self.min.map_or(round_trip, |m| m.min(round_trip)));
        self.max = Some(self.max.map_or(round_trip, |m| m.max(round_trip)));
        if self.samples.len() < SAMPLES_MAX {
            self.samples.push(round_trip);
        } else {
            self.samples[self.next] = round_trip;
            self.next = (self.next + 1) % SAMPLES_MAX;
        }
        Some(round_trip)
    }

    /// The figures so far. The median of an even count is the upper of the
    /// two middle round trips.
    pub fn summary(&self) -> Summary {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied();
        let round_trip = match (self.min, median, self.max) {
            (Some(min), Some(median), Some(max)) => Some((min, median, max)),
            _ => None,
        };
        Summary {
            sent: self.sent,
            answered: self.answered,
            round_trip,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "heartbeats: {} sent, {} answered",
            self.sent, self.answered
        )?;
        match self.round_trip {
            Some((min, median, max)) => write!(
                f,
                "; round trip min {min:.1?}, median {median:.1?}, max {max:.1?}"
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_sent_has_no_round_trip() {
        let trips = RoundTrips::default();
        let summary = trips.summary();
        assert_eq!(
            summary,
            Summary {
                sent: 0,
                answered: 0,
                round_trip: None
            }
        );
        assert_eq!(summary.to_string(), "heartbeats: 0 sent, 0 answered");
    }

    #[test]
    fn replies_answer_the_oldest_heartbeat_first() {
        let base = Instant::now();
        let mut trips = RoundTrips::default();
        trips.sent(base);
        trips.sent(base + ms(100));
        assert_eq!(trips.answered(base + ms(150)), Some(ms(150)));
        assert_eq!(trips.answered(base + ms(160)), Some(ms(60)));
        assert_eq!(trips.answered(base + ms(170)), None, "nothing in flight");
        assert_eq!(trips.summary().answered, 2);
    }

    #[test]
    fn min_median_max_and_the_summary_line() {
        let base = Instant::now();
        let mut trips = RoundTrips::default();
        for (i, rtt) in [30, 10, 20, 50, 40].into_iter().enumerate() {
            let sent = base + ms(1000 * i as u64);
            trips.sent(sent);
            trips.answered(sent + ms(rtt));
        }
        trips.sent(base + ms(10_000));
        let summary = trips.summary();
        assert_eq!(summary.round_trip, Some((ms(10), ms(30), ms(50))));
        assert_eq!((summary.sent, summary.answered), (6, 5));
        assert_eq!(
            summary.to_string(),
            "heartbeats: 6 sent, 5 answered; round trip min 10.0ms, median 30.0ms, max 50.0ms"
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_upper_middle() {
        let base = Instant::now();
        let mut trips = RoundTrips::default();
        for rtt in [1, 2, 3, 4] {
            trips.sent(base);
            trips.answered(base + ms(rtt));
        }
        assert_eq!(trips.summary().round_trip, Some((ms(1), ms(3), ms(4))));
    }

    #[test]
    fn samples_are_bounded_and_the_median_follows_the_latest() {
        let base = Instant::now();
        let mut trips = RoundTrips::default();
        trips.sent(base);
        trips.answered(base + ms(1));
        for _ in 0..SAMPLES_MAX {
            trips.sent(base);
            trips.answered(base + ms(500));
        }
        assert_eq!(trips.samples.len(), SAMPLES_MAX);
        let summary = trips.summary();
        assert_eq!(summary.answered, SAMPLES_MAX as u64 + 1);
        assert_eq!(summary.round_trip, Some((ms(1), ms(500), ms(500))));
    }

    #[test]
    fn a_reply_stamped_before_its_heartbeat_gives_zero_not_a_panic() {
        let base = Instant::now() + ms(1000);
        let mut trips = RoundTrips::default();
        trips.sent(base);
        assert_eq!(trips.answered(base - ms(10)), Some(Duration::ZERO));
    }
}
