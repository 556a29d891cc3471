//! The words and numbers on a chart: which days get a label, how dates and values are written, and how labels
//! that would overlap are moved apart. Pure functions of their arguments; the painter draws what they return.

use jiff::civil::Date;

/// Spreads label centres `ys` (sorted from the bottom up, i.e. decreasing) so that neighbours are at least
/// `gap` apart, keeping them within `bounds` (top, bottom) where there is room.
pub(super) fn spread(mut ys: Vec<i32>, gap: i32, (top, bottom): (i32, i32)) -> Vec<i32> {
    for i in 0..ys.len() {
        ys[i] = ys[i].min(bottom);
        if i > 0 {
            ys[i] = ys[i].min(ys[i - 1] - gap);
        }
    }
    // If that pushed labels over the top, push them back down from there.
    for i in (0..ys.len()).rev() {
        ys[i] = ys[i].max(top);
        if i + 1 < ys.len() {
            ys[i] = ys[i].max(ys[i + 1] + gap);
        }
    }
    ys
}

/// Which days get a label: every day, or every 2nd, 3rd, 7th or 14th day from the first, if that fits in
/// `day_room` labels; otherwise the first days of months (every 1, 2, 3, 6, 12… months), at most `month_room` of
/// them. Returns the day indices and whether labels should name the year instead of the day (month steps over a
/// period that is not within one calendar year).
pub(super) fn day_ticks(days: &[Date], day_room: usize, month_room: usize) -> (Vec<usize>, bool) {
    let n = days.len();
    for step in [1, 2, 3, 7, 14] {
        if n.saturating_sub(1) / step < day_room.max(1) {
            return ((0..n).step_by(step).collect(), false);
        }
    }
    let with_year = days.first().map(|d| d.year()) != days.last().map(|d| d.year());
    let month = |d: Date| i32::from(d.year()) * 12 + i32::from(d.month()) - 1;
    let firsts: Vec<usize> = (0..n).filter(|&i| days[i].day() == 1).collect();
    for every in [1, 2, 3, 6, 12, 24, 60, 120, 240] {
        let picked: Vec<usize> = firsts.iter().copied().filter(|&i| month(days[i]) % every == 0).collect();
        if !picked.is_empty() && picked.len() <= month_room {
            return (picked, with_year);
        }
    }
    (vec![0], with_year)
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// "Nov 3", or "Nov 2026" with the year.
pub(super) fn short_date(d: Date, with_year: bool) -> String {
    let month = MONTHS[usize::try_from(d.month() - 1).unwrap_or(0).min(11)];
    if with_year { format!("{month} {}", d.year()) } else { format!("{month} {}", d.day()) }
}

/// A number in few characters, for labels: 950, 12k, 1.2M, 3.5B, 1T. At most `significant` digits, trailing
/// zeros dropped.
pub(super) fn compact(v: f64, significant: i32) -> String {
    if !v.is_finite() {
        return "?".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let a = v.abs();
    if a >= 1e15 {
        return format!("{sign}{a:.1e}");
    }
    const UNITS: [(f64, &str); 5] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"), (1.0, "")];
    let mut unit = UNITS.iter().position(|(size, _)| a >= *size).unwrap_or(UNITS.len() - 1);
    loop {
        let (size, suffix) = UNITS[unit];
        let scaled = a / size;
        let int_digits = scaled.log10().floor() as i32 + 1;
        let decimals = (significant - int_digits).clamp(0, 6) as usize;
        let mut text = format!("{scaled:.decimals$}");
        // Rounding can carry into the next unit: 999,950 is "1M", not "1000k".
        if unit > 0 && text.parse::<f64>().is_ok_and(|r| r >= 1000.0) {
            unit -= 1;
            continue;
        }
        if text.contains('.') {
            text = text.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        if text == "0" {
            return "0".into();
        }
        return format!("{sign}{text}{suffix}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn november(day: i8) -> Date {
        jiff::civil::date(2026, 11, day)
    }

    #[test]
    fn compact_numbers() {
        let cases = [
            (0.0, "0"),
            (7.0, "7"),
            (950.0, "950"),
            (999.0, "999"),
            (999.9, "1k"),
            (1000.0, "1k"),
            (1500.0, "1.5k"),
            (12_000.0, "12k"),
            (32_123.4, "32.1k"),
            (250_000.0, "250k"),
            (999_950.0, "1M"),
            (1_200_000.0, "1.2M"),
            (3.5e9, "3.5B"),
            (1e12, "1T"),
            (0.25, "0.25"),
            (0.0001, "0.0001"),
            (-2500.0, "-2.5k"),
            (2e15, "2.0e15"),
        ];
        for (v, want) in cases {
            assert_eq!(compact(v, 3), want, "{v}");
        }
        assert_eq!(compact(12_500.0, 4), "12.5k");
        assert_eq!(compact(1_025_000.0, 4), "1.025M");
    }

    #[test]
    fn short_dates() {
        assert_eq!(short_date(november(3), false), "Nov 3");
        assert_eq!(short_date(jiff::civil::date(2027, 1, 31), false), "Jan 31");
        assert_eq!(short_date(november(3), true), "Nov 2026");
    }

    #[test]
    fn labels_are_spread_apart() {
        assert_eq!(spread(vec![100, 98, 50], 10, (0, 200)), vec![100, 90, 50]);
        assert_eq!(spread(vec![300, 5, 4], 10, (0, 200)), vec![200, 10, 0]);
        assert_eq!(spread(vec![5, 4, 3], 10, (0, 200)), vec![20, 10, 0]);
    }

    #[test]
    fn day_ticks_fit() {
        let month: Vec<Date> = (1..=30).map(november).collect();
        assert_eq!(day_ticks(&month, 40, 40), ((0..30).collect::<Vec<_>>(), false));
        assert_eq!(day_ticks(&month, 6, 6), (vec![0, 7, 14, 21, 28], false));
        assert_eq!(day_ticks(&month[..1], 1, 1), (vec![0], false));
        let years: Vec<Date> = (0..1000).map(|i| november(1).checked_add(jiff::Span::new().days(i)).unwrap()).collect();
        let (ticks, with_year) = day_ticks(&years, 12, 12);
        assert!(with_year && !ticks.is_empty() && ticks.len() <= 12);
        assert!(ticks.iter().all(|&i| years[i].day() == 1));
        // Too narrow for day steps within one year: first days of months, without the year.
        assert_eq!(day_ticks(&month, 1, 1), (vec![0], false));
    }
}
