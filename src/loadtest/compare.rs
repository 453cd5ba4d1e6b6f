//! `--compare OLD.json`: this run against a kept report, run by run (by
//! name), flagging what got worse by more than `loadtest.regression`:
//! throughput down, p50 or p99 up (by at least a millisecond too, so
//! sub-millisecond noise does not fail a build), the error rate up (by at
//! least 0.1 point), a stress knee lower. Any flag fails the command, so
//! CI can keep the last release's report and gate on the trend.

use std::fmt::Write;

use serde_json::Value;

/// What the comparison found.
pub(crate) struct Comparison {
    pub text: String,
    pub regressions: Vec<String>,
}

/// Latency rises smaller than this are noise, whatever the ratio.
const LATENCY_FLOOR_MS: f64 = 1.0;
/// Error rate rises smaller than this are noise.
const ERROR_FLOOR: f64 = 0.001;

/// Compares `new` with `old`; `threshold` is the relative change that
/// counts as a regression.
pub(crate) fn compare(old: &Value, new: &Value, threshold: f64, old_name: &str) -> Comparison {
    let mut text = format!(
        "compared with {old_name} (regression beyond {:.0}%):\n",
        threshold * 100.0
    );
    let mut regressions = Vec::new();
    let old_runs = old["runs"].as_array().cloned().unwrap_or_default();
    for run in new["runs"].as_array().into_iter().flatten() {
        let name = run["name"].as_str().unwrap_or("");
        let Some(before) = old_runs
            .iter()
            .find(|old| old["name"].as_str() == Some(name))
        else {
            let _ = writeln!(text, "  {name}: not in the old report");
            continue;
        };
        let mut parts = Vec::new();
        let mut flag = |part: String, worse: bool, what: &str| {
            if worse {
                regressions.push(format!("{name}: {what}"));
                parts.push(format!("{part} REGRESSED"));
            } else {
                parts.push(part);
            }
        };
        let (old_rate, new_rate) = (number(&before["throughput"]), number(&run["throughput"]));
        flag(
            format!(
                "throughput {old_rate:.0} → {new_rate:.0} req/s ({})",
                change(old_rate, new_rate)
            ),
            new_rate < old_rate * (1.0 - threshold),
            "throughput",
        );
        for quantile in ["p50", "p99"] {
            let old_ms = number(&before["latency_ms"][quantile]);
            let new_ms = number(&run["latency_ms"][quantile]);
            flag(
                format!(
                    "{quantile} {old_ms:.2} → {new_ms:.2} ms ({})",
                    change(old_ms, new_ms)
                ),
                new_ms > old_ms * (1.0 + threshold) && new_ms - old_ms >= LATENCY_FLOOR_MS,
                quantile,
            );
        }
        let (old_errors, new_errors) = (number(&before["error_rate"]), number(&run["error_rate"]));
        flag(
            format!(
                "errors {:.3}% → {:.3}%",
                old_errors * 100.0,
                new_errors * 100.0
            ),
            new_errors > old_errors * (1.0 + threshold) && new_errors - old_errors >= ERROR_FLOOR,
            "error rate",
        );
        let _ = writeln!(text, "  {name}: {}", parts.join(", "));
    }
    if let (Some(old_knee), Some(new_knee)) = (old["knee_rate"].as_f64(), new["knee_rate"].as_f64())
    {
        let worse = new_knee < old_knee * (1.0 - threshold);
        let _ = writeln!(
            text,
            "  knee: {old_knee:.0} → {new_knee:.0} req/s ({}){}",
            change(old_knee, new_knee),
            if worse { " REGRESSED" } else { "" }
        );
        if worse {
            regressions.push("knee".to_string());
        }
    }
    match regressions.len() {
        0 => text.push_str("no regression\n"),
        count => {
            let _ = writeln!(text, "{count} regression(s): {}", regressions.join("; "));
        }
    }
    Comparison { text, regressions }
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

fn change(old: f64, new: f64) -> String {
    if old == 0.0 {
        return if new == 0.0 { "=" } else { "new" }.to_string();
    }
    format!("{:+.1}%", (new - old) / old * 100.0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report(throughput: f64, p50: f64, p99: f64, errors: f64) -> Value {
        json!({"runs": [{
            "name": "normal",
            "throughput": throughput,
            "latency_ms": {"p50": p50, "p99": p99},
            "error_rate": errors,
        }]})
    }

    #[test]
    fn a_slower_run_is_flagged_and_noise_is_not() {
        let old = report(1000.0, 1.0, 20.0, 0.0);
        let slower = compare(&old, &report(800.0, 1.2, 40.0, 0.02), 0.1, "old.json");
        assert_eq!(
            slower.regressions,
            ["normal: throughput", "normal: p99", "normal: error rate"],
            "{}",
            slower.text
        );
        assert!(
            slower
                .text
                .contains("p99 20.00 → 40.00 ms (+100.0%) REGRESSED")
        );
        // p50 rose 20%, but by less than a millisecond: noise.
        let same = compare(&old, &report(960.0, 1.4, 21.0, 0.0005), 0.1, "old.json");
        assert!(same.regressions.is_empty(), "{}", same.text);
        assert!(same.text.ends_with("no regression\n"));
    }

    #[test]
    fn a_lower_knee_is_a_regression() {
        let mut old = report(1000.0, 1.0, 20.0, 0.0);
        old["knee_rate"] = json!(4000.0);
        let mut new = old.clone();
        new["knee_rate"] = json!(3000.0);
        assert_eq!(compare(&old, &new, 0.1, "old").regressions, ["knee"]);
    }
}
