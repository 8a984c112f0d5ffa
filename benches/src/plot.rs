//! A PNG of latency percentiles (p50 … max at the fixed rate) per target, one panel per
//! HTTP scenario, log-scaled latency. Text needs a TrueType font at run time (DejaVu Sans from
//! the system); without one the chart is drawn without text and the colours are explained in
//! the report.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::results::Sample;
use crate::results::{group, Summary};

const QUANTILES: [(&str, &str); 5] = [
    ("p50_us", "p50"),
    ("p90_us", "p90"),
    ("p99_us", "p99"),
    ("p999_us", "p99.9"),
    ("max_us", "max"),
];

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Colour per target, by position (also named in the report when there is no text).
pub const COLOURS: [(&str, RGBColor); 4] = [
    ("blue", RGBColor(31, 119, 180)),
    ("red", RGBColor(214, 39, 40)),
    ("green", RGBColor(44, 160, 44)),
    ("black", RGBColor(0, 0, 0)),
];

/// One target's line: (its position among the targets, latency per quantile in µs).
type Series = (usize, Vec<f64>);

/// Registers a system font once; false if none could be loaded.
fn font() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// Draws the chart; returns whether it has text. `scenarios`: the panels, in order;
/// `targets`: the series, in order (colours by position).
pub fn latency(
    path: &Path,
    samples: &[Sample],
    scenarios: &[String],
    targets: &[String],
) -> Result<bool> {
    let g = group(samples);
    let panels: Vec<(&String, Vec<Series>)> = scenarios
        .iter()
        .filter_map(|sc| {
            let per_metric = g.get(sc)?;
            let series: Vec<Series> = targets
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    let ys: Option<Vec<f64>> = QUANTILES
                        .iter()
                        .map(|(k, _)| {
                            Summary::of(per_metric.get(k)?.get(t)?).map(|s| s.median.max(1.0))
                        })
                        .collect();
                    ys.map(|ys| (i, ys))
                })
                .collect();
            (!series.is_empty()).then_some((sc, series))
        })
        .collect();
    if panels.is_empty() {
        return Err(anyhow!("no latency figures to plot"));
    }
    let text = font();
    let cols = if panels.len() > 1 { 2 } else { 1 };
    let rows = panels.len().div_ceil(cols);
    let root = BitMapBackend::new(path, (600 * cols as u32, 400 * rows as u32)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("plot: {e}");
    root.fill(&WHITE).map_err(e)?;
    for (area, (sc, series)) in root.split_evenly((rows, cols)).iter().zip(&panels) {
        let all = series.iter().flat_map(|(_, ys)| ys.iter().copied());
        let (lo, hi) = all.fold((f64::MAX, 1.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        let mut b = ChartBuilder::on(area);
        b.margin(15);
        if text {
            b.caption(
                format!("{sc}: latency at fixed rate (µs)"),
                ("sans-serif", 20),
            )
            .x_label_area_size(30)
            .y_label_area_size(60);
        }
        let mut chart = b
            .build_cartesian_2d(
                -0.2f64..4.2f64,
                ((lo * 0.8).max(0.5)..hi * 1.25).log_scale(),
            )
            .map_err(e)?;
        if text {
            chart
                .configure_mesh()
                .x_labels(5)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 0.01 && (0.0..5.0).contains(&i) {
                        QUANTILES[i as usize].1.to_string()
                    } else {
                        String::new()
                    }
                })
                .y_labels(8)
                .y_label_formatter(&|y| crate::report::fmt_num(*y, 0))
                .y_desc("µs")
                .draw()
                .map_err(e)?;
        } else {
            chart
                .configure_mesh()
                .x_labels(5)
                .y_labels(8)
                .disable_x_axis()
                .disable_y_axis()
                .draw()
                .map_err(e)?;
        }
        for (i, ys) in series {
            let colour = COLOURS[i % COLOURS.len()].1;
            let points: Vec<(f64, f64)> =
                ys.iter().enumerate().map(|(x, y)| (x as f64, *y)).collect();
            let drawn = chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(e)?;
            if text {
                drawn.label(targets[*i].clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            }
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))
                .map_err(e)?;
        }
        if text {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }
    }
    root.present().map_err(e)?;
    Ok(text)
}
