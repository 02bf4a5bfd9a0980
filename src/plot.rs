//! Training-curve figures for the `oto prune` report: panels of line series (loss, metric, group
//! sparsity) over training steps, stacked vertically on a shared x axis. Drawn with `plotters`
//! (bitmap backend; text in DejaVu Sans embedded from the `dejavu` crate and rasterized by
//! `ab_glyph`, so no system font library is needed) and encoded as an RGB PNG by `png`.

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// Largest accepted image width or height, in pixels.
pub const MAX_SIDE: u32 = 8192;

/// Smallest accepted width, and height per panel, in pixels: room for the tick labels and a plot.
const MIN_SIDE: u32 = 160;

/// Distinct, readable series colors (blue, orange, green, red, purple).
pub const PALETTE: [[u8; 3]; 5] = [[31, 119, 180], [230, 110, 0], [44, 160, 44], [214, 39, 40], [148, 103, 189]];

/// Name under which the embedded font is registered with `plotters`.
const FONT: &str = "sans-serif";
const TEXT: RGBColor = RGBColor(40, 40, 40);
const GRID: RGBColor = RGBColor(228, 228, 228);
const MARKER: RGBColor = RGBColor(120, 120, 120);

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Name shown in the panel's legend (the legend appears when the panel has more than one series).
    pub label: String,
    /// `(step, value)` pairs in drawing order. A point with a non-finite coordinate is skipped and breaks the line there.
    pub points: Vec<(f64, f64)>,
    /// Line color (RGB).
    pub color: [u8; 3],
}

/// One panel (a y axis) of the figure; all panels share the x axis (steps).
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Title drawn above the panel's plot area.
    pub title: String,
    /// Lines of the panel; an empty list (or only empty / non-finite series) shows "no data".
    pub series: Vec<Series>,
    /// Fixed y range `(low, high)`, e.g. `(0.0, 1.0)` for sparsity, values outside it drawn on its edge;
    /// `None` fits the finite data with a 5% margin.
    pub y_range: Option<(f64, f64)>,
}

/// A whole figure: panels stacked top to bottom over one x axis.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figure {
    /// Panels, top to bottom.
    pub panels: Vec<Panel>,
    /// Label of the shared x axis, drawn under the bottom panel (empty: none).
    pub x_label: String,
    /// Vertical dashed lines `(step, label)` through every panel, e.g. phase boundaries ("pruning starts");
    /// labels are written once, at the top of the last panel, one row per marker. Markers outside the
    /// x range are not drawn.
    pub markers: Vec<(f64, String)>,
}

/// Why a figure could not be rendered.
#[derive(Debug)]
pub enum PlotError {
    /// The figure has no panels.
    NoPanels,
    /// The requested size is below the minimum, above [`MAX_SIDE`], or too small for the number of panels.
    BadSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A panel's fixed y range is not finite with `low < high`, or the data span overflows.
    BadRange {
        /// Title of the panel.
        panel: String,
        /// The offending range.
        range: (f64, f64),
    },
    /// The embedded font could not be parsed.
    Font,
    /// `plotters` failed to draw.
    Draw(String),
    /// Encoding the PNG failed.
    Encode(png::EncodingError),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::NoPanels => write!(f, "plot has no panels"),
            PlotError::BadSize { width, height, reason } => write!(f, "plot size {width}x{height}: {reason}"),
            PlotError::BadRange { panel, range } => write!(f, "panel '{panel}': invalid y range {:?}", range),
            PlotError::Font => write!(f, "the embedded font could not be loaded"),
            PlotError::Draw(e) => write!(f, "drawing failed: {e}"),
            PlotError::Encode(e) => write!(f, "PNG encoding failed: {e}"),
        }
    }
}

impl std::error::Error for PlotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlotError::Encode(e) => Some(e),
            _ => None,
        }
    }
}

/// Renders the figure's panels stacked vertically into an RGB PNG of `width` x `height` pixels.
/// Non-finite coordinates are skipped (not errors); empty series are allowed.
pub fn render_png(figure: &Figure, width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    let (rgb, _) = render(figure, width, height)?;
    encode_png(&rgb, width, height)
}

/// Encodes 8-bit RGB pixels, row by row, as a PNG.
fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(PlotError::Encode)?;
    writer.write_image_data(rgb).map_err(PlotError::Encode)?;
    writer.finish().map_err(PlotError::Encode)?;
    Ok(out)
}

/// A horizontal bar chart: one bar per named value (e.g. the Hessian trace of each layer),
/// top to bottom in the given order, from zero to the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    /// Title above the chart.
    pub title: String,
    /// Label of the value axis.
    pub x_label: String,
    /// `(name, value)` per bar; a non-finite value draws no bar.
    pub bars: Vec<(String, f64)>,
    /// Bar color (RGB).
    pub color: [u8; 3],
}

/// Pixels per bar row of [`render_bars_png`].
pub const BAR_ROW: u32 = 22;

/// Renders `bars` into an RGB PNG `width` pixels wide and [`BAR_ROW`] pixels per bar (plus
/// room for the title and the axis) high, names left of the bars (long names keep their end).
pub fn render_bars_png(bars: &Bars, width: u32) -> Result<Vec<u8>, PlotError> {
    let (rgb, height, _) = render_bars(bars, width)?;
    encode_png(&rgb, width, height)
}

/// Pixel ranges `(x, y)` of a plot area.
type PixelArea = (Range<i32>, Range<i32>);

/// Draws the bar chart; returns the pixels, the height and the plot area's pixel ranges.
fn render_bars(bars: &Bars, width: u32) -> Result<(Vec<u8>, u32, PixelArea), PlotError> {
    let n = bars.bars.len();
    if n == 0 {
        return Err(PlotError::NoPanels);
    }
    let height = u32::try_from(n).ok().and_then(|n| n.checked_mul(BAR_ROW)).and_then(|h| h.checked_add(110)).unwrap_or(u32::MAX);
    if !(MIN_SIDE..=MAX_SIDE).contains(&width) || height > MAX_SIDE {
        return Err(PlotError::BadSize { width, height, reason: "each side must be between 160 and 8192 pixels (at most 363 bars)" });
    }
    let values = bars.bars.iter().map(|b| b.1).filter(|v| v.is_finite());
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (lo, hi) = (if lo < 0.0 { lo - 0.05 * span } else { 0.0 }, if hi > 0.0 || lo >= 0.0 { hi + 0.05 * span } else { 0.0 });
    if !(hi - lo).is_finite() {
        return Err(PlotError::BadRange { panel: bars.title.clone(), range: (lo, hi) });
    }
    font()?;
    let draw = |e: &dyn fmt::Display| PlotError::Draw(e.to_string());
    let label_font = (FONT, 12).into_font().color(&TEXT);
    let names: Vec<String> = bars
        .bars
        .iter()
        .map(|(name, _)| {
            let chars: Vec<char> = name.chars().collect();
            if chars.len() > 44 {
                format!("...{}", chars[chars.len() - 41..].iter().collect::<String>())
            } else {
                name.clone()
            }
        })
        .collect();
    let label_width = (width / 3).clamp(80, 320);
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    let plot;
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .caption(&bars.title, (FONT, 16).into_font().color(&TEXT))
            .x_label_area_size(44)
            .y_label_area_size(label_width)
            .build_cartesian_2d(lo..hi, 0.0..n as f64)
            .map_err(|e| draw(&e))?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(0)
            .disable_y_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(BLACK)
            .label_style(label_font.clone())
            .x_label_formatter(&tick_label)
            .x_desc(bars.x_label.as_str())
            .axis_desc_style(label_font.clone())
            .draw()
            .map_err(|e| draw(&e))?;
        let color = rgb(bars.color);
        for (i, (_, v)) in bars.bars.iter().enumerate().filter(|(_, (_, v))| v.is_finite()) {
            let top = (n - i) as f64 - 0.15;
            let bar = Rectangle::new([(0.0f64.clamp(lo, hi), top - 0.7), (*v, top)], color.filled());
            chart.draw_series(std::iter::once(bar)).map_err(|e| draw(&e))?;
        }
        let right = label_font.clone().pos(Pos::new(HPos::Right, VPos::Center));
        for (i, name) in names.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(lo, (n - i) as f64 - 0.5));
            root.draw(&Text::new(name.clone(), (x - 6, y), right.clone())).map_err(|e| draw(&e))?;
        }
        plot = chart.plotting_area().get_pixel_range();
        root.present().map_err(|e| draw(&e))?;
    }
    Ok((buf, height, plot))
}

/// Registers the embedded font once per process.
fn font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// Layout and ranges computed by [`render`]; returned so tests can predict pixel positions.
#[cfg_attr(not(test), allow(dead_code))]
struct Rendered {
    /// Pixel ranges `(x, y)` of each panel's plotting area.
    plots: Vec<(Range<i32>, Range<i32>)>,
    x_range: (f64, f64),
    y_ranges: Vec<(f64, f64)>,
}

fn finite_points(panel: &Panel) -> impl Iterator<Item = (f64, f64)> + '_ {
    panel.series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite())
}

fn y_range(panel: &Panel) -> Result<(f64, f64), PlotError> {
    let bad = |range| PlotError::BadRange { panel: panel.title.clone(), range };
    if let Some((lo, hi)) = panel.y_range {
        return if lo.is_finite() && hi.is_finite() && lo < hi { Ok((lo, hi)) } else { Err(bad((lo, hi))) };
    }
    let (lo, hi) = finite_points(panel).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, y)| (lo.min(y), hi.max(y)));
    if lo > hi {
        return Ok((0.0, 1.0));
    }
    let margin = if hi > lo { 0.05 * (hi - lo) } else { 0.1 * lo.abs().max(1.0) };
    let range = (lo - margin, hi + margin);
    if (range.1 - range.0).is_finite() {
        Ok(range)
    } else {
        Err(bad((lo, hi)))
    }
}

/// The finite runs of a series (a non-finite point ends a run), y clamped to `y` when the range is fixed.
fn runs(series: &Series, fixed: Option<(f64, f64)>) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for &(x, y) in &series.points {
        match runs.last_mut() {
            Some(run) if x.is_finite() && y.is_finite() => run.push((x, fixed.map_or(y, |(lo, hi)| y.clamp(lo, hi)))),
            Some(run) if !run.is_empty() => runs.push(Vec::new()),
            _ => {}
        }
    }
    runs
}

/// Tick label: at most 4 decimals without trailing zeros, `1.5e-5` style for extreme magnitudes.
fn tick_label(value: &f64) -> String {
    let trim = |s: String| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-3..1e6).contains(&magnitude) {
        let s = format!("{value:.2e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim(mantissa.to_string())),
            None => s,
        };
    }
    match trim(format!("{value:.4}")) {
        zero if zero == "-0" => "0".to_string(),
        s => s,
    }
}

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Draws the figure into an RGB buffer and returns it with the layout.
fn render(figure: &Figure, width: u32, height: u32) -> Result<(Vec<u8>, Rendered), PlotError> {
    let bad_size = |reason| PlotError::BadSize { width, height, reason };
    if figure.panels.is_empty() {
        return Err(PlotError::NoPanels);
    }
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(bad_size("each side must be between 1 and 8192 pixels"));
    }
    let n = figure.panels.len();
    if width < MIN_SIDE || (height as usize) < MIN_SIDE as usize * n {
        return Err(bad_size("too small for the number of panels (160 pixels wide, 160 high per panel at least)"));
    }
    let (x_lo, x_hi) =
        figure.panels.iter().flat_map(finite_points).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (x, _)| (lo.min(x), hi.max(x)));
    let x_range = if x_lo > x_hi {
        (0.0, 1.0)
    } else if x_lo == x_hi {
        (x_lo - 1.0, x_hi + 1.0)
    } else {
        (x_lo, x_hi)
    };
    if !(x_range.1 - x_range.0).is_finite() {
        return Err(bad_size("x span overflows"));
    }
    let y_ranges = figure.panels.iter().map(y_range).collect::<Result<Vec<_>, _>>()?;
    font()?;

    let draw = |e: &dyn fmt::Display| PlotError::Draw(e.to_string());
    let label_font = (FONT, 13).into_font().color(&TEXT);
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    let mut plots = Vec::with_capacity(n);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let areas = root.margin(6, 6, 6, 14).split_evenly((n, 1));
        for (i, (area, panel)) in areas.iter().zip(&figure.panels).enumerate() {
            let last = i + 1 == n;
            let y = y_ranges[i];
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, (FONT, 16).into_font().color(&TEXT))
                .x_label_area_size(if last && !figure.x_label.is_empty() { 44 } else { 24 })
                .y_label_area_size(64)
                .build_cartesian_2d(x_range.0..x_range.1, y.0..y.1)
                .map_err(|e| draw(&e))?;
            let mut mesh = chart.configure_mesh();
            mesh.x_labels(8)
                .y_labels(6)
                .bold_line_style(GRID)
                .light_line_style(TRANSPARENT)
                .axis_style(BLACK)
                .label_style(label_font.clone())
                .x_label_formatter(&tick_label)
                .y_label_formatter(&tick_label);
            if last && !figure.x_label.is_empty() {
                mesh.x_desc(figure.x_label.as_str()).axis_desc_style(label_font.clone());
            }
            mesh.draw().map_err(|e| draw(&e))?;
            for &(mx, _) in &figure.markers {
                if mx.is_finite() && mx >= x_range.0 && mx <= x_range.1 {
                    let dashes = DashedLineSeries::new([(mx, y.0), (mx, y.1)], 5, 5, MARKER.stroke_width(1));
                    chart.draw_series(dashes).map_err(|e| draw(&e))?;
                }
            }
            for series in &panel.series {
                let color = rgb(series.color);
                for (k, run) in runs(series, panel.y_range).into_iter().enumerate() {
                    let line = chart.draw_series(LineSeries::new(run, color.stroke_width(2))).map_err(|e| draw(&e))?;
                    if k == 0 && panel.series.len() > 1 {
                        line.label(series.label.as_str())
                            .legend(move |(lx, ly)| PathElement::new([(lx, ly), (lx + 18, ly)], color.stroke_width(2)));
                    }
                }
            }
            if panel.series.len() > 1 {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(GRID)
                    .label_font(label_font.clone())
                    .draw()
                    .map_err(|e| draw(&e))?;
            }
            let plot = chart.plotting_area();
            if finite_points(panel).next().is_none() {
                let centered = (FONT, 16).into_font().color(&TEXT).pos(Pos::new(HPos::Center, VPos::Center));
                let middle = ((x_range.0 + x_range.1) / 2.0, (y.0 + y.1) / 2.0);
                plot.draw(&Text::new("no data", middle, centered)).map_err(|e| draw(&e))?;
            }
            let (px, py) = plot.get_pixel_range();
            if last {
                draw_marker_labels(plot, figure, x_range, y.1, px.end)?;
            }
            plots.push((px, py));
        }
        root.present().map_err(|e| draw(&e))?;
    }
    Ok((buf, Rendered { plots, x_range, y_ranges }))
}

/// Writes the marker labels at the top of a plot area, one row per marker, right of their line
/// (left of it when there is no room), on a white background.
fn draw_marker_labels<DB: DrawingBackend>(
    plot: &DrawingArea<DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    figure: &Figure,
    x_range: (f64, f64),
    top: f64,
    right: i32,
) -> Result<(), PlotError> {
    let draw = |e: &dyn fmt::Display| PlotError::Draw(e.to_string());
    let style = (FONT, 13).into_font().color(&MARKER);
    let inside = figure.markers.iter().filter(|(mx, label)| !label.is_empty() && mx.is_finite() && *mx >= x_range.0 && *mx <= x_range.1);
    for (row, (mx, label)) in inside.enumerate() {
        let (w, h) = plot.estimate_text_size(label, &style).map_err(|e| draw(&e))?;
        let (w, h) = (i32::try_from(w).unwrap_or(i32::MAX), i32::try_from(h).unwrap_or(i32::MAX));
        let x = plot.map_coordinate(&(*mx, top)).0;
        let dx = if x.saturating_add(6).saturating_add(w) < right { 5 } else { -5 - w };
        let dy = 4 + i32::try_from(row).unwrap_or(i32::MAX / 2).saturating_mul(h + 4);
        let background = Rectangle::new([(dx - 2, dy - 1), (dx + w + 2, dy + h + 1)], WHITE.filled());
        let element = EmptyElement::at((*mx, top)) + background + Text::new(label.clone(), (dx, dy), style.clone());
        plot.draw(&element).map_err(|e| draw(&e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: [u8; 3] = [220, 0, 0];
    const BLUE: [u8; 3] = [0, 0, 220];
    const WHITE_PX: [u8; 3] = [255, 255, 255];

    /// Decodes a PNG with the `png` crate: 8-bit RGB, the given size.
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
        rgb.truncate(info.buffer_size());
        (info.width, info.height, rgb)
    }

    fn pixel(rgb: &[u8], w: u32, x: i32, y: i32) -> [u8; 3] {
        let i = (y as usize * w as usize + x as usize) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }

    fn series(points: Vec<(f64, f64)>, color: [u8; 3]) -> Series {
        Series { label: "s".into(), points, color }
    }

    fn figure(panels: Vec<Panel>) -> Figure {
        Figure { panels, x_label: "step".into(), markers: Vec::new() }
    }

    fn panel(series: Vec<Series>, y_range: Option<(f64, f64)>) -> Panel {
        Panel { title: "panel".into(), series, y_range }
    }

    /// Renders through the PNG path and returns the decoded pixels with the layout.
    fn render_decoded(fig: &Figure, w: u32, h: u32) -> (Vec<u8>, Rendered) {
        let png = render_png(fig, w, h).unwrap();
        let (dw, dh, rgb) = decode(&png);
        assert_eq!((dw, dh), (w, h));
        let (raw, layout) = render(fig, w, h).unwrap();
        assert_eq!(raw, rgb, "PNG round trip is lossless");
        (rgb, layout)
    }

    /// Pixels of `color` as `(x, y)`.
    fn find(rgb: &[u8], w: u32, h: u32, color: [u8; 3]) -> Vec<(i32, i32)> {
        (0..h as i32).flat_map(|y| (0..w as i32).map(move |x| (x, y))).filter(|&(x, y)| pixel(rgb, w, x, y) == color).collect()
    }

    /// Whether a pixel lies in a plot area: plotters maps the data range onto `start..=end` of
    /// its pixel ranges, and a 2-pixel stroke reaches one pixel further.
    fn inside(plot: &(Range<i32>, Range<i32>), (x, y): (i32, i32)) -> bool {
        (plot.0.start - 1..=plot.0.end + 1).contains(&x) && (plot.1.start - 1..=plot.1.end + 1).contains(&y)
    }

    /// Pixel column of step `x` in a plot area (plotters maps linearly onto the pixel range).
    fn column(plot: &(Range<i32>, Range<i32>), x_range: (f64, f64), x: f64) -> i32 {
        let (lo, hi) = (plot.0.start as f64, (plot.0.end - 1) as f64);
        (lo + (x - x_range.0) / (x_range.1 - x_range.0) * (hi - lo)).round() as i32
    }

    /// A bar chart: one bar per value, each as long as its value, the negative one left of zero.
    #[test]
    fn bars_have_the_lengths_of_their_values() {
        let bars = Bars {
            title: "trace".into(),
            x_label: "trace".into(),
            bars: vec![("a".into(), 4.0), ("b".into(), 1.0), ("c".into(), -1.0)],
            color: RED,
        };
        let png = render_bars_png(&bars, 640).unwrap();
        let (w, h, rgb) = decode(&png);
        assert_eq!((w, h), (640, 3 * BAR_ROW + 110));
        let (raw, _, plot) = render_bars(&bars, 640).unwrap();
        assert_eq!(raw, rgb);
        // The red pixels of each bar's middle row, as a run of columns.
        let row = |i: usize| {
            let y = plot.1.start + ((plot.1.end - plot.1.start) as f64 * (i as f64 + 0.5) / 3.0) as i32;
            let xs: Vec<i32> = (0..w as i32).filter(|&x| pixel(&rgb, w, x, y) == RED).collect();
            (*xs.first().unwrap(), *xs.last().unwrap())
        };
        let (a, b, c) = (row(0), row(1), row(2));
        let zero = a.0;
        assert!((b.0 - zero).abs() <= 1 && (c.1 - zero).abs() <= 1, "{a:?} {b:?} {c:?}");
        let (la, lb, lc) = ((a.1 - a.0) as f64, (b.1 - b.0) as f64, (c.1 - c.0) as f64);
        assert!((la / lb - 4.0).abs() < 0.1 && (lc / lb - 1.0).abs() < 0.1, "lengths {la} {lb} {lc}");
        assert!(matches!(render_bars_png(&Bars { bars: vec![], ..bars }, 640), Err(PlotError::NoPanels)));
    }

    #[test]
    fn horizontal_line_at_half_of_unit_range_lands_mid_height_and_stays_inside() {
        let fig = figure(vec![panel(vec![series(vec![(0.0, 0.5), (100.0, 0.5)], RED)], Some((0.0, 1.0)))]);
        let (w, h) = (640, 400);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let plot = &layout.plots[0];
        assert_eq!(pixel(&rgb, w, 0, 0), WHITE_PX);
        assert_eq!(pixel(&rgb, w, w as i32 - 1, h as i32 - 1), WHITE_PX);
        let red = find(&rgb, w, h, RED);
        assert!(red.iter().all(|&p| inside(plot, p)), "series pixels outside the plot area");
        let mid = (plot.1.start + plot.1.end - 1) as f64 / 2.0;
        for x in [plot.0.start + 5, (plot.0.start + plot.0.end) / 2, plot.0.end - 6] {
            let rows: Vec<i32> = red.iter().filter(|p| p.0 == x).map(|p| p.1).collect();
            assert!(!rows.is_empty() && rows.iter().all(|&y| (y as f64 - mid).abs() <= 2.0), "column {x}: rows {rows:?}, mid {mid}");
        }
    }

    #[test]
    fn values_outside_a_fixed_range_stay_in_the_plot_area() {
        let points = (0..50).map(|i| (i as f64, if i % 2 == 0 { 5.0 } else { -3.0 })).collect();
        let fig = figure(vec![panel(vec![series(points, RED)], Some((0.0, 1.0)))]);
        let (w, h) = (500, 300);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let plot = &layout.plots[0];
        let red = find(&rgb, w, h, RED);
        assert!(red.iter().all(|&p| inside(plot, p)), "a clamped line leaked out of the plot area");
        assert!(red.len() as i32 > 2 * plot.1.len() as i32, "the crossing segments are drawn");
    }

    #[test]
    fn non_finite_points_are_skipped_and_break_the_line() {
        let pts = vec![(0.0, 0.5), (10.0, 0.5), (20.0, f64::NAN), (f64::INFINITY, 0.5), (30.0, 0.5), (40.0, 0.5)];
        let fig = figure(vec![panel(vec![series(pts, RED)], Some((0.0, 1.0)))]);
        let (w, h) = (500, 300);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let plot = &layout.plots[0];
        let has_red = |x: f64| {
            let col = column(plot, layout.x_range, x);
            plot.1.clone().any(|y| pixel(&rgb, w, col, y) == RED)
        };
        assert!(has_red(5.0) && has_red(35.0));
        assert!(!has_red(15.0) && !has_red(20.0) && !has_red(25.0), "gap where the value is NaN");
    }

    #[test]
    fn empty_series_shows_no_data_and_other_panels_still_render() {
        let fig = figure(vec![panel(vec![], None), panel(vec![series(vec![(0.0, 1.0), (5.0, 2.0)], BLUE)], None)]);
        let (w, h) = (600, 500);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let (a, b) = (&layout.plots[0], &layout.plots[1]);
        let (cx, cy) = ((a.0.start + a.0.end) / 2, (a.1.start + a.1.end) / 2);
        let dark = (cy - 10..cy + 10)
            .flat_map(|y| (cx - 40..cx + 40).map(move |x| (x, y)))
            .filter(|&(x, y)| pixel(&rgb, w, x, y).iter().map(|&v| u32::from(v)).sum::<u32>() < 300)
            .count();
        assert!(dark > 20, "'no data' is written in the middle of the empty panel ({dark} dark pixels)");
        assert!(b.1.clone().any(|y| pixel(&rgb, w, (b.0.start + b.0.end) / 2, y) == BLUE));
        assert_eq!(layout.y_ranges[0], (0.0, 1.0));
        assert!(b.1.start > a.1.end);
    }

    #[test]
    fn hundred_thousand_points_leave_no_column_gap() {
        let n = 100_000;
        let pts = (0..n).map(|i| (i as f64, (i as f64 / 3000.0).sin())).collect();
        let fig = figure(vec![panel(vec![series(pts, BLUE)], None)]);
        let (w, h) = (1200, 400);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let plot = &layout.plots[0];
        // Every column but the last, where plotters ends the stroke.
        for x in plot.0.start..plot.0.end - 1 {
            assert!(plot.1.clone().any(|y| pixel(&rgb, w, x, y) == BLUE), "column {x} has no line pixel");
        }
    }

    #[test]
    fn legend_and_markers_are_drawn() {
        // Lines near the bottom of a fixed range: red and blue pixels in the top right corner come from the legend.
        let a = Series { label: "train".into(), points: vec![(0.0, 1.0), (100.0, 1.5)], color: RED };
        let b = Series { label: "val".into(), points: vec![(0.0, 1.5), (100.0, 1.0)], color: BLUE };
        let mut fig = figure(vec![panel(vec![a, b], Some((0.0, 10.0))), panel(vec![series(vec![(0.0, 0.0), (100.0, 0.0)], RED)], None)]);
        fig.markers = vec![(50.0, "pruning starts".into()), (1e9, "outside".into())];
        let (w, h) = (800, 600);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let p0 = &layout.plots[0];
        let corner = |(x, y): (i32, i32)| x > (p0.0.start + 3 * p0.0.end) / 4 && y < (3 * p0.1.start + p0.1.end) / 4 && inside(p0, (x, y));
        assert!(find(&rgb, w, h, RED).into_iter().any(corner), "red legend swatch");
        assert!(find(&rgb, w, h, BLUE).into_iter().any(corner), "blue legend swatch");
        let marker = [MARKER.0, MARKER.1, MARKER.2];
        for plot in &layout.plots {
            let col = column(plot, layout.x_range, 50.0);
            let grey = (col - 1..=col + 1).map(|x| plot.1.clone().filter(|&y| pixel(&rgb, w, x, y) == marker).count()).max().unwrap();
            let height = plot.1.len();
            assert!(grey > height / 4 && grey < height * 3 / 4, "dashed marker: {grey} of {height}");
        }
        let last = &layout.plots[1];
        let col = column(last, layout.x_range, 50.0);
        let label = (last.1.start..last.1.start + 20).flat_map(|y| (col + 3..col + 80).map(move |x| (x, y)));
        let dark = label.filter(|&(x, y)| pixel(&rgb, w, x, y).iter().map(|&v| u32::from(v)).sum::<u32>() < 500).count();
        assert!(dark > 20, "marker label right of its line at the top of the last panel ({dark} dark pixels)");
    }

    #[test]
    fn tick_labels_are_short() {
        for (value, label) in [
            (0.6000000000000001, "0.6"),
            (-0.5, "-0.5"),
            (300.0, "300"),
            (20000.0, "20000"),
            (1e-17, "1e-17"),
            (0.05, "0.05"),
            (0.0125, "0.0125"),
            (3e-5, "3e-5"),
            (2.5e7, "2.5e7"),
            (0.0, "0"),
            (-0.00001, "-1e-5"),
        ] {
            assert_eq!(tick_label(&value), label, "{value}");
        }
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let one = figure(vec![panel(vec![], None)]);
        assert!(matches!(render_png(&figure(vec![]), 300, 300), Err(PlotError::NoPanels)));
        assert!(matches!(render_png(&one, 0, 300), Err(PlotError::BadSize { .. })));
        assert!(matches!(render_png(&one, 300, MAX_SIDE + 1), Err(PlotError::BadSize { .. })));
        let three = figure(vec![panel(vec![], None), panel(vec![], None), panel(vec![], None)]);
        let err = render_png(&three, 400, 300).unwrap_err();
        assert!(matches!(err, PlotError::BadSize { .. }) && err.to_string().contains("400x300"), "{err}");
        for range in [(1.0, 0.0), (0.0, f64::NAN), (2.0, 2.0)] {
            let fig = figure(vec![panel(vec![], Some(range))]);
            assert!(matches!(render_png(&fig, 300, 200), Err(PlotError::BadRange { .. })), "{range:?}");
        }
        let huge = figure(vec![panel(vec![series(vec![(0.0, -f64::MAX), (1.0, f64::MAX)], RED)], None)]);
        assert!(matches!(render_png(&huge, 300, 200), Err(PlotError::BadRange { .. })));
    }
}
