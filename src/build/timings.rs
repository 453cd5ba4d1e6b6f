//! `kiln build --timings`: where a build's time went, as `cargo build
//! --timings` shows a compile's. A [`Progress`] wrapper records when each
//! stage began and each unit of work (a static asset with its image
//! variants, a stylesheet entry, the script bundle, a compressed variant,
//! a written file) ran, on which thread; [`Timings::to_html`] draws them as
//! one self-contained page: the stages with their wall time and
//! parallelism, every unit on its thread's row, the number of units
//! running over time, and the slowest units.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::report::Progress;

/// One unit of work.
#[derive(Debug, Clone)]
struct Unit {
    stage: usize,
    name: String,
    /// `None`: the thread that called the build (not one of rayon's).
    thread: Option<usize>,
    start: Duration,
    end: Duration,
}

#[derive(Debug, Default)]
struct Recorded {
    /// Each stage's name and start, in order.
    stages: Vec<(String, Duration)>,
    units: Vec<Unit>,
}

/// Records a build's timings while passing progress on to `inner`.
pub struct Timings<'a> {
    inner: &'a dyn Progress,
    started: Instant,
    recorded: Mutex<Recorded>,
}

impl<'a> Timings<'a> {
    /// Starts the clock: the time before the first stage is `discover`
    /// (reading the sources and their imports).
    pub fn new(inner: &'a dyn Progress) -> Timings<'a> {
        Timings {
            inner,
            started: Instant::now(),
            recorded: Mutex::new(Recorded {
                stages: vec![("discover".to_string(), Duration::ZERO)],
                units: Vec::new(),
            }),
        }
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        match self.recorded.lock() {
            Ok(recorded) => recorded,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Progress for Timings<'_> {
    fn stage(&self, name: &str, total: usize) {
        let at = self.started.elapsed();
        self.recorded().stages.push((name.to_string(), at));
        self.inner.stage(name, total);
    }

    fn advance(&self) {
        self.inner.advance();
    }

    fn done(&self, what: &str, started: Instant) {
        self.timed(what, started);
        self.inner.advance();
    }

    fn timed(&self, what: &str, started: Instant) {
        let end = self.started.elapsed();
        let start = started.saturating_duration_since(self.started);
        {
            let mut recorded = self.recorded();
            let stage = recorded.stages.len() - 1;
            recorded.units.push(Unit {
                stage,
                name: what.to_string(),
                thread: rayon::current_thread_index(),
                start,
                end,
            });
        }
    }
}

/// Stage colours (Okabe–Ito), by stage index.
const COLOURS: [&str; 7] = [
    "#999999", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7",
];
const WIDTH: f64 = 900.0;
const LEFT: f64 = 70.0;
const ROW: f64 = 16.0;

impl Timings<'_> {
    /// The page, for a build that took `total`.
    pub fn to_html(&self, total: Duration) -> String {
        let recorded = self.recorded();
        let total_s = total.as_secs_f64().max(1e-6);
        let busy: f64 = recorded
            .units
            .iter()
            .map(|unit| (unit.end - unit.start).as_secs_f64())
            .sum();
        let mut page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>kiln build timings</title>\
             <style>body{{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1a1a1a}}\
             table{{border-collapse:collapse;margin:1rem 0;font-variant-numeric:tabular-nums}}\
             td,th{{padding:.2rem .6rem;border-bottom:1px solid #eee;text-align:right}}\
             td:first-child,th:first-child,td.text{{text-align:left}}svg{{max-width:100%;height:auto}}\
             svg text{{font-size:11px}}</style></head><body><h1>kiln build timings</h1>\
             <p>{:.0} ms wall, {} units of work taking {:.0} ms in all: {:.2} units at a time on average, on {} threads.</p>",
            total_s * 1000.0,
            recorded.units.len(),
            busy * 1000.0,
            busy / total_s,
            threads(&recorded.units).len(),
        );
        page.push_str(&stage_table(&recorded, total));
        page.push_str("<h2>Units by thread</h2>");
        page.push_str(&gantt(&recorded, total_s));
        page.push_str("<h2>Units running</h2>");
        page.push_str(&concurrency(&recorded.units, total_s));
        page.push_str(&slowest(&recorded));
        page.push_str("</body></html>\n");
        page
    }
}

fn threads(units: &[Unit]) -> Vec<Option<usize>> {
    let mut threads: Vec<Option<usize>> = units.iter().map(|unit| unit.thread).collect();
    threads.sort();
    threads.dedup();
    threads
}

fn stage_table(recorded: &Recorded, total: Duration) -> String {
    let mut table = String::from(
        "<table><tr><th>stage</th><th>starts ms</th><th>wall ms</th><th>units</th><th>unit time ms</th><th>parallelism</th></tr>",
    );
    for (index, (name, start)) in recorded.stages.iter().enumerate() {
        let end = recorded
            .stages
            .get(index + 1)
            .map_or(total, |(_, next)| *next);
        let wall = end.saturating_sub(*start).as_secs_f64();
        let units: Vec<&Unit> = recorded
            .units
            .iter()
            .filter(|unit| unit.stage == index)
            .collect();
        // `0.0 +`: an empty f64 sum is -0.0.
        let unit_time: f64 = 0.0
            + units
                .iter()
                .map(|unit| (unit.end - unit.start).as_secs_f64())
                .sum::<f64>();
        let _ = write!(
            table,
            "<tr><td><span style=\"color:{}\">■</span> {}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
            COLOURS[index % COLOURS.len()],
            escape(name),
            start.as_secs_f64() * 1000.0,
            wall * 1000.0,
            units.len(),
            unit_time * 1000.0,
            if units.is_empty() || wall <= 0.0 {
                "–".to_string()
            } else {
                format!("{:.2}", unit_time / wall)
            }
        );
    }
    table.push_str("</table>");
    table
}

/// Every unit as a bar on its thread's row, coloured by stage.
fn gantt(recorded: &Recorded, total_s: f64) -> String {
    let threads = threads(&recorded.units);
    let height = ROW * threads.len() as f64 + 24.0;
    let scale = (WIDTH - LEFT - 10.0) / total_s;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"Units by thread\">"
    );
    for (row, thread) in threads.iter().enumerate() {
        let y = row as f64 * ROW;
        let label = thread.map_or("main".to_string(), |index| format!("thread {index}"));
        let _ = write!(svg, "<text x=\"0\" y=\"{:.1}\">{label}</text>", y + 12.0);
    }
    for unit in &recorded.units {
        let row = threads
            .iter()
            .position(|thread| *thread == unit.thread)
            .unwrap_or(0);
        let x = LEFT + unit.start.as_secs_f64() * scale;
        let width = ((unit.end - unit.start).as_secs_f64() * scale).max(0.5);
        let stage = &recorded.stages[unit.stage].0;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} ({}): {:.1} ms</title></rect>",
            row as f64 * ROW + 2.0,
            ROW - 4.0,
            COLOURS[unit.stage % COLOURS.len()],
            escape(&unit.name),
            escape(stage),
            (unit.end - unit.start).as_secs_f64() * 1000.0
        );
    }
    axis(&mut svg, height - 20.0, total_s, scale);
    svg.push_str("</svg>");
    svg
}

/// A time axis along `y`.
fn axis(svg: &mut String, y: f64, total_s: f64, scale: f64) {
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#888\"/>",
        LEFT + total_s * scale
    );
    for step in 0..=5 {
        let at = total_s * step as f64 / 5.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{:.0} ms</text>",
            LEFT + at * scale,
            y + 14.0,
            at * 1000.0,
            anchor = if step == 5 { "end" } else { "middle" },
        );
    }
}

/// How many units ran at each moment: a step line.
fn concurrency(units: &[Unit], total_s: f64) -> String {
    let mut changes: BTreeMap<Duration, i64> = BTreeMap::new();
    for unit in units {
        *changes.entry(unit.start).or_default() += 1;
        *changes.entry(unit.end).or_default() -= 1;
    }
    let mut running = 0i64;
    let mut steps = vec![(0.0, 0i64)];
    for (at, change) in changes {
        steps.push((at.as_secs_f64(), running));
        running += change;
        steps.push((at.as_secs_f64(), running));
    }
    steps.push((total_s, running));
    let highest = steps
        .iter()
        .map(|(_, count)| *count)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let height = 140.0;
    let scale = (WIDTH - LEFT - 10.0) / total_s;
    let plot = height - 30.0;
    let points: Vec<String> = steps
        .iter()
        .map(|(at, count)| {
            format!(
                "{:.1},{:.1}",
                LEFT + at * scale,
                4.0 + plot - *count as f64 / highest * plot
            )
        })
        .collect();
    let mut svg = format!(
        "<svg viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"Units running\">\
         <text x=\"0\" y=\"12\">{highest:.0}</text><text x=\"0\" y=\"{:.1}\">0</text>\
         <polyline fill=\"none\" stroke=\"#0072B2\" stroke-width=\"1.5\" points=\"{}\"/>",
        4.0 + plot,
        points.join(" ")
    );
    axis(&mut svg, plot + 8.0, total_s, scale);
    svg.push_str("</svg>");
    svg
}

/// The 30 longest units.
fn slowest(recorded: &Recorded) -> String {
    let mut units: Vec<&Unit> = recorded.units.iter().collect();
    units.sort_by_key(|unit| std::cmp::Reverse(unit.end - unit.start));
    let mut table = String::from(
        "<h2>Slowest units</h2><table><tr><th>unit</th><th>stage</th><th>ms</th><th>thread</th></tr>",
    );
    for unit in units.iter().take(30) {
        let _ = write!(
            table,
            "<tr><td>{}</td><td class=\"text\">{}</td><td>{:.1}</td><td>{}</td></tr>",
            escape(&unit.name),
            escape(&recorded.stages[unit.stage].0),
            (unit.end - unit.start).as_secs_f64() * 1000.0,
            unit.thread
                .map_or("main".to_string(), |index| index.to_string())
        );
    }
    table.push_str("</table>");
    table
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::report::Silent;

    #[test]
    fn units_land_in_their_stage_and_the_page_draws_them() {
        let timings = Timings::new(&Silent);
        timings.stage("assets", 2);
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        timings.done("images/a.jpg", started);
        timings.stage("write", 1);
        timings.done("index.html", Instant::now());
        let page = timings.to_html(Duration::from_millis(10));
        assert!(
            page.contains("<td><span style=\"color:#E69F00\">■</span> assets</td>"),
            "{page}"
        );
        assert_eq!(page.matches("<rect ").count(), 2);
        assert!(page.contains("<title>images/a.jpg (assets): "));
        assert!(!page.contains("http"), "nothing fetched");
    }
}
