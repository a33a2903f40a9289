//! PNG plots: replicas over time against load for every policy, and the cost/cold-start
//! trade-off of all policies. Labels need a TrueType font; the usual system locations of
//! DejaVu Sans and Liberation Sans are searched once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::SimError;
use crate::evaluate::{pareto, Compared, FoldResult};
use crate::run::PolicyRun;

const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];
/// Points per line at most: longer timelines keep each bucket's maximum.
const MAX_POINTS: usize = 1500;
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn register_font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let bytes = FONT_PATHS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| {
                format!(
                    "no TrueType font for labels (looked for {})",
                    FONT_PATHS.join(", ")
                )
            })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the font file does not parse".to_string())
    })
    .clone()
}

/// Writes `replicas.png` and `tradeoff.png` into `dir`, creating it.
pub(crate) fn write_all(dir: &Path, runs: &[PolicyRun]) -> Result<(), SimError> {
    let fail = |path: PathBuf| move |message: String| SimError::Plot { path, message };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir.to_path_buf())(e.to_string()))?;
    register_font().map_err(fail(dir.to_path_buf()))?;
    let replicas = dir.join("replicas.png");
    draw_replicas(&replicas, runs).map_err(fail(replicas.clone()))?;
    let tradeoff = dir.join("tradeoff.png");
    draw_tradeoff(&tradeoff, runs).map_err(fail(tradeoff.clone()))
}

/// Writes one fold's cost/cold-start frontier to `path`: every KPA setting of the grid and
/// every `serval` setting of the sweep, each family's frontier joined, and both defaults.
pub(crate) fn write_frontier(path: &Path, fold: &FoldResult) -> Result<(), SimError> {
    let fail = |message: String| SimError::Plot {
        path: path.to_path_buf(),
        message,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    register_font().map_err(fail)?;
    draw_frontier(path, fold).map_err(fail)
}

fn draw_frontier(path: &Path, fold: &FoldResult) -> Result<(), String> {
    let point = |c: &Compared| {
        (
            c.summary.cold_start_share * 100.0,
            c.summary.replica_seconds / 3600.0,
        )
    };
    let all: Vec<(f64, f64)> = fold
        .kpa_grid
        .iter()
        .chain(&fold.serval_sweep)
        .map(point)
        .collect();
    let max_x = all.iter().map(|p| p.0).fold(0.0, f64::max).max(0.1) * 1.1;
    let min_y = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) * 0.95;
    let max_y = all.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.05;
    let root = BitMapBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("held out: {}", fold.held_out), ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, min_y..max_y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("requests that met a cold start (%)")
        .y_desc("replica-hours")
        .draw()
        .map_err(|e| e.to_string())?;
    let grey = RGBColor(150, 150, 150);
    let kpa: Vec<(f64, f64)> = fold.kpa_grid.iter().map(point).collect();
    chart
        .draw_series(kpa.iter().map(|p| Circle::new(*p, 3, grey.filled())))
        .map_err(|e| e.to_string())?
        .label("KPA grid (window, grace, target)")
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, grey.filled()));
    chart
        .draw_series(LineSeries::new(pareto(&kpa), grey.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("KPA frontier")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2)));
    let default = point(&fold.kpa_defaults);
    let black = RGBColor(0, 0, 0);
    chart
        .draw_series(std::iter::once(Cross::new(
            default,
            7,
            black.stroke_width(2),
        )))
        .map_err(|e| e.to_string())?
        .label("KPA defaults")
        .legend(move |(x, y)| Cross::new((x + 10, y), 5, black.stroke_width(2)));
    let colour = COLOURS[1];
    let serval: Vec<(f64, f64)> = fold.serval_sweep.iter().map(point).collect();
    chart
        .draw_series(serval.iter().map(|p| Circle::new(*p, 3, colour.filled())))
        .map_err(|e| e.to_string())?
        .label("serval (budget 0.5-20% or none, window 60-240s; none on the KPA grid)")
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, colour.filled()));
    chart
        .draw_series(LineSeries::new(pareto(&serval), colour.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("serval frontier")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    let default = point(&fold.serval_default);
    chart
        .draw_series(std::iter::once(TriangleMarker::new(
            default,
            8,
            colour.filled(),
        )))
        .map_err(|e| e.to_string())?
        .label("serval, default (no budget)")
        .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 5, colour.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(grey)
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Each bucket's maximum, at most `MAX_POINTS` of them: (second, value).
fn downsample(values: &[u32]) -> Vec<(f64, f64)> {
    let step = values.len().div_ceil(MAX_POINTS).max(1);
    values
        .chunks(step)
        .enumerate()
        .map(|(i, c)| {
            (
                (i * step) as f64,
                f64::from(c.iter().copied().max().unwrap_or(0)),
            )
        })
        .collect()
}

fn draw_replicas(path: &Path, runs: &[PolicyRun]) -> Result<(), String> {
    let root = BitMapBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let len = runs
        .iter()
        .map(|r| r.timeline.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let load: Vec<u32> = runs
        .first()
        .map(|r| r.timeline.iter().map(|p| p.1).collect())
        .unwrap_or_default();
    let top = runs
        .iter()
        .flat_map(|r| r.timeline.iter().map(|p| p.0.max(p.1)))
        .max()
        .unwrap_or(1)
        .max(1);
    let (scale, unit) = if len > 7200 {
        (3600.0, "h")
    } else {
        (60.0, "min")
    };
    let mut chart = ChartBuilder::on(&root)
        .caption("replicas over time against load", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..len as f64 / scale, 0.0..f64::from(top) * 1.1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(format!("time ({unit})"))
        .y_desc("replicas / requests")
        .draw()
        .map_err(|e| e.to_string())?;
    let points = |v: &[u32]| -> Vec<(f64, f64)> {
        downsample(v)
            .into_iter()
            .map(|(x, y)| (x / scale, y))
            .collect()
    };
    chart
        .draw_series(AreaSeries::new(
            points(&load),
            0.0,
            RGBColor(200, 200, 200).mix(0.6),
        ))
        .map_err(|e| e.to_string())?
        .label("load (requests in flight or held, kpa run)")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 15, y + 5)],
                RGBColor(200, 200, 200).filled(),
            )
        });
    for (i, run) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let replicas: Vec<u32> = run.timeline.iter().map(|p| p.0).collect();
        chart
            .draw_series(LineSeries::new(points(&replicas), colour.stroke_width(1)))
            .map_err(|e| e.to_string())?
            .label(run.kind.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn draw_tradeoff(path: &Path, runs: &[PolicyRun]) -> Result<(), String> {
    let root = BitMapBackend::new(path, (560, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let cost = |r: &PolicyRun| r.summary.replica_seconds / 3600.0;
    let cold = |r: &PolicyRun| r.summary.cold_start_share * 100.0;
    let max_x = runs.iter().map(cost).fold(0.0, f64::max).max(1e-3) * 1.2;
    let max_y = runs.iter().map(cold).fold(0.0, f64::max).max(0.1) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption("cost against cold starts", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("replica-hours")
        .y_desc("requests that met a cold start (%)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, run) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let at = (cost(run), cold(run));
        // Labels are staggered so that policies at the same point stay readable.
        let label = EmptyElement::at(at)
            + Circle::new((0, 0), 6, colour.filled())
            + Text::new(
                run.kind.as_str().to_string(),
                (10, i as i32 * 16 - 40),
                ("sans-serif", 15).into_font().color(&colour),
            );
        chart
            .draw_series(std::iter::once(label))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
