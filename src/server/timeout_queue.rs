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
//! Removing an entry from the middle of an `IndexMap` in order is O(n) too
//! (`shift_remove` moves every entry behind it), and a connection's close
//! must not cost that under the lock the acceptor and the reaper share. So
//! [`TimeoutQueue::remove`] only marks the entry removed (a tombstone, O(1)):
//! tombstones at the front are stepped over by a cursor, dropped when
//! [`expire`](TimeoutQueue::expire) drains past them, and all dropped at once
//! (one O(n) `retain`) when they outnumber the live entries. Each tombstone
//! is stepped over once and copied at most once per compaction, and a
//! compaction needs as many new removals as there are live entries left:
//! amortized O(1) per removal.
//!
//! Invariant: entries are ordered by `queued_at`, and every entry's
//! `queued_at` is at or before its item's last activity; every entry before
//! the cursor `front` is a tombstone, and the one at it (if any) is live;
//! tombstones never outnumber live entries.
//! Guarantee: an item is returned by `expire(now)` only if its last activity
//! is at least `timeout` before `now` (never early), and it is returned by
//! the first call to `expire` at or after `last activity + timeout` (never
//! late beyond the caller's own wake-up latency). A removed item is never
//! returned.
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
    /// `None` once removed: a tombstone, waiting to be dropped.
    item: Option<T>,
}

/// Items ordered by idleness, expiring `timeout` after their last activity.
/// With no timeout, it only keeps the items (a registry that never expires).
#[derive(Debug)]
pub struct TimeoutQueue<K, T> {
    timeout: Option<Duration>,
    entries: IndexMap<K, Entry<T>>,
    /// Index of the first live entry (`entries.len()` when there is none);
    /// every entry before it is a tombstone.
    front: usize,
    /// Tombstones in `entries`.
    removed: usize,
}

impl<K: Hash + Eq, T: Tracked> TimeoutQueue<K, T> {
    pub fn new(timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            entries: IndexMap::new(),
            front: 0,
            removed: 0,
        }
    }

    /// Adds `item` at the back, active at `now`. Returns true when it became
    /// the front, i.e. when the next deadline changed. Keys are meant to be
    /// unique (the server's connection ids are): inserting a key again
    /// replaces its entry, at the cost of one compaction (O(n)).
    pub fn insert(&mut self, key: K, item: T, now: Instant) -> bool {
        // Keep the order even if callers' clocks were read out of order.
        let queued_at = self
            .entries
            .last()
            .map_or(now, |(_, back)| back.queued_at.max(now));
        let entry = Entry {
            queued_at,
            item: Some(item),
        };
        match self.entries.entry(key) {
            indexmap::map::Entry::Vacant(slot) => {
                slot.insert(entry);
            }
            indexmap::map::Entry::Occupied(slot) => {
                let (key, _) = slot.shift_remove_entry();
                // The counts and the cursor are stale now: start afresh.
                self.compact();
                self.entries.insert(key, entry);
            }
        }
        self.len() == 1
    }

    /// Removes an item (its connection ended), in amortized O(1): its entry
    /// becomes a tombstone (see the module doc). The next deadline can only
    /// move later, so the reaper need not be woken.
    pub fn remove(&mut self, key: &K) -> Option<T> {
        let (index, _, entry) = self.entries.get_full_mut(key)?;
        let item = entry.item.take()?;
        self.removed += 1;
        if index == self.front {
            self.step_over_front_tombstones();
        }
        if self.removed > self.len() {
            self.compact();
        }
        Some(item)
    }

    /// Live items.
    pub fn len(&self) -> usize {
        self.entries.len() - self.removed
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.entries.values().filter_map(|e| e.item.as_ref())
    }

    /// When [`expire`](Self::expire) next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.timeout?;
        let (_, front) = self.entries.get_index(self.front)?;
        Some(front.queued_at + timeout)
    }

    /// Removes and returns every item idle for at least the timeout at `now`,
    /// oldest first; re-queues in order those that were active meanwhile.
    /// Drops the tombstones it drains past.
    pub fn expire(&mut self, now: Instant) -> Vec<(K, T)> {
        let Some(timeout) = self.timeout else {
            return Vec::new();
        };
        // Tombstones among the due entries are due too (the order is by
        // `queued_at`), so they are drained with them.
        let due = self.entries[self.front..]
            .values()
            .take_while(|e| e.queued_at + timeout <= now)
            .count();
        if due == 0 {
            return Vec::new();
        }
        let mut expired = Vec::new();
        let mut active = Vec::new();
        for (key, entry) in self.entries.drain(..self.front + due) {
            let Some(item) = entry.item else {
                self.removed -= 1;
                continue;
            };
            let last = item.last_activity();
            if last + timeout <= now {
                expired.push((key, item));
            } else {
                active.push((
                    key,
                    Entry {
                        queued_at: last,
                        item: Some(item),
                    },
                ));
            }
        }
        self.front = 0;
        self.requeue(active);
        self.step_over_front_tombstones();
        if self.removed > self.len() {
            self.compact();
        }
        expired
    }

    /// Moves `front` past the tombstones at it, to the first live entry.
    fn step_over_front_tombstones(&mut self) {
        while self
            .entries
            .get_index(self.front)
            .is_some_and(|(_, e)| e.item.is_none())
        {
            self.front += 1;
        }
    }

    /// Drops every tombstone: one O(n) pass, keeping the order.
    fn compact(&mut self) {
        self.entries.retain(|_, e| e.item.is_some());
        self.front = 0;
        self.removed = 0;
    }

    /// Merges entries back in `queued_at` order: one O(n) pass per batch,
    /// which drops the tombstones too, since it rebuilds the map anyway.
    fn requeue(&mut self, mut active: Vec<(K, Entry<T>)>) {
        if active.is_empty() {
            return;
        }
        active.sort_by_key(|(_, e)| e.queued_at);
        let rest = std::mem::take(&mut self.entries);
        let mut merged = IndexMap::with_capacity(rest.len() - self.removed + active.len());
        let mut rest = rest
            .into_iter()
            .filter(|(_, e)| e.item.is_some())
            .peekable();
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
        self.removed = 0;
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
    fn removing_the_front_moves_the_deadline_to_the_next_live_entry() {
        let t0 = Instant::now();
        let mut q = queue();
        for k in 0..4 {
            q.insert(k, Arc::new(Activity::new(t0)), t0 + ms(u64::from(k)));
        }
        assert!(q.remove(&1).is_some());
        assert!(q.remove(&0).is_some());
        // 1 was a tombstone behind 0: removing 0 steps over both.
        assert_eq!(q.next_deadline(), Some(t0 + TIMEOUT + ms(2)));
        assert_eq!(q.len(), 2);
        assert!(q.expire(t0 + TIMEOUT + ms(1)).is_empty());
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(2))), [2]);
        // Draining past them dropped the tombstones.
        assert_eq!(q.entries.len(), 1);
        assert_eq!(q.removed, 0);
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(3))), [3]);
        assert!(q.entries.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn a_removed_entry_behind_the_front_is_dropped_when_it_reaches_it() {
        let t0 = Instant::now();
        let mut q = queue();
        let a = Arc::new(Activity::new(t0));
        q.insert(1, a.clone(), t0);
        q.insert(2, Arc::new(Activity::new(t0)), t0 + ms(1));
        q.insert(3, Arc::new(Activity::new(t0)), t0 + ms(2));
        q.insert(4, Arc::new(Activity::new(t0)), t0 + ms(3));
        assert!(q.remove(&2).is_some());
        assert_eq!(q.entries.len(), 4, "a tombstone, not a shift");
        // 1 expires; the tombstone 2 is now at the front and is stepped over.
        assert_eq!(keys(q.expire(t0 + TIMEOUT)), [1]);
        assert_eq!(q.next_deadline(), Some(t0 + TIMEOUT + ms(2)));
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(2))), [3]);
        assert_eq!(q.entries.len(), 1);
        assert!(q.remove(&2).is_none(), "removed once only");
    }

    #[test]
    fn tombstones_are_compacted_when_they_outnumber_live_entries() {
        let t0 = Instant::now();
        let mut q = queue();
        for k in 0..10 {
            q.insert(k, Arc::new(Activity::new(t0)), t0 + ms(u64::from(k)));
        }
        // Remove from the back, so the front never steps over them.
        for k in (5..10).rev() {
            assert!(q.remove(&k).is_some());
        }
        assert_eq!(
            (q.entries.len(), q.removed),
            (10, 5),
            "5 of 10: no compaction yet"
        );
        assert!(q.remove(&4).is_some());
        assert_eq!(
            (q.entries.len(), q.removed),
            (4, 0),
            "6 removed of 10: compacted"
        );
        assert_eq!(q.items().count(), 4);
        assert_eq!(q.next_deadline(), Some(t0 + TIMEOUT));
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(10))), [0, 1, 2, 3]);
    }

    #[test]
    fn removing_everything_leaves_an_empty_map() {
        let t0 = Instant::now();
        let mut q = queue();
        for k in 0..1000 {
            q.insert(k, Arc::new(Activity::new(t0)), t0);
        }
        for k in (0..1000).step_by(2).chain((1..1000).step_by(2)) {
            assert!(q.remove(&k).is_some());
        }
        assert!(q.is_empty());
        assert!(q.entries.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn a_key_inserted_again_goes_to_the_back() {
        let t0 = Instant::now();
        let mut q = queue();
        q.insert(1, Arc::new(Activity::new(t0)), t0);
        q.insert(2, Arc::new(Activity::new(t0)), t0 + ms(1));
        q.remove(&1);
        q.insert(1, Arc::new(Activity::new(t0 + ms(2))), t0 + ms(2));
        assert_eq!(q.len(), 2);
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(2))), [2, 1]);
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

    /// One step of a random history, in milliseconds after the previous one.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Touch(usize, u64),
        Remove(usize),
        Expire(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0..3000u64).prop_map(Op::Insert),
            (any::<usize>(), 0..3000u64).prop_map(|(k, d)| Op::Touch(k, d)),
            any::<usize>().prop_map(Op::Remove),
            (0..6000u64).prop_map(Op::Expire),
        ]
    }

    proptest::proptest! {
        /// Random inserts, activity, removals and expiries against a model:
        /// nothing expires early or after it was removed, nothing due is
        /// left behind by `expire`, and the deadline the reaper sleeps until
        /// is never after a live item's.
        #[test]
        fn never_early_never_skipped_with_removals_interleaved(
            ops in proptest::collection::vec(op(), 1..300)
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut q = queue();
            let mut live: Vec<(u32, Arc<Activity>)> = Vec::new();
            let mut next_key = 0;
            for op in ops {
                match op {
                    Op::Insert(d) => {
                        now += ms(d);
                        let a = Arc::new(Activity::new(now));
                        q.insert(next_key, a.clone(), now);
                        live.push((next_key, a));
                        next_key += 1;
                    }
                    Op::Touch(i, d) if !live.is_empty() => {
                        now += ms(d);
                        live[i % live.len()].1.touch(now);
                    }
                    Op::Remove(i) if !live.is_empty() => {
                        let (key, _) = live.remove(i % live.len());
                        proptest::prop_assert!(q.remove(&key).is_some());
                    }
                    Op::Expire(d) => {
                        now += ms(d);
                        for (key, item) in q.expire(now) {
                            proptest::prop_assert!(item.last() + TIMEOUT <= now, "{key} early");
                            let at = live.iter().position(|(k, _)| *k == key);
                            proptest::prop_assert!(at.is_some(), "{key} not live");
                            live.remove(at.unwrap());
                        }
                        for (key, a) in &live {
                            proptest::prop_assert!(a.last() + TIMEOUT > now, "{key} skipped");
                        }
                    }
                    _ => {}
                }
                proptest::prop_assert_eq!(q.len(), live.len());
                proptest::prop_assert!(q.removed <= q.len());
                let earliest = live.iter().map(|(_, a)| a.last() + TIMEOUT).min();
                match (q.next_deadline(), earliest) {
                    (Some(d), Some(e)) => proptest::prop_assert!(d <= e),
                    (None, None) => {}
                    other => proptest::prop_assert!(false, "deadline {:?}", other),
                }
            }
        }
    }
}
