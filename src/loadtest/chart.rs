//! Line charts as inline SVG, for the HTML report. A report must open
//! offline and from a CI artifact, so the charts are drawn here rather
//! than by a charting script fetched from a CDN; the few shapes it needs
//! (lines over a linear axis, an axis of given ticks) do not justify
//! `plotters` and its dependencies in every build of kiln.

use std::fmt::Write;

/// Series colours, distinguishable in print and for colour-blind readers
/// (Okabe–Ito).
const COLOURS: [&str; 6] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
];

const WIDTH: f64 = 680.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 40.0;

/// One series.
pub(crate) struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart of lines sharing two axes.
pub(crate) struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    /// Ticks of the x axis at given positions (a percentile axis); `None`:
    /// evenly spaced round numbers.
    pub x_ticks: Option<Vec<(f64, String)>>,
}

impl Chart {
    /// The chart as an `<svg>` element.
    pub(crate) fn to_svg(&self) -> String {
        let points = self.lines.iter().flat_map(|line| line.points.iter());
        let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0.0f64);
        for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_max = y_max.max(y);
        }
        if x_min > x_max {
            (x_min, x_max) = (0.0, 1.0);
        }
        if x_max <= x_min {
            x_max = x_min + 1.0;
        }
        let y_ticks = round_ticks(0.0, if y_max > 0.0 { y_max } else { 1.0 });
        let y_top = y_ticks.last().copied().unwrap_or(1.0).max(y_max);
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x_min) / (x_max - x_min) * plot_w;
        let sy = |y: f64| TOP + plot_h - y / y_top * plot_h;
        let mut svg = format!(
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
            escape(&self.title)
        );
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="16" class="title">{}</text>"#,
            escape(&self.title)
        );
        for tick in &y_ticks {
            let y = sy(*tick);
            let _ = write!(
                svg,
                r#"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                number(*tick)
            );
        }
        let x_ticks = self.x_ticks.clone().unwrap_or_else(|| {
            round_ticks(x_min, x_max)
                .into_iter()
                .filter(|x| *x >= x_min && *x <= x_max)
                .map(|x| (x, number(x)))
                .collect()
        });
        for (x, label) in x_ticks.iter().filter(|(x, _)| *x >= x_min && *x <= x_max) {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
                sx(*x),
                HEIGHT - BOTTOM + 16.0,
                escape(label)
            );
        }
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="axis"/><text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">{}</text><text x="14" y="{:.1}" class="label" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
            WIDTH - RIGHT,
            TOP + plot_h,
            TOP + plot_h,
            LEFT + plot_w / 2.0,
            HEIGHT - 6.0,
            escape(&self.x_label),
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        let mut legend_x = LEFT;
        for (index, line) in self.lines.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let path: Vec<String> = line
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            if path.len() == 1 {
                let _ = write!(
                    svg,
                    r#"<circle cx="{}" r="3" fill="{colour}"/>"#,
                    path[0].replace(',', "\" cy=\"")
                );
            } else if !path.is_empty() {
                let _ = write!(
                    svg,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{}"/>"#,
                    path.join(" ")
                );
            }
            let _ = write!(
                svg,
                r#"<rect x="{legend_x:.1}" y="24" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="33" class="legend">{}</text>"#,
                legend_x + 14.0,
                escape(&line.name)
            );
            legend_x += 24.0 + 7.0 * line.name.chars().count() as f64;
        }
        svg.push_str("</svg>");
        svg
    }
}

/// Round tick values (1, 2 or 5 × 10ⁿ apart) covering `low..=high`.
fn round_ticks(low: f64, high: f64) -> Vec<f64> {
    let span = (high - low).max(f64::EPSILON);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|factor| factor * magnitude)
        .find(|step| span / step <= 6.0)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).floor() * step;
    let mut ticks = Vec::new();
    let mut tick = first;
    while tick < high + step * 0.999 && ticks.len() < 20 {
        ticks.push(tick);
        tick += step;
    }
    ticks
}

/// A tick's label: no needless decimals, thousands as k.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if magnitude >= 10.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Text for HTML and SVG.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(round_ticks(0.0, 9.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(round_ticks(0.0, 480.0).last(), Some(&500.0));
        assert_eq!(number(12_500.0), "12k");
        assert_eq!(number(0.25), "0.25");
    }

    #[test]
    fn a_chart_draws_each_line_with_a_legend_and_escapes_text() {
        let chart = Chart {
            title: "p99 <by> second".to_string(),
            x_label: "s".to_string(),
            y_label: "ms".to_string(),
            lines: vec![
                Line {
                    name: "p50".to_string(),
                    points: vec![(0.0, 1.0), (1.0, 2.0)],
                },
                Line {
                    name: "p99".to_string(),
                    points: vec![(0.0, 5.0), (1.0, f64::NAN)],
                },
            ],
            x_ticks: None,
        };
        let svg = chart.to_svg();
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert!(svg.contains("p99 &lt;by&gt; second"));
        assert!(!svg.contains("NaN"));
    }
}
