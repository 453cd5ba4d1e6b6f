//! Judgements over time: how long a server took to recover from an
//! overload (`recovery`), and how memory, open files and latency drift
//! over a long run (`soak`: a leak shows as a slope).

use std::time::Duration;

use serde::Serialize;

use crate::config::LoadtestConfig;

use super::observe::Resources;
use super::record::{Recorder, Tally};

/// Seconds from `overload_ends` until every later second (of intended
/// send time) met the objectives; `None` when the run ended first.
pub(crate) fn recovered_after(
    recorder: &Recorder,
    config: &LoadtestConfig,
    overload_ends: Duration,
) -> Option<u64> {
    let first = overload_ends.as_secs() as usize;
    let seconds = &recorder.by_second;
    if seconds.len() <= first {
        return None;
    }
    let meets = |tally: &Tally| {
        tally.requests() > 0
            && tally.ms_at(0.99) <= config.p99_ms
            && tally.error_rate() <= config.error_rate
    };
    // The first second from which all the rest meet them; the last second
    // must, or the server never came back.
    let mut back = None;
    for second in (first..seconds.len()).rev() {
        if meets(&seconds[second]) {
            back = Some(second);
        } else {
            break;
        }
    }
    back.map(|second| (second - first) as u64)
}

/// How a long run drifted.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Drift {
    /// Least-squares slopes over the run.
    pub rss_mb_per_min: Option<f64>,
    pub open_fds_per_min: Option<f64>,
    pub p99_ms_per_min: Option<f64>,
    /// Each minute's p99, and the server's memory and open files at its end.
    pub minutes: Vec<Minute>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Minute {
    pub minute: usize,
    pub requests: u64,
    pub p99_ms: f64,
    pub rss_mb: Option<f64>,
    pub open_fds: Option<f64>,
}

/// The drift of a run.
pub(crate) fn drift(recorder: &Recorder, resources: &Resources) -> Drift {
    let p99: Vec<(f64, f64)> = recorder
        .by_second
        .iter()
        .enumerate()
        .filter(|(_, tally)| tally.requests() > 0)
        .map(|(second, tally)| (second as f64, tally.ms_at(0.99)))
        .collect();
    let series = |field: fn(&super::observe::Point) -> f64| -> Vec<(f64, f64)> {
        resources
            .points
            .iter()
            .map(|point| (point.server.at, field(point)))
            .collect()
    };
    let rss = series(|point| point.server.rss_mb);
    let fds = series(|point| point.server.open_fds);
    let minutes = recorder
        .by_second
        .chunks(60)
        .enumerate()
        .map(|(minute, seconds)| {
            let mut tally = seconds[0].clone();
            for second in &seconds[1..] {
                tally.merge(second);
            }
            let end = ((minute + 1) * 60) as f64;
            let last_before = |points: &[(f64, f64)]| {
                points
                    .iter()
                    .rev()
                    .find(|(at, _)| *at <= end + 1.0)
                    .map(|(_, value)| *value)
            };
            Minute {
                minute,
                requests: tally.requests(),
                p99_ms: tally.ms_at(0.99),
                rss_mb: last_before(&rss),
                open_fds: last_before(&fds),
            }
        })
        .collect();
    Drift {
        rss_mb_per_min: slope(&rss).map(|per_second| per_second * 60.0),
        open_fds_per_min: slope(&fds).map(|per_second| per_second * 60.0),
        p99_ms_per_min: slope(&p99).map(|per_second| per_second * 60.0),
        minutes,
    }
}

impl Drift {
    pub(crate) fn to_text(&self) -> String {
        let slope = |value: Option<f64>, unit: &str| {
            value.map_or("unknown".to_string(), |value| {
                format!("{value:+.2} {unit}/min")
            })
        };
        let mut text = format!(
            "  drift: memory {}, open files {}, p99 {}\n",
            slope(self.rss_mb_per_min, "MB"),
            slope(self.open_fds_per_min, "files"),
            slope(self.p99_ms_per_min, "ms"),
        );
        for minute in &self.minutes {
            text.push_str(&format!(
                "    minute {}: {} requests, p99 {:.2} ms, RSS {}, open files {}\n",
                minute.minute + 1,
                minute.requests,
                minute.p99_ms,
                minute
                    .rss_mb
                    .map_or("?".to_string(), |rss| format!("{rss:.0} MB")),
                minute
                    .open_fds
                    .map_or("?".to_string(), |fds| format!("{fds:.0}")),
            ));
        }
        text
    }
}

/// The least-squares slope of `points`, per unit of x.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let count = points.len() as f64;
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / count;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / count;
    let covariance: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    (variance > 0.0).then(|| covariance / variance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::record::Outcome;

    #[test]
    fn a_straight_line_has_its_slope() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(0.0, 1.0)]), None);
    }

    #[test]
    fn recovery_counts_from_the_overloads_end_to_the_first_good_second_of_the_rest() {
        let config = LoadtestConfig {
            p99_ms: 100.0,
            ..LoadtestConfig::default()
        };
        let mut recorder = Recorder::new();
        // Seconds 0-1 good, 2-4 slow (overload ends at 3 s), 5-7 good.
        for second in 0..8u64 {
            let slow = (2..5).contains(&second);
            for index in 0..50 {
                recorder.record(
                    "page",
                    Duration::from_millis(second * 1000 + index * 20),
                    Duration::from_millis(if slow { 900 } else { 5 }),
                    Outcome::Ok,
                    0,
                );
            }
        }
        assert_eq!(
            recovered_after(&recorder, &config, Duration::from_secs(3)),
            Some(2)
        );
        // A last second that misses: never recovered.
        recorder.record(
            "page",
            Duration::from_millis(7900),
            Duration::from_secs(2),
            Outcome::ServerError,
            0,
        );
        assert_eq!(
            recovered_after(&recorder, &config, Duration::from_secs(3)),
            None
        );
    }
}
