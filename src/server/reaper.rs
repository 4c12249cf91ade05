//! The registry of live connections and the reaper thread that closes the
//! idle ones.
//!
//! One mutex guards the [`TimeoutQueue`]; a condvar wakes the reaper. The
//! reaper sleeps until the front's deadline (or, with nothing queued, until
//! woken), pops what has expired, releases the lock, and only then closes
//! those connections: no socket call and no logging under the lock. A
//! connection's thread takes the lock only when it starts and when it ends,
//! never per read (see the queue's module doc). The reaper is woken only when
//! the front changes to an earlier deadline, which happens only when an entry
//! goes into an empty queue.

use super::timeout_queue::{TimeoutQueue, Tracked};
use parking_lot::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// A connection's id, unique for the server's lifetime.
pub type ConnId = u64;

/// Live connections in order of idleness, shared by the accept loop (insert),
/// the connection threads (remove), the reaper (expire) and shutdown (visit).
pub struct Registry<T> {
    /// A parking_lot mutex: short critical sections, no poisoning to unwrap.
    state: Mutex<State<T>>,
    /// Wakes the reaper when the deadline moves earlier or at stop.
    wake: Condvar,
}

struct State<T> {
    queue: TimeoutQueue<ConnId, T>,
    /// Set once by [`Registry::stop`]; read by the reaper on every wake-up.
    stopped: bool,
}

impl<T: Tracked> Registry<T> {
    /// A registry that expires items idle for `timeout`; `None` never does.
    pub fn new(timeout: Option<Duration>) -> Self {
        Self {
            state: Mutex::new(State {
                queue: TimeoutQueue::new(timeout),
                stopped: false,
            }),
            wake: Condvar::new(),
        }
    }

    pub fn insert(&self, id: ConnId, item: T, now: Instant) {
        let front_changed = self.state.lock().queue.insert(id, item, now);
        if front_changed {
            self.wake.notify_one();
        }
    }

    pub fn remove(&self, id: ConnId) -> Option<T> {
        self.state.lock().queue.remove(&id)
    }

    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` on a snapshot of the live items, outside the lock.
    pub fn for_each(&self, f: impl FnMut(&T))
    where
        T: Clone,
    {
        let items: Vec<T> = self.state.lock().queue.items().cloned().collect();
        items.iter().for_each(f);
    }

    /// Makes [`run_reaper`](Self::run_reaper) return.
    pub fn stop(&self) {
        self.state.lock().stopped = true;
        self.wake.notify_all();
    }

    /// The reaper's loop: hands every expired item to `close`, outside the
    /// lock, until [`stop`](Self::stop). `clock` is where the reaper reads
    /// the time; the waits themselves are on the real clock.
    pub fn run_reaper(&self, clock: impl Fn() -> Instant, mut close: impl FnMut(T)) {
        let mut state = self.state.lock();
        loop {
            if state.stopped {
                return;
            }
            let expired = state.queue.expire(clock());
            if !expired.is_empty() {
                drop(state);
                expired.into_iter().for_each(|(_, item)| close(item));
                state = self.state.lock();
                continue;
            }
            match state.queue.next_deadline() {
                Some(deadline) => {
                    self.wake.wait_until(&mut state, deadline);
                }
                None => self.wake.wait(&mut state),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::timeout_queue::Activity;
    use crossbeam::channel;
    use std::sync::Arc;
    use std::thread;

    impl Tracked for Arc<(ConnId, Activity)> {
        fn last_activity(&self) -> Instant {
            self.1.last()
        }
    }

    /// The reaper wakes for an item inserted into an empty registry, closes
    /// it no earlier than its deadline, and stops when told.
    #[test]
    fn reaper_closes_at_deadline_and_stops() {
        let timeout = Duration::from_millis(100);
        let registry = Arc::new(Registry::new(Some(timeout)));
        let (closed_tx, closed_rx) = channel::unbounded();
        let reaper = {
            let registry = registry.clone();
            thread::Builder::new()
                .name("test-reaper".into())
                .spawn(move || {
                    registry.run_reaper(Instant::now, |item: Arc<(ConnId, Activity)>| {
                        closed_tx.send((item.0, Instant::now())).unwrap()
                    })
                })
                .unwrap()
        };
        let start = Instant::now();
        registry.insert(7, Arc::new((7, Activity::new(start))), start);
        let (id, at) = closed_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("reaper did not close the item");
        assert_eq!(id, 7);
        assert!(at >= start + timeout, "closed early: {:?}", at - start);
        // Tolerance: a loaded 2-core machine may wake the thread late.
        assert!(
            at < start + timeout + Duration::from_millis(500),
            "closed late: {:?}",
            at - start
        );
        assert!(registry.is_empty());
        registry.stop();
        reaper.join().expect("reaper panicked");
    }
}
