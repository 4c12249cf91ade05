//! Graceful drain: after the listener closes, the open connections are
//! closed one by one, spread evenly over a chosen time, so that their clients
//! reconnect to the other instances behind a load balancer in a trickle
//! rather than all in the same second.
//!
//! [`DrainSchedule`] is the pure part: given the number of connections and
//! the drain's length, it says how many should be closed by `now` and when
//! the next close falls due. [`run`] is the edge that reads the clock, closes
//! each connection through [`Connection::close`] (the same path as shutdown,
//! so each finishes the reply it is writing) and logs. It holds the
//! connections only weakly, so that one that ends before its turn (its
//! client left) gives back its descriptor and socket at once, and lets go of
//! each as it closes it, rather than keeping them all to the drain's end.

use super::connection::{CloseReason, Connection};
use crossbeam::channel::{Receiver, RecvTimeoutError};
use std::collections::VecDeque;
use std::net::Shutdown;
use std::sync::Weak;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The longest drain `--drain` accepts. A drain holds a restart back for its
/// whole length; past an hour an operator surely meant something else.
pub const MAX_DRAIN: Duration = Duration::from_secs(3600);

/// How often the drain's progress is logged (at debug level).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// When each of `total` connections is closed during a drain of `duration`
/// that started at `start`: the i-th close (counting from 1) falls due at
/// `start + duration * i / total`, so the last one is due at the end and no
/// stretch of the drain closes more than its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSchedule {
    start: Instant,
    duration: Duration,
    total: usize,
}

impl DrainSchedule {
    pub fn new(start: Instant, duration: Duration, total: usize) -> Self {
        Self {
            start,
            duration,
            total,
        }
    }

    /// How many connections should have been closed by `now`.
    pub fn due(&self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= self.duration {
            return self.total;
        }
        // elapsed < duration, so the quotient is below total and fits.
        (self.total as u128 * elapsed.as_nanos() / self.duration.as_nanos()) as usize
    }

    /// When the close after the first `closed` ones falls due; `None` once
    /// all are due. Rounded up, so `due` at that instant counts it.
    pub fn next_due(&self, closed: usize) -> Option<Instant> {
        if closed >= self.total {
            return None;
        }
        let numerator = self.duration.as_nanos() * (closed as u128 + 1);
        let nanos = numerator.div_ceil(self.total as u128);
        // At most duration's nanoseconds, which came from a Duration.
        Some(self.start + Duration::from_nanos(nanos as u64))
    }
}

/// Closes `connections`, in the order given (the server gives the longest
/// idle first), on the schedule of a drain of `duration` starting now. Returns early when
/// every connection thread has ended (`threads_done` disconnects). `open` is
/// the server's count of running connection threads, for the progress log.
pub fn run(
    connections: Vec<Weak<Connection>>,
    duration: Duration,
    threads_done: &Receiver<()>,
    open: &AtomicUsize,
) {
    let start = Instant::now();
    let total = connections.len();
    let schedule = DrainSchedule::new(start, duration, total);
    log::info!(
        "draining {total} connections over {}",
        humantime::format_duration(duration)
    );
    let mut connections = VecDeque::from(connections);
    let mut closed = 0;
    let mut next_progress = start + PROGRESS_EVERY;
    loop {
        let now = Instant::now();
        let due = schedule.due(now);
        for conn in connections.drain(..due - closed) {
            if let Some(conn) = conn.upgrade() {
                conn.close(CloseReason::Drain, Shutdown::Read);
            }
        }
        closed = due;
        if now >= next_progress {
            log::debug!(
                "drain: {closed} of {total} closed, {} still open",
                open.load(Ordering::Relaxed)
            );
            next_progress += PROGRESS_EVERY;
        }
        let Some(next_close) = schedule.next_due(closed) else {
            break;
        };
        // Nothing is ever sent: this wakes at the deadline, or returns
        // Disconnected once the last connection thread has ended.
        if let Err(RecvTimeoutError::Disconnected) =
            threads_done.recv_deadline(next_close.min(next_progress))
        {
            break;
        }
    }
    log::info!(
        "drain ended after {}: {closed} of {total} connections closed by the drain",
        humantime::format_duration(round_to_millis(start.elapsed())),
    );
}

fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn closes_are_spread_evenly_and_the_last_is_due_at_the_end() {
        let start = Instant::now();
        let s = DrainSchedule::new(start, ms(2000), 100);
        assert_eq!(s.due(start), 0);
        assert_eq!(s.due(start + ms(19)), 0);
        assert_eq!(s.due(start + ms(20)), 1);
        assert_eq!(s.due(start + ms(1000)), 50);
        assert_eq!(s.due(start + ms(1999)), 99);
        assert_eq!(s.due(start + ms(2000)), 100);
        assert_eq!(s.due(start + ms(9000)), 100);
        // Every 200 ms window holds a tenth of them.
        for w in 0..10 {
            let from = s.due(start + ms(200 * w));
            let to = s.due(start + ms(200 * (w + 1)));
            assert_eq!(to - from, 10, "window {w}");
        }
    }

    #[test]
    fn next_due_is_counted_by_due_at_that_instant() {
        let start = Instant::now();
        for (duration, total) in [(ms(2000), 100), (ms(1000), 3), (ms(7), 1000), (ms(1), 1)] {
            let s = DrainSchedule::new(start, duration, total);
            let mut previous = start;
            for closed in 0..total {
                let at = s.next_due(closed).unwrap();
                assert!(at >= previous, "not monotonic at {closed}");
                assert!(at <= start + duration);
                assert!(s.due(at) > closed, "{closed} of {total}: due at {at:?}");
                previous = at;
            }
            assert_eq!(s.next_due(total), None);
        }
    }

    #[test]
    fn fewer_connections_than_windows() {
        let start = Instant::now();
        let s = DrainSchedule::new(start, ms(4000), 2);
        assert_eq!(s.next_due(0), Some(start + ms(2000)));
        assert_eq!(s.next_due(1), Some(start + ms(4000)));
        assert_eq!(s.due(start + ms(1999)), 0);
    }

    #[test]
    fn nothing_to_drain() {
        let start = Instant::now();
        let s = DrainSchedule::new(start, ms(1000), 0);
        assert_eq!(s.due(start + ms(500)), 0);
        assert_eq!(s.next_due(0), None);
    }

    #[test]
    fn a_clock_before_the_start_counts_as_the_start() {
        let start = Instant::now() + ms(100);
        let s = DrainSchedule::new(start, ms(1000), 10);
        assert_eq!(s.due(start - ms(50)), 0);
    }
}
