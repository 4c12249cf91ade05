//! Micro-benchmarks of the timeout queue (issue 5): recording activity and
//! reaping, at 10, 1k, 10k and 100k entries. Recording activity is one
//! atomic store whatever the queue holds, so its cost must be flat.
//!
//! `cargo bench --bench timeout_queue`

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tcp_heartbeat::server::timeout_queue::{Activity, TimeoutQueue, Tracked};

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
const TIMEOUT: Duration = Duration::from_secs(60);

/// A queue item as the server's: a connection's shared activity stamp.
#[derive(Clone)]
struct Item(Arc<Activity>);

impl Tracked for Item {
    fn last_activity(&self) -> Instant {
        self.0.last()
    }
}

/// A queue of `n` entries queued 1 µs apart from `t0`.
fn filled(n: usize, t0: Instant) -> (TimeoutQueue<u64, Item>, Vec<Arc<Activity>>) {
    let mut queue = TimeoutQueue::new(Some(TIMEOUT));
    let mut stamps = Vec::with_capacity(n);
    for i in 0..n {
        let at = t0 + Duration::from_micros(i as u64);
        let activity = Arc::new(Activity::new(at));
        queue.insert(i as u64, Item(activity.clone()), at);
        stamps.push(activity);
    }
    (queue, stamps)
}

/// Recording activity with n connections queued: what every read costs.
/// `own`: a connection stamps its own Activity, as its thread does on each
/// read (the stamp stays in that core's cache). `strided`: a different
/// connection each time, so each stamp is a cache miss once n outgrows the
/// caches — memory latency, not queue work, which is why it rises with n.
fn touch(c: &mut Criterion) {
    let mut group = c.benchmark_group("touch");
    for n in SIZES {
        let t0 = Instant::now();
        let (_queue, stamps) = filled(n, t0);
        let own = stamps[n / 2].clone();
        group.bench_with_input(BenchmarkId::new("own", n), &n, |b, _| {
            b.iter(|| own.touch(black_box(t0 + Duration::from_secs(1))))
        });
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("strided", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 7919) % stamps.len();
                stamps[i].touch(black_box(t0 + Duration::from_secs(1)));
            })
        });
    }
    group.finish();
}

/// Reaping: one `expire` at the front's deadline with every entry idle
/// (all n expire) and with every entry active since (all n re-queued):
/// the two ends of what the reaper's batch does, per entry.
fn expire(c: &mut Criterion) {
    let mut group = c.benchmark_group("expire");
    group.sample_size(20);
    for n in SIZES {
        group.throughput(criterion::Throughput::Elements(n as u64));
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_micros(n as u64) + TIMEOUT;
        group.bench_with_input(BenchmarkId::new("all_idle", n), &n, |b, &n| {
            b.iter_batched(
                || filled(n, t0).0,
                |mut queue| black_box(queue.expire(deadline)),
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("all_active", n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let (queue, stamps) = filled(n, t0);
                    for s in &stamps {
                        s.touch(t0 + Duration::from_secs(1));
                    }
                    queue
                },
                |mut queue| black_box(queue.expire(deadline)),
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("nothing_due", n), &n, |b, &n| {
            let (mut queue, _stamps) = filled(n, t0);
            b.iter(|| black_box(queue.expire(black_box(t0))))
        });
    }
    group.finish();
}

/// A connection ending while another starts: `remove` from the middle of a
/// queue of n, then `insert` a new key at the back to keep n, as the server
/// does (its connection ids are never reused). Removing key n/2 + k and
/// inserting key n + k leaves the next key to remove at position n/2 again.
/// The stale records this leaves in the wheel are dropped when their slot's
/// turn comes (not here: no deadline passes), so this is the close's cost.
///
/// `remove_middle` times the removals alone (in batches of up to [`BATCH`],
/// at most n/2 so that every key removed was inserted, the inserts that
/// keep n untimed); `remove_insert` times both.
fn remove(c: &mut Criterion) {
    const BATCH: u64 = 64;
    let mut group = c.benchmark_group("remove_middle");
    group.sample_size(20);
    for n in SIZES {
        let t0 = Instant::now();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let (mut queue, _stamps) = filled(n, t0);
            let (half, n) = ((n / 2) as u64, n as u64);
            let mut k = 0;
            let mut removed = Vec::with_capacity(BATCH as usize);
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(BATCH).min(half);
                    let start = Instant::now();
                    for j in 0..batch {
                        removed.push(queue.remove(&(half + k + j)).expect("present"));
                    }
                    timed += start.elapsed();
                    for (j, item) in (0..).zip(removed.drain(..)) {
                        queue.insert(n + k + j, item, t0);
                    }
                    k += batch;
                    left -= batch;
                }
                timed
            });
        });
    }
    group.finish();
    let mut group = c.benchmark_group("remove_insert");
    group.sample_size(20);
    for n in SIZES {
        let t0 = Instant::now();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let (mut queue, _stamps) = filled(n, t0);
            let (half, n) = ((n / 2) as u64, n as u64);
            let mut k = 0;
            b.iter(|| {
                let item = queue.remove(&(half + k)).expect("present");
                queue.insert(n + k, item, t0);
                k += 1;
            });
        });
    }
    group.finish();
}

/// The reaper in steady state (issue 16), on a simulated clock: n entries,
/// each active every [`HEARTBEAT`] at evenly spread phases, timeout
/// [`TIMEOUT`], over three periods. The reaper calls `expire` at each
/// deadline, as it wakes; only those calls are timed (what it does under the
/// registry's lock), and the time is reported per entry per period, which
/// must not grow with n. Each timed call also pays two clock reads (about
/// 50 ns), the same at every n.
fn steady_state(c: &mut Criterion) {
    const PERIODS: u32 = 3;
    let mut group = c.benchmark_group("steady_state");
    group.sample_size(10);
    for n in [1_000, 10_000, 100_000] {
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let per_run = n as u64 * u64::from(PERIODS);
                let runs = iters.div_ceil(per_run);
                let timed: Duration = (0..runs).map(|_| reaper_time(n, PERIODS)).sum();
                let nanos = timed.as_nanos() * u128::from(iters) / u128::from(runs * per_run);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            })
        });
    }
    group.finish();
}

/// How often each simulated connection is active: the article's 25 s idle
/// heartbeat, against the article's 60 s timeout.
const HEARTBEAT: Duration = Duration::from_secs(25);

/// The reaper's time in `expire` over `periods` timeout periods of n
/// heartbeating entries (see [`steady_state`]).
fn reaper_time(n: usize, periods: u32) -> Duration {
    let t0 = Instant::now();
    let (mut queue, stamps) = filled(n, t0);
    let end = t0 + TIMEOUT * periods;
    let heartbeat = HEARTBEAT.as_nanos() as u64;
    let mut timed = Duration::ZERO;
    for round in 0.. {
        for (i, stamp) in stamps.iter().enumerate() {
            let phase = heartbeat * i as u64 / n as u64;
            let at = t0 + Duration::from_nanos(heartbeat * round + phase);
            if at >= end {
                return timed;
            }
            while let Some(deadline) = queue.next_deadline().filter(|d| *d <= at) {
                let start = Instant::now();
                black_box(queue.expire(deadline));
                timed += start.elapsed();
            }
            stamp.touch(at);
        }
    }
    unreachable!("the rounds end at `end`")
}

criterion_group!(benches, touch, expire, remove, steady_state);
criterion_main!(benches);
