//! The FIFO timeout queue: which connection has been idle longest.
//!
//! This is the seed's list + hash map (insert_que / update_que / del_que /
//! check_out) as one `IndexMap`, keyed by connection, in order of the time
//! each entry was queued: the front is the entry queued longest ago.
//!
//! Recording activity must not cost O(connections), and `IndexMap` cannot
//! move an entry to the back in less than O(n). So activity is not recorded
//! here at all: each connection stamps its own [`Activity`] (one atomic store,
//! no lock), and the queue catches up lazily. When the front's deadline
//! comes, [`TimeoutQueue::expire`] reads the front entries' stamps: an entry
//! idle for the whole timeout is expired; one that was active since it was
//! queued is re-queued at its last activity, in order. Each entry is looked
//! at about once per timeout period, and each look is one batch of O(n)
//! work, whatever the read rate.
//!
//! Invariant: entries are ordered by `queued_at`, and every entry's
//! `queued_at` is at or before its item's last activity.
//! Guarantee: an item is returned by `expire(now)` only if its last activity
//! is at least `timeout` before `now` (never early), and it is returned by
//! the first call to `expire` at or after `last activity + timeout` (never
//! late beyond the caller's own wake-up latency).
//!
//! Time is an argument everywhere, so the queue is tested without sleeping.

use indexmap::IndexMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A connection's last activity, stamped lock-free by its own thread and read
/// by the reaper.
#[derive(Debug)]
pub struct Activity {
    /// The connection's start; stamps are nanoseconds after it.
    base: Instant,
    /// Written (Relaxed) by the connection's thread on every read; read by
    /// the reaper. An atomic because it is on the per-read path, where a lock
    /// shared with the reaper would serialize every connection.
    nanos_after_base: AtomicU64,
}

impl Activity {
    pub fn new(now: Instant) -> Self {
        Self {
            base: now,
            nanos_after_base: AtomicU64::new(0),
        }
    }

    /// Records activity at `now`.
    pub fn touch(&self, now: Instant) {
        // A u64 of nanoseconds spans 584 years: saturating is only a formality.
        let nanos =
            u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        self.nanos_after_base.store(nanos, Ordering::Relaxed);
    }

    /// The time of the last recorded activity.
    pub fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos_after_base.load(Ordering::Relaxed))
    }
}

/// Something the queue can ask for its last activity.
pub trait Tracked {
    fn last_activity(&self) -> Instant;
}

#[derive(Debug)]
struct Entry<T> {
    queued_at: Instant,
    item: T,
}

/// Items ordered by idleness, expiring `timeout` after their last activity.
/// With no timeout, it only keeps the items (a registry that never expires).
#[derive(Debug)]
pub struct TimeoutQueue<K, T> {
    timeout: Option<Duration>,
    entries: IndexMap<K, Entry<T>>,
}

impl<K: Hash + Eq, T: Tracked> TimeoutQueue<K, T> {
    pub fn new(timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            entries: IndexMap::new(),
        }
    }

    /// Adds `item` at the back, active at `now`. Returns true when it became
    /// the front, i.e. when the next deadline changed.
    pub fn insert(&mut self, key: K, item: T, now: Instant) -> bool {
        // Keep the order even if callers' clocks were read out of order.
        let queued_at = self
            .entries
            .last()
            .map_or(now, |(_, back)| back.queued_at.max(now));
        self.entries.insert(key, Entry { queued_at, item });
        self.entries.len() == 1
    }

    /// Removes an item (its connection ended). O(n): `IndexMap` shifts the
    /// entries behind it; connections end far less often than they read.
    pub fn remove(&mut self, key: &K) -> Option<T> {
        self.entries.shift_remove(key).map(|e| e.item)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.entries.values().map(|e| &e.item)
    }

    /// When [`expire`](Self::expire) next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.timeout?;
        let (_, front) = self.entries.first()?;
        Some(front.queued_at + timeout)
    }

    /// Removes and returns every item idle for at least the timeout at `now`,
    /// oldest first; re-queues in order those that were active meanwhile.
    pub fn expire(&mut self, now: Instant) -> Vec<(K, T)> {
        let Some(timeout) = self.timeout else {
            return Vec::new();
        };
        let due = self
            .entries
            .values()
            .take_while(|e| e.queued_at + timeout <= now)
            .count();
        if due == 0 {
            return Vec::new();
        }
        let mut expired = Vec::new();
        let mut active = Vec::new();
        for (key, entry) in self.entries.drain(..due) {
            let last = entry.item.last_activity();
            if last + timeout <= now {
                expired.push((key, entry.item));
            } else {
                active.push((
                    key,
                    Entry {
                        queued_at: last,
                        item: entry.item,
                    },
                ));
            }
        }
        self.requeue(active);
        expired
    }

    /// Merges entries back in `queued_at` order: one O(n) pass per batch.
    fn requeue(&mut self, mut active: Vec<(K, Entry<T>)>) {
        if active.is_empty() {
            return;
        }
        active.sort_by_key(|(_, e)| e.queued_at);
        let rest = std::mem::take(&mut self.entries);
        let mut merged = IndexMap::with_capacity(rest.len() + active.len());
        let mut rest = rest.into_iter().peekable();
        let mut active = active.into_iter().peekable();
        loop {
            let take_active = match (rest.peek(), active.peek()) {
                (Some((_, r)), Some((_, a))) => a.queued_at < r.queued_at,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            let next = if take_active {
                active.next()
            } else {
                rest.next()
            };
            let Some((key, entry)) = next else { break };
            merged.insert(key, entry);
        }
        self.entries = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn queue() -> TimeoutQueue<u32, Arc<Activity>> {
        TimeoutQueue::new(Some(TIMEOUT))
    }

    impl Tracked for Arc<Activity> {
        fn last_activity(&self) -> Instant {
            self.last()
        }
    }

    fn keys(expired: Vec<(u32, Arc<Activity>)>) -> Vec<u32> {
        expired.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn expires_exactly_at_the_timeout_never_before() {
        let t0 = Instant::now();
        let mut q = queue();
        assert!(q.insert(1, Arc::new(Activity::new(t0)), t0));
        assert_eq!(q.next_deadline(), Some(t0 + TIMEOUT));
        assert!(q.expire(t0 + TIMEOUT - ms(1)).is_empty());
        assert_eq!(keys(q.expire(t0 + TIMEOUT)), [1]);
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn only_an_insert_into_an_empty_queue_changes_the_front() {
        let t0 = Instant::now();
        let mut q = queue();
        assert!(q.insert(1, Arc::new(Activity::new(t0)), t0));
        assert!(!q.insert(2, Arc::new(Activity::new(t0)), t0 + ms(1)));
    }

    #[test]
    fn activity_postpones_expiry_to_last_activity_plus_timeout() {
        let t0 = Instant::now();
        let mut q = queue();
        let a = Arc::new(Activity::new(t0));
        q.insert(1, a.clone(), t0);
        a.touch(t0 + ms(3000));
        assert!(q.expire(t0 + TIMEOUT).is_empty());
        assert_eq!(q.next_deadline(), Some(t0 + ms(3000) + TIMEOUT));
        assert!(q.expire(t0 + ms(2999) + TIMEOUT).is_empty());
        assert_eq!(keys(q.expire(t0 + ms(3000) + TIMEOUT)), [1]);
    }

    #[test]
    fn requeued_entries_keep_deadline_order() {
        let t0 = Instant::now();
        let mut q = queue();
        let acts: Vec<_> = (0..4).map(|_| Arc::new(Activity::new(t0))).collect();
        for (i, a) in acts.iter().enumerate() {
            q.insert(i as u32, a.clone(), t0 + ms(i as u64));
        }
        // 0 was active at +1ms, 1 at +2500ms, 2 at +5ms;
        // 3 was never active after being queued at +3ms.
        acts[0].touch(t0 + ms(1));
        acts[1].touch(t0 + ms(2500));
        acts[2].touch(t0 + ms(5));
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(1))), [0]);
        assert_eq!(q.next_deadline(), Some(t0 + TIMEOUT + ms(2)));
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(4))), [3]);
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(5))), [2]);
        assert_eq!(q.next_deadline(), Some(t0 + TIMEOUT + ms(2500)));
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(2500))), [1]);
    }

    #[test]
    fn an_item_queued_late_is_not_overtaken() {
        let t0 = Instant::now();
        let mut q = queue();
        let early = Arc::new(Activity::new(t0));
        q.insert(1, early.clone(), t0);
        early.touch(t0 + ms(10));
        q.insert(2, Arc::new(Activity::new(t0 + ms(5))), t0 + ms(5));
        // At the first deadline, 1 is re-queued at +10ms, behind 2 at +5ms.
        assert!(q.expire(t0 + TIMEOUT).is_empty());
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(5))), [2]);
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(10))), [1]);
    }

    #[test]
    fn removed_items_never_expire() {
        let t0 = Instant::now();
        let mut q = queue();
        q.insert(1, Arc::new(Activity::new(t0)), t0);
        q.insert(2, Arc::new(Activity::new(t0)), t0);
        assert!(q.remove(&1).is_some());
        assert_eq!(keys(q.expire(t0 + TIMEOUT)), [2]);
    }

    #[test]
    fn without_a_timeout_nothing_expires() {
        let t0 = Instant::now();
        let mut q: TimeoutQueue<u32, Arc<Activity>> = TimeoutQueue::new(None);
        q.insert(1, Arc::new(Activity::new(t0)), t0);
        assert_eq!(q.next_deadline(), None);
        assert!(q.expire(t0 + Duration::from_secs(1_000_000)).is_empty());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn many_staggered_items_expire_in_order_and_on_time() {
        let t0 = Instant::now();
        let mut q = queue();
        let acts: Vec<_> = (0..1000u64).map(|_| Arc::new(Activity::new(t0))).collect();
        for (i, a) in acts.iter().enumerate() {
            q.insert(i as u32, a.clone(), t0);
            // Odd items were active later, in reverse order of their key.
            if i % 2 == 1 {
                a.touch(t0 + ms(2000 - i as u64));
            }
        }
        let mut seen = Vec::new();
        while let Some(deadline) = q.next_deadline() {
            for (key, item) in q.expire(deadline) {
                assert_eq!(
                    item.last() + TIMEOUT,
                    deadline,
                    "item {key} expired off its deadline"
                );
                seen.push(key);
            }
        }
        assert_eq!(seen.len(), 1000);
    }
}
