//! The search for a path's idle timeout: which silences to probe next,
//! given the outcomes so far and when they came, as pure state that takes
//! `now` as an argument (the sockets and the waiting are
//! [`probe`](super::probe)'s).
//!
//! A probe is a connection kept silent for a chosen time, measured from the
//! last byte it received, then asked for a heartbeat: it *held* that
//! silence, or it *failed* after some silence (no reply, a reset, a close).
//! The answer is a bracket: the longest silence that held and the shortest
//! that failed. The search runs in rounds of probes started together:
//!
//! 1. an exponential round, [`FIRST`] x 2^k up to `max`, then `max` itself,
//!    to find a silence that fails;
//! 2. rounds of evenly spaced probes inside the bracket, as few as bring it
//!    under the goal in one round (at most `parallel`), plus one at the
//!    silence that held, to confirm it still does,
//!
//! until the bracket is at most max(1 s, 10 % of its failing end) wide
//! ([`tolerance`]), or `max` held (the path holds longer than the search
//! may look). A failure makes every longer probe in flight pointless, so
//! the caller is told to cancel them. Silences are on a 100 ms grid, the
//! precision worth having for timeouts of seconds and more; a failure
//! during a silence (a close) is rounded up to it.
//!
//! A path can change while it is searched (another network, a NAT
//! rebooted). Outcomes that contradict the bracket (a failure at or below a
//! silence that held, a hold at or above one that failed) are believed, the
//! older end of the bracket is dropped, and the search goes on from there:
//! the newest evidence wins. A path that gets shorter is caught by the
//! probe that confirms the held end each round; one that gets longer after
//! its failure is not, which leaves a caller on the safe side.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// The shortest silence of the exponential round: idle timeouts shorter
/// than a second are not worth a heartbeat.
pub const FIRST: Duration = Duration::from_secs(1);

/// Probe silences are multiples of this (see the module doc).
const GRID: Duration = Duration::from_millis(100);

/// Inconclusive outcomes in a row (probes that could not connect or were
/// refused) after which the search gives up.
pub const INCONCLUSIVE_MAX: u32 = 3;

/// How a search is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchSettings {
    /// The longest silence probed (`--heartbeat-idle-max`).
    pub max: Duration,
    /// Probes at once; at least 1.
    pub parallel: usize,
}

/// What the search knows: the longest silence that held (zero when none
/// did) and the shortest that failed (`None` when none did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bracket {
    pub held: Duration,
    pub failed: Option<Duration>,
}

/// How wide a bracket whose failing end is `failed` may be: max(1 s, 10 %).
pub fn tolerance(failed: Duration) -> Duration {
    (failed / 10).max(Duration::from_secs(1))
}

impl Bracket {
    /// Whether the bracket is as narrow as the search goes (see
    /// [`tolerance`]), or the path held the longest silence searched.
    pub fn is_narrow(&self, max: Duration) -> bool {
        match self.failed {
            Some(failed) => failed.saturating_sub(self.held) <= tolerance(failed),
            None => self.held >= max,
        }
    }
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The path held the probe's silence.
    Held,
    /// The path failed after this much silence: the probe's own silence
    /// when the heartbeat went unanswered, or less when the connection was
    /// closed or reset during it.
    Failed(Duration),
    /// The probe could not tell: it could not connect, or was refused.
    Inconclusive,
}

/// A probe to start: keep a connection silent for `silence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Probe {
    /// Unique within the search, to report its outcome.
    pub id: u64,
    pub silence: Duration,
}

/// Where the search is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Searching,
    /// Narrow enough (or `max` held); no probe is needed any more.
    Done(Bracket),
    /// [`INCONCLUSIVE_MAX`] probes in a row could not tell.
    GaveUp,
}

/// A search for one path's idle timeout.
#[derive(Debug, Clone)]
pub struct IdleSearch {
    settings: SearchSettings,
    bracket: Bracket,
    /// Silences of the current round not yet started, shortest first.
    planned: Vec<Duration>,
    in_flight: HashMap<u64, Duration>,
    next_id: u64,
    /// Probes started so far.
    started: u32,
    /// Rounds planned so far, the exponential one included.
    rounds: u32,
    inconclusive_in_row: u32,
    /// When the search started, and when it ended.
    started_at: Instant,
    ended_at: Option<Instant>,
}

impl IdleSearch {
    /// A search started at `now`, with its exponential round.
    pub fn new(settings: SearchSettings, now: Instant) -> Self {
        let mut search = IdleSearch {
            settings: SearchSettings {
                parallel: settings.parallel.max(1),
                ..settings
            },
            bracket: Bracket {
                held: Duration::ZERO,
                failed: None,
            },
            planned: Vec::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            started: 0,
            rounds: 0,
            inconclusive_in_row: 0,
            started_at: now,
            ended_at: None,
        };
        search.plan_round();
        search
    }

    /// The probes to start now: the current round's next ones, as many as
    /// the parallel limit leaves room for; a new round once the last one
    /// is over. Empty once the search is over.
    pub fn next_probes(&mut self) -> Vec<Probe> {
        if self.state() != State::Searching {
            return Vec::new();
        }
        if self.planned.is_empty() && self.in_flight.is_empty() {
            self.plan_round();
        }
        let room = self.settings.parallel.saturating_sub(self.in_flight.len());
        let take = room.min(self.planned.len());
        self.planned
            .drain(..take)
            .map(|silence| {
                let probe = Probe {
                    id: self.next_id,
                    silence,
                };
                self.next_id += 1;
                self.started += 1;
                self.in_flight.insert(probe.id, silence);
                probe
            })
            .collect()
    }

    /// Records probe `id`'s outcome, come at `now`; returns the probes in
    /// flight whose outcome is now known (longer than a failure), which the
    /// caller should cancel: their outcomes would be ignored. An id not in
    /// flight (cancelled, or already reported) is ignored.
    pub fn on_outcome(&mut self, id: u64, outcome: ProbeOutcome, now: Instant) -> Vec<u64> {
        let Some(silence) = self.in_flight.remove(&id) else {
            return Vec::new();
        };
        match outcome {
            ProbeOutcome::Held => {
                self.inconclusive_in_row = 0;
                if self.bracket.failed.is_some_and(|failed| silence >= failed) {
                    // The path got longer: the failure is old news.
                    self.bracket.failed = None;
                }
                self.bracket.held = self.bracket.held.max(silence);
            }
            ProbeOutcome::Failed(after) => {
                self.inconclusive_in_row = 0;
                // A close during the silence comes at any instant; a
                // silence a little longer fails too.
                let after = on_grid_up(after);
                if after <= self.bracket.held {
                    // The path got shorter: what held is old news.
                    self.bracket.held = Duration::ZERO;
                }
                let failed = self.bracket.failed.map_or(after, |f| f.min(after));
                self.bracket.failed = Some(failed);
            }
            ProbeOutcome::Inconclusive => {
                self.inconclusive_in_row += 1;
                self.planned.push(silence);
                self.planned.sort_unstable();
            }
        }
        let known = self.drop_known();
        if self.state() != State::Searching && self.ended_at.is_none() {
            self.ended_at = Some(now);
        }
        known
    }

    /// Forgets planned probes at or past the bracket's failing end; returns
    /// the ones in flight there.
    fn drop_known(&mut self) -> Vec<u64> {
        let failed = self.bracket.failed;
        self.planned.retain(|s| failed.is_none_or(|f| *s < f));
        let mut known: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, s)| failed.is_some_and(|f| **s >= f))
            .map(|(id, _)| *id)
            .collect();
        known.sort_unstable();
        for id in &known {
            self.in_flight.remove(id);
        }
        known
    }

    /// Plans the next round from the bracket: exponential while nothing has
    /// failed, evenly spaced inside it after.
    fn plan_round(&mut self) {
        self.rounds += 1;
        let Bracket { held, failed } = self.bracket;
        self.planned = match failed {
            None => {
                let mut silences = Vec::new();
                let mut s = FIRST;
                while s < self.settings.max {
                    if s > held {
                        silences.push(s);
                    }
                    s *= 2;
                }
                silences.push(self.settings.max);
                silences
            }
            Some(failed) => {
                let width = failed.saturating_sub(held);
                // As few probes as make the bracket narrow in one round,
                // once each is rounded down to the grid.
                let step = tolerance(failed) - GRID;
                let parts = width.as_secs_f64() / step.as_secs_f64();
                let count = (parts.ceil() as usize)
                    .saturating_sub(1)
                    .clamp(1, self.settings.parallel);
                // A bracket wider than its tolerance (1 s at least) is many
                // grid steps wide, so these are distinct and inside it.
                let inside = (1..=count)
                    .map(|i| on_grid(held + width.mul_f64(i as f64 / (count + 1) as f64)))
                    .filter(|s| *s > held && *s < failed);
                let confirm = (!held.is_zero()).then_some(held);
                confirm.into_iter().chain(inside).collect()
            }
        };
    }

    /// Where the search is.
    pub fn state(&self) -> State {
        if self.inconclusive_in_row >= INCONCLUSIVE_MAX {
            State::GaveUp
        } else if self.bracket.is_narrow(self.settings.max) {
            State::Done(self.bracket)
        } else {
            State::Searching
        }
    }

    /// The bracket so far.
    pub fn bracket(&self) -> Bracket {
        self.bracket
    }

    /// From the start to the end of the search, once it has ended.
    pub fn time_taken(&self) -> Option<Duration> {
        self.ended_at.map(|end| end - self.started_at)
    }

    /// Probes started so far.
    pub fn probes_started(&self) -> u32 {
        self.started
    }

    /// Rounds planned so far, the exponential one included.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Probes started and not yet reported or cancelled.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// `d` rounded up to the probe grid.
fn on_grid_up(d: Duration) -> Duration {
    let steps = d.as_nanos().div_ceil(GRID.as_nanos());
    GRID * u32::try_from(steps).unwrap_or(u32::MAX)
}

/// `d` rounded down to the probe grid, and at least one step of it.
fn on_grid(d: Duration) -> Duration {
    let steps = (d.as_nanos() / GRID.as_nanos()).max(1);
    GRID * u32::try_from(steps).unwrap_or(u32::MAX)
}

/// A simulated path, for measuring the search without waiting.
pub struct SimulatedPath<'a> {
    /// The path's idle timeout at each time since the search started.
    pub timeout: &'a dyn Fn(Duration) -> Duration,
    pub round_trip: Duration,
    /// How long an unanswered heartbeat is waited for.
    pub reply_timeout: Duration,
}

/// What a simulated search did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    pub state: State,
    /// From the start to the end of the search (or to `limit`).
    pub elapsed: Duration,
    pub probes: u32,
    pub rounds: u32,
    /// Most probes in flight at once.
    pub most_in_flight: usize,
}

/// Runs a search from `start` against `path` on a simulated clock: a probe
/// of silence `s` opened at `t` (one round trip after it starts) holds if
/// `s` is under the path's timeout at `t + s`, and reports one round trip
/// later; one that fails reports a reply timeout later. Stops when the
/// search is over, or after `limit` of simulated time.
pub fn simulate(
    settings: SearchSettings,
    path: &SimulatedPath<'_>,
    start: Instant,
    limit: Duration,
) -> Simulation {
    let mut search = IdleSearch::new(settings, start);
    // Outcomes to come, earliest first: (since start, probe id, held).
    let mut pending = BinaryHeap::new();
    let mut silences = HashMap::new();
    let mut now = Duration::ZERO;
    let mut most_in_flight = 0;
    loop {
        for probe in search.next_probes() {
            let sent = now + path.round_trip + probe.silence;
            let held = probe.silence < (path.timeout)(sent);
            let at = sent
                + if held {
                    path.round_trip
                } else {
                    path.reply_timeout
                };
            silences.insert(probe.id, probe.silence);
            pending.push(Reverse((at, probe.id, held)));
        }
        most_in_flight = most_in_flight.max(search.in_flight());
        let next = pending.pop().filter(|Reverse((at, _, _))| *at <= limit);
        let (state, Some(Reverse((at, id, held)))) = (search.state(), next) else {
            break;
        };
        if state != State::Searching {
            break;
        }
        now = at;
        let outcome = if held {
            ProbeOutcome::Held
        } else {
            ProbeOutcome::Failed(silences[&id])
        };
        search.on_outcome(id, outcome, start + now);
    }
    Simulation {
        state: search.state(),
        elapsed: search.time_taken().unwrap_or(now),
        probes: search.probes_started(),
        rounds: search.rounds(),
        most_in_flight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    const TEN_MINUTES: Duration = Duration::from_secs(600);
    const HOUR: Duration = Duration::from_secs(3600);

    fn settings(max: Duration) -> SearchSettings {
        SearchSettings { max, parallel: 8 }
    }

    /// Simulates a path whose timeout is `timeout(t)`, with a 20 ms round
    /// trip and a 1 s reply timeout, for at most a day.
    fn run(max: Duration, timeout: &dyn Fn(Duration) -> Duration) -> Simulation {
        let path = SimulatedPath {
            timeout,
            round_trip: Duration::from_millis(20),
            reply_timeout: secs(1.0),
        };
        simulate(settings(max), &path, Instant::now(), secs(86_400.0))
    }

    /// Checks that `sim` ended with a narrow bracket around `timeout` (held
    /// below it, failed at or above it).
    fn assert_brackets(sim: &Simulation, timeout: Duration) -> Bracket {
        let State::Done(bracket) = sim.state else {
            panic!("no bracket: {sim:?}");
        };
        let failed = bracket.failed.expect("a silence failed");
        assert!(
            bracket.held < timeout && timeout <= failed,
            "{bracket:?} does not bracket {timeout:?}"
        );
        assert!(
            failed - bracket.held <= tolerance(failed),
            "{bracket:?} too wide"
        );
        assert!(sim.most_in_flight <= 8, "{sim:?}");
        bracket
    }

    #[test]
    fn brackets_short_and_long_paths_within_three_rounds() {
        for (timeout, max) in [
            (secs(3.0), TEN_MINUTES),
            (secs(8.0), TEN_MINUTES),
            (secs(350.0), TEN_MINUTES),
            (secs(28.0 * 60.0), HOUR),
        ] {
            let sim = run(max, &|_| timeout);
            assert_brackets(&sim, timeout);
            assert!(sim.rounds <= 3, "{timeout:?}: {sim:?}");
            // The exponential round, then about 2 x the failing silence.
            assert!(sim.elapsed < timeout * 5, "{timeout:?}: {sim:?}");
        }
    }

    #[test]
    fn eight_seconds_in_two_rounds_and_about_sixteen_seconds() {
        let sim = run(TEN_MINUTES, &|_| secs(8.0));
        let bracket = assert_brackets(&sim, secs(8.0));
        assert_eq!(
            bracket,
            Bracket {
                held: secs(7.2),
                failed: Some(secs(8.0))
            }
        );
        assert_eq!(sim.rounds, 2);
        // 1 s .. 512 s and 600 s, then 4 s again and 4.8, 5.6, 6.4, 7.2 s.
        assert_eq!(sim.probes, 16);
        // The 8 s failure is known at 9 s; the 7.2 s probe of round 2
        // holds at 16.2 s.
        assert!((secs(16.2)..secs(16.3)).contains(&sim.elapsed), "{sim:?}");
    }

    #[test]
    fn a_path_that_holds_the_longest_silence_searched() {
        let sim = run(TEN_MINUTES, &|_| HOUR);
        assert_eq!(
            sim.state,
            State::Done(Bracket {
                held: TEN_MINUTES,
                failed: None
            })
        );
        assert_eq!(sim.rounds, 1);
    }

    #[test]
    fn a_path_that_fails_the_shortest_silence() {
        let sim = run(TEN_MINUTES, &|_| secs(0.5));
        assert_eq!(
            sim.state,
            State::Done(Bracket {
                held: Duration::ZERO,
                failed: Some(secs(1.0))
            })
        );
    }

    #[test]
    fn a_path_that_gets_shorter_mid_run_is_found_again() {
        // 30 s until 40 s into the search, then 8 s: the exponential round
        // brackets 30 s in [16 s, 32 s]; round 2's confirmation of 16 s
        // fails, and the search starts over below it.
        let sim = run(TEN_MINUTES, &|t| {
            if t < secs(40.0) {
                secs(30.0)
            } else {
                secs(8.0)
            }
        });
        assert_brackets(&sim, secs(8.0));
    }

    #[test]
    fn a_path_that_gets_longer_after_its_failure_leaves_a_safe_bracket() {
        // 8 s until 9 s in, then 30 s: the 8 s failure cancelled the longer
        // probes, so nothing contradicts it; the bracket is too low, which
        // costs heartbeats but never the session.
        let sim = run(TEN_MINUTES, &|t| {
            if t < secs(9.0) { secs(8.0) } else { secs(30.0) }
        });
        let State::Done(bracket) = sim.state else {
            panic!("no bracket: {sim:?}");
        };
        assert_eq!(bracket.failed, Some(secs(8.0)));
        assert!(bracket.held < secs(8.0));
    }

    #[test]
    fn a_path_that_gets_longer_during_the_exponential_round_is_believed() {
        // 8 s until 5 s in, then 30 s: the 8 s probe is sent at 8 s and
        // holds, and so does every probe up to 16 s.
        let sim = run(TEN_MINUTES, &|t| {
            if t < secs(5.0) { secs(8.0) } else { secs(30.0) }
        });
        assert_brackets(&sim, secs(30.0));
    }

    #[test]
    fn a_flapping_path_never_leaves_a_bracket_that_held_at_or_above_a_failure() {
        for period in [3.0, 7.0, 20.0, 61.0] {
            let flapping = move |t: Duration| {
                if (t.as_secs_f64() / period) as u64 % 2 == 0 {
                    secs(5.0)
                } else {
                    secs(12.0)
                }
            };
            let sim = run(TEN_MINUTES, &flapping);
            if let State::Done(Bracket {
                held,
                failed: Some(failed),
            }) = sim.state
            {
                assert!(held < failed, "period {period}: {sim:?}");
            }
        }
    }

    #[test]
    fn a_failure_cancels_the_longer_probes_in_flight() {
        let base = Instant::now();
        let mut search = IdleSearch::new(settings(TEN_MINUTES), base);
        let probes = search.next_probes();
        let silences: Vec<f64> = probes.iter().map(|p| p.silence.as_secs_f64()).collect();
        assert_eq!(silences, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]);
        assert!(search.next_probes().is_empty(), "8 at most in flight");
        let cancel = search.on_outcome(probes[3].id, ProbeOutcome::Failed(secs(8.0)), base);
        assert_eq!(cancel, probes[4..].iter().map(|p| p.id).collect::<Vec<_>>());
        // 256, 512 and 600 s are forgotten; only 1, 2 and 4 s run on.
        assert_eq!(search.in_flight(), 3);
        assert!(search.next_probes().is_empty());
        // A cancelled probe's outcome is ignored.
        assert!(
            search
                .on_outcome(probes[5].id, ProbeOutcome::Held, base)
                .is_empty()
        );
        assert_eq!(search.bracket().held, Duration::ZERO);
    }

    #[test]
    fn a_close_during_the_silence_gives_the_failing_end_up_to_the_grid() {
        let base = Instant::now();
        let mut search = IdleSearch::new(settings(TEN_MINUTES), base);
        let probes = search.next_probes();
        for probe in &probes[..3] {
            search.on_outcome(probe.id, ProbeOutcome::Held, base);
        }
        // The 8 s probe saw the server close after 6.004 s of silence.
        search.on_outcome(probes[3].id, ProbeOutcome::Failed(secs(6.004)), base);
        assert_eq!(
            search.bracket(),
            Bracket {
                held: secs(4.0),
                failed: Some(secs(6.1))
            }
        );
        let round: Vec<f64> = search
            .next_probes()
            .iter()
            .map(|p| p.silence.as_secs_f64())
            .collect();
        assert_eq!(round, [4.0, 4.7, 5.4]);
        // A close a hair early (half a round trip) is the grid step itself.
        let mut search = IdleSearch::new(settings(TEN_MINUTES), base);
        let first = search.next_probes()[0];
        search.on_outcome(first.id, ProbeOutcome::Failed(secs(0.9996)), base);
        assert_eq!(search.bracket().failed, Some(secs(1.0)));
    }

    #[test]
    fn inconclusive_probes_are_tried_again_then_given_up_on() {
        let base = Instant::now();
        let mut search = IdleSearch::new(settings(TEN_MINUTES), base);
        let first = search.next_probes()[0];
        search.on_outcome(first.id, ProbeOutcome::Inconclusive, base);
        let again = search.next_probes();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].silence, first.silence);
        search.on_outcome(again[0].id, ProbeOutcome::Inconclusive, base);
        let third = search.next_probes()[0];
        assert_eq!(search.state(), State::Searching);
        search.on_outcome(third.id, ProbeOutcome::Inconclusive, base);
        assert_eq!(search.state(), State::GaveUp);
        assert!(search.next_probes().is_empty());
    }

    #[test]
    fn the_time_taken_runs_from_the_start_to_the_deciding_outcome() {
        let base = Instant::now();
        let mut search = IdleSearch::new(settings(secs(2.0)), base);
        let probes = search.next_probes();
        assert_eq!(probes.len(), 2, "1 s, then the max");
        assert_eq!(search.time_taken(), None);
        search.on_outcome(probes[0].id, ProbeOutcome::Held, base + secs(1.0));
        search.on_outcome(probes[1].id, ProbeOutcome::Held, base + secs(2.1));
        assert_eq!(
            search.state(),
            State::Done(Bracket {
                held: secs(2.0),
                failed: None
            })
        );
        assert_eq!(search.time_taken(), Some(secs(2.1)));
    }

    #[test]
    fn tolerance_is_a_second_or_a_tenth() {
        assert_eq!(tolerance(secs(8.0)), secs(1.0));
        assert_eq!(tolerance(secs(350.0)), secs(35.0));
    }
}
