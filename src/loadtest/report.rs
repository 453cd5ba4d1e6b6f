//! What a run prints and writes: a terminal summary (throughput,
//! latency percentiles, outcomes, a table per URL class) and the same as
//! JSON, with latency percentiles and counts for every second of the
//! run, for `--report DIR` and later comparisons.

use serde_json::{Value, json};

use super::analysis::Analysis;
use super::observe::Resources;
use super::record::{Outcome, Recorder, Tally};
use crate::client::OpenedCount;

/// The connections a run opened, by protocol.
fn connections_line(opened: OpenedCount) -> String {
    match (opened.http1, opened.http2) {
        (0, 0) => "connections opened: none (kept from before)".to_string(),
        (http1, 0) => format!("connections opened: {http1} HTTP/1.1"),
        (0, http2) => format!("connections opened: {http2} HTTP/2"),
        (http1, http2) => format!("connections opened: {http1} HTTP/1.1, {http2} HTTP/2"),
    }
}

/// The percentiles every summary gives.
const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99_9", 0.999),
    ("max", 1.0),
];

/// One run (or one step of a stress run) summed up.
pub(crate) struct Summary<'a> {
    pub name: String,
    /// The rate asked for, requests per second (for a ramp, its end).
    pub target_rate: f64,
    pub recorder: &'a Recorder,
    /// The server's resources over the run, when its metrics were read.
    pub resources: &'a Resources,
    pub analysis: &'a Analysis,
    /// Connections the generator opened during the run, by protocol.
    pub connections: OpenedCount,
}

impl Summary<'_> {
    /// Answers per second, over the run's wall time.
    pub(crate) fn throughput(&self) -> f64 {
        self.recorder.total.requests() as f64 / self.seconds().max(f64::EPSILON)
    }

    fn seconds(&self) -> f64 {
        self.recorder.elapsed.as_secs_f64()
    }

    pub(crate) fn to_json(&self) -> Value {
        let total = &self.recorder.total;
        json!({
            "name": self.name,
            "target_rate": self.target_rate,
            "seconds": self.seconds(),
            "throughput": self.throughput(),
            "requests": total.requests(),
            "late_sends": self.recorder.late_sends,
            "unsent": self.recorder.unsent,
            "connections_opened": self.connections,
            "latency_ms": percentiles(total),
            "error_rate": total.error_rate(),
            "outcomes": outcomes(total),
            "bytes": total.bytes,
            "by_class": self.recorder.by_class.iter().map(|(class, tally)| {
                (class.to_string(), json!({
                    "requests": tally.requests(),
                    "latency_ms": percentiles(tally),
                    "error_rate": tally.error_rate(),
                    "outcomes": outcomes(tally),
                }))
            }).collect::<serde_json::Map<_, _>>(),
            "by_second": self.recorder.by_second.iter().enumerate().map(|(second, tally)| json!({
                "second": second,
                "requests": tally.requests(),
                "failures": tally.failures(),
                "latency_ms": percentiles(tally),
            })).collect::<Vec<_>>(),
            "distribution": distribution(total),
            "resources": self.resources,
            "analysis": self.analysis,
        })
    }

    /// The terminal summary.
    pub(crate) fn to_text(&self) -> String {
        let total = &self.recorder.total;
        let asked = if self.target_rate > 0.0 {
            format!(" (asked {:.0})", self.target_rate)
        } else {
            String::new()
        };
        let mut text = format!(
            "{}: {} requests in {:.1} s, {:.0} req/s{asked}\n  latency {}\n  {}\n  {}\n",
            self.name,
            total.requests(),
            self.seconds(),
            self.throughput(),
            latency_line(total),
            outcome_line(total),
            connections_line(self.connections),
        );
        if self.recorder.late_sends > 0 {
            text.push_str(&format!(
                "  {} requests left after they were due (all connections busy): latency counts from when they were due\n",
                self.recorder.late_sends
            ));
        }
        if self.recorder.unsent > 0 {
            text.push_str(&format!(
                "  {} requests were still due when the time was up and never went out: the rate asked was not reached\n",
                self.recorder.unsent
            ));
        }
        for (class, tally) in &self.recorder.by_class {
            text.push_str(&format!(
                "  {class:<6} {:>8} req  {}  errors {:.2}%\n",
                tally.requests(),
                latency_line(tally),
                tally.error_rate() * 100.0
            ));
        }
        text.push_str(&format!("  {}\n", self.analysis.headline));
        for line in &self.analysis.evidence {
            text.push_str(&format!("    {line}\n"));
        }
        if let Some(scaling) = &self.analysis.scaling {
            text.push_str(&format!("  scaling: {scaling}\n"));
        }
        text
    }
}

/// Latency at percentiles spaced evenly on an axis of nines (eight
/// points per nine, to 99.999%), then the maximum: the report's
/// distribution chart.
fn distribution(tally: &Tally) -> Value {
    let mut points: Vec<Value> = (0..=40)
        .map(|step| {
            let quantile = 1.0 - 10f64.powf(-(step as f64) / 8.0);
            json!({"quantile": quantile, "ms": tally.ms_at(quantile)})
        })
        .collect();
    points.push(json!({"quantile": 1.0, "ms": tally.ms_at(1.0)}));
    Value::Array(points)
}

fn percentiles(tally: &Tally) -> Value {
    QUANTILES
        .iter()
        .map(|(name, quantile)| (name.to_string(), json!(tally.ms_at(*quantile))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn outcomes(tally: &Tally) -> Value {
    tally
        .outcomes
        .iter()
        .map(|(outcome, count)| {
            let name = serde_json::to_value(outcome)
                .ok()
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_default();
            (name, json!(count))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn latency_line(tally: &Tally) -> String {
    QUANTILES
        .iter()
        .map(|(name, quantile)| {
            format!(
                "{} {:.2} ms",
                name.replace('_', "."),
                tally.ms_at(*quantile)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn outcome_line(tally: &Tally) -> String {
    let parts: Vec<String> = tally
        .outcomes
        .iter()
        .map(|(outcome, count)| {
            let name = match outcome {
                Outcome::Ok => "ok",
                Outcome::ExpectedError => "expected 4xx",
                Outcome::ClientError => "unexpected 4xx",
                Outcome::ServerError => "5xx",
                Outcome::Timeout => "timeouts",
                Outcome::Transport => "transport errors",
                Outcome::BrokenFlow => "broken form flows",
            };
            format!("{name} {count}")
        })
        .collect();
    format!(
        "outcomes: {} (error rate {:.3}%)",
        parts.join(", "),
        tally.error_rate() * 100.0
    )
}
