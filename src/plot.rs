//! Training-curve figures for the `oto prune` report: panels of line series (loss, metric, group
//! sparsity) over training steps, stacked vertically on a shared x axis and encoded as an RGB PNG.
//! Self-contained: a 5x8 bitmap font, a rasterizer and a PNG encoder (zlib through `flate2`).

use std::fmt;
use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::Compression;

/// Largest accepted image width or height, in pixels.
pub const MAX_SIDE: u32 = 8192;

/// Distinct, readable series colors (blue, orange, green, red, purple).
pub const PALETTE: [[u8; 3]; 5] = [[31, 119, 180], [230, 110, 0], [44, 160, 44], [214, 39, 40], [148, 103, 189]];

const WHITE: [u8; 3] = [255, 255, 255];
const AXIS: [u8; 3] = [0, 0, 0];
const TEXT: [u8; 3] = [40, 40, 40];
const GRID: [u8; 3] = [228, 228, 228];
const MARKER: [u8; 3] = [120, 120, 120];

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
    /// Fixed y range `(low, high)`, e.g. `(0.0, 1.0)` for sparsity; `None` fits the finite data with a 5% margin.
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
    /// labels are written once, at the top of the first panel. Markers outside the x range are not drawn.
    pub markers: Vec<(f64, String)>,
}

/// Why a figure could not be rendered.
#[derive(Debug)]
pub enum PlotError {
    /// The figure has no panels.
    NoPanels,
    /// The requested size is zero, above [`MAX_SIDE`], or too small for the number of panels.
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
    /// Compressing the image failed.
    Encode(std::io::Error),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::NoPanels => write!(f, "plot has no panels"),
            PlotError::BadSize { width, height, reason } => write!(f, "plot size {width}x{height}: {reason}"),
            PlotError::BadRange { panel, range } => write!(f, "panel '{panel}': invalid y range {:?}", range),
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
/// Non-finite coordinates are skipped (not errors); empty series are allowed. Large series are decimated
/// per pixel column, so 100k points cost about as much as a few thousand.
pub fn render_png(figure: &Figure, width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    let canvas = render(figure, width, height)?.0;
    encode_png(width, height, &canvas.px)
}

/// Inclusive pixel rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

struct Canvas {
    width: i64,
    height: i64,
    px: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Canvas {
        Canvas { width: width.into(), height: height.into(), px: vec![255; width as usize * height as usize * 3] }
    }

    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if (0..self.width).contains(&x) && (0..self.height).contains(&y) {
            let i = ((y * self.width + x) * 3) as usize;
            self.px[i..i + 3].copy_from_slice(&color);
        }
    }

    fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, color: [u8; 3]) {
        for yy in y.max(0)..(y + h).min(self.height) {
            for xx in x.max(0)..(x + w).min(self.width) {
                self.set(xx, yy, color);
            }
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel an `s` x `s` square.
    fn text(&mut self, x: i64, y: i64, text: &str, color: [u8; 3], s: i64) {
        for (i, ch) in text.chars().enumerate() {
            let x0 = x + i as i64 * 6 * s;
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.fill(x0 + col * s, y + row as i64 * s, s, s, color);
                    }
                }
            }
        }
    }

    /// A 2x2 pen dot, clipped to `clip`.
    fn dot(&mut self, x: i64, y: i64, clip: Rect, color: [u8; 3]) {
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (px, py) = (x + dx, y + dy);
            if px >= clip.left && px <= clip.right && py >= clip.top && py <= clip.bottom {
                self.set(px, py, color);
            }
        }
    }

    /// Bresenham line with the 2x2 pen; the caller has clipped the end points to (about) `clip`.
    fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), clip: Rect, color: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.dot(x0, y0, clip, color);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }
}

/// Text width in pixels at scale `s` (glyphs advance 6 font pixels, the last column is spacing).
fn text_width(text: &str, s: i64) -> i64 {
    (text.chars().count() as i64 * 6 - 1).max(0) * s
}

/// Pixels between the axes box and the ends of the data range, so that a line at a fixed range's bound
/// (sparsity 0 before pruning) is not hidden under the box.
const INSET: i64 = 2;

/// Maps data coordinates to (unrounded) pixel coordinates of one plot area.
struct Mapping {
    rect: Rect,
    x: (f64, f64),
    y: (f64, f64),
}

impl Mapping {
    fn px(&self, x: f64) -> f64 {
        let (lo, hi) = ((self.rect.left + INSET) as f64, (self.rect.right - INSET) as f64);
        (lo + (x - self.x.0) / (self.x.1 - self.x.0) * (hi - lo)).clamp(-1e9, 1e9)
    }
    fn py(&self, y: f64) -> f64 {
        let (lo, hi) = ((self.rect.bottom - INSET) as f64, (self.rect.top + INSET) as f64);
        (lo + (y - self.y.0) / (self.y.1 - self.y.0) * (hi - lo)).clamp(-1e9, 1e9)
    }
}

/// Layout and ranges computed by [`render`]; returned so tests can predict pixel positions.
#[cfg_attr(not(test), allow(dead_code))]
struct Rendered {
    plots: Vec<Rect>,
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

/// "Nice" ticks inside `[lo, hi]`: multiples of the smallest step in {1, 2, 5} x 10^k giving at most 6 ticks.
/// Returns the ticks and the step.
fn nice_ticks(lo: f64, hi: f64) -> (Vec<f64>, f64) {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return (Vec::new(), 1.0);
    }
    let base = 10f64.powf((span / 10.0).log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0].map(|m| m * base) {
        let (first, last) = ((lo / step - 1e-9).ceil(), (hi / step + 1e-9).floor());
        if last - first < 6.0 {
            return ((first as i64..=last as i64).map(|i| i as f64 * step).collect(), step);
        }
    }
    (vec![lo, hi], span)
}

/// Label of tick `value` on an axis with tick spacing `step`: fixed decimals, or `1.5e-5` style for extreme magnitudes.
fn tick_label(value: f64, step: f64) -> String {
    let value = if value.abs() < step * 1e-6 { 0.0 } else { value };
    let decimals = |step: f64| (-(step.log10() + 1e-6).floor()).max(0.0) as usize;
    let magnitude = value.abs().max(step);
    if magnitude >= 1e6 || step < 1e-4 {
        if value == 0.0 {
            return "0".to_string();
        }
        let exp = magnitude.log10().floor();
        let mantissa = value / 10f64.powf(exp);
        return format!("{mantissa:.*}e{exp}", decimals(step / 10f64.powf(exp)));
    }
    format!("{value:.*}", decimals(step))
}

/// Draws the figure into a canvas and returns it with the layout.
fn render(figure: &Figure, width: u32, height: u32) -> Result<(Canvas, Rendered), PlotError> {
    let bad_size = |reason| PlotError::BadSize { width, height, reason };
    if figure.panels.is_empty() {
        return Err(PlotError::NoPanels);
    }
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(bad_size("each side must be between 1 and 8192 pixels"));
    }
    let n = figure.panels.len() as i64;
    let (w, h) = (i64::from(width), i64::from(height));
    let s: i64 = if w >= 480 && h >= 180 * n { 2 } else { 1 };
    let (pad, tick, line_h) = (4 * s, 3 * s, 9 * s);

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
    let (x_ticks, x_step) = nice_ticks(x_range.0, x_range.1);
    let y_ranges = figure.panels.iter().map(y_range).collect::<Result<Vec<_>, _>>()?;
    let y_ticks: Vec<(Vec<f64>, f64)> = y_ranges.iter().map(|&(lo, hi)| nice_ticks(lo, hi)).collect();

    let y_label_w = y_ticks.iter().flat_map(|(t, step)| t.iter().map(move |&v| text_width(&tick_label(v, *step), s))).max().unwrap_or(0);
    let last_x_label_w = x_ticks.last().map_or(0, |&v| text_width(&tick_label(v, x_step), s));
    let left = pad + y_label_w + 2 * s + tick;
    let right = w - 1 - (2 * pad).max(last_x_label_w / 2 + pad);
    let bottom_area = tick + 2 * s + line_h + pad + if figure.x_label.is_empty() { 0 } else { line_h + pad };
    let panel_h = (h - pad - bottom_area) / n;
    let title_h = line_h + pad;
    let gap = 3 * pad;
    let plots: Vec<Rect> = (0..n)
        .map(|i| {
            let top = pad + i * panel_h;
            Rect { left, top: top + title_h, right, bottom: top + panel_h - 1 - if i + 1 < n { gap } else { 0 } }
        })
        .collect();
    if right - left < 32 || plots[0].bottom - plots[0].top < 16 {
        return Err(bad_size("too small for the number of panels"));
    }

    let mut c = Canvas::new(width, height);
    for (i, panel) in figure.panels.iter().enumerate() {
        let r = plots[i];
        let map = Mapping { rect: r, x: x_range, y: y_ranges[i] };
        let inner = Rect { left: r.left + 1, top: r.top + 1, right: r.right - 1, bottom: r.bottom - 1 };
        for &v in &x_ticks {
            let x = map.px(v).round() as i64;
            c.fill(x, r.top, 1, r.bottom - r.top, GRID);
            c.fill(x, r.bottom, 1, tick + 1, AXIS);
            if i + 1 == plots.len() {
                let label = tick_label(v, x_step);
                let lx = (x - text_width(&label, s) / 2).clamp(0, w - text_width(&label, s));
                c.text(lx, r.bottom + tick + 2 * s, &label, TEXT, s);
            }
        }
        let (ticks, step) = &y_ticks[i];
        for &v in ticks {
            let y = map.py(v).round() as i64;
            c.fill(r.left, y, r.right - r.left, 1, GRID);
            c.fill(r.left - tick, y, tick, 1, AXIS);
            let label = tick_label(v, *step);
            c.text(r.left - tick - 2 * s - text_width(&label, s), y - 7 * s / 2, &label, TEXT, s);
        }
        for &(mx, _) in &figure.markers {
            if mx.is_finite() && mx >= x_range.0 && mx <= x_range.1 {
                let x = map.px(mx).round() as i64;
                (r.top..=r.bottom).filter(|y| (y - r.top) / (3 * s) % 2 == 0).for_each(|y| c.set(x, y, MARKER));
            }
        }
        for series in &panel.series {
            draw_series(&mut c, &map, inner, series);
        }
        c.fill(r.left, r.top, r.right - r.left + 1, 1, AXIS);
        c.fill(r.left, r.bottom, r.right - r.left + 1, 1, AXIS);
        c.fill(r.left, r.top, 1, r.bottom - r.top + 1, AXIS);
        c.fill(r.right, r.top, 1, r.bottom - r.top + 1, AXIS);
        let text_top = r.top - pad - 7 * s;
        c.text(r.left, text_top, &panel.title, TEXT, s);
        if panel.series.len() > 1 {
            let swatch = 10 * s;
            let entry_w = |sr: &Series| swatch + 2 * s + text_width(&sr.label, s);
            let total: i64 = panel.series.iter().map(|sr| entry_w(sr) + 6 * s).sum::<i64>() - 6 * s;
            let mut x = (r.right - total).max(r.left + text_width(&panel.title, s) + 6 * s);
            for sr in &panel.series {
                c.fill(x, text_top + 3 * s, swatch, 2, sr.color);
                c.text(x + swatch + 2 * s, text_top, &sr.label, TEXT, s);
                x += entry_w(sr) + 6 * s;
            }
        }
        if finite_points(panel).next().is_none() {
            let msg = "no data";
            c.text((r.left + r.right - text_width(msg, s)) / 2, (r.top + r.bottom - 7 * s) / 2, msg, TEXT, s);
        }
    }
    draw_marker_labels(&mut c, figure, plots[0], x_range, s);
    if !figure.x_label.is_empty() {
        let last = plots[plots.len() - 1];
        let x = ((last.left + last.right - text_width(&figure.x_label, s)) / 2).max(0);
        c.text(x, last.bottom + tick + 2 * s + line_h + pad, &figure.x_label, TEXT, s);
    }
    Ok((c, Rendered { plots, x_range, y_ranges }))
}

/// Writes marker labels at the top of the first plot area, right of their line (left if no room),
/// moving a label one row down when it would overlap an earlier one.
fn draw_marker_labels(c: &mut Canvas, figure: &Figure, r: Rect, x_range: (f64, f64), s: i64) {
    let map = Mapping { rect: r, x: x_range, y: (0.0, 1.0) };
    let mut rows: Vec<Vec<(i64, i64)>> = Vec::new();
    for (mx, label) in &figure.markers {
        if label.is_empty() || !(mx.is_finite() && *mx >= x_range.0 && *mx <= x_range.1) {
            continue;
        }
        let (x, lw) = (map.px(*mx).round() as i64, text_width(label, s));
        let lx = if x + 3 * s + lw < r.right - 2 * s { x + 3 * s } else { (x - 3 * s - lw).max(r.left + 2 * s) };
        let span = (lx - 2 * s, lx + lw + 2 * s);
        let row = rows.iter().position(|used| used.iter().all(|&(a, b)| span.1 < a || span.0 > b)).unwrap_or(rows.len());
        if row == rows.len() {
            rows.push(Vec::new());
        }
        rows[row].push(span);
        let y = r.top + 2 * s + row as i64 * 10 * s;
        c.fill(span.0, y - s, span.1 - span.0, 10 * s, WHITE);
        c.text(lx, y, label, MARKER, s);
    }
}

/// Liang-Barsky clipping of segment `a`-`b` to `r`.
fn clip_segment(a: (f64, f64), b: (f64, f64), r: Rect) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [(-dx, a.0 - r.left as f64), (dx, r.right as f64 - a.0), (-dy, a.1 - r.top as f64), (dy, r.bottom as f64 - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else if p < 0.0 {
            t0 = t0.max(q / p);
        } else {
            t1 = t1.min(q / p);
        }
    }
    (t0 <= t1).then_some(((a.0 + t0 * dx, a.1 + t0 * dy), (a.0 + t1 * dx, a.1 + t1 * dy)))
}

/// Draws one series. Consecutive points in the same pixel column collapse into one vertical min-max span,
/// so the work is bounded by the plot width plus the number of points.
fn draw_series(c: &mut Canvas, map: &Mapping, clip: Rect, series: &Series) {
    let round = |p: (f64, f64)| (p.0.round() as i64, p.1.round() as i64);
    let segment = |c: &mut Canvas, a, b| {
        if let Some((a, b)) = clip_segment(a, b, clip) {
            c.line(round(a), round(b), clip, series.color);
        }
    };
    // Current column: its index, y extent and last point.
    let mut column: Option<(i64, f64, f64, (f64, f64))> = None;
    for &(x, y) in &series.points {
        if !(x.is_finite() && y.is_finite()) {
            if let Some((col, lo, hi, _)) = column.take() {
                segment(c, (col as f64, lo), (col as f64, hi));
            }
            continue;
        }
        let p = (map.px(x), map.py(y));
        let col = p.0.round() as i64;
        column = match column {
            Some((cur, lo, hi, _)) if cur == col => Some((cur, lo.min(p.1), hi.max(p.1), p)),
            Some((cur, lo, hi, last)) => {
                segment(c, (cur as f64, lo), (cur as f64, hi));
                segment(c, last, p);
                Some((col, p.1, p.1, p))
            }
            None => Some((col, p.1, p.1, p)),
        };
    }
    if let Some((col, lo, hi, _)) = column {
        segment(c, (col as f64, lo), (col as f64, hi));
    }
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (ISO-HDLC, as PNG chunks use).
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
}

fn write_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Encodes 8-bit RGB pixels (row-major) as a PNG with filter type 0 on every row.
fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, PlotError> {
    let row = width as usize * 3;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for pixels in rgb.chunks(row) {
        raw.push(0);
        raw.extend_from_slice(pixels);
    }
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    zlib.write_all(&raw).map_err(PlotError::Encode)?;
    let idat = zlib.finish().map_err(PlotError::Encode)?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolor, deflate, adaptive filtering, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    write_chunk(&mut out, b"IHDR", &ihdr);
    write_chunk(&mut out, b"IDAT", &idat);
    write_chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// 5x8 glyph rows, top to bottom, bit 4 = leftmost column; row 7 holds descenders. Unknown characters draw as '?'.
fn glyph(ch: char) -> [u8; 8] {
    match ch {
        ' ' => [0; 8],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0],
        'a' => [0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0],
        'c' => [0, 0, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0],
        'd' => [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0],
        'e' => [0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0],
        'f' => [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0],
        'g' => [0, 0, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0],
        'i' => [0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0],
        'j' => [0x02, 0, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0],
        'm' => [0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11, 0],
        'n' => [0, 0, 0x16, 0x19, 0x11, 0x11, 0x11, 0],
        'o' => [0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0],
        'p' => [0, 0, 0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10],
        'q' => [0, 0, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x01],
        'r' => [0, 0, 0x16, 0x19, 0x10, 0x10, 0x10, 0],
        's' => [0, 0, 0x0F, 0x10, 0x0E, 0x01, 0x1E, 0],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0],
        'u' => [0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D, 0],
        'v' => [0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04, 0],
        'w' => [0, 0, 0x11, 0x11, 0x15, 0x15, 0x0A, 0],
        'x' => [0, 0, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0],
        'y' => [0, 0, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        'z' => [0, 0, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C, 0],
        ',' => [0, 0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0, 0x1F],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0, 0],
        '\'' => [0x0C, 0x04, 0x08, 0, 0, 0, 0, 0],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const RED: [u8; 3] = [220, 0, 0];
    const BLUE: [u8; 3] = [0, 0, 220];

    /// Decodes our own PNG: checks signature, chunk order and every CRC, inflates IDAT and strips filter bytes.
    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let (mut pos, mut kinds, mut ihdr, mut idat) = (8, Vec::new(), Vec::new(), Vec::new());
        while pos < png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            let body = &png[pos + 4..pos + 8 + len];
            let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
            assert_eq!(crc32(body), crc, "CRC of chunk {:?}", std::str::from_utf8(&body[..4]));
            let kind = std::str::from_utf8(&body[..4]).unwrap().to_string();
            match kind.as_str() {
                "IHDR" => ihdr = body[4..].to_vec(),
                "IDAT" => idat.extend_from_slice(&body[4..]),
                _ => {}
            }
            kinds.push(kind);
            pos += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        let (w, h) = (u32::from_be_bytes(ihdr[..4].try_into().unwrap()), u32::from_be_bytes(ihdr[4..8].try_into().unwrap()));
        assert_eq!(&ihdr[8..], &[8, 2, 0, 0, 0]);
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
        let row = w as usize * 3 + 1;
        assert_eq!(raw.len(), row * h as usize);
        assert!(raw.chunks(row).all(|r| r[0] == 0), "filter byte 0 on every row");
        (w, h, raw.chunks(row).flat_map(|r| r[1..].to_vec()).collect())
    }

    fn pixel(rgb: &[u8], w: u32, x: i64, y: i64) -> [u8; 3] {
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
        let (canvas, layout) = render(fig, w, h).unwrap();
        assert_eq!(canvas.px, rgb, "PNG round trip is lossless");
        (rgb, layout)
    }

    fn inside(r: Rect, x: i64, y: i64) -> bool {
        x >= r.left && x <= r.right && y >= r.top && y <= r.bottom
    }

    #[test]
    fn crc32_matches_reference_vector() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn horizontal_line_at_half_of_unit_range_lands_mid_height_and_stays_inside() {
        let fig = figure(vec![panel(vec![series(vec![(0.0, 0.5), (100.0, 0.5)], RED)], Some((0.0, 1.0)))]);
        let (w, h) = (640, 400);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let r = layout.plots[0];
        assert_eq!(pixel(&rgb, w, 0, 0), WHITE);
        assert_eq!(pixel(&rgb, w, w as i64 - 1, h as i64 - 1), WHITE);
        for (x, y) in [(r.left, r.top), (r.right, r.bottom), (r.left, r.bottom), (r.right, r.top)] {
            assert_eq!(pixel(&rgb, w, x, y), AXIS, "axes box corner");
        }
        let mid = ((r.top + r.bottom) as f64 / 2.0).round() as i64;
        for x in [r.left + 5, (r.left + r.right) / 2, r.right - 5] {
            let rows: Vec<i64> = (0..h as i64).filter(|&y| pixel(&rgb, w, x, y) == RED).collect();
            assert!(rows == [mid, mid + 1] || rows == [mid - 1, mid], "column {x}: rows {rows:?}, mid {mid}");
        }
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                if pixel(&rgb, w, x, y) == RED {
                    assert!(inside(r, x, y), "series pixel outside the plot area at ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn values_outside_a_fixed_range_are_clipped_to_the_plot_area() {
        let points = (0..50).map(|i| (i as f64, if i % 2 == 0 { 5.0 } else { -3.0 })).collect();
        let fig = figure(vec![panel(vec![series(points, RED)], Some((0.0, 1.0)))]);
        let (w, h) = (500, 300);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let r = layout.plots[0];
        let mut inside_count = 0;
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                if pixel(&rgb, w, x, y) == RED {
                    assert!(inside(r, x, y), "clipped line leaked to ({x}, {y})");
                    inside_count += 1;
                }
            }
        }
        assert!(inside_count > 2 * (r.bottom - r.top), "the crossing segments are drawn");
    }

    #[test]
    fn non_finite_points_are_skipped_and_break_the_line() {
        let pts = vec![(0.0, 0.5), (10.0, 0.5), (20.0, f64::NAN), (f64::INFINITY, 0.5), (30.0, 0.5), (40.0, 0.5)];
        let fig = figure(vec![panel(vec![series(pts, RED)], Some((0.0, 1.0)))]);
        let (w, h) = (500, 300);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let r = layout.plots[0];
        let map = Mapping { rect: r, x: layout.x_range, y: layout.y_ranges[0] };
        let col = |x: f64| map.px(x).round() as i64;
        let has_red = |x: i64| (r.top..=r.bottom).any(|y| pixel(&rgb, w, x, y) == RED);
        assert!(has_red(col(5.0)) && has_red(col(35.0)));
        assert!(!has_red(col(20.0)), "gap where the value is NaN");
    }

    #[test]
    fn empty_series_shows_no_data_and_other_panels_still_render() {
        let fig = figure(vec![panel(vec![], None), panel(vec![series(vec![(0.0, 1.0), (5.0, 2.0)], BLUE)], None)]);
        let (w, h) = (600, 500);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let (a, b) = (layout.plots[0], layout.plots[1]);
        let text_pixels = (a.top + 1..a.bottom)
            .flat_map(|y| (a.left + 1..a.right).map(move |x| (x, y)))
            .filter(|&(x, y)| pixel(&rgb, w, x, y) == TEXT)
            .count();
        assert!(text_pixels > 20, "'no data' is written in the empty panel");
        assert!((b.top..=b.bottom).any(|y| pixel(&rgb, w, (b.left + b.right) / 2, y) == BLUE));
        assert_eq!(layout.y_ranges[0], (0.0, 1.0));
        assert!(b.top > a.bottom);
    }

    #[test]
    fn hundred_thousand_points_leave_no_column_gap() {
        let n = 100_000;
        let pts = (0..n).map(|i| (i as f64, (i as f64 / 3000.0).sin())).collect();
        let fig = figure(vec![panel(vec![series(pts, BLUE)], None)]);
        let (w, h) = (1200, 400);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let r = layout.plots[0];
        for x in r.left + INSET..=r.right - INSET {
            assert!((r.top + 1..r.bottom).any(|y| pixel(&rgb, w, x, y) == BLUE), "column {x} has no line pixel");
        }
    }

    #[test]
    fn legend_and_markers_are_drawn() {
        let a = Series { label: "train".into(), points: vec![(0.0, 1.0), (100.0, 2.0)], color: RED };
        let b = Series { label: "val".into(), points: vec![(0.0, 2.0), (100.0, 1.0)], color: BLUE };
        let mut fig = figure(vec![panel(vec![a, b], None), panel(vec![series(vec![(0.0, 0.0), (100.0, 0.0)], RED)], None)]);
        fig.markers = vec![(50.0, "pruning starts".into()), (1e9, "outside".into())];
        let (w, h) = (800, 600);
        let (rgb, layout) = render_decoded(&fig, w, h);
        let p0 = layout.plots[0];
        let title_row = |c: [u8; 3]| (0..p0.top).any(|y| (0..w as i64).any(|x| pixel(&rgb, w, x, y) == c));
        assert!(title_row(RED) && title_row(BLUE), "legend swatches above the first plot");
        for r in &layout.plots {
            let x = ((r.left + r.right) as f64 / 2.0).round() as i64;
            let grey = (r.top..=r.bottom).filter(|&y| pixel(&rgb, w, x, y) == MARKER).count() as i64;
            let height = r.bottom - r.top;
            assert!(grey > height / 4 && grey < height * 3 / 4, "dashed marker: {grey} of {height}");
        }
    }

    #[test]
    fn nice_ticks_use_1_2_5_steps_inside_the_range() {
        let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
        assert!(close(&nice_ticks(0.0, 0.93).0, &[0.0, 0.2, 0.4, 0.6, 0.8]));
        assert!(close(&nice_ticks(0.0, 1.0).0, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]));
        assert!(close(&nice_ticks(0.0, 300.0).0, &[0.0, 100.0, 200.0, 300.0]));
        assert!(close(&nice_ticks(-1.0, 1.0).0, &[-1.0, -0.5, 0.0, 0.5, 1.0]));
        assert!(nice_ticks(1.0, 1.0).0.is_empty());
        for (lo, hi) in [(0.0, 0.61), (-3.7, 12.2), (1e-6, 7e-6), (2.05, 2.3), (0.0, 299.0), (-1e7, 3e7), (0.1, 0.35)] {
            let (ticks, step) = nice_ticks(lo, hi);
            assert!((3..=6).contains(&ticks.len()), "{lo}..{hi}: {ticks:?}");
            assert!(ticks.iter().all(|&t| t >= lo - 1e-12 && t <= hi + 1e-12), "{lo}..{hi}: {ticks:?}");
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!([1.0, 2.0, 5.0].iter().any(|m| (m - mantissa).abs() < 1e-6), "step {step}");
        }
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.6000000000000001, 0.2), "0.6");
        assert_eq!(tick_label(-0.5, 0.5), "-0.5");
        assert_eq!(tick_label(300.0, 100.0), "300");
        assert_eq!(tick_label(1e-17, 0.1), "0.0");
        assert_eq!(tick_label(0.05, 0.05), "0.05");
        assert_eq!(tick_label(3e-5, 1e-5), "3e-5");
        assert_eq!(tick_label(2.5e7, 5e6), "2.5e7");
        assert_eq!(tick_label(1e-20, 1e-5), "0");
        assert_eq!(tick_label(0.0, 2e7), "0");
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let one = figure(vec![panel(vec![], None)]);
        assert!(matches!(render_png(&figure(vec![]), 100, 100), Err(PlotError::NoPanels)));
        assert!(matches!(render_png(&one, 0, 100), Err(PlotError::BadSize { .. })));
        assert!(matches!(render_png(&one, 100, MAX_SIDE + 1), Err(PlotError::BadSize { .. })));
        let three = figure(vec![panel(vec![], None), panel(vec![], None), panel(vec![], None)]);
        let err = render_png(&three, 120, 60).unwrap_err();
        assert!(matches!(err, PlotError::BadSize { .. }) && err.to_string().contains("120x60"), "{err}");
        for range in [(1.0, 0.0), (0.0, f64::NAN), (2.0, 2.0)] {
            let fig = figure(vec![panel(vec![], Some(range))]);
            assert!(matches!(render_png(&fig, 300, 200), Err(PlotError::BadRange { .. })), "{range:?}");
        }
        let huge = figure(vec![panel(vec![series(vec![(0.0, -f64::MAX), (1.0, f64::MAX)], RED)], None)]);
        assert!(matches!(render_png(&huge, 300, 200), Err(PlotError::BadRange { .. })));
    }

    #[test]
    fn font_covers_the_needed_characters() {
        let unknown = glyph('\u{1F600}');
        for ch in ('0'..='9').chain('a'..='z').chain('A'..='Z').chain(".,-+/%():_='".chars()) {
            assert!(glyph(ch).iter().any(|&r| r != 0), "{ch} is blank");
            assert!(ch == '?' || glyph(ch) != unknown, "{ch} has no glyph");
            assert!(glyph(ch).iter().all(|&r| r < 0x20), "{ch} is wider than 5 columns");
        }
        assert_eq!(glyph(' '), [0; 8]);
    }
}
