//! Line charts as SVG text: a frame with round ticks, one path per series (broken where a value
//! is not finite, clipped to the frame) and a legend. Plain Rust: the page sets it as HTML.

use std::fmt::Write;

/// One line of a chart.
pub struct Series<'a> {
    pub label: &'a str,
    /// A CSS colour.
    pub colour: &'a str,
    pub points: &'a [(f64, f64)],
}

/// A chart of `series` over the ranges `x` and `y`.
pub struct Chart<'a> {
    /// Unique in the page (it names the clip path).
    pub id: &'a str,
    pub width: f64,
    pub height: f64,
    pub x: (f64, f64),
    pub y: (f64, f64),
    pub x_label: &'a str,
    pub series: &'a [Series<'a>],
}

const LEFT: f64 = 52.0;
const RIGHT: f64 = 14.0;
/// Room for the legend, above the frame.
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

impl Chart<'_> {
    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> String {
        let (w, h) = (self.width, self.height);
        let (x0, x1, y0, y1) = (LEFT, w - RIGHT, TOP, h - BOTTOM);
        let sx = |x: f64| x0 + (x - self.x.0) / (self.x.1 - self.x.0) * (x1 - x0);
        let sy = |y: f64| y1 - (y - self.y.0) / (self.y.1 - self.y.0) * (y1 - y0);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" class="chart">"#
        );
        let _ = write!(
            s,
            r#"<defs><clipPath id="{id}-clip"><rect x="{x0}" y="{y0}" width="{cw}" height="{ch}"/></clipPath></defs>"#,
            id = self.id,
            cw = x1 - x0,
            ch = y1 - y0
        );
        for (t, label) in ticks(self.x.0, self.x.1) {
            let x = sx(t);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}"/><text class="tick" x="{x:.1}" y="{ty}" text-anchor="middle">{label}</text>"#,
                ty = y1 + 16.0
            );
        }
        for (t, label) in ticks(self.y.0, self.y.1) {
            let y = sy(t);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}"/><text class="tick" x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
                tx = x0 - 6.0,
                ty = y + 4.0
            );
        }
        let _ = write!(
            s,
            r#"<rect class="frame" x="{x0}" y="{y0}" width="{cw}" height="{ch}"/><text class="axis" x="{cx}" y="{ly}" text-anchor="middle">{label}</text>"#,
            cw = x1 - x0,
            ch = y1 - y0,
            cx = (x0 + x1) / 2.0,
            ly = h - 6.0,
            label = escape(self.x_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let mut d = String::new();
            let mut pen_down = false;
            for &(x, y) in series.points {
                if x.is_finite() && y.is_finite() {
                    let _ = write!(
                        d,
                        "{}{:.2},{:.2}",
                        if pen_down { 'L' } else { 'M' },
                        sx(x),
                        sy(y.clamp(-1e6, 1e6))
                    );
                    pen_down = true;
                } else {
                    pen_down = false;
                }
            }
            // The legend: one entry per series, side by side above the frame.
            let lx = x0 + 190.0 * i as f64;
            let _ = write!(
                s,
                r#"<path class="line" clip-path="url(#{id}-clip)" stroke="{c}" d="{d}"/><line x1="{lx}" y1="{ly}" x2="{a}" y2="{ly}" stroke="{c}" stroke-width="3"/><text class="legend" x="{t}" y="{ty}">{label}</text>"#,
                id = self.id,
                c = series.colour,
                ly = y0 - 12.0,
                a = lx + 20.0,
                t = lx + 26.0,
                ty = y0 - 8.0,
                label = escape(series.label)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// The range of the finite `values` with a twentieth of room each side (a constant gets ±1).
pub fn range_of(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (-1.0, 1.0)
    } else if hi - lo < 1e-9 * hi.abs().max(1.0) {
        (lo - 1.0, hi + 1.0)
    } else {
        let room = (hi - lo) / 20.0;
        (lo - room, hi + room)
    }
}

/// Round values in `[lo, hi]`, about an eighth of it apart (1, 2 or 5 times a power of ten),
/// with their labels.
fn ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let rough = (hi - lo) / 8.0;
    if !(rough.is_finite() && rough > 0.0) {
        return Vec::new();
    }
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            // -0 prints as "-0": write 0.
            let v = if v == 0.0 { 0.0 } else { v };
            (v, format!("{v:.decimals$}").replace('-', "−"))
        })
        .collect()
}

/// `text` safe inside an SVG element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
