//! Budget charts: draws one budget's spend this period as a PNG image, for people and for agents that can show
//! images.
//!
//! The picture: cumulative actual spend as a dark line up to today, then the forecast as a blue dashed line inside
//! its 95 % and 80 % bands, the limit as a red line and each threshold as an amber dashed line, with their labels
//! in a gutter to the right of the plot. The renderer is pure: [`render_png`] draws into an in-memory RGB buffer
//! (plotters' `BitMapBackend::with_buffer`), encodes it with the `png` crate and returns the bytes. It reads no
//! files, writes none and assumes no system fonts: DejaVu Sans is embedded (`assets/fonts/`, license beside it)
//! and registered with plotters once per process. Output is deterministic: the same input gives the same bytes.
//!
//! Every element that matters is drawn in one of the fixed, opaque colours below (no alpha blending), so tests and
//! people can find them in the pixels. Only anti-aliased edges and text take other shades.
//!
//! Text is placed glyph by glyph from the font's own metrics (`FontMetrics`) rather than by plotters' text
//! layout, because plotters 0.3.7's ab_glyph path drops each glyph's left side bearing, which leaves visibly
//! uneven gaps inside words. For the same reason the axes, ticks and their labels are drawn here, not by plotters'
//! mesh; plotters still maps data to pixels and draws the series.
//!
//! Here: the input, its checks and the layout of the picture. Beside it: [`font`] (the embedded font and its
//! TrueType metrics), `paint` (glyph-by-glyph text and exact rectangles) and `labels` (tick days, date and number
//! labels, label spreading).

mod font;
mod labels;
mod paint;

use jiff::civil::Date;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use self::font::font;
use self::labels::{compact, day_ticks, short_date, spread};
use self::paint::{Align, Chart, Painter, Scale, rgb};

pub const DEFAULT_WIDTH: u32 = 1000;
pub const DEFAULT_HEIGHT: u32 = 560;
/// Smallest accepted width or height, in pixels.
pub const MIN_SIDE: u32 = 200;
/// Largest accepted width or height, in pixels.
pub const MAX_SIDE: u32 = 4000;
/// Longest period drawn, in days (custom periods go up to ten years).
pub const MAX_DAYS: usize = 20_000;

// Fixed colours, so tests (and people) can find the elements in the image.
/// Cumulative actual spend: dark line.
pub const ACTUAL_RGB: (u8, u8, u8) = (31, 41, 55);
/// Forecast point line: blue, dashed.
pub const FORECAST_RGB: (u8, u8, u8) = (37, 99, 235);
/// 80 % band fill (opaque).
pub const BAND80_RGB: (u8, u8, u8) = (147, 197, 253);
/// 95 % band fill (opaque).
pub const BAND95_RGB: (u8, u8, u8) = (219, 234, 254);
/// Limit: red horizontal line, 2 px or more.
pub const LIMIT_RGB: (u8, u8, u8) = (220, 38, 38);
/// Thresholds: amber horizontal dashed lines, 2 px or more.
pub const THRESHOLD_RGB: (u8, u8, u8) = (217, 119, 6);

/// Title text.
const TITLE_RGB: (u8, u8, u8) = (17, 24, 39);
/// Axis labels, legend text, unit.
const TEXT_RGB: (u8, u8, u8) = (75, 85, 99);
/// Axis lines and tick marks.
const AXIS_RGB: (u8, u8, u8) = (156, 163, 175);
/// Horizontal grid lines.
const GRID_RGB: (u8, u8, u8) = (229, 231, 235);
/// Labels of the limit and thresholds: darker shades of their line colours, for contrast on white.
const LIMIT_TEXT_RGB: (u8, u8, u8) = (185, 28, 28);
const THRESHOLD_TEXT_RGB: (u8, u8, u8) = (180, 83, 9);

/// What to draw. Values are in the budget's unit and cumulative, so they normally only grow.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartInput {
    /// Drawn at the top, e.g. "Marketing — November 2026". Shortened with "…" if it does not fit.
    pub title: String,
    /// Y-axis label, e.g. "credits".
    pub unit: String,
    /// Every day of the period, in order (the x axis). Must not be empty.
    pub days: Vec<Date>,
    /// Cumulative spend for `days[0..actual_cumulative.len()]` (may be empty).
    pub actual_cumulative: Vec<f64>,
    /// Forecast of cumulative spend for the remaining days, aligned to the END of `days`:
    /// entry i is for days[days.len() - forecast.len() + i].
    pub forecast: Vec<ForecastPoint>,
    pub limit: f64,
    /// Label and absolute value, e.g. ("80 % actual", 32000.0).
    pub thresholds: Vec<(String, f64)>,
    pub width: u32,
    pub height: u32,
}

/// One forecast day: the point forecast and its 80 % and 95 % intervals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastPoint {
    pub point: f64,
    pub lower80: f64,
    pub upper80: f64,
    pub lower95: f64,
    pub upper95: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("chart size {width}×{height} is outside {MIN_SIDE}..={MAX_SIDE} pixels per side")]
    InvalidSize { width: u32, height: u32 },
    /// Lengths that do not fit the period, non-finite values, no days.
    #[error("invalid chart input: {0}")]
    InvalidInput(String),
    #[error("the embedded chart font could not be loaded")]
    Font,
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    #[error("encoding the chart as PNG failed: {0}")]
    Encode(#[from] png::EncodingError),
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for ChartError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        ChartError::Draw(e.to_string())
    }
}

/// Draws `input` and returns the PNG bytes (8-bit RGB, exactly `width` × `height`).
///
/// Values below zero are drawn at zero (the axis starts there) and interval bounds given the wrong way round are
/// swapped; everything else that does not fit is a [`ChartError`].
pub fn render_png(input: &ChartInput) -> Result<Vec<u8>, ChartError> {
    render(input).map(|(png, _)| png)
}

/// Where the plot area ended up, in pixels, and the data ranges it shows. Tests use it to know where lines
/// should be; the renderer itself only reports it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
struct Frame {
    /// Plot area: x from `left` (day `x_lo`) to `right` (day `x_hi`), y from `top` (value `y_max`) down to
    /// `bottom` (value 0).
    left: i32,
    right: i32,
    top: i32,
    bottom: i32,
    x_lo: i32,
    x_hi: i32,
    y_max: f64,
}

impl Frame {
    #[cfg(test)]
    fn x_px(&self, day: f64) -> f64 {
        f64::from(self.left)
            + f64::from(self.right - self.left) * (day - f64::from(self.x_lo)) / f64::from(self.x_hi - self.x_lo)
    }

    #[cfg(test)]
    fn y_px(&self, value: f64) -> f64 {
        f64::from(self.bottom) - f64::from(self.bottom - self.top) * value / self.y_max
    }
}

fn render(input: &ChartInput) -> Result<(Vec<u8>, Frame), ChartError> {
    let (width, height) = (input.width, input.height);
    if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
        return Err(ChartError::InvalidSize { width, height });
    }
    let data = Prepared::new(input)?;
    let font = font()?;

    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    let frame = {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let painter = Painter { root: &root, font, scale: Scale::new(width, height) };
        let frame = draw(&painter, input, &data)?;
        root.present()?;
        frame
    };
    Ok((encode_png(&rgb, width, height)?, frame))
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// The input checked and normalised for drawing.
struct Prepared {
    actual: Vec<f64>,
    /// Index (into `days`) of the first forecast point.
    forecast_start: usize,
    forecast: Vec<ForecastPoint>,
    limit: f64,
    thresholds: Vec<(String, f64)>,
    x_range: (i32, i32),
    y_max: f64,
}

impl Prepared {
    fn new(input: &ChartInput) -> Result<Self, ChartError> {
        let days = input.days.len();
        if days == 0 {
            return Err(ChartError::InvalidInput("the period has no days".into()));
        }
        if days > MAX_DAYS {
            return Err(ChartError::InvalidInput(format!("the period has {days} days; at most {MAX_DAYS} are drawn")));
        }
        if input.actual_cumulative.len() > days {
            let n = input.actual_cumulative.len();
            return Err(ChartError::InvalidInput(format!("{n} actual values for a period of {days} days")));
        }
        if input.forecast.len() > days {
            let n = input.forecast.len();
            return Err(ChartError::InvalidInput(format!("{n} forecast points for a period of {days} days")));
        }
        let finite = |what: &str, v: f64| -> Result<f64, ChartError> {
            if v.is_finite() {
                Ok(v.max(0.0))
            } else {
                Err(ChartError::InvalidInput(format!("{what} is not a finite number")))
            }
        };
        let actual =
            input.actual_cumulative.iter().map(|&v| finite("an actual value", v)).collect::<Result<Vec<_>, _>>()?;
        let forecast = input
            .forecast
            .iter()
            .map(|p| {
                let (lower80, upper80) = ordered(finite("lower80", p.lower80)?, finite("upper80", p.upper80)?);
                let (lower95, upper95) = ordered(finite("lower95", p.lower95)?, finite("upper95", p.upper95)?);
                Ok(ForecastPoint { point: finite("a forecast point", p.point)?, lower80, upper80, lower95, upper95 })
            })
            .collect::<Result<Vec<_>, ChartError>>()?;
        let limit = finite("the limit", input.limit)?;
        let thresholds = input
            .thresholds
            .iter()
            .map(|(label, v)| Ok((label.clone(), finite("a threshold", *v)?)))
            .collect::<Result<Vec<_>, ChartError>>()?;

        let highest = actual
            .iter()
            .copied()
            .chain(forecast.iter().flat_map(|p| [p.point, p.upper80, p.upper95]))
            .chain(thresholds.iter().map(|(_, v)| *v))
            .fold(limit, f64::max);
        let base = if highest > 0.0 { highest } else { 1.0 };
        // Far clear of overflow in the tick maths; no budget comes near.
        let y_max = (base * 1.1).min(1e300);

        // A single day sits in the middle of the plot rather than on its left edge.
        let x_range = if days == 1 { (-1, 1) } else { (0, (days - 1) as i32) };
        Ok(Self { forecast_start: days - forecast.len(), actual, forecast, limit, thresholds, x_range, y_max })
    }

    /// The forecast as (day index, point), starting from the last actual point when that comes before the first
    /// forecast day, so that the band and the forecast line continue the actual line without a gap.
    fn forecast_points(&self) -> Vec<(i32, ForecastPoint)> {
        let anchor = self.actual.len().checked_sub(1).filter(|&last| last < self.forecast_start).map(|last| {
            let v = self.actual[last];
            (last as i32, ForecastPoint { point: v, lower80: v, upper80: v, lower95: v, upper95: v })
        });
        anchor
            .into_iter()
            .chain(self.forecast.iter().enumerate().map(|(i, p)| ((self.forecast_start + i) as i32, *p)))
            .collect()
    }
}

fn ordered(a: f64, b: f64) -> (f64, f64) {
    if a <= b { (a, b) } else { (b, a) }
}

fn draw(p: &Painter<'_, '_>, input: &ChartInput, data: &Prepared) -> Result<Frame, ChartError> {
    let (width, height) = (input.width as i32, input.height as i32);
    let margin = p.px(16.0);
    let title_size = p.scale.font(20.0);
    let small = p.scale.font(13.0);

    // Title, top left.
    let title = p.fit(input.title.trim(), title_size, width - 2 * margin);
    p.text(&title, (margin, margin + p.ascent(title_size)), Align::Left, title_size, TITLE_RGB)?;

    // Legend below it.
    let legend_top = margin + title_size as i32 + p.px(8.0);
    let legend_h = draw_legend(p, data, (margin, legend_top), width - 2 * margin, small)?;

    // The chart below that: the unit on top of the y axis, reference-line labels in a gutter on the right.
    let chart_top = legend_top + legend_h + p.px(6.0);
    let references = reference_lines(data);
    let widest_reference = references.iter().map(|r| p.text_width(&r.text, small)).max().unwrap_or(0);
    let gutter = (widest_reference + p.px(16.0)).min(width / 3);
    let tick = p.px(4.0).max(2);
    let label_gap = p.px(5.0).max(2);
    let unit = input.unit.trim();
    let unit_h = if unit.is_empty() { 0 } else { small as i32 + p.px(6.0) };
    let y_hint = ((height - chart_top) / p.px(48.0).max(1)).clamp(2, 10) as usize;
    let y_ticks = RangedCoordf64::from(0.0..data.y_max).key_points(y_hint);
    let y_labels: Vec<String> = y_ticks.iter().map(|v| compact(*v, 4)).collect();
    let widest_y_label = y_labels.iter().map(|l| p.text_width(l, small)).max().unwrap_or(0);
    let y_area = (widest_y_label + tick + label_gap + p.px(6.0)).min(width / 4);
    let x_area = tick + label_gap + small as i32 + p.px(4.0);

    let area = p.root.margin(chart_top, margin, margin, margin);
    let mut chart = ChartBuilder::on(&area)
        .margin_top(unit_h + small as i32 / 2)
        .margin_right(gutter)
        .x_label_area_size(x_area)
        .y_label_area_size(y_area)
        .build_cartesian_2d(data.x_range.0..data.x_range.1, 0.0..data.y_max)?;
    let (x_pixels, y_pixels) = chart.plotting_area().get_pixel_range();
    let frame = Frame {
        left: x_pixels.start,
        right: x_pixels.end,
        top: y_pixels.start,
        bottom: y_pixels.end,
        x_lo: data.x_range.0,
        x_hi: data.x_range.1,
        y_max: data.y_max,
    };
    let coords = chart.as_coord_spec().clone();
    let x_of = |day: i32| coords.translate(&(day, 0.0)).0;
    let y_of = |value: f64| coords.translate(&(data.x_range.0, value)).1;

    // Grid, axes, ticks and their labels.
    let hair = p.px(1.0).max(1);
    for (value, label) in y_ticks.iter().zip(&y_labels) {
        let y = y_of(*value);
        if *value > 0.0 {
            p.fill((frame.left, y), (frame.right, y + hair), GRID_RGB)?;
        }
        p.fill((frame.left - hair - tick, y), (frame.left - hair, y + hair), AXIS_RGB)?;
        let at = (frame.left - hair - tick - label_gap, p.baseline_centred_on(y, small));
        p.text(label, at, Align::Right, small, TEXT_RGB)?;
    }
    p.fill((frame.left - hair, frame.top), (frame.left, frame.bottom + hair), AXIS_RGB)?;
    p.fill((frame.left - hair, frame.bottom), (frame.right, frame.bottom + hair), AXIS_RGB)?;
    let plot_width = frame.right - frame.left;
    let day_step_room = plot_width / (p.text_width("Sep 30", small) + p.px(28.0)).max(1);
    let month_room = plot_width / (p.text_width("Sep 2026", small) + p.px(28.0)).max(1);
    let (ticks, with_year) = day_ticks(&input.days, day_step_room.max(1) as usize, month_room.max(1) as usize);
    for i in ticks {
        let x = x_of(i as i32);
        p.fill((x, frame.bottom + hair), (x + hair, frame.bottom + hair + tick), AXIS_RGB)?;
        let label = short_date(input.days[i], with_year);
        // Keep the outermost labels inside the image.
        let half = p.text_width(&label, small) / 2;
        let cx = x.clamp(half + 1, width - half - 1);
        let baseline = frame.bottom + hair + tick + label_gap + p.ascent(small);
        p.text(&label, (cx, baseline), Align::Center, small, TEXT_RGB)?;
    }

    // Data: bands, reference lines, then the lines on top.
    draw_bands(p, &mut chart, data)?;
    for r in &references {
        draw_reference(p, &frame, r, y_of(r.value))?;
    }
    draw_lines(p, &mut chart, data)?;

    // Reference-line labels in the gutter, nudged apart so that none overlap.
    let mut labelled: Vec<(i32, &Reference)> = references.iter().map(|r| (y_of(r.value), r)).collect();
    labelled.sort_by_key(|(y, _)| std::cmp::Reverse(*y));
    let ys = spread(labelled.iter().map(|(y, _)| *y).collect(), small as i32 + p.px(2.0), (frame.top, frame.bottom));
    for ((_, r), y) in labelled.iter().zip(ys) {
        let at = (frame.right + p.px(8.0), p.baseline_centred_on(y, small));
        p.text(&r.text, at, Align::Left, small, r.text_colour)?;
    }

    if !unit.is_empty() {
        let unit = p.fit(unit, small, width - 2 * margin);
        p.text(&unit, (margin, chart_top + p.ascent(small)), Align::Left, small, TEXT_RGB)?;
    }
    Ok(frame)
}

/// A horizontal reference line: the limit or a threshold.
struct Reference {
    value: f64,
    text: String,
    colour: (u8, u8, u8),
    text_colour: (u8, u8, u8),
    dashed: bool,
}

fn reference_lines(data: &Prepared) -> Vec<Reference> {
    let thresholds = data.thresholds.iter().map(|(label, v)| {
        let label = label.trim();
        Reference {
            value: *v,
            text: if label.is_empty() { compact(*v, 3) } else { format!("{label} · {}", compact(*v, 3)) },
            colour: THRESHOLD_RGB,
            text_colour: THRESHOLD_TEXT_RGB,
            dashed: true,
        }
    });
    let limit = Reference {
        value: data.limit,
        text: format!("limit · {}", compact(data.limit, 3)),
        colour: LIMIT_RGB,
        text_colour: LIMIT_TEXT_RGB,
        dashed: false,
    };
    // The limit last, so it is drawn over any threshold at the same height.
    thresholds.chain(std::iter::once(limit)).collect()
}

/// Draws a reference line at pixel row `y` across the plot, 2 px (or more, scaled) thick, in its exact colour.
fn draw_reference(p: &Painter<'_, '_>, frame: &Frame, r: &Reference, y: i32) -> Result<(), ChartError> {
    let thickness = p.px(2.0).max(2);
    let (y0, y1) = (y - thickness / 2, y - thickness / 2 + thickness);
    if !r.dashed {
        return p.fill((frame.left, y0), (frame.right, y1), r.colour);
    }
    let (dash, gap) = (p.px(8.0).max(3), p.px(5.0).max(2));
    let mut x = frame.left;
    while x < frame.right {
        p.fill((x, y0), ((x + dash).min(frame.right), y1), r.colour)?;
        x += dash + gap;
    }
    Ok(())
}

/// The 95 % band, then the 80 % band over it, as opaque polygons.
fn draw_bands(p: &Painter<'_, '_>, chart: &mut Chart<'_, '_>, data: &Prepared) -> Result<(), ChartError> {
    let points = data.forecast_points();
    type Bounds = fn(&ForecastPoint) -> (f64, f64);
    let bands: [(Bounds, (u8, u8, u8)); 2] =
        [(|f| (f.lower95, f.upper95), BAND95_RGB), (|f| (f.lower80, f.upper80), BAND80_RGB)];
    for (bounds, colour) in bands {
        if let [(x, f)] = points[..] {
            // A single day: a short bar, so the interval still shows.
            let (lo, hi) = bounds(&f);
            let (cx, top) = chart.backend_coord(&(x, hi));
            let bottom = chart.backend_coord(&(x, lo)).1.max(top + 1);
            let half = p.px(6.0).max(2);
            p.fill((cx - half, top), (cx + half + 1, bottom), colour)?;
        } else if points.len() > 1 {
            let upper = points.iter().map(|(x, f)| (*x, bounds(f).1));
            let lower = points.iter().rev().map(|(x, f)| (*x, bounds(f).0));
            let outline: Vec<(i32, f64)> = upper.chain(lower).collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, rgb(colour).filled())))?;
        }
    }
    Ok(())
}

/// The forecast point line (dashed, from the end of the actual line) and the actual line with a dot at its end.
fn draw_lines(p: &Painter<'_, '_>, chart: &mut Chart<'_, '_>, data: &Prepared) -> Result<(), ChartError> {
    let forecast: Vec<(i32, f64)> = data.forecast_points().iter().map(|(x, f)| (*x, f.point)).collect();
    if forecast.len() > 1 {
        let style = rgb(FORECAST_RGB).stroke_width(p.px(2.0).max(2) as u32);
        chart.draw_series(DashedLineSeries::new(forecast, p.px(7.0).max(3), p.px(5.0).max(2), style))?;
    } else if let Some(&point) = forecast.first() {
        chart.draw_series(std::iter::once(Circle::new(point, p.px(3.5).max(2), rgb(FORECAST_RGB).filled())))?;
    }

    let actual: Vec<(i32, f64)> = data.actual.iter().enumerate().map(|(i, v)| (i as i32, *v)).collect();
    if actual.len() > 1 {
        let style = rgb(ACTUAL_RGB).stroke_width(p.px(3.0).max(2) as u32);
        chart.draw_series(LineSeries::new(actual.iter().copied(), style))?;
    }
    if let Some(&last) = actual.last() {
        chart.draw_series(std::iter::once(Circle::new(last, p.px(4.5).max(3), rgb(ACTUAL_RGB).filled())))?;
    }
    Ok(())
}

/// Legend entries for what is on the chart, left to right, wrapped onto more rows if needed. Returns the height.
fn draw_legend(
    p: &Painter<'_, '_>,
    data: &Prepared,
    (left, top): (i32, i32),
    max_width: i32,
    size: f64,
) -> Result<i32, ChartError> {
    enum Swatch {
        Line((u8, u8, u8)),
        Dashed((u8, u8, u8)),
        Block((u8, u8, u8)),
    }
    let mut items = Vec::new();
    if !data.actual.is_empty() {
        items.push((Swatch::Line(ACTUAL_RGB), "Actual"));
    }
    if !data.forecast.is_empty() {
        items.push((Swatch::Dashed(FORECAST_RGB), "Forecast"));
        items.push((Swatch::Block(BAND80_RGB), "80 % range"));
        items.push((Swatch::Block(BAND95_RGB), "95 % range"));
    }
    items.push((Swatch::Line(LIMIT_RGB), "Limit"));
    if !data.thresholds.is_empty() {
        items.push((Swatch::Dashed(THRESHOLD_RGB), "Threshold"));
    }

    let row_h = size as i32 + p.px(8.0);
    let (swatch_w, swatch_gap, item_gap) = (p.px(24.0), p.px(7.0), p.px(22.0));
    let thickness = p.px(3.0).max(2);
    let (mut x, mut y) = (left, top);
    for (swatch, text) in items {
        let item_w = swatch_w + swatch_gap + p.text_width(text, size);
        if x > left && x + item_w > left + max_width {
            x = left;
            y += row_h;
        }
        let mid = y + row_h / 2;
        let (y0, y1) = (mid - thickness / 2, mid - thickness / 2 + thickness);
        match swatch {
            Swatch::Line(colour) => p.fill((x, y0), (x + swatch_w, y1), colour)?,
            Swatch::Dashed(colour) => {
                for (a, b) in [(0, 7), (10, 17), (20, 24)] {
                    p.fill((x + swatch_w * a / 24, y0), (x + swatch_w * b / 24, y1), colour)?;
                }
            }
            Swatch::Block(colour) => {
                let half = p.px(6.0).max(2);
                p.fill((x, mid - half), (x + swatch_w, mid + half), colour)?;
            }
        }
        p.text(text, (x + swatch_w + swatch_gap, p.baseline_centred_on(mid, size)), Align::Left, size, TEXT_RGB)?;
        x += item_w + item_gap;
    }
    Ok(y + row_h - top)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded image.
    struct Image {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    }

    impl Image {
        fn decode(png_bytes: &[u8]) -> Self {
            let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
            let mut reader = decoder.read_info().expect("PNG header");
            let mut rgb = vec![0; reader.output_buffer_size().expect("buffer size")];
            let info = reader.next_frame(&mut rgb).expect("PNG frame");
            assert_eq!(info.color_type, png::ColorType::Rgb);
            assert_eq!(info.bit_depth, png::BitDepth::Eight);
            rgb.truncate(info.buffer_size());
            Self { width: info.width, height: info.height, rgb }
        }

        fn at(&self, x: i32, y: i32) -> (u8, u8, u8) {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            (self.rgb[i], self.rgb[i + 1], self.rgb[i + 2])
        }

        /// Pixels of exactly `colour` inside the plot area.
        fn in_plot(&self, frame: &Frame, colour: (u8, u8, u8)) -> Vec<(i32, i32)> {
            let mut found = Vec::new();
            for y in frame.top..frame.bottom {
                for x in frame.left..frame.right {
                    if self.at(x, y) == colour {
                        found.push((x, y));
                    }
                }
            }
            found
        }

        fn anywhere(&self, colour: (u8, u8, u8)) -> usize {
            self.rgb.chunks_exact(3).filter(|p| (p[0], p[1], p[2]) == colour).count()
        }
    }

    fn november(day: i8) -> Date {
        jiff::civil::date(2026, 11, day)
    }

    /// November 2026, 12 days of actual spend, a forecast for the other 18, limit 40k, two thresholds.
    fn sample() -> ChartInput {
        let days: Vec<Date> = (1..=30).map(november).collect();
        let mut total = 0.0;
        let actual: Vec<f64> = (0..12)
            .map(|i| {
                total += 1000.0 + f64::from((i * 37) % 11) * 45.0;
                total
            })
            .collect();
        let last = total;
        let forecast = (1..=18)
            .map(|k| {
                let k = f64::from(k);
                let point = last + 1080.0 * k;
                let spread = 260.0 * k.sqrt() * k.sqrt().sqrt();
                ForecastPoint {
                    point,
                    lower80: point - spread,
                    upper80: point + spread,
                    lower95: point - 1.6 * spread,
                    upper95: point + 1.6 * spread,
                }
            })
            .collect();
        ChartInput {
            title: "Marketing — November 2026".into(),
            unit: "credits".into(),
            days,
            actual_cumulative: actual,
            forecast,
            limit: 40_000.0,
            thresholds: vec![("50 % actual".into(), 20_000.0), ("80 % actual".into(), 32_000.0)],
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
        }
    }

    fn render_image(input: &ChartInput) -> (Image, Frame) {
        let (png_bytes, frame) = render(input).expect("render");
        (Image::decode(&png_bytes), frame)
    }

    #[test]
    fn png_decodes_at_the_requested_size() {
        for (width, height) in
            [(DEFAULT_WIDTH, DEFAULT_HEIGHT), (640, 360), (MIN_SIDE, MIN_SIDE), (1800, 300), (MAX_SIDE, MAX_SIDE)]
        {
            let input = ChartInput { width, height, ..sample() };
            let png_bytes = render_png(&input).expect("render");
            assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
            let image = Image::decode(&png_bytes);
            assert_eq!((image.width, image.height), (width, height));
            assert_eq!(image.rgb.len(), width as usize * height as usize * 3);
        }
    }

    #[test]
    fn limit_is_a_horizontal_red_line_at_its_value() {
        let input = sample();
        let (image, frame) = render_image(&input);
        let plot_width = frame.right - frame.left;
        // y_max is 1.1 × the highest value; here the highest is the top of the 95 % band.
        let highest = input.forecast.iter().map(|p| p.upper95).fold(input.limit, f64::max);
        assert!((frame.y_max - highest * 1.1).abs() < 1e-6);
        let expected = frame.y_px(input.limit);

        let red = image.in_plot(&frame, LIMIT_RGB);
        assert!(!red.is_empty(), "no limit pixels");
        let rows: Vec<i32> = (frame.top..frame.bottom)
            .filter(|y| red.iter().filter(|(_, ry)| ry == y).count() as i32 > plot_width / 2)
            .collect();
        assert!((2..=3).contains(&rows.len()), "limit line rows: {rows:?}");
        assert!(rows.windows(2).all(|w| w[1] == w[0] + 1), "rows not adjacent: {rows:?}");
        for y in &rows {
            assert!((f64::from(*y) - expected).abs() <= 2.0, "row {y}, expected about {expected:.1}");
            let xs: Vec<i32> = red.iter().filter(|(_, ry)| ry == y).map(|(x, _)| *x).collect();
            let span = xs.iter().max().unwrap() - xs.iter().min().unwrap();
            assert!(span as f64 >= 0.95 * f64::from(plot_width), "limit spans {span} of {plot_width} px");
        }
        // And nowhere else in the plot is there a long red row.
        assert!(red.iter().all(|(_, y)| (f64::from(*y) - expected).abs() <= 3.0));
    }

    #[test]
    fn bands_lie_only_right_of_the_last_actual_day() {
        let input = sample();
        let (image, frame) = render_image(&input);
        let last_actual = frame.x_px((input.actual_cumulative.len() - 1) as f64);
        let last_day = frame.x_px((input.days.len() - 1) as f64);
        for colour in [BAND80_RGB, BAND95_RGB] {
            let band = image.in_plot(&frame, colour);
            assert!(band.len() > 500, "too few band pixels of {colour:?}: {}", band.len());
            let min_x = band.iter().map(|(x, _)| *x).min().unwrap();
            let max_x = band.iter().map(|(x, _)| *x).max().unwrap();
            assert!(
                f64::from(min_x) >= last_actual - 1.0,
                "band of {colour:?} starts at {min_x}, actual ends at {last_actual:.1}"
            );
            // The band opens from nothing at the last actual point; within a few days its colours show.
            let soon = frame.x_px((input.actual_cumulative.len() + 2) as f64);
            assert!(f64::from(min_x) <= soon, "band of {colour:?} starts late, at {min_x}");
            assert!(f64::from(max_x) <= last_day + 1.0 && f64::from(max_x) >= last_day - 3.0, "band ends at {max_x}");
        }
        // The 80 % band is drawn over the 95 % one: at the last day, 80 % is in the middle, 95 % outside it.
        let x = (last_day - 4.0) as i32;
        let column: Vec<(u8, u8, u8)> = (frame.top..frame.bottom).map(|y| image.at(x, y)).collect();
        let first = |c| column.iter().position(|p| *p == c).unwrap();
        let last = |c| column.iter().rposition(|p| *p == c).unwrap();
        assert!(first(BAND95_RGB) < first(BAND80_RGB) && last(BAND80_RGB) < last(BAND95_RGB));
    }

    #[test]
    fn lines_appear_when_their_data_does() {
        let (image, frame) = render_image(&sample());
        assert!(image.in_plot(&frame, ACTUAL_RGB).len() > 100);
        assert!(image.in_plot(&frame, FORECAST_RGB).len() > 100);
        let amber = image.in_plot(&frame, THRESHOLD_RGB);
        // Two dashed lines, 2 px thick, over most of the width.
        assert!(amber.len() as i32 > (frame.right - frame.left) * 2, "threshold pixels: {}", amber.len());
        for value in [20_000.0, 32_000.0] {
            let expected = frame.y_px(value);
            assert!(amber.iter().any(|(_, y)| (f64::from(*y) - expected).abs() <= 1.0), "no threshold at {value}");
        }
        assert!(
            amber
                .iter()
                .all(|(_, y)| { [20_000.0, 32_000.0].iter().any(|v| (f64::from(*y) - frame.y_px(*v)).abs() <= 2.0) })
        );

        let bare = ChartInput { actual_cumulative: vec![], thresholds: vec![], ..sample() };
        let (image, frame) = render_image(&bare);
        assert!(image.in_plot(&frame, ACTUAL_RGB).is_empty(), "actual drawn without actual data");
        assert!(image.in_plot(&frame, THRESHOLD_RGB).is_empty(), "threshold drawn without thresholds");
        assert_eq!(image.anywhere(THRESHOLD_RGB), 0, "threshold legend without thresholds");
        assert!(!image.in_plot(&frame, LIMIT_RGB).is_empty());

        let over = ChartInput { forecast: vec![], actual_cumulative: vec![1000.0; 30], ..sample() };
        let (image, frame) = render_image(&over);
        assert!(image.in_plot(&frame, BAND80_RGB).is_empty() && image.in_plot(&frame, BAND95_RGB).is_empty());
        assert!(image.in_plot(&frame, FORECAST_RGB).is_empty());
        assert!(!image.in_plot(&frame, ACTUAL_RGB).is_empty());
    }

    #[test]
    fn no_actual_data_yet_starts_the_band_on_day_one() {
        let mut input = sample();
        input.actual_cumulative.clear();
        input.forecast = (1..=30)
            .map(|d| {
                let p = 1200.0 * f64::from(d);
                ForecastPoint { point: p, lower80: p * 0.8, upper80: p * 1.2, lower95: p * 0.6, upper95: p * 1.4 }
            })
            .collect();
        let (image, frame) = render_image(&input);
        let band = image.in_plot(&frame, BAND95_RGB);
        assert!(!band.is_empty());
        let min_x = band.iter().map(|(x, _)| *x).min().unwrap();
        assert!(f64::from(min_x) <= frame.x_px(1.0) + 1.0, "band starts at {min_x}");
    }

    fn edge_cases() -> Vec<(&'static str, ChartInput)> {
        let base = sample();
        let one_day = vec![november(1)];
        let zero = ForecastPoint { point: 0.0, lower80: 0.0, upper80: 0.0, lower95: 0.0, upper95: 0.0 };
        let huge =
            |v: f64| ForecastPoint { point: v, lower80: v * 0.9, upper80: v * 1.1, lower95: v * 0.8, upper95: v * 1.3 };
        vec![
            ("no actual data", ChartInput { actual_cumulative: vec![], ..base.clone() }),
            ("no forecast", ChartInput { forecast: vec![], ..base.clone() }),
            ("no thresholds", ChartInput { thresholds: vec![], ..base.clone() }),
            (
                "nothing but days",
                ChartInput {
                    actual_cumulative: vec![],
                    forecast: vec![],
                    thresholds: vec![],
                    limit: 0.0,
                    ..base.clone()
                },
            ),
            (
                "one day, actual",
                ChartInput { days: one_day.clone(), actual_cumulative: vec![120.0], forecast: vec![], ..base.clone() },
            ),
            (
                "one day, forecast",
                ChartInput {
                    days: one_day.clone(),
                    actual_cumulative: vec![],
                    forecast: vec![huge(500.0)],
                    ..base.clone()
                },
            ),
            (
                "two days",
                ChartInput {
                    days: vec![november(1), november(2)],
                    actual_cumulative: vec![10.0],
                    forecast: vec![huge(20.0)],
                    ..base.clone()
                },
            ),
            (
                "all zeros",
                ChartInput {
                    actual_cumulative: vec![0.0; 12],
                    forecast: vec![zero; 18],
                    limit: 0.0,
                    thresholds: vec![("80 %".into(), 0.0)],
                    ..base.clone()
                },
            ),
            (
                "huge numbers",
                ChartInput {
                    actual_cumulative: (1..=12).map(|d| 6.5e10 * f64::from(d)).collect(),
                    forecast: (13..=30).map(|d| huge(6.5e10 * f64::from(d))).collect(),
                    limit: 1e12,
                    thresholds: vec![("80 %".into(), 8e11)],
                    ..base.clone()
                },
            ),
            (
                "tiny numbers",
                ChartInput {
                    actual_cumulative: vec![0.01; 12],
                    forecast: vec![huge(0.02); 18],
                    limit: 0.05,
                    thresholds: vec![],
                    ..base.clone()
                },
            ),
            (
                "negative and reversed bounds",
                ChartInput {
                    forecast: vec![
                        ForecastPoint {
                            point: -5.0,
                            lower80: 900.0,
                            upper80: -100.0,
                            lower95: 2000.0,
                            upper95: -300.0
                        };
                        18
                    ],
                    ..base.clone()
                },
            ),
            ("overlapping actual and forecast", ChartInput { actual_cumulative: vec![1000.0; 20], ..base.clone() }),
            (
                "limit and thresholds on top of each other",
                ChartInput {
                    thresholds: vec![
                        ("a".into(), 40_000.0),
                        ("b".into(), 40_100.0),
                        ("".into(), 39_900.0),
                        ("d".into(), 40_000.0),
                    ],
                    ..base.clone()
                },
            ),
            (
                "long title and unit",
                ChartInput {
                    title: "A very long budget name ".repeat(20),
                    unit: "operations ".repeat(30),
                    ..base.clone()
                },
            ),
            ("empty title and unit", ChartInput { title: String::new(), unit: String::new(), ..base.clone() }),
            (
                "ten years",
                ChartInput {
                    days: (0..3660).map(|i| november(1).checked_add(jiff::Span::new().days(i)).unwrap()).collect(),
                    actual_cumulative: (0..1000).map(|i| f64::from(i) * 10.0).collect(),
                    forecast: (1000..3660).map(|i| huge(f64::from(i) * 10.0)).collect(),
                    ..base.clone()
                },
            ),
            ("smallest", ChartInput { width: MIN_SIDE, height: MIN_SIDE, ..base.clone() }),
            ("wide and flat", ChartInput { width: MAX_SIDE, height: MIN_SIDE, ..base.clone() }),
            ("narrow and tall", ChartInput { width: MIN_SIDE, height: MAX_SIDE, ..base.clone() }),
        ]
    }

    #[test]
    fn edge_cases_render() {
        for (name, input) in edge_cases() {
            let png_bytes = render_png(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
            let image = Image::decode(&png_bytes);
            assert_eq!((image.width, image.height), (input.width, input.height), "{name}");
            assert!(image.anywhere(LIMIT_RGB) > 0, "{name}: no limit line");
        }
    }

    #[test]
    fn all_zeros_fall_back_to_a_unit_axis() {
        let input = ChartInput {
            actual_cumulative: vec![0.0; 3],
            forecast: vec![],
            limit: 0.0,
            thresholds: vec![],
            ..sample()
        };
        let (_, frame) = render_image(&input);
        assert!((frame.y_max - 1.1).abs() < 1e-9);
        let input = ChartInput { limit: 500.0, ..input };
        let (_, frame) = render_image(&input);
        assert!((frame.y_max - 550.0).abs() < 1e-9);
    }

    #[test]
    fn invalid_sizes_are_refused() {
        for (width, height) in [(0, 560), (199, 560), (1000, 199), (4001, 560), (1000, 4001), (u32::MAX, u32::MAX)] {
            let input = ChartInput { width, height, ..sample() };
            match render_png(&input) {
                Err(ChartError::InvalidSize { width: w, height: h }) => assert_eq!((w, h), (width, height)),
                other => panic!("{width}×{height}: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_data_is_refused() {
        let base = sample();
        let cases = [
            ChartInput { days: vec![], actual_cumulative: vec![], forecast: vec![], ..base.clone() },
            ChartInput { actual_cumulative: vec![1.0; 31], ..base.clone() },
            ChartInput { forecast: vec![base.forecast[0]; 31], ..base.clone() },
            ChartInput { limit: f64::NAN, ..base.clone() },
            ChartInput { actual_cumulative: vec![1.0, f64::INFINITY], ..base.clone() },
            ChartInput { thresholds: vec![("x".into(), f64::NEG_INFINITY)], ..base.clone() },
            ChartInput { forecast: vec![ForecastPoint { upper95: f64::NAN, ..base.forecast[0] }], ..base.clone() },
        ];
        for input in cases {
            assert!(matches!(render_png(&input), Err(ChartError::InvalidInput(_))), "{input:?}");
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        let input = sample();
        let a = render_png(&input).unwrap();
        let b = render_png(&input).unwrap();
        assert!(a == b, "two renders of the same input differ");
    }

    #[test]
    fn renders_from_many_threads() {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    let input = ChartInput { width: 400 + i * 10, height: 300, ..sample() };
                    render_png(&input).map(|b| b.len())
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().expect("thread").expect("render") > 0);
        }
    }

    /// Writes the sample chart to /tmp/chart-sample.png for a person to look at, only when asked:
    /// `MBM_WRITE_SAMPLE_CHART=1 cargo test --lib chart::tests::write_sample`.
    #[test]
    fn write_sample() {
        if std::env::var_os("MBM_WRITE_SAMPLE_CHART").is_none() {
            return;
        }
        let png_bytes = render_png(&sample()).unwrap();
        std::fs::write("/tmp/chart-sample.png", png_bytes).unwrap();
    }
}
