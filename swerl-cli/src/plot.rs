//! Training-curve plots (PNG or SVG) drawn with `plotters`, in pure Rust.
//!
//! [`plot_runs`] draws one panel per [`Panel`] that has data, in a grid, with one colour per
//! [`Run`] and a shared legend strip at the top naming the runs.
//!
//! Text is rendered with an embedded subset of DejaVu Sans (see `assets/DejaVuSans-LICENSE.txt`)
//! registered with plotters' `ab_glyph` font backend under the family name `"sans-serif"`, so
//! no system fonts are needed. (In SVG output text stays text, with `font-family="sans-serif"`;
//! the embedded font is only used to measure it.)
//!
//! Data handling:
//! - A panel draws, for each run, the first of its `keys` under which the run has at least one
//!   finite point. Panels where no run has a finite point are left out.
//! - Points are drawn in the order given. A point with a non-finite step or value is skipped
//!   and **breaks the line** there; an isolated finite point is drawn as a dot.
//! - Values beyond ±1e300 are clamped to ±1e300 for display (the counts in [`PlotSummary`]
//!   still include them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

/// Embedded font: a Latin/Greek subset of DejaVu Sans (Bitstream Vera license + public domain).
const FONT_BYTES: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/DejaVuSans-subset.ttf"));
/// Family name under which the embedded font is registered (plotters' default family).
const FONT_FAMILY: &str = "sans-serif";

/// Width of one panel in pixels.
pub(crate) const PANEL_WIDTH: u32 = 480;
/// Height of one panel in pixels.
pub(crate) const PANEL_HEIGHT: u32 = 320;
/// Height of one row of the legend strip in pixels.
const LEGEND_ROW_HEIGHT: u32 = 22;
/// Width reserved for one legend entry in pixels.
const LEGEND_SLOT_WIDTH: u32 = 230;
/// Values are clamped to ±this for display so that axis spans stay finite.
const CLAMP: f64 = 1e300;

/// One training run: a name and its metric series.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Run {
    /// Name shown in the legend.
    pub(crate) name: String,
    /// Metric name -> `(step, value)` points.
    pub(crate) series: BTreeMap<String, Vec<(f64, f64)>>,
}

/// One subplot: a title and the metric keys it can show, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Panel {
    /// Title drawn above the panel.
    pub(crate) title: String,
    /// Candidate metric keys; each run contributes the first key it has finite data for.
    pub(crate) keys: Vec<String>,
}

impl Panel {
    /// Builds a panel from a title and its candidate keys.
    pub(crate) fn new(title: &str, keys: &[&str]) -> Self {
        Self { title: title.to_string(), keys: keys.iter().map(|k| k.to_string()).collect() }
    }
}

/// What one drawn panel contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PanelSummary {
    /// The panel's title.
    pub(crate) title: String,
    /// Number of runs that contributed a series to the panel.
    pub(crate) runs: usize,
    /// Number of finite points drawn in the panel.
    pub(crate) points: usize,
}

/// What [`plot_runs`] drew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlotSummary {
    /// Path of the written image.
    pub(crate) path: PathBuf,
    /// Drawn panels, in layout order (panels without data are left out).
    pub(crate) panels: Vec<PanelSummary>,
    /// Total number of finite points drawn, over all panels.
    pub(crate) points: usize,
    /// Image width in pixels.
    pub(crate) width: u32,
    /// Image height in pixels.
    pub(crate) height: u32,
}

/// Errors from [`plot_runs`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlotError {
    /// The output extension is neither `.png` nor `.svg`.
    #[error("unsupported plot format for {path}: expected a .png or .svg file name")]
    Format {
        /// The rejected output path.
        path: PathBuf,
    },
    /// No panel has any finite point to draw.
    #[error("nothing to plot: no run has a finite point for any panel")]
    NoData,
    /// Writing the output failed.
    #[error("cannot write plot {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The plotting backend failed.
    #[error("drawing the plot failed: {0}")]
    Draw(String),
}

/// The default panels for swerl's GRPO / SFT training logs.
pub(crate) fn default_panels() -> Vec<Panel> {
    vec![
        Panel::new("reward", &["reward"]),
        Panel::new("format error rate", &["format_error_rate"]),
        Panel::new("KL", &["kl"]),
        Panel::new("entropy", &["entropy"]),
        Panel::new("completion length", &["completions/mean_length"]),
        Panel::new("held-out format rate", &["eval/format_rate"]),
        Panel::new("held-out reward", &["eval/reward"]),
        Panel::new("loss", &["loss"]),
        Panel::new("token accuracy (SFT)", &["mean_token_accuracy"]),
    ]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

/// One run's line in one panel: segments of finite, clamped points (split at non-finite ones).
struct Line {
    run: usize,
    segments: Vec<Vec<(f64, f64)>>,
}

/// A panel with data, ready to draw.
struct PreparedPanel {
    title: String,
    lines: Vec<Line>,
    x_range: (f64, f64),
    y_range: (f64, f64),
    points: usize,
}

fn is_finite_point(&(x, y): &(f64, f64)) -> bool {
    x.is_finite() && y.is_finite()
}

fn split_segments(points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for p in points {
        if is_finite_point(p) {
            current.push((p.0.clamp(-CLAMP, CLAMP), p.1.clamp(-CLAMP, CLAMP)));
        } else if !current.is_empty() {
            segments.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// A padded axis range that is never empty, inverted or infinite for finite inputs.
fn axis_range(lo: f64, hi: f64) -> (f64, f64) {
    let span = hi - lo;
    let mag = lo.abs().max(hi.abs());
    if !(span > mag * 1e-6 && span > 1e-200) {
        // (Nearly) constant: centre it in a band of ±10% (or ±1 around zero).
        let half = if mag > 1e-200 { mag * 0.1 } else { 1.0 };
        let centre = lo * 0.5 + hi * 0.5;
        return (centre - half, centre + half);
    }
    let pad = span * 0.05;
    (lo - pad, hi + pad)
}

fn prepare(runs: &[Run], panel: &Panel) -> Option<PreparedPanel> {
    let mut lines = Vec::new();
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) =
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    let mut points = 0;
    for (run_index, run) in runs.iter().enumerate() {
        let Some(series) =
            panel.keys.iter().filter_map(|k| run.series.get(k)).find(|pts| pts.iter().any(is_finite_point))
        else {
            continue;
        };
        let segments = split_segments(series);
        for &(x, y) in segments.iter().flatten() {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
            points += 1;
        }
        lines.push(Line { run: run_index, segments });
    }
    if lines.is_empty() {
        return None;
    }
    Some(PreparedPanel {
        title: panel.title.clone(),
        lines,
        x_range: axis_range(x_lo, x_hi),
        y_range: axis_range(y_lo, y_hi),
        points,
    })
}

/// Distinct colour for run `i`: Tableau-10, then golden-angle hues.
fn run_color(i: usize) -> RGBColor {
    const PALETTE: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    if let Some(&(r, g, b)) = PALETTE.get(i) {
        return RGBColor(r, g, b);
    }
    let hue = ((i as f64) * 0.618_033_988_75).fract();
    let light = if i.is_multiple_of(2) { 0.40 } else { 0.55 };
    let (r, g, b) = HSLColor(hue, 0.75, light).rgb();
    RGBColor(r, g, b)
}

/// Compact tick label: integers as integers, very large or small magnitudes in scientific form.
fn format_tick(v: &f64) -> String {
    let v = *v;
    let a = v.abs();
    if a == 0.0 {
        return "0".to_string();
    }
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.2e}");
    }
    if v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn truncate_name(name: &str, max_chars: usize) -> String {
    if name.chars().count() <= max_chars {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(max_chars.saturating_sub(1)).collect();
        s.push('\u{2026}');
        s
    }
}

fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok { Ok(()) } else { Err(PlotError::Draw("the embedded font could not be loaded".to_string())) }
}

/// Grid layout for `n` panels: 1 column for a single panel, 2 for up to 4, else 3.
fn grid(n: usize) -> (usize, usize) {
    let cols = match n {
        0 | 1 => 1,
        2..=4 => 2,
        _ => 3,
    };
    (n.div_ceil(cols).max(1), cols)
}

fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

fn draw_all<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[Run],
    panels: &[PreparedPanel],
    legend_height: u32,
    cols: usize,
    rows: usize,
) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let (legend, body) = root.split_vertically(legend_height);

    // Legend strip: only runs that appear in some drawn panel.
    let mut shown: Vec<usize> = panels.iter().flat_map(|p| p.lines.iter().map(|l| l.run)).collect();
    shown.sort_unstable();
    shown.dedup();
    let (legend_w, _) = legend.dim_in_pixel();
    let per_row = ((legend_w.saturating_sub(20)) / LEGEND_SLOT_WIDTH).max(1) as usize;
    let name_style = (FONT_FAMILY, 15).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    for (slot, &run) in shown.iter().enumerate() {
        let color = run_color(run);
        let x = 12 + (slot % per_row) as i32 * LEGEND_SLOT_WIDTH as i32;
        let y = 8 + (slot / per_row) as i32 * LEGEND_ROW_HEIGHT as i32 + LEGEND_ROW_HEIGHT as i32 / 2;
        legend.draw(&PathElement::new(vec![(x, y), (x + 26, y)], color.stroke_width(3))).map_err(draw_err)?;
        let text = truncate_name(&runs[run].name, 26);
        legend.draw(&Text::new(text, (x + 34, y), name_style.clone())).map_err(draw_err)?;
    }

    let areas = body.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let (x0, x1) = panel.x_range;
        let (y0, y1) = panel.y_range;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, (FONT_FAMILY, 18))
            .margin(10)
            .x_label_area_size(26)
            .y_label_area_size(62)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&format_tick)
            .y_label_formatter(&format_tick)
            .label_style((FONT_FAMILY, 12))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(draw_err)?;
        for line in &panel.lines {
            let color = run_color(line.run);
            for segment in &line.segments {
                if segment.len() == 1 {
                    chart
                        .draw_series(std::iter::once(Circle::new(segment[0], 3, color.filled())))
                        .map_err(draw_err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(segment.iter().copied(), color.stroke_width(2)))
                        .map_err(draw_err)?;
                }
            }
        }
    }
    root.present().map_err(draw_err)
}

/// Encodes an RGB8 buffer as PNG.
fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(draw_err)?;
    writer.write_image_data(rgb).map_err(draw_err)?;
    writer.finish().map_err(draw_err)?;
    Ok(out)
}

/// Writes `bytes` to `<out>.tmp` and renames it over `out`.
fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PlotError::Io { path, source }
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let mut tmp_name = out.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = out.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(out)(e)
    })
}

/// Draws `panels` for `runs` into `out` (`.png` or `.svg`, chosen by extension, case-insensitive).
///
/// The file is written atomically (to a `.tmp` sibling, then renamed); a missing parent
/// directory is created. Panels without any finite point are left out; if none remains,
/// [`PlotError::NoData`] is returned and nothing is written.
pub(crate) fn plot_runs(runs: &[Run], panels: &[Panel], out: &Path) -> Result<PlotSummary, PlotError> {
    let format = match out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => Format::Png,
        Some("svg") => Format::Svg,
        _ => return Err(PlotError::Format { path: out.to_path_buf() }),
    };
    let prepared: Vec<PreparedPanel> = panels.iter().filter_map(|p| prepare(runs, p)).collect();
    if prepared.is_empty() {
        return Err(PlotError::NoData);
    }
    ensure_font()?;

    let (rows, cols) = grid(prepared.len());
    let shown_runs = {
        let mut v: Vec<usize> = prepared.iter().flat_map(|p| p.lines.iter().map(|l| l.run)).collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    let width = PANEL_WIDTH * cols as u32;
    let per_row = ((width.saturating_sub(20)) / LEGEND_SLOT_WIDTH).max(1) as usize;
    let legend_height = 16 + LEGEND_ROW_HEIGHT * shown_runs.div_ceil(per_row) as u32;
    let height = legend_height + PANEL_HEIGHT * rows as u32;

    let bytes = match format {
        Format::Png => {
            let mut rgb = vec![0u8; width as usize * height as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
                draw_all(root, runs, &prepared, legend_height, cols, rows)?;
            }
            encode_png(&rgb, width, height)?
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
                draw_all(root, runs, &prepared, legend_height, cols, rows)?;
            }
            svg.into_bytes()
        }
    };
    write_atomically(out, &bytes)?;

    let panels: Vec<PanelSummary> = prepared
        .iter()
        .map(|p| PanelSummary { title: p.title.clone(), runs: p.lines.len(), points: p.points })
        .collect();
    let points = panels.iter().map(|p| p.points).sum();
    Ok(PlotSummary { path: out.to_path_buf(), panels, points, width, height })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_range_is_sane() {
        for (lo, hi) in
            [(0.0, 0.0), (1.0, 1.0), (-5.0, 5.0), (1e-250, 1e-250), (0.0, 5e-324), (-1e300, 1e300)]
        {
            let (a, b) = axis_range(lo, hi);
            assert!(a.is_finite() && b.is_finite() && a < b, "{lo} {hi} -> {a} {b}");
            assert!(a <= lo && b >= hi);
        }
    }

    #[test]
    fn segments_break_at_non_finite() {
        let segs =
            split_segments(&[(0.0, 1.0), (1.0, f64::NAN), (2.0, 2.0), (3.0, 3.0), (f64::INFINITY, 1.0)]);
        assert_eq!(segs, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }

    #[test]
    fn tick_format() {
        assert_eq!(format_tick(&0.0), "0");
        assert_eq!(format_tick(&100.0), "100");
        assert_eq!(format_tick(&0.25), "0.25");
        assert_eq!(format_tick(&2.5e7), "2.50e7");
    }

    #[test]
    fn grid_layout() {
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(2), (1, 2));
        assert_eq!(grid(4), (2, 2));
        assert_eq!(grid(5), (2, 3));
        assert_eq!(grid(9), (3, 3));
    }

    #[test]
    fn colors_distinct() {
        let colors: Vec<_> = (0..30).map(|i| run_color(i).rgb()).collect();
        for i in 0..colors.len() {
            for j in 0..i {
                assert_ne!(colors[i], colors[j], "{i} {j}");
            }
        }
    }
}
