//! The timeout queue: which connections have been idle for the timeout.
//!
//! This is the seed's list + hash map (insert_que / update_que / del_que /
//! check_out), grown to hold 100,000 connections whose heartbeats are not in
//! step: an `IndexMap` of the live entries by connection, and a hashed timing
//! wheel of their deadlines.
//!
//! Recording activity must not cost O(connections), nor take a lock. So
//! activity is not recorded here at all: each connection stamps its own
//! [`Activity`] (one atomic store), and the queue catches up lazily. An entry
//! is queued under a deadline (the activity known when it was queued, plus
//! the timeout); when that deadline comes, [`TimeoutQueue::expire`] reads the
//! stamp: an entry idle for the whole timeout is expired, one active since is
//! queued again under its new deadline. Each entry is looked at about once
//! per timeout period.
//!
//! **Why a wheel.** The queue used to be one `IndexMap` in deadline order. An
//! entry found active had to go back in the middle of it, and keeping that
//! order cost an O(n) merge (and the drained front an O(n) shift) at every
//! wake that found one; with deadlines spread over the period, that is a wake
//! per connection per period, so O(n²) work per period (issue 16 measured
//! 5.9 s of reaper CPU in 20 s at 15,000 connections). The two known cures
//! are a hashed timing wheel (Netty's `HashedWheelTimer`, Kafka, the Linux
//! timer wheel) and batching the merges. Batching bounds the number of merges
//! per period but each is still O(n), and an entry re-queued just before its
//! new deadline forces an early merge; the wheel makes every re-queue O(1)
//! whatever the spread, so it is the one chosen.
//!
//! The wheel is a ring of [`SLOTS`] slots, each covering `timeout / SLOTS` of
//! deadlines; a slot is a FIFO (`Vec`) of `(deadline, key)` records in the
//! order they were queued. Queueing pushes a record onto the slot of its
//! deadline: O(1). The slot whose turn has come is sorted by deadline into
//! `due` (a slot holds about n / [`SLOTS`] records, so the sort is
//! O(log(n / SLOTS)) per record: the wheel is not coarse, every entry is
//! looked at exactly at its deadline), and `expire` pops `due` in order.
//!
//! Closing a connection must not cost O(n) either: [`TimeoutQueue::remove`]
//! takes the entry out of the map (`swap_remove`, O(1)) and leaves its record
//! in the wheel, stale. A record is live only while its entry's deadline is
//! the record's own, so stale records (a removed entry, or a key inserted
//! again) are dropped when their slot's turn comes: each is looked at once,
//! within one timeout period of being left. The records in the wheel are at
//! most the live entries plus those removed in the last period (16 bytes
//! each).
//!
//! Invariant: every live entry has exactly one live record, under the deadline
//! stored in the entry, which is at or before its last activity plus the
//! timeout; records in `due` are sorted and have deadlines before those of
//! every record in the slots; `due` is empty only when no entry is live, and
//! its front is live.
//! Guarantee: an item is returned by `expire(now)` only if its last activity
//! is at least `timeout` before `now` (never early), and it is returned by
//! the first call to `expire` at or after `last activity + timeout` (never
//! late beyond the caller's own wake-up latency), since
//! [`TimeoutQueue::next_deadline`] is exactly the earliest live record's
//! deadline. A removed item is never returned.
//!
//! Time is an argument everywhere, so the queue is tested without sleeping.

use indexmap::IndexMap;
use std::collections::VecDeque;
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

/// The wheel's slots per timeout period. Each wake-up that turns to a new
/// slot sorts it, so more slots mean smaller sorts and more (cheap) turns
/// past empty slots: 1,024 keeps a slot at about 100 records at 100,000
/// connections and the turns at 17 a second with the default 60 s timeout.
pub const SLOTS: usize = 1024;

#[derive(Debug)]
struct Entry<T> {
    /// The deadline this entry's live record in the wheel is queued under.
    deadline: Instant,
    item: T,
}

/// A record in the wheel: live while its key's entry has this deadline.
type Record<K> = (Instant, K);

/// Items expiring `timeout` after their last activity. With no timeout, it
/// only keeps the items (a registry that never expires).
#[derive(Debug)]
pub struct TimeoutQueue<K, T> {
    /// The live entries.
    entries: IndexMap<K, Entry<T>>,
    /// Their deadlines; `None` without a timeout.
    wheel: Option<Wheel<K>>,
}

#[derive(Debug)]
struct Wheel<K> {
    timeout: Duration,
    /// The span of deadlines each slot covers: `timeout / SLOTS`.
    width: Duration,
    /// Where ticks count from: the first insert's `now`.
    origin: Option<Instant>,
    /// Records of tick `t` are in `slots[t % SLOTS]`, in the order queued;
    /// only records of ticks after `turn` are in the slots.
    slots: Vec<Vec<Record<K>>>,
    /// Records in `slots`, so that an empty wheel is seen in O(1).
    in_slots: usize,
    /// The last tick whose slot was sorted into `due`.
    turn: u64,
    /// Records of ticks up to `turn`, sorted by deadline.
    due: VecDeque<Record<K>>,
}

impl<K: Hash + Eq + Copy> Wheel<K> {
    fn new(timeout: Duration) -> Self {
        let slots = u32::try_from(SLOTS).expect("SLOTS fits in u32");
        Self {
            timeout,
            width: (timeout / slots).max(Duration::from_nanos(1)),
            origin: None,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            in_slots: 0,
            turn: 0,
            due: VecDeque::new(),
        }
    }

    /// The tick of a deadline: whole slot widths after the origin.
    fn tick(origin: Option<Instant>, width: Duration, deadline: Instant) -> u64 {
        let since = origin.map_or(Duration::ZERO, |o| deadline.saturating_duration_since(o));
        u64::try_from(since.as_nanos() / width.as_nanos()).unwrap_or(u64::MAX)
    }

    fn slot(tick: u64) -> usize {
        // The remainder is below SLOTS, so the cast cannot truncate.
        (tick % SLOTS as u64) as usize
    }

    /// Queues a record: onto its slot in O(1), or, if its tick's turn has
    /// come already, into its place in `due` (about n / SLOTS moves).
    fn schedule(&mut self, deadline: Instant, key: K) {
        let origin = *self
            .origin
            .get_or_insert(deadline.checked_sub(self.timeout).unwrap_or(deadline));
        let tick = Self::tick(Some(origin), self.width, deadline);
        if tick <= self.turn {
            let at = self.due.partition_point(|(d, _)| *d <= deadline);
            self.due.insert(at, (deadline, key));
        } else {
            self.slots[Self::slot(tick)].push((deadline, key));
            self.in_slots += 1;
        }
    }

    /// Drops every record, all stale once no entry is live: O(SLOTS) when
    /// any is left, which takes a removal since the last time.
    fn clear(&mut self) {
        self.due.clear();
        if self.in_slots > 0 {
            self.slots.iter_mut().for_each(Vec::clear);
            self.in_slots = 0;
        }
    }

    /// Turns the wheel to the next slot that holds a live record and sorts
    /// that slot's records of its tick into `due`, dropping stale ones.
    /// Returns false when no live record is left. Turning past empty slots
    /// costs at most one lap; only after a silence longer than a period does
    /// it look at every record, to jump to the earliest.
    fn turn_to_next(&mut self, live: impl Fn(&Record<K>) -> bool) -> bool {
        let mut steps_left_in_lap = SLOTS;
        while self.in_slots > 0 {
            if steps_left_in_lap == 0 {
                let (origin, width) = (self.origin, self.width);
                let earliest = self.slots.iter().flatten().map(|(d, _)| *d).min();
                self.turn = earliest.map_or(self.turn, |d| Self::tick(origin, width, d));
                steps_left_in_lap = SLOTS;
            } else {
                self.turn += 1;
                steps_left_in_lap -= 1;
            }
            let (origin, width, turn) = (self.origin, self.width, self.turn);
            let before = self.due.len();
            let due = &mut self.due;
            let slot = &mut self.slots[Self::slot(turn)];
            let held = slot.len();
            slot.retain(|record| {
                if Self::tick(origin, width, record.0) > turn {
                    return true;
                }
                if live(record) {
                    due.push_back(*record);
                }
                false
            });
            self.in_slots -= held - slot.len();
            if self.due.len() > before {
                self.due.make_contiguous()[before..].sort_unstable_by_key(|(d, _)| *d);
                return true;
            }
        }
        false
    }
}

impl<K: Hash + Eq + Copy, T: Tracked> TimeoutQueue<K, T> {
    pub fn new(timeout: Option<Duration>) -> Self {
        Self {
            entries: IndexMap::new(),
            wheel: timeout.map(Wheel::new),
        }
    }

    /// Adds `item`, active at `now`. Returns true when the next deadline
    /// moved earlier (only an insert into an empty queue does that, as every
    /// other deadline is at most a timeout away). Inserting a key again
    /// replaces its entry.
    pub fn insert(&mut self, key: K, item: T, now: Instant) -> bool {
        let before = self.next_deadline();
        let deadline = self.wheel.as_ref().map_or(now, |w| now + w.timeout);
        self.entries.insert(key, Entry { deadline, item });
        if let Some(wheel) = &mut self.wheel {
            wheel.schedule(deadline, key);
        }
        self.settle();
        let after = self.next_deadline();
        after.is_some() && (before.is_none() || after < before)
    }

    /// Removes an item (its connection ended) in O(1): its record stays in
    /// the wheel, stale (see the module doc). The next deadline can only move
    /// later, so the reaper need not be woken.
    pub fn remove(&mut self, key: &K) -> Option<T> {
        let entry = self.entries.swap_remove(key)?;
        self.settle();
        Some(entry.item)
    }

    /// Live items.
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
        self.wheel.as_ref()?.due.front().map(|(d, _)| *d)
    }

    /// Removes and returns every item idle for at least the timeout at `now`,
    /// in deadline order; queues again those that were active meanwhile.
    pub fn expire(&mut self, now: Instant) -> Vec<(K, T)> {
        let mut expired = Vec::new();
        loop {
            self.settle();
            let Some(wheel) = &mut self.wheel else {
                return expired;
            };
            let Some(&(_, key)) = wheel.due.front().filter(|(d, _)| *d <= now) else {
                return expired;
            };
            wheel.due.pop_front();
            let (index, _, entry) = self
                .entries
                .get_full_mut(&key)
                .expect("settle keeps the front of due live");
            let last = entry.item.last_activity();
            if last + wheel.timeout <= now {
                let (key, entry) = self
                    .entries
                    .swap_remove_index(index)
                    .expect("the index was just found");
                expired.push((key, entry.item));
            } else {
                entry.deadline = last + wheel.timeout;
                wheel.schedule(entry.deadline, key);
            }
        }
    }

    /// Restores the invariant that `due`'s front is live and that `due` is
    /// empty only when nothing is: drops stale records at its front, turns
    /// the wheel when it runs out, and empties it when no entry is left. Each
    /// record is dropped once, so this is amortized O(1) per record.
    fn settle(&mut self) {
        let Some(wheel) = &mut self.wheel else {
            return;
        };
        loop {
            while wheel
                .due
                .front()
                .is_some_and(|r| !is_live(&self.entries, r))
            {
                wheel.due.pop_front();
            }
            if self.entries.is_empty() {
                wheel.clear();
                return;
            }
            if !wheel.due.is_empty() {
                return;
            }
            let entries = &self.entries;
            if !wheel.turn_to_next(|r| is_live(entries, r)) {
                return;
            }
        }
    }
}

/// Whether `record` is its key's live record.
fn is_live<K: Hash + Eq, T>(entries: &IndexMap<K, Entry<T>>, record: &Record<K>) -> bool {
    entries
        .get(&record.1)
        .is_some_and(|e| e.deadline == record.0)
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

    impl<K, T> TimeoutQueue<K, T> {
        /// Records in the wheel, stale ones included.
        fn records(&self) -> usize {
            self.wheel.as_ref().map_or(0, |w| w.due.len() + w.in_slots)
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
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(3))), [3]);
        assert_eq!(q.records(), 0, "the stale records were dropped");
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
        assert_eq!(q.records(), 4, "a stale record, not a search");
        // 1 expires; the tombstone 2 is now at the front and is stepped over.
        assert_eq!(keys(q.expire(t0 + TIMEOUT)), [1]);
        assert_eq!(q.next_deadline(), Some(t0 + TIMEOUT + ms(2)));
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(2))), [3]);
        assert_eq!(q.len(), 1);
        assert!(q.remove(&2).is_none(), "removed once only");
    }

    #[test]
    fn stale_records_are_dropped_when_their_turn_comes() {
        let t0 = Instant::now();
        let mut q = queue();
        for k in 0..10 {
            q.insert(k, Arc::new(Activity::new(t0)), t0 + ms(u64::from(k) * 100));
        }
        for k in (4..10).rev() {
            assert!(q.remove(&k).is_some());
        }
        assert_eq!((q.len(), q.records()), (4, 10), "removal is O(1)");
        assert_eq!(q.items().count(), 4);
        assert_eq!(q.next_deadline(), Some(t0 + TIMEOUT));
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(1000))), [0, 1, 2, 3]);
        assert_eq!(q.records(), 0);
    }

    #[test]
    fn an_entry_active_just_after_being_queued_is_queued_in_the_current_turn() {
        let t0 = Instant::now();
        let mut q = queue();
        let a = Arc::new(Activity::new(t0));
        q.insert(1, a.clone(), t0);
        q.insert(2, Arc::new(Activity::new(t0)), t0 + ms(2));
        a.touch(t0 + ms(1));
        // 1's new deadline (+1ms) falls in the slot being served: it must
        // still come before 2's (+2ms), exactly on time.
        assert!(q.expire(t0 + TIMEOUT).is_empty());
        assert_eq!(q.next_deadline(), Some(t0 + TIMEOUT + ms(1)));
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(1))), [1]);
        assert_eq!(keys(q.expire(t0 + TIMEOUT + ms(2))), [2]);
    }

    #[test]
    fn an_insert_after_a_long_silence_is_found_without_a_lap_per_period() {
        let t0 = Instant::now();
        let mut q = queue();
        q.insert(1, Arc::new(Activity::new(t0)), t0);
        assert_eq!(keys(q.expire(t0 + TIMEOUT)), [1]);
        let later = t0 + TIMEOUT * 1000;
        assert!(q.insert(2, Arc::new(Activity::new(later)), later));
        assert_eq!(q.next_deadline(), Some(later + TIMEOUT));
        assert_eq!(keys(q.expire(later + TIMEOUT)), [2]);
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
