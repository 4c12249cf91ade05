//! When to try connecting again after a lost connection: exponential
//! backoff with full jitter, as pure state that takes `now` and a random
//! source as arguments.
//!
//! Before attempt n (n = 1 is the first after the loss) the client waits a
//! uniformly random time in `[0, min(max, min x 2^(n-1))]` ("full jitter",
//! the variant that spreads a crowd of clients best). So 10,000 clients of a
//! restarted server do not all come back in the same 100 ms, and a server
//! that stays down is tried ever less often, at most every `max`.
//!
//! The counter is reset only by [`Backoff::on_received`], when a
//! reconnected connection has received a byte from the server: a server that
//! accepts and closes at once counts as a failed attempt, so it cannot cause
//! a tight loop.

use std::time::{Duration, Instant};

/// The `--reconnect-*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffSettings {
    /// The cap of attempt 1; doubled for each attempt after it. More than 0.
    pub min: Duration,
    /// The largest cap; at least `min`.
    pub max: Duration,
    /// Consecutive failed attempts before giving up; `None` never gives up.
    pub attempts: Option<u32>,
}

impl BackoffSettings {
    /// The longest wait before attempt `n` (from 1):
    /// `min(max, min x 2^(n-1))`.
    pub fn cap(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1);
        // 2^31 x min overflows nothing that fits a Duration; past that the
        // cap is `max` anyway.
        match 1u32.checked_shl(doublings) {
            Some(factor) => self.min.saturating_mul(factor).min(self.max),
            None => self.max,
        }
    }
}

/// Where the waits' randomness comes from, injected so tests can fix it.
pub trait Jitter {
    /// A duration drawn from `[0, cap]`.
    fn draw(&mut self, cap: Duration) -> Duration;
}

/// Full jitter from fastrand's generator: uniform over `[0, cap]`, to the
/// nanosecond. [`fastrand::Rng::new`] seeds each process differently, so two
/// clients started together draw different waits.
impl Jitter for fastrand::Rng {
    fn draw(&mut self, cap: Duration) -> Duration {
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.u64(0..=nanos))
    }
}

/// No jitter: every wait is the whole cap (plain exponential backoff). Only
/// for measuring what jitter buys (hb-bench's `restart --no-jitter`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJitter;

impl Jitter for NoJitter {
    fn draw(&mut self, cap: Duration) -> Duration {
        cap
    }
}

/// The next attempt to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt after the loss.
    pub number: u32,
    /// How long to wait before it.
    pub delay: Duration,
    /// When it is due: `now + delay`.
    pub at: Instant,
}

/// Backoff state for one client.
#[derive(Debug, Clone)]
pub struct Backoff<J> {
    settings: BackoffSettings,
    jitter: J,
    /// Attempts made since the last reset; each one has failed unless
    /// [`on_received`](Self::on_received) says otherwise.
    attempts: u32,
}

impl<J: Jitter> Backoff<J> {
    pub fn new(settings: BackoffSettings, jitter: J) -> Self {
        Backoff {
            settings,
            jitter,
            attempts: 0,
        }
    }

    /// Schedules the next attempt, the connection having been lost (or the
    /// last attempt having failed) at `now`; `None` once `attempts`
    /// consecutive attempts have failed.
    pub fn next_attempt(&mut self, now: Instant) -> Option<Attempt> {
        if self
            .settings
            .attempts
            .is_some_and(|limit| self.attempts >= limit)
        {
            return None;
        }
        // Saturates: with unlimited attempts the count may run for ever;
        // past 2^32 attempts every cap is `max` anyway.
        self.attempts = self.attempts.saturating_add(1);
        let delay = self.jitter.draw(self.settings.cap(self.attempts));
        Some(Attempt {
            number: self.attempts,
            delay,
            at: now + delay,
        })
    }

    /// Something other than a refusal came from the server: the connection
    /// works, and the next loss starts over at attempt 1.
    pub fn on_received(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings(min: u64, max: u64, attempts: Option<u32>) -> BackoffSettings {
        BackoffSettings {
            min: ms(min),
            max: ms(max),
            attempts,
        }
    }

    /// Draws the given fractions of each cap, in order, and records the caps
    /// it was asked for.
    #[derive(Default)]
    struct Scripted {
        fractions: VecDeque<f64>,
        caps: Vec<Duration>,
    }

    impl Jitter for Scripted {
        fn draw(&mut self, cap: Duration) -> Duration {
            self.caps.push(cap);
            cap.mul_f64(self.fractions.pop_front().expect("a scripted draw"))
        }
    }

    #[test]
    fn caps_double_from_min_up_to_max() {
        let s = settings(500, 30_000, None);
        let caps: Vec<u64> = (1..=9).map(|n| s.cap(n).as_millis() as u64).collect();
        assert_eq!(
            caps,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(s.cap(u32::MAX), ms(30_000));
        assert_eq!(s.cap(40), ms(30_000));
    }

    #[test]
    fn waits_are_drawn_within_each_cap_from_now() {
        let base = Instant::now();
        let jitter = Scripted {
            fractions: [0.0, 0.5, 1.0, 0.25].into(),
            ..Scripted::default()
        };
        let mut backoff = Backoff::new(settings(100, 300, None), jitter);
        let first = backoff.next_attempt(base).unwrap();
        assert_eq!(
            first,
            Attempt {
                number: 1,
                delay: ms(0),
                at: base,
            }
        );
        let second = backoff.next_attempt(base + ms(10)).unwrap();
        assert_eq!((second.number, second.delay), (2, ms(100)));
        assert_eq!(second.at, base + ms(110));
        assert_eq!(backoff.next_attempt(base).unwrap().delay, ms(300));
        assert_eq!(backoff.next_attempt(base).unwrap().delay, ms(75));
        assert_eq!(backoff.jitter.caps, [ms(100), ms(200), ms(300), ms(300)]);
    }

    #[test]
    fn only_a_received_byte_resets_the_counter() {
        let base = Instant::now();
        let mut backoff = Backoff::new(settings(100, 10_000, None), NoJitter);
        let delays: Vec<Duration> = (0..3)
            .map(|_| backoff.next_attempt(base).unwrap().delay)
            .collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400)]);
        backoff.on_received();
        let again = backoff.next_attempt(base).unwrap();
        assert_eq!((again.number, again.delay), (1, ms(100)));
    }

    #[test]
    fn gives_up_after_the_attempts_allowed() {
        let base = Instant::now();
        let mut backoff = Backoff::new(settings(100, 1000, Some(2)), NoJitter);
        assert_eq!(backoff.next_attempt(base).unwrap().number, 1);
        assert_eq!(backoff.next_attempt(base).unwrap().number, 2);
        assert_eq!(backoff.next_attempt(base), None);
        assert_eq!(backoff.next_attempt(base), None);
        backoff.on_received();
        assert_eq!(backoff.next_attempt(base).unwrap().number, 1);
    }

    #[test]
    fn fastrand_draws_stay_within_the_cap_and_spread() {
        let mut rng = fastrand::Rng::with_seed(7);
        let draws: Vec<Duration> = (0..1000).map(|_| rng.draw(ms(1000))).collect();
        assert!(draws.iter().all(|d| *d <= ms(1000)));
        let low = draws.iter().filter(|d| **d < ms(500)).count();
        assert!((400..600).contains(&low), "{low} of 1000 below half");
        assert_eq!(rng.draw(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn no_jitter_waits_the_whole_cap() {
        assert_eq!(NoJitter.draw(ms(1234)), ms(1234));
    }

    #[test]
    fn the_attempt_count_saturates_instead_of_overflowing() {
        let base = Instant::now();
        let mut backoff = Backoff::new(settings(100, 5000, None), NoJitter);
        backoff.attempts = u32::MAX - 1;
        for _ in 0..3 {
            let attempt = backoff.next_attempt(base).expect("never gives up");
            assert_eq!((attempt.number, attempt.delay), (u32::MAX, ms(5000)));
        }
    }
}
