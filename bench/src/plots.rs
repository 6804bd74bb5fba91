//! The PNG plots `docs/BENCHMARKS.md` shows.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::stats::Samples;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(90, 90, 90),
];
const SIZE: (u32, u32) = (1000, 600);
/// At most this many points per line: enough for a smooth curve.
const POINTS: usize = 2_000;

/// Makes the font at `path` the plots' sans-serif.
pub fn use_font(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the plots' font {}", path.display()))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes.leak())
        .map_err(|_| anyhow::anyhow!("{} is not a font plotters can use", path.display()))
}

/// Samples spread over at most [`POINTS`] points, as (value, share of samples
/// at most that value).
fn cumulative(samples: &Samples) -> Vec<(f64, f64)> {
    let values = samples.values();
    let step = values.len().div_ceil(POINTS).max(1);
    let count = values.len() as f64;
    values
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == values.len())
        .map(|(i, value)| (*value, (i + 1) as f64 / count))
        .collect()
}

/// The distribution of close lateness: for each series, the share of orders
/// closed within x ms of their deadline, x on a log scale.
pub fn lateness(path: &Path, series: &[(String, &Samples)]) -> anyhow::Result<()> {
    const LOWEST: f64 = 0.1;
    let highest = series
        .iter()
        .map(|(_, samples)| samples.max())
        .fold(10.0, f64::max)
        * 1.5;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Close lateness: share of orders closed within x ms of their deadline",
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((LOWEST..highest).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("ms after the deadline (log scale; 0.1 and less drawn at 0.1)")
        .y_desc("share of orders")
        .draw()?;
    for ((label, samples), color) in series.iter().zip(COLORS.iter().cycle()) {
        let points = cumulative(samples)
            .into_iter()
            .map(|(value, share)| (value.max(LOWEST), share));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A storm's closes over time: orders closed (cumulative) against seconds
/// after the deadline.
pub fn storm(path: &Path, decided: &Samples, announced: &Samples) -> anyhow::Result<()> {
    let last = decided.max().max(announced.max()) / 1000.0;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} orders due in the same instant", decided.len()),
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0.0..(last * 1.05).max(0.1),
            0.0..decided.len() as f64 * 1.02,
        )?;
    chart
        .configure_mesh()
        .x_desc("seconds after the deadline")
        .y_desc("orders closed")
        .draw()?;
    for ((label, samples), color) in [
        ("close decided (closed_at)", decided),
        ("order.closed received downstream", announced),
    ]
    .into_iter()
    .zip(COLORS.iter())
    {
        let count = samples.len() as f64;
        let points = cumulative(samples)
            .into_iter()
            .map(|(ms, share)| (ms / 1000.0, share * count));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}
