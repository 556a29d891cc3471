//! The embedded font and its metrics. DejaVu Sans is compiled in (`assets/fonts/`, license beside it) and
//! registered with plotters once per process; [`FontMetrics`] reads the TrueType tables that say how wide each
//! glyph is, so the painter can place text glyph by glyph (see the chart module's documentation for why).

use std::sync::OnceLock;

use plotters::style::FontStyle;

use super::ChartError;

/// The embedded font, registered with plotters under plotters' default family name, so that any text plotters
/// draws by itself finds it too.
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
pub(super) const FONT_FAMILY: &str = "sans-serif";

/// Registers the embedded font with plotters and reads its metrics, once per process.
pub(super) fn font() -> Result<&'static FontMetrics, ChartError> {
    static FONT: OnceLock<Option<FontMetrics>> = OnceLock::new();
    FONT.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, DEJAVU_SANS).ok()?;
        FontMetrics::parse(DEJAVU_SANS)
    })
    .as_ref()
    .ok_or(ChartError::Font)
}

/// The horizontal metrics of a TrueType font, read from its `hhea`, `hmtx`, `cmap` (format 4), `kern` (format 0)
/// and `glyf` tables: enough to place glyphs one by one the way ab_glyph (which plotters uses) would.
pub(super) struct FontMetrics {
    data: &'static [u8],
    /// ab_glyph scales a font so that `size` pixels span ascender − descender (from `hhea`), in font units.
    pub(super) height: f64,
    pub(super) ascender: f64,
    /// Height of "H", in font units.
    pub(super) cap_height: f64,
    /// Offset of `hmtx`, its number of full metrics, and the number of glyphs.
    hmtx: usize,
    full_metrics: usize,
    glyphs: usize,
    /// Offset of the format 4 `cmap` subtable.
    cmap: usize,
    /// Offset and count of the kerning pairs of the first horizontal format 0 `kern` subtable, if any.
    kern: Option<(usize, usize)>,
}

impl FontMetrics {
    fn parse(data: &'static [u8]) -> Option<Self> {
        let u16_at = |at: usize| Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?));
        let i16_at = |at: usize| u16_at(at).map(|v| v as i16);
        let u32_at = |at: usize| Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?));
        let table = |tag: &[u8; 4]| -> Option<(usize, usize)> {
            (0..usize::from(u16_at(4)?)).find_map(|i| {
                let record = 12 + 16 * i;
                (data.get(record..record + 4)? == tag)
                    .then(|| Some((u32_at(record + 8)? as usize, u32_at(record + 12)? as usize)))?
            })
        };

        let (hhea, _) = table(b"hhea")?;
        let ascender = f64::from(i16_at(hhea + 4)?);
        let height = ascender - f64::from(i16_at(hhea + 6)?);
        let full_metrics = usize::from(u16_at(hhea + 34)?);
        let (maxp, _) = table(b"maxp")?;
        let glyphs = usize::from(u16_at(maxp + 4)?);
        let (hmtx, hmtx_len) = table(b"hmtx")?;
        if full_metrics == 0 || height <= 0.0 || hmtx_len < 4 * full_metrics + 2 * (glyphs - full_metrics.min(glyphs)) {
            return None;
        }

        let (cmap_table, _) = table(b"cmap")?;
        let cmap = (0..usize::from(u16_at(cmap_table + 2)?)).find_map(|i| {
            let record = cmap_table + 4 + 8 * i;
            let (platform, encoding) = (u16_at(record)?, u16_at(record + 2)?);
            let sub = cmap_table + u32_at(record + 4)? as usize;
            ((platform, encoding) == (3, 1) && u16_at(sub)? == 4).then_some(sub)
        })?;

        let kern = table(b"kern").and_then(|(kern, len)| {
            // Version 0 table; first subtable: version, length, coverage (format in the high byte, bit 0 =
            // horizontal), then nPairs and the pairs, sorted, 6 bytes each.
            let sub = kern + 4;
            let coverage = u16_at(sub + 4)?;
            if u16_at(kern)? != 0 || u16_at(kern + 2)? == 0 || coverage >> 8 != 0 || coverage & 1 == 0 {
                return None;
            }
            let pairs = sub + 14;
            let room = (kern + len).min(data.len()).saturating_sub(pairs) / 6;
            Some((pairs, usize::from(u16_at(sub + 6)?).min(room)))
        });

        let mut metrics =
            Self { data, height, ascender, cap_height: 0.7 * height, hmtx, full_metrics, glyphs, cmap, kern };
        // Cap height from the bounding box of "H" in `glyf` (the OS/2 table of DejaVu Sans is too old to say).
        let cap = (|| {
            let (head, _) = table(b"head")?;
            let (loca, _) = table(b"loca")?;
            let (glyf, _) = table(b"glyf")?;
            let h = usize::from(metrics.glyph('H'));
            let offset = if i16_at(head + 50)? == 0 {
                usize::from(u16_at(loca + 2 * h)?) * 2
            } else {
                u32_at(loca + 4 * h)? as usize
            };
            Some(f64::from(i16_at(glyf + offset + 8)?))
        })();
        if let Some(cap) = cap.filter(|c| *c > 0.0) {
            metrics.cap_height = cap;
        }
        Some(metrics)
    }

    fn u16_at(&self, at: usize) -> u16 {
        self.data.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// The glyph for `c`, or 0 (the missing-glyph box) if the font has none or `c` is outside the BMP.
    pub(super) fn glyph(&self, c: char) -> u16 {
        let Ok(c) = u16::try_from(u32::from(c)) else { return 0 };
        let sub = self.cmap;
        let segments = usize::from(self.u16_at(sub + 6) / 2);
        let (ends, starts) = (sub + 14, sub + 16 + 2 * segments);
        let (deltas, ranges) = (starts + 2 * segments, starts + 4 * segments);
        let Some(i) = (0..segments).find(|&i| self.u16_at(ends + 2 * i) >= c) else { return 0 };
        let start = self.u16_at(starts + 2 * i);
        if c < start {
            return 0;
        }
        let delta = self.u16_at(deltas + 2 * i);
        let range = usize::from(self.u16_at(ranges + 2 * i));
        if range == 0 {
            return c.wrapping_add(delta);
        }
        match self.u16_at(ranges + 2 * i + range + 2 * usize::from(c - start)) {
            0 => 0,
            g => g.wrapping_add(delta),
        }
    }

    /// Advance width and left side bearing of `glyph`, in font units.
    pub(super) fn h_metrics(&self, glyph: u16) -> (f64, f64) {
        let g = usize::from(glyph).min(self.glyphs.saturating_sub(1));
        let full = g.min(self.full_metrics - 1);
        let advance = f64::from(self.u16_at(self.hmtx + 4 * full));
        let bearing = if g < self.full_metrics {
            self.u16_at(self.hmtx + 4 * g + 2)
        } else {
            self.u16_at(self.hmtx + 4 * self.full_metrics + 2 * (g - self.full_metrics))
        };
        (advance, f64::from(bearing as i16))
    }

    /// Kerning between two glyphs, in font units.
    pub(super) fn kerning(&self, left: u16, right: u16) -> f64 {
        let Some((pairs, count)) = self.kern else { return 0.0 };
        let key = (u32::from(left) << 16) | u32::from(right);
        let (mut lo, mut hi) = (0, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let at = pairs + 6 * mid;
            let pair = (u32::from(self.u16_at(at)) << 16) | u32::from(self.u16_at(at + 2));
            match pair.cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return f64::from(self.u16_at(at + 4) as i16),
            }
        }
        0.0
    }

    /// Width of `text` set at `size` pixels.
    pub(super) fn advance(&self, text: &str, size: f64) -> f64 {
        let mut units = 0.0;
        let mut previous = None;
        for c in text.chars() {
            let glyph = self.glyph(c);
            if let Some(p) = previous {
                units += self.kerning(p, glyph);
            }
            units += self.h_metrics(glyph).0;
            previous = Some(glyph);
        }
        units * size / self.height
    }
}

#[cfg(test)]
mod tests {
    use plotters::prelude::*;

    use super::*;

    #[test]
    fn font_metrics_agree_with_the_rasteriser() {
        let font = font().expect("font");
        assert!(font.glyph('A') != 0 && font.glyph('€') != 0 && font.glyph('—') != 0 && font.glyph('…') != 0);
        assert_eq!(font.glyph('\u{10FFFF}'), 0);
        assert!(font.cap_height > 0.6 * font.height && font.cap_height < 0.7 * font.height);
        // "A" and "V" are kerned closer together in DejaVu Sans.
        assert!(font.kerning(font.glyph('A'), font.glyph('V')) < 0.0);
        assert_eq!(font.kerning(font.glyph('x'), font.glyph('x')), 0.0);
        // plotters (via ab_glyph) measures the same width, up to its truncation to whole pixels.
        let mut buf = vec![255u8; 400 * 100 * 3];
        let root = BitMapBackend::with_buffer(&mut buf, (400, 100)).into_drawing_area();
        for text in ["Marketing — November 2026", "AVATAR 80 % range", "limit · 40k", "0123456789"] {
            for size in [12.0, 14.0, 26.0] {
                let (w, _) = root.estimate_text_size(text, &(FONT_FAMILY, size).into_font().into()).unwrap();
                let ours = font.advance(text, size);
                assert!((ours - f64::from(w)).abs() <= 1.0, "{text} at {size}: ours {ours}, plotters {w}");
            }
        }
    }
}
