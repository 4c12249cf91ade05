//! The chart of `make faults-report`: docs/failure-detection.svg, drawn by
//! plotters from the same results as the table. One row per case, grouped
//! by fault under a header row; in each row the configured bound (from 0)
//! above the measured min–max, both in seconds from the last sign of life.

use super::{Case, Expect, Seen, verdict};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::path::Path;
use std::time::Duration;

const WIDTH: u32 = 1200;
const ROW_HEIGHT: u32 = 26;
/// Above and below the rows: caption, axis, legend.
const FRAME_HEIGHT: u32 = 110;
const LABEL_AREA: u32 = 300;

const BOUND: RGBColor = RGBColor(70, 130, 180);
const MEASURED: RGBColor = RGBColor(230, 120, 30);
const BROKEN: RGBColor = RGBColor(200, 30, 30);
const UNNOTICED: RGBColor = RGBColor(170, 170, 170);

/// A row of the chart, top to bottom.
enum Row<'a> {
    Fault(&'static str),
    Case(&'a Case, &'a [Seen]),
}

/// What a case's runs measured.
struct Measured {
    /// Min and max of the runs that noticed the fault.
    range: Option<(f64, f64)>,
    /// Runs that did not notice it, and for how long they watched.
    unnoticed: usize,
    watched: f64,
    runs: usize,
    broken: bool,
}

fn measure(case: &Case, seen: &[Seen]) -> Measured {
    let mut times: Vec<f64> = Vec::new();
    let mut unnoticed = 0;
    let mut watched: f64 = 0.0;
    for s in seen {
        match s {
            Seen::After(t, _) => times.push(t.as_secs_f64()),
            Seen::Unnoticed(w) => {
                unnoticed += 1;
                watched = watched.max(w.as_secs_f64());
            }
        }
    }
    let min = times.iter().copied().reduce(f64::min);
    let max = times.iter().copied().reduce(f64::max);
    Measured {
        range: min.zip(max),
        unnoticed,
        watched,
        runs: seen.len(),
        broken: seen.iter().any(|s| verdict(case, s).is_err()),
    }
}

fn rows<'a>(results: &'a [(&'a Case, Vec<Seen>)]) -> Vec<Row<'a>> {
    let mut rows = Vec::new();
    for (case, seen) in results {
        if seen.is_empty() {
            continue;
        }
        let new_fault =
            !matches!(rows.last(), Some(Row::Case(last, _)) if last.fault == case.fault);
        if new_fault {
            rows.push(Row::Fault(case.fault));
        }
        rows.push(Row::Case(case, seen));
    }
    rows
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Draws the chart of `results` (cases without runs are left out) into
/// `path`.
pub fn draw(results: &[(&Case, Vec<Seen>)], runs: usize, path: &Path) -> Result<(), String> {
    let rows = rows(results);
    let x_max = results
        .iter()
        .flat_map(|(case, seen)| {
            let bound = match case.expect {
                Expect::Within(b) => seconds(b),
                Expect::Unnoticed(w) => seconds(w),
            };
            seen.iter()
                .map(|s| match s {
                    Seen::After(t, _) | Seen::Unnoticed(t) => seconds(*t),
                })
                .chain(std::iter::once(bound))
        })
        .fold(1.0, f64::max)
        * 1.25;
    let height = FRAME_HEIGHT + ROW_HEIGHT * rows.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let n = rows.len();
    let caption =
        format!("Failure detection: configured bound and measured min–max ({runs} runs per case)");
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(LABEL_AREA)
        .build_cartesian_2d(0.0..x_max, (0..n).into_segmented())
        .map_err(|e| e.to_string())?;
    let label_of = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) if *i < n => match &rows[n - 1 - i] {
            Row::Fault(fault) => format!("{fault}:"),
            Row::Case(case, _) => format!("{}  {}", case.id, case.strategy),
        },
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(n)
        .y_label_formatter(&label_of)
        .y_label_style(("sans-serif", 13))
        .x_desc("seconds from the last sign of life to detection")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .draw()
        .map_err(|e| e.to_string())?;

    let half = ROW_HEIGHT / 2;
    let slot = |row: usize| {
        (
            SegmentValue::Exact(n - 1 - row),
            SegmentValue::Exact(n - row),
        )
    };
    let min_width = x_max / 400.0;
    let bar = |x0: f64, x1: f64, row: usize, upper: bool, color: RGBColor| {
        let (bottom, top) = slot(row);
        let mut rect = Rectangle::new(
            [(x0, top), (x0.max(x1).max(x0 + min_width), bottom)],
            color.filled(),
        );
        if upper {
            rect.set_margin(3, half, 0, 0);
        } else {
            rect.set_margin(half, 3, 0, 0);
        }
        rect
    };
    let note = |x: f64, row: usize, upper: bool, text: String| {
        let dy = if upper {
            -(half as i32) / 2 - 5
        } else {
            half as i32 / 2 - 6
        };
        EmptyElement::at((x, SegmentValue::CenterOf(n - 1 - row)))
            + Text::new(text, (6, dy), ("sans-serif", 11).into_font())
    };

    let mut bounds = Vec::new();
    let mut measured = Vec::new();
    let mut unnoticed = Vec::new();
    let mut notes = Vec::new();
    for (row, r) in rows.iter().enumerate() {
        let Row::Case(case, seen) = r else { continue };
        match case.expect {
            Expect::Within(b) => {
                bounds.push(bar(0.0, seconds(b), row, true, BOUND));
                let text = if b.is_zero() {
                    "bound: at once".to_string()
                } else {
                    format!("bound {:.2} s", seconds(b))
                };
                notes.push(note(seconds(b), row, true, text));
            }
            Expect::Unnoticed(_) => {
                notes.push(note(0.0, row, true, "bound: never noticed".to_string()));
            }
        }
        let m = measure(case, seen);
        let color = if m.broken { BROKEN } else { MEASURED };
        let mut text = Vec::new();
        if let Some((lo, hi)) = m.range {
            measured.push(bar(lo, hi, row, false, color));
            text.push(format!("{lo:.2}–{hi:.2} s"));
        }
        if m.unnoticed > 0 {
            unnoticed.push(bar(0.0, m.watched, row, false, UNNOTICED));
            text.push(format!(
                "{}/{} not noticed in {:.0} s",
                m.unnoticed, m.runs, m.watched
            ));
        }
        let end =
            m.range
                .map_or(0.0, |(_, hi)| hi)
                .max(if m.unnoticed > 0 { m.watched } else { 0.0 });
        notes.push(note(end, row, false, text.join("; ")));
    }
    let legend = |color: RGBColor| {
        move |(x, y): (i32, i32)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
    };
    chart
        .draw_series(bounds)
        .map_err(|e| e.to_string())?
        .label("configured bound")
        .legend(legend(BOUND));
    chart
        .draw_series(unnoticed)
        .map_err(|e| e.to_string())?
        .label("watched, not noticed")
        .legend(legend(UNNOTICED));
    chart
        .draw_series(measured)
        .map_err(|e| e.to_string())?
        .label("measured min–max (red: a run broke its promise)")
        .legend(legend(MEASURED));
    chart.draw_series(notes).map_err(|e| e.to_string())?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CASES;

    /// Every case with made-up runs: noticed at its bound (plus a little),
    /// or watched and not noticed.
    fn sample() -> Vec<(&'static Case, Vec<Seen>)> {
        CASES
            .iter()
            .map(|case| {
                let seen = match case.expect {
                    Expect::Within(b) => (0..3)
                        .map(|i| Seen::After(b + Duration::from_millis(10 * i), case.how.into()))
                        .collect(),
                    Expect::Unnoticed(w) => vec![Seen::Unnoticed(w); 3],
                };
                (case, seen)
            })
            .collect()
    }

    #[test]
    fn the_chart_has_each_case_under_its_fault_with_bound_and_measurement() {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("failure-detection.svg");
        draw(&sample(), 3, &path).expect("draw the chart");
        let svg = std::fs::read_to_string(&path).expect("read the chart");
        for case in CASES {
            let label = format!("{}  {}", case.id, case.strategy);
            assert!(svg.contains(&label), "no row {label:?}");
        }
        let faults = svg.matches("(SIGSTOP):\n").count() + svg.matches("(SIGKILL):\n").count();
        assert_eq!(faults, 4, "one header per killed / frozen fault");
        assert!(svg.contains("bound 2.00 s") && svg.contains("2.00–2.02 s"));
        assert!(svg.contains("3/3 not noticed in 6 s") && svg.contains("bound: never noticed"));
    }
}
