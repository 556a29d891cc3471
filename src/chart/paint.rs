//! Drawing on the image: text set glyph by glyph from the font's own metrics, and pixel-exact rectangles in the
//! chart's fixed colours. Sizes scale with the image ([`Scale`]).

use plotters::coord::Shift;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font::{FONT_FAMILY, FontMetrics};
use super::{ChartError, DEFAULT_HEIGHT, DEFAULT_WIDTH};

pub(super) fn rgb(c: (u8, u8, u8)) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

pub(super) type Root<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
pub(super) type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordi32, RangedCoordf64>>;

/// Sizes scale with the image, so a large image is not a small chart with tiny text.
#[derive(Clone, Copy)]
pub(super) struct Scale(f64);

impl Scale {
    pub(super) fn new(width: u32, height: u32) -> Self {
        let s = (f64::from(width) / f64::from(DEFAULT_WIDTH)).min(f64::from(height) / f64::from(DEFAULT_HEIGHT));
        Self(s.clamp(0.6, 3.0))
    }

    pub(super) fn px(self, v: f64) -> i32 {
        (v * self.0).round() as i32
    }

    /// A font size in whole, even pixels: plotters positions each glyph vertically at `size / 2` truncated, so
    /// odd sizes would let glyphs that sit low (".", "-") jump a pixel relative to the rest.
    pub(super) fn font(self, v: f64) -> f64 {
        ((v * self.0 / 2.0).round() * 2.0).max(8.0)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Center,
    Right,
}

/// Draws on the root area: text glyph by glyph, and pixel-exact rectangles.
pub(super) struct Painter<'r, 'a> {
    pub(super) root: &'r Root<'a>,
    pub(super) font: &'static FontMetrics,
    pub(super) scale: Scale,
}

impl Painter<'_, '_> {
    pub(super) fn px(&self, v: f64) -> i32 {
        self.scale.px(v)
    }

    /// Width of `text` at `size` pixels, rounded up.
    pub(super) fn text_width(&self, text: &str, size: f64) -> i32 {
        self.font.advance(text, size).ceil() as i32
    }

    /// Distance from the top of a line of text to its baseline.
    pub(super) fn ascent(&self, size: f64) -> i32 {
        (size * self.font.ascender / self.font.height).round() as i32
    }

    /// The baseline that centres capital letters and digits on `y`.
    pub(super) fn baseline_centred_on(&self, y: i32, size: f64) -> i32 {
        y + (size * self.font.cap_height / self.font.height / 2.0).round() as i32
    }

    /// Draws `text` with its baseline at `baseline`, aligned on `x`.
    pub(super) fn text(
        &self,
        text: &str,
        (x, baseline): (i32, i32),
        align: Align,
        size: f64,
        colour: (u8, u8, u8),
    ) -> Result<(), ChartError> {
        let k = size / self.font.height;
        let width = self.font.advance(text, size);
        let mut pen = match align {
            Align::Left => f64::from(x),
            Align::Center => f64::from(x) - width / 2.0,
            Align::Right => f64::from(x) - width,
        };
        // plotters draws a glyph's bitmap starting at the given x, with the baseline `size / 2` below the given
        // y; the bitmap's first column is the glyph's left side bearing, rounded down.
        let style = (FONT_FAMILY, size).into_font().color(&rgb(colour)).pos(Pos::new(HPos::Left, VPos::Top));
        let top = baseline - (size / 2.0) as i32;
        let mut previous = None;
        let mut buf = [0u8; 4];
        for c in text.chars() {
            let glyph = self.font.glyph(c);
            if let Some(p) = previous {
                pen += self.font.kerning(p, glyph) * k;
            }
            let (advance, bearing) = self.font.h_metrics(glyph);
            if !c.is_whitespace() {
                let gx = pen.round() as i32 + (bearing * k).floor() as i32;
                self.root.draw(&Text::new(&*c.encode_utf8(&mut buf), (gx, top), style.clone()))?;
            }
            pen += advance * k;
            previous = Some(glyph);
        }
        Ok(())
    }

    /// `text`, shortened with "…" until it is at most `max_width` pixels wide.
    pub(super) fn fit(&self, text: &str, size: f64, max_width: i32) -> String {
        if self.text_width(text, size) <= max_width {
            return text.to_string();
        }
        let mut chars: Vec<char> = text.chars().collect();
        while !chars.is_empty() {
            chars.pop();
            let candidate = format!("{}…", chars.iter().collect::<String>().trim_end());
            if self.text_width(&candidate, size) <= max_width {
                return candidate;
            }
        }
        String::new()
    }

    /// Fills the pixels x in `x0..x1`, y in `y0..y1` with exactly `colour`.
    pub(super) fn fill(
        &self,
        (x0, y0): (i32, i32),
        (x1, y1): (i32, i32),
        colour: (u8, u8, u8),
    ) -> Result<(), ChartError> {
        Ok(self.root.draw(&Rectangle::new([(x0, y0), (x1, y1)], rgb(colour).filled()))?)
    }
}
