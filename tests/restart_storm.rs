//! Issue 16: the restart of 10,000 and 100,000 `--reconnect` clients,
//! simulated with hb-client's own backoff policy (`client::backoff`, pure:
//! it takes the clock and the random source as arguments), because a real
//! run on one machine cannot show it: the load generator itself is starved
//! and smears the losses over seconds (docs/deployment.md).
//!
//! The model: every client loses its connection at t = 0 (they are on other
//! machines: each sees the loss within a round trip). Nothing listens until
//! t = 1 s; an attempt then fails at once (connection refused). From 1 s the
//! server accepts at most [`ACCEPT_RATE`] connections a second, a token
//! bucket holding at most 100 ms of them; an attempt beyond that is refused
//! at once too (`ERR server full`, a failed attempt since issue 16). An
//! accepted attempt is back. Every failed attempt waits as `Backoff` says
//! (hb-client's defaults, 500 ms doubling to 30 s) with full jitter, or
//! without (each whole cap).
//!
//! The fast tests check what the docs claim at 10,000 clients; the ignored
//! `restart_storm_report` runs both sizes, prints the table of
//! docs/deployment.md and draws docs/restart-storm.svg (`make restart-storm`).

use plotters::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};
use tcp_heartbeat::client::backoff::{Backoff, BackoffSettings, Jitter, NoJitter};

/// Connections the restarted server accepts per second (the issue's).
const ACCEPT_RATE: f64 = 5_000.0;
/// The most it accepts in a burst: 100 ms of its rate.
const BURST: f64 = ACCEPT_RATE / 10.0;
/// When the server is back.
const SERVER_BACK: Duration = Duration::from_secs(1);
/// The window attempts are counted in (the 100 ms).
const WINDOW: Duration = Duration::from_millis(100);
/// The simulation stops here: a herd that is not back by then is reported
/// as such.
const HORIZON: Duration = Duration::from_secs(3600);

/// hb-client's defaults: `--reconnect-min 500ms --reconnect-max 30s`, no
/// limit on attempts.
fn defaults() -> BackoffSettings {
    BackoffSettings {
        min: Duration::from_millis(500),
        max: Duration::from_secs(30),
        attempts: None,
    }
}

/// What one simulated restart did.
struct Storm {
    /// Attempts in each [`WINDOW`] from t = 0.
    attempts: Vec<u32>,
    /// When the last client was back, if before [`HORIZON`].
    all_back: Option<Duration>,
    total_attempts: u64,
}

impl Storm {
    fn peak(&self) -> u32 {
        self.attempts.iter().copied().max().unwrap_or(0)
    }
}

/// The server's admission: nothing before [`SERVER_BACK`], then a token
/// bucket of [`ACCEPT_RATE`] per second holding at most [`BURST`].
struct Server {
    tokens: f64,
    refilled_at: Duration,
}

impl Server {
    fn new() -> Self {
        Server {
            tokens: 0.0,
            refilled_at: SERVER_BACK,
        }
    }

    fn accepts(&mut self, at: Duration) -> bool {
        if at < SERVER_BACK {
            return false;
        }
        let refill = (at - self.refilled_at).as_secs_f64() * ACCEPT_RATE;
        self.tokens = (self.tokens + refill).min(BURST);
        self.refilled_at = at;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Simulates `clients` losing the server at t = 0, each with its own backoff
/// made by `jitter(i)`. Events in time order; the clock is the simulated one.
fn simulate<J: Jitter>(clients: usize, mut jitter: impl FnMut(usize) -> J) -> Storm {
    let t0 = Instant::now();
    let mut backoffs: Vec<Backoff<J>> = (0..clients)
        .map(|i| Backoff::new(defaults(), jitter(i)))
        .collect();
    let mut due: BinaryHeap<Reverse<(Duration, usize)>> = backoffs
        .iter_mut()
        .enumerate()
        .map(|(i, b)| Reverse((next(b, t0, Duration::ZERO), i)))
        .collect();
    let mut server = Server::new();
    let mut storm = Storm {
        attempts: Vec::new(),
        all_back: None,
        total_attempts: 0,
    };
    let mut back = 0;
    while let Some(Reverse((at, i))) = due.pop() {
        if at >= HORIZON {
            break;
        }
        let window = (at.as_nanos() / WINDOW.as_nanos()) as usize;
        if storm.attempts.len() <= window {
            storm.attempts.resize(window + 1, 0);
        }
        storm.attempts[window] += 1;
        storm.total_attempts += 1;
        if server.accepts(at) {
            back += 1;
            if back == clients {
                storm.all_back = Some(at);
            }
        } else {
            due.push(Reverse((next(&mut backoffs[i], t0, at), i)));
        }
    }
    storm
}

/// When the attempt after a failure at `at` is due.
fn next<J: Jitter>(backoff: &mut Backoff<J>, t0: Instant, at: Duration) -> Duration {
    let attempt = backoff.next_attempt(t0 + at).expect("no limit on attempts");
    attempt.at - t0
}

fn with_jitter(clients: usize) -> Storm {
    simulate(clients, |i| fastrand::Rng::with_seed(i as u64))
}

fn without_jitter(clients: usize) -> Storm {
    simulate(clients, |_| NoJitter)
}

#[test]
fn without_jitter_10000_clients_come_back_in_lockstep_herds() {
    let storm = without_jitter(10_000);
    // Every attempt of the herd lands in the same window: all 10,000 at
    // 0.5 s, again at 1.5 s, ...
    assert_eq!(storm.peak(), 10_000);
    let all_back = storm.all_back.expect("back within the hour");
    assert!(all_back > Duration::from_secs(300), "{all_back:?}");
}

#[test]
fn with_full_jitter_10000_clients_spread_and_come_back_within_a_minute() {
    let storm = with_jitter(10_000);
    // Attempt 1 spreads over [0, 0.5 s] (about 2,000 per 100 ms), and the
    // waves after it overlap: no window holds the whole herd, or a third.
    assert!(storm.peak() < 10_000 / 3, "peak {}", storm.peak());
    let all_back = storm.all_back.expect("back within the hour");
    assert!(all_back < Duration::from_secs(60), "{all_back:?}");
    // The server's rate bounds it from below: 10,000 at 5,000/s from 1 s.
    assert!(all_back >= Duration::from_secs(2), "{all_back:?}");
}

#[test]
fn the_simulation_is_deterministic() {
    let (a, b) = (with_jitter(1_000), with_jitter(1_000));
    assert_eq!(a.attempts, b.attempts);
    assert_eq!(a.all_back, b.all_back);
}

fn describe(storm: &Storm) -> String {
    let back = storm.all_back.map_or("not within 1 h".into(), |t| {
        format!("{:.1} s", t.as_secs_f64())
    });
    format!(
        "peak {} attempts / 100 ms, all back after {back}, {} attempts",
        storm.peak(),
        storm.total_attempts
    )
}

#[test]
#[ignore = "100,000 simulated clients: run by `make restart-storm`"]
fn restart_storm_report() {
    let mut runs = Vec::new();
    for clients in [10_000, 100_000] {
        for (label, storm) in [
            ("full jitter", with_jitter(clients)),
            ("no jitter", without_jitter(clients)),
        ] {
            println!("{clients} clients, {label}: {}", describe(&storm));
            runs.push((clients, label, storm));
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/restart-storm.svg");
    draw(&runs, path).expect("draw docs/restart-storm.svg");
    println!("drew {path}");
}

/// Attempts per 100 ms over the first [`CHART_SPAN`], one panel per size.
const CHART_SPAN: Duration = Duration::from_secs(40);

fn draw(runs: &[(usize, &str, Storm)], path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 1));
    let windows = (CHART_SPAN.as_nanos() / WINDOW.as_nanos()) as usize;
    for (panel, clients) in panels.iter().zip([10_000, 100_000]) {
        let series: Vec<_> = runs.iter().filter(|(c, _, _)| *c == clients).collect();
        let top = series.iter().map(|(_, _, s)| s.peak()).max().unwrap_or(1);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{clients} clients lose the server at 0 s; it is back at 1 s, accepting {} a second",
                    ACCEPT_RATE as u32
                ),
                ("sans-serif", 20),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..CHART_SPAN.as_secs_f64(), 0u32..top + top / 10)?;
        chart
            .configure_mesh()
            .x_desc("seconds after the loss")
            .y_desc("connection attempts per 100 ms")
            .draw()?;
        for ((_, label, storm), color) in series.iter().zip([BLUE, RED]) {
            let points = storm
                .attempts
                .iter()
                .take(windows)
                .enumerate()
                .map(|(w, n)| (w as f64 * WINDOW.as_secs_f64(), *n));
            chart
                .draw_series(LineSeries::new(points, color))?
                .label(format!("{label}: {}", describe(storm)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
