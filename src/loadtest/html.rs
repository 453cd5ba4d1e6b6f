//! The HTML report: one self-contained page (styles inline, charts as
//! inline SVG, no script, nothing fetched) drawn from the same JSON as
//! `loadtest.json`, so a report kept from an earlier run can be drawn
//! again. Per run: the verdict and the analysis, throughput and latency
//! percentiles over time, the latency distribution, the server's
//! resources over time, and the tables by URL class and by route; for a
//! stress run, the knee curve across its steps first.

use std::fmt::Write;

use serde_json::Value;

use super::chart::{Chart, Line, escape};

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:760px;padding:0 1rem;color:#1a1a1a}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem;border-top:1px solid #ddd;padding-top:1rem}\
table{border-collapse:collapse;margin:1rem 0;font-variant-numeric:tabular-nums}\
td,th{padding:.2rem .6rem;border-bottom:1px solid #eee;text-align:right}td:first-child,th:first-child{text-align:left}\
.met{color:#006d2c}.missed{color:#b30000}.analysis{background:#f6f6f6;padding:.6rem 1rem}\
svg.chart{width:100%;height:auto;margin:.8rem 0}svg .title{font-weight:600;font-size:13px}\
svg .tick,svg .legend{font-size:11px}svg .label{font-size:12px}\
svg .grid{stroke:#e5e5e5}svg .axis{stroke:#888}";

/// The page for `report` (the `loadtest.json` document).
pub(crate) fn render(report: &Value) -> String {
    let scenario = report["scenario"].as_str().unwrap_or("load test");
    let met = report["met"].as_bool().unwrap_or(false);
    let mut page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>kiln loadtest: {scenario}</title><style>{STYLE}</style></head><body>\
         <h1>kiln loadtest: {scenario}</h1>",
        scenario = escape(scenario)
    );
    let objectives = &report["objectives"];
    let _ = write!(
        page,
        "<p class=\"{}\"><strong>objectives {}</strong>: p99 ≤ {} ms, errors ≤ {}%</p>",
        if met { "met" } else { "missed" },
        if met { "met" } else { "MISSED" },
        number(&objectives["p99_ms"]),
        objectives["error_rate"].as_f64().unwrap_or(0.0) * 100.0
    );
    if let Some(knee) = report.get("knee") {
        let _ = write!(page, "<p>{}</p>", escape(knee.as_str().unwrap_or("")));
    }
    let runs = report["runs"].as_array().cloned().unwrap_or_default();
    if runs.len() > 1 {
        page.push_str(&steps_section(&runs));
    }
    // A stress run's steps fold away but for the last two: the knee's
    // step and the one that missed.
    let folded = runs.len().saturating_sub(2);
    for (index, run) in runs.iter().enumerate() {
        if index < folded {
            let _ = write!(
                page,
                "<details><summary>{}</summary>{}</details>",
                escape(run["name"].as_str().unwrap_or("run")),
                run_section(run)
            );
        } else {
            page.push_str(&run_section(run));
        }
    }
    page.push_str("</body></html>\n");
    page
}

/// The stress curve: what was asked against what was answered, and p99.
fn steps_section(runs: &[Value]) -> String {
    let asked = |run: &Value| run["target_rate"].as_f64().unwrap_or(0.0);
    let line = |name: &str, value: &dyn Fn(&Value) -> f64| Line {
        name: name.to_string(),
        points: runs.iter().map(|run| (asked(run), value(run))).collect(),
    };
    let throughput = Chart {
        title: "Answered against asked, by step".to_string(),
        x_label: "asked, req/s".to_string(),
        y_label: "req/s".to_string(),
        lines: vec![
            line("asked", &asked),
            line("answered", &|run| run["throughput"].as_f64().unwrap_or(0.0)),
        ],
        x_ticks: None,
    };
    let latency = Chart {
        title: "Latency by step".to_string(),
        x_label: "asked, req/s".to_string(),
        y_label: "ms".to_string(),
        lines: ["p50", "p90", "p99"]
            .iter()
            .map(|name| {
                line(name, &|run| {
                    run["latency_ms"][*name].as_f64().unwrap_or(0.0)
                })
            })
            .collect(),
        x_ticks: None,
    };
    format!("<h2>Steps</h2>{}{}", throughput.to_svg(), latency.to_svg())
}

fn run_section(run: &Value) -> String {
    let name = run["name"].as_str().unwrap_or("run");
    let mut section = format!("<h2>{}</h2>", escape(name));
    let _ = write!(
        section,
        "<p>{} requests in {:.1} s: <strong>{:.0} req/s</strong> (asked {:.0}); error rate {:.3}%; latency p50 {} ms, p99 {} ms, max {} ms</p>",
        run["requests"],
        run["seconds"].as_f64().unwrap_or(0.0),
        run["throughput"].as_f64().unwrap_or(0.0),
        run["target_rate"].as_f64().unwrap_or(0.0),
        run["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
        number(&run["latency_ms"]["p50"]),
        number(&run["latency_ms"]["p99"]),
        number(&run["latency_ms"]["max"]),
    );
    section.push_str(&analysis_block(&run["analysis"]));
    let seconds = run["by_second"].as_array().cloned().unwrap_or_default();
    let at = |second: &Value| second["second"].as_f64().unwrap_or(0.0);
    let per_second = |name: &str, value: &dyn Fn(&Value) -> f64| Line {
        name: name.to_string(),
        points: seconds
            .iter()
            .map(|second| (at(second), value(second)))
            .collect(),
    };
    section.push_str(
        &Chart {
            title: "Throughput by second of intended send time".to_string(),
            x_label: "second".to_string(),
            y_label: "req/s".to_string(),
            lines: vec![
                per_second("requests", &|second| {
                    second["requests"].as_f64().unwrap_or(0.0)
                }),
                per_second("failures", &|second| {
                    second["failures"].as_f64().unwrap_or(0.0)
                }),
            ],
            x_ticks: None,
        }
        .to_svg(),
    );
    section.push_str(
        &Chart {
            title: "Latency percentiles by second".to_string(),
            x_label: "second".to_string(),
            y_label: "ms".to_string(),
            lines: ["p50", "p90", "p99", "max"]
                .iter()
                .map(|name| {
                    per_second(name, &|second| {
                        second["latency_ms"][*name].as_f64().unwrap_or(0.0)
                    })
                })
                .collect(),
            x_ticks: None,
        }
        .to_svg(),
    );
    section.push_str(&distribution_chart(run));
    section.push_str(&resource_charts(&run["resources"]));
    section.push_str(&class_table(run));
    section.push_str(&route_table(&run["resources"]));
    section
}

fn analysis_block(analysis: &Value) -> String {
    let Some(headline) = analysis["headline"].as_str() else {
        return String::new();
    };
    let mut block = format!(
        "<div class=\"analysis\"><p><strong>{}</strong></p><ul>",
        escape(headline)
    );
    for line in analysis["evidence"].as_array().into_iter().flatten() {
        let _ = write!(block, "<li>{}</li>", escape(line.as_str().unwrap_or("")));
    }
    block.push_str("</ul>");
    if let Some(scaling) = analysis["scaling"].as_str() {
        let _ = write!(block, "<p>Scaling: {}</p>", escape(scaling));
    }
    block.push_str("</div>");
    block
}

/// Latency against percentile, on an axis of nines (as HdrHistogram's
/// plots: the tail gets the room).
fn distribution_chart(run: &Value) -> String {
    let points: Vec<(f64, f64)> = run["distribution"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|point| {
            let quantile = point["quantile"].as_f64()?;
            let ms = point["ms"].as_f64()?;
            Some((nines(quantile), ms))
        })
        .collect();
    if points.is_empty() {
        return String::new();
    }
    let ticks = [
        (0.0, "0%"),
        (0.9, "90%"),
        (0.99, "99%"),
        (0.999, "99.9%"),
        (0.9999, "99.99%"),
        (0.99999, "99.999%"),
    ]
    .iter()
    .map(|(quantile, label)| (nines(*quantile), label.to_string()))
    .collect();
    Chart {
        title: "Latency distribution".to_string(),
        x_label: "percentile".to_string(),
        y_label: "ms".to_string(),
        lines: vec![Line {
            name: "latency".to_string(),
            points,
        }],
        x_ticks: Some(ticks),
    }
    .to_svg()
}

/// Position of `quantile` on an axis of nines: 90% at 1, 99% at 2…
pub(crate) fn nines(quantile: f64) -> f64 {
    -(1.0 - quantile.min(0.999_999)).log10()
}

fn resource_charts(resources: &Value) -> String {
    let points = resources["points"].as_array().cloned().unwrap_or_default();
    if points.is_empty() {
        return match resources["error"].as_str() {
            Some(error) => format!(
                "<p>The server's resources were not read: {}</p>",
                escape(error)
            ),
            None => String::new(),
        };
    }
    let series = |name: &str, field: &str| Line {
        name: name.to_string(),
        points: points
            .iter()
            .filter_map(|point| Some((point["at"].as_f64()?, point[field].as_f64()?)))
            .collect(),
    };
    let chart = |title: &str, unit: &str, lines: Vec<Line>| {
        Chart {
            title: title.to_string(),
            x_label: "second".to_string(),
            y_label: unit.to_string(),
            lines,
            x_ticks: None,
        }
        .to_svg()
    };
    let mut charts = chart(
        "CPU",
        "cores",
        vec![
            series("server", "cpu_cores"),
            series("generator", "generator_cores"),
        ],
    );
    charts.push_str(&chart("Memory", "MB", vec![series("resident", "rss_mb")]));
    charts.push_str(&chart(
        "Connections and requests in the server",
        "count",
        vec![
            series("connections", "connections"),
            series("in flight", "in_flight"),
            series("queued", "queued"),
            series("pool in use", "pool_in_use"),
            series("pool waiters", "pool_waiters"),
            series("open files", "open_fds"),
        ],
    ));
    charts.push_str(&chart(
        "Shed requests and pool waits",
        "per s / ms",
        vec![
            series("shed per s", "shed_per_s"),
            series("acquire wait ms", "acquire_wait_ms"),
        ],
    ));
    let hit_ratio = series("hit ratio %", "hit_ratio");
    if !hit_ratio.points.is_empty() {
        let percent = Line {
            name: hit_ratio.name,
            points: hit_ratio
                .points
                .into_iter()
                .map(|(at, ratio)| (at, ratio * 100.0))
                .collect(),
        };
        charts.push_str(&chart("Route cache", "%", vec![percent]));
    }
    charts
}

fn class_table(run: &Value) -> String {
    let Some(classes) = run["by_class"].as_object() else {
        return String::new();
    };
    let mut table = String::from(
        "<table><tr><th>class</th><th>requests</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>errors</th></tr>",
    );
    for (class, tally) in classes {
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td></tr>",
            escape(class),
            tally["requests"],
            number(&tally["latency_ms"]["p50"]),
            number(&tally["latency_ms"]["p99"]),
            number(&tally["latency_ms"]["max"]),
            tally["error_rate"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    table.push_str("</table>");
    table
}

/// Each dynamic route: its requests, database time and cache hit ratio.
fn route_table(resources: &Value) -> String {
    let seconds_of = |route: &str| resources["query_seconds"][route].as_f64();
    let mut routes: Vec<&String> = ["query_seconds", "route_requests", "route_hit_ratio"]
        .iter()
        .filter_map(|field| resources[*field].as_object())
        .flat_map(|map| map.keys())
        .collect();
    routes.sort();
    routes.dedup();
    if routes.is_empty() {
        return String::new();
    }
    let total: f64 = routes.iter().filter_map(|route| seconds_of(route)).sum();
    routes.sort_by(|a, b| {
        let seconds = |route: &str| seconds_of(route).unwrap_or(0.0);
        seconds(b).total_cmp(&seconds(a)).then(a.cmp(b))
    });
    let mut table = String::from(
        "<table><tr><th>route</th><th>requests</th><th>query time s</th><th>share</th><th>cache hits</th></tr>",
    );
    for route in routes {
        let seconds = seconds_of(route).unwrap_or(0.0);
        let hits = match resources["route_hit_ratio"][route.as_str()].as_f64() {
            Some(ratio) => format!("{:.1}%", ratio * 100.0),
            None => "–".to_string(),
        };
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{seconds:.3}</td><td>{:.0}%</td><td>{hits}</td></tr>",
            escape(route),
            number(&resources["route_requests"][route.as_str()]),
            seconds / total.max(f64::EPSILON) * 100.0
        );
    }
    table.push_str("</table>");
    table
}

/// A JSON number for a table cell, to two decimals at most.
fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(number) if number.fract() == 0.0 => format!("{number:.0}"),
        Some(number) => format!("{number:.2}"),
        None => "–".to_string(),
    }
}
