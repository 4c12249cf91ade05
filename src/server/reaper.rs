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
//!
//! The registry also adds up how long its lock has been held, so the cost of
//! a mass close (10,000 connections ending at once) can be measured rather
//! than guessed: two clock reads per critical section, which happen only
//! when a connection starts or ends and when the reaper wakes.

use super::timeout_queue::{TimeoutQueue, Tracked};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Nanoseconds `state` has been held in total, added by each critical
    /// section as it ends; read by [`lock_held`](Registry::lock_held). An
    /// atomic so that reading it does not take the lock it measures.
    held_nanos: AtomicU64,
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
            held_nanos: AtomicU64::new(0),
        }
    }

    /// Runs `f` under the lock, adding the time it held it to the total.
    fn locked<R>(&self, f: impl FnOnce(&mut State<T>) -> R) -> R {
        let mut state = self.state.lock();
        let since = Instant::now();
        let result = f(&mut state);
        self.add_held(since);
        drop(state);
        result
    }

    fn add_held(&self, since: Instant) {
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.held_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How long the registry's lock has been held in total, by everyone.
    pub fn lock_held(&self) -> Duration {
        Duration::from_nanos(self.held_nanos.load(Ordering::Relaxed))
    }

    pub fn insert(&self, id: ConnId, item: T, now: Instant) {
        let front_changed = self.locked(|state| state.queue.insert(id, item, now));
        if front_changed {
            self.wake.notify_one();
        }
    }

    /// Amortized O(1) (see the timeout queue's module doc): the close of
    /// every connection takes this lock once.
    pub fn remove(&self, id: ConnId) -> Option<T> {
        self.locked(|state| state.queue.remove(&id))
    }

    pub fn len(&self) -> usize {
        self.locked(|state| state.queue.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` on a snapshot of the live items, outside the lock.
    pub fn for_each(&self, f: impl FnMut(&T))
    where
        T: Clone,
    {
        let items: Vec<T> = self.locked(|state| state.queue.items().cloned().collect());
        items.iter().for_each(f);
    }

    /// Makes [`run_reaper`](Self::run_reaper) return.
    pub fn stop(&self) {
        self.locked(|state| state.stopped = true);
        self.wake.notify_all();
    }

    /// The reaper's loop: hands every expired item to `close`, outside the
    /// lock, until [`stop`](Self::stop). `clock` is where the reaper reads
    /// the time; the waits themselves are on the real clock.
    pub fn run_reaper(&self, clock: impl Fn() -> Instant, mut close: impl FnMut(T)) {
        let mut state = self.state.lock();
        loop {
            // The lock is held from here to the drop or the wait below.
            let since = Instant::now();
            if state.stopped {
                self.add_held(since);
                return;
            }
            let expired = state.queue.expire(clock());
            if !expired.is_empty() {
                self.add_held(since);
                drop(state);
                expired.into_iter().for_each(|(_, item)| close(item));
                state = self.state.lock();
                continue;
            }
            let deadline = state.queue.next_deadline();
            self.add_held(since);
            wait(&self.wake, &mut state, deadline);
        }
    }
}

/// Sleeps until `deadline` (or forever) unless woken, releasing the lock.
fn wait<T>(wake: &Condvar, state: &mut MutexGuard<'_, State<T>>, deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => {
            wake.wait_until(state, deadline);
        }
        None => wake.wait(state),
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
