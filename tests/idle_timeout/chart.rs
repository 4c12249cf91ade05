//! The chart of `make idle-report`: docs/idle-timeout.svg, drawn by
//! plotters from one adaptive run behind the 8 s black hole: the session's
//! heartbeat idle over time (a step each time it changes), the firewall's
//! timeout, and the moments the session was lost.

use plotters::prelude::*;
use std::path::Path;

const SIZE: (u32, u32) = (900, 420);
const IDLE: RGBColor = RGBColor(70, 130, 180);
const FIREWALL: RGBColor = RGBColor(230, 120, 30);
const LOST: RGBColor = RGBColor(200, 30, 30);

/// Draws `timeline` (seconds from the start; the heartbeat idle from then,
/// or `None` where the session was lost) against a firewall of
/// `firewall` seconds into `path`.
pub fn draw(timeline: &[(f64, Option<f64>)], firewall: f64, path: &Path) -> Result<(), String> {
    let x_max = timeline.iter().map(|(t, _)| *t).fold(1.0, f64::max) * 1.05;
    let y_max = timeline
        .iter()
        .filter_map(|(_, idle)| *idle)
        .fold(firewall, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "hb-client --adaptive-heartbeat --heartbeat-idle 20s --reconnect, behind an 8 s black hole",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the client started")
        .y_desc("heartbeat idle (s)")
        .draw()
        .map_err(|e| e.to_string())?;

    // The idle holds from each change to the next: a step line.
    let mut steps = Vec::new();
    let mut current: Option<f64> = None;
    for (t, idle) in timeline {
        if let (Some(idle), Some(before)) = (idle, current) {
            steps.push((*t, before));
            steps.push((*t, *idle));
        } else if let Some(idle) = idle {
            steps.push((*t, *idle));
        }
        current = idle.or(current);
    }
    chart
        .draw_series(LineSeries::new(steps, IDLE.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("heartbeat idle")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], IDLE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            [(0.0, firewall), (x_max, firewall)],
            FIREWALL.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?
        .label("firewall's idle timeout")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], FIREWALL));
    let losses = timeline
        .iter()
        .filter(|(_, idle)| idle.is_none())
        .map(|(t, _)| Circle::new((*t, firewall / 2.0), 5, LOST.filled()));
    chart
        .draw_series(losses)
        .map_err(|e| e.to_string())?
        .label("session lost")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, LOST.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
