//! Readings of the server's own metrics: the OpenMetrics text `/metrics`
//! serves, parsed back into series, and what the server did between two
//! readings (CPU, memory, connections, admission, pool, cache, traffic,
//! per-route latency). The status page draws them live; `kiln loadtest`
//! reads them during a run, in process or over the admin listener.

use std::collections::BTreeMap;

use serde::Serialize;

/// One series of a scrape.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// One reading of the metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scrape {
    /// Seconds since some start (a run's, a stream's).
    pub at: f64,
    series: Vec<Series>,
}

impl Scrape {
    /// Parses OpenMetrics (or Prometheus) text; lines it cannot read are
    /// skipped.
    pub(crate) fn parse(text: &str, at: f64) -> Scrape {
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Scrape { at, series }
    }

    /// The sum of every series named `name`; `None` when there is none.
    pub(crate) fn sum(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for series in self.series.iter().filter(|series| series.name == name) {
            *found.get_or_insert(0.0) += series.value;
        }
        found
    }

    /// `name`'s series summed by the value of `label`.
    pub(crate) fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for series in self.series.iter().filter(|series| series.name == name) {
            if let Some((_, value)) = series.labels.iter().find(|(key, _)| key == label) {
                *sums.entry(value.clone()).or_default() += series.value;
            }
        }
        sums
    }
}

impl Scrape {
    /// `name`'s series summed by the values of two labels.
    fn by_two_labels(
        &self,
        name: &str,
        first: &str,
        second: &str,
    ) -> BTreeMap<(String, String), f64> {
        let mut sums = BTreeMap::new();
        for series in self.series.iter().filter(|series| series.name == name) {
            let value_of = |label: &str| {
                series
                    .labels
                    .iter()
                    .find(|(key, _)| key == label)
                    .map(|(_, value)| value.clone())
            };
            if let (Some(a), Some(b)) = (value_of(first), value_of(second)) {
                *sums.entry((a, b)).or_default() += series.value;
            }
        }
        sums
    }

    /// The cumulative buckets (`le`, count) of histogram `name` for the
    /// series whose `label` is `value`, by bound.
    fn buckets(&self, name: &str, label: &str, value: &str) -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = self
            .series
            .iter()
            .filter(|series| series.name == name)
            .filter(|series| {
                series
                    .labels
                    .iter()
                    .any(|(key, found)| key == label && found == value)
            })
            .filter_map(|series| {
                let (_, bound) = series.labels.iter().find(|(key, _)| key == "le")?;
                let bound = match bound.as_str() {
                    "+Inf" => f64::INFINITY,
                    number => number.parse().ok()?,
                };
                Some((bound, series.value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// One dynamic route between two readings.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RouteLatency {
    pub route: String,
    pub per_s: f64,
    pub mean_ms: f64,
    /// The bucket bound under which 99% of the interval's requests were
    /// answered; `None` above the largest bound.
    pub p99_ms: Option<f64>,
    /// Share of the interval's requests the route cache answered (fresh
    /// or stale); `None` for a route without a cache.
    pub hit_ratio: Option<f64>,
}

/// Requests per second and latency of each dynamic route answered
/// between two readings (`kiln_route_request_duration_seconds`).
pub(crate) fn route_latency(before: &Scrape, after: &Scrape) -> Vec<RouteLatency> {
    const NAME: &str = "kiln_route_request_duration_seconds";
    let seconds = (after.at - before.at).max(1e-3);
    let counts = label_deltas(before, after, &format!("{NAME}_count"), "route");
    let sums = label_deltas(before, after, &format!("{NAME}_sum"), "route");
    let bucket_name = format!("{NAME}_bucket");
    let ratios = route_hit_ratios(before, after);
    counts
        .into_iter()
        .map(|(route, count)| {
            let earlier = before.buckets(&bucket_name, "route", &route);
            let p99_ms = after
                .buckets(&bucket_name, "route", &route)
                .into_iter()
                .map(|(bound, total)| {
                    let was = earlier
                        .iter()
                        .find(|(old, _)| *old == bound)
                        .map_or(0.0, |(_, value)| *value);
                    (bound, total - was)
                })
                .find(|(_, within)| *within >= count * 0.99)
                .and_then(|(bound, _)| bound.is_finite().then_some(bound * 1000.0));
            RouteLatency {
                hit_ratio: ratios.get(&route).copied(),
                per_s: count / seconds,
                mean_ms: sums.get(&route).copied().unwrap_or(0.0) / count * 1000.0,
                p99_ms,
                route,
            }
        })
        .collect()
}

/// The job queue between two readings: its depth now, and each job's
/// events per second (`kiln_jobs_*`); `None` when the site has no jobs.
pub(crate) fn jobs(before: &Scrape, after: &Scrape) -> Option<serde_json::Value> {
    let workers = after.sum("kiln_jobs_workers")?;
    let seconds = (after.at - before.at).max(1e-3);
    const EVENTS: &str = "kiln_jobs_total";
    let earlier = before.by_two_labels(EVENTS, "job", "event");
    let mut by_job: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for ((job, event), value) in after.by_two_labels(EVENTS, "job", "event") {
        let grown = (value
            - earlier
                .get(&(job.clone(), event.clone()))
                .copied()
                .unwrap_or(0.0))
        .max(0.0);
        by_job
            .entry(job)
            .or_default()
            .insert(event, grown / seconds);
    }
    // Share of the workers' time spent running jobs.
    const BUSY: &str = "kiln_jobs_busy_seconds_total";
    let busy = after.sum(BUSY).unwrap_or(0.0) - before.sum(BUSY).unwrap_or(0.0);
    let utilisation = (busy.max(0.0) / seconds / workers.max(1.0)).min(1.0);
    Some(serde_json::json!({
        "queued": after.by_label("kiln_jobs_queued", "state"),
        "running": after.sum("kiln_jobs_running").unwrap_or(0.0),
        "workers": workers,
        "utilisation": utilisation,
        "oldest_ready_s": after.sum("kiln_jobs_oldest_ready_seconds").unwrap_or(0.0),
        "per_s": by_job,
    }))
}

/// Each cached route's share of requests answered from the cache (fresh
/// or stale) between two readings (`kiln_route_cache_answers_total`).
pub(crate) fn route_hit_ratios(before: &Scrape, after: &Scrape) -> BTreeMap<String, f64> {
    const NAME: &str = "kiln_route_cache_answers_total";
    let mut answered: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let earlier = before.by_two_labels(NAME, "route", "answer");
    for (key, value) in after.by_two_labels(NAME, "route", "answer") {
        let grown = (value - earlier.get(&key).copied().unwrap_or(0.0)).max(0.0);
        let (route, answer) = key;
        let (from_cache, all) = answered.entry(route).or_default();
        *all += grown;
        if answer != "miss" {
            *from_cache += grown;
        }
    }
    answered
        .into_iter()
        .filter(|(_, (_, all))| *all > 0.0)
        .map(|(route, (from_cache, all))| (route, from_cache / all))
        .collect()
}

/// `name{label="value",…} value [timestamp]`.
fn parse_line(line: &str) -> Option<Series> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close]),
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Series {
        name: name.trim().to_string(),
        labels,
        value,
    })
}

/// `key="value",…`, with `\"`, `\\` and `\n` escapes in values.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((index, ch)) = chars.next() {
            match ch {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = index + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    labels
}

/// The server over one interval between two readings.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Point {
    /// Seconds since the run started, at the interval's end.
    pub at: f64,
    /// Cores the server kept busy.
    pub cpu_cores: f64,
    pub rss_mb: f64,
    pub open_fds: f64,
    pub connections: f64,
    /// Dynamic requests holding a place, and waiting for one.
    pub in_flight: f64,
    pub queued: f64,
    /// Dynamic requests shed (503) per second.
    pub shed_per_s: f64,
    pub pool_in_use: f64,
    pub pool_max: f64,
    pub pool_waiters: f64,
    /// Mean wait to check a connection out, milliseconds.
    pub acquire_wait_ms: f64,
    /// Route cache lookups answered by some level, of all lookups; `None`
    /// without lookups in the interval.
    pub hit_ratio: Option<f64>,
    /// Requests the server counted, per second.
    pub served_per_s: f64,
    /// Response body bytes per second.
    pub bytes_per_s: f64,
}

/// Process CPU seconds between two readings.
pub(crate) fn cpu_seconds(before: &Scrape, after: &Scrape) -> f64 {
    (after.sum("process_cpu_seconds_total").unwrap_or(0.0)
        - before.sum("process_cpu_seconds_total").unwrap_or(0.0))
    .max(0.0)
}

/// How much each `label` value of counter `name` grew.
pub(crate) fn label_deltas(
    before: &Scrape,
    after: &Scrape,
    name: &str,
    label: &str,
) -> BTreeMap<String, f64> {
    let earlier = before.by_label(name, label);
    after
        .by_label(name, label)
        .into_iter()
        .map(|(key, value)| {
            let grown = value - earlier.get(&key).copied().unwrap_or(0.0);
            (key, grown.max(0.0))
        })
        .filter(|(_, grown)| *grown > 0.0)
        .collect()
}

/// The server between two readings; `excluded_cpu` seconds of the
/// process's CPU were not the server's (a load generator's thread in the
/// same process).
pub(crate) fn point(before: &Scrape, after: &Scrape, excluded_cpu: f64) -> Point {
    let seconds = (after.at - before.at).max(1e-3);
    let rate = |name: &str| {
        (after.sum(name).unwrap_or(0.0) - before.sum(name).unwrap_or(0.0)).max(0.0) / seconds
    };
    let gauge = |name: &str| after.sum(name).unwrap_or(0.0);
    let acquisitions = rate("kiln_db_acquire_wait_seconds_count") * seconds;
    let waited = rate("kiln_db_acquire_wait_seconds_sum") * seconds;
    let lookups = {
        let hits = label_deltas(before, after, "kiln_cache_hits_total", "level");
        let misses = label_deltas(before, after, "kiln_cache_misses_total", "level");
        let first = hits.get("memory").copied().unwrap_or(0.0)
            + misses.get("memory").copied().unwrap_or(0.0);
        (first > 0.0).then(|| (hits.values().sum::<f64>() / first).min(1.0))
    };
    Point {
        at: after.at,
        cpu_cores: (cpu_seconds(before, after) - excluded_cpu).max(0.0) / seconds,
        rss_mb: gauge("process_resident_memory_bytes") / 1e6,
        open_fds: gauge("process_open_fds"),
        connections: gauge("kiln_open_connections"),
        in_flight: gauge("kiln_requests_in_flight"),
        queued: gauge("kiln_requests_queued"),
        shed_per_s: rate("kiln_requests_shed_total"),
        pool_in_use: gauge("kiln_db_connections_in_use"),
        pool_max: gauge("kiln_db_connections_max"),
        pool_waiters: gauge("kiln_db_waiters"),
        acquire_wait_ms: if acquisitions > 0.0 {
            waited / acquisitions * 1000.0
        } else {
            0.0
        },
        hit_ratio: lookups,
        served_per_s: rate("kiln_http_requests_total"),
        bytes_per_s: rate("kiln_http_response_body_bytes_total"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_latency_comes_from_its_histograms_growth() {
        let histogram = |count: u32, fast: u32, sum: f64| {
            format!(
                "kiln_route_request_duration_seconds_bucket{{le=\"0.001\",route=\"GET /a\"}} {fast}\n\
                 kiln_route_request_duration_seconds_bucket{{le=\"0.01\",route=\"GET /a\"}} {count}\n\
                 kiln_route_request_duration_seconds_bucket{{le=\"+Inf\",route=\"GET /a\"}} {count}\n\
                 kiln_route_request_duration_seconds_sum{{route=\"GET /a\"}} {sum}\n\
                 kiln_route_request_duration_seconds_count{{route=\"GET /a\"}} {count}\n"
            )
        };
        let before = Scrape::parse(&histogram(100, 100, 0.05), 0.0);
        // 200 more in 2 s: 190 within 1 ms, 10 within 10 ms.
        let after = Scrape::parse(&histogram(300, 290, 0.45), 2.0);
        let routes = route_latency(&before, &after);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].route, "GET /a");
        assert_eq!(routes[0].per_s, 100.0);
        assert!((routes[0].mean_ms - 2.0).abs() < 1e-9, "{routes:?}");
        assert_eq!(routes[0].p99_ms, Some(10.0));
    }

    #[test]
    fn reads_openmetrics_lines_with_labels_and_escapes() {
        let text = "# TYPE kiln_cache_hits counter\n\
            kiln_cache_hits_total{level=\"memory\"} 7\n\
            kiln_cache_hits_total{level=\"disk\"} 3\n\
            kiln_route_query_duration_seconds_sum{route=\"GET /a\\\"b\"} 0.5\n\
            process_open_fds 12\n\
            kiln_http_request_duration_seconds_bucket{le=\"+Inf\",class=\"asset\"} 2\n";
        let scrape = Scrape::parse(text, 0.0);
        assert_eq!(scrape.sum("kiln_cache_hits_total"), Some(10.0));
        assert_eq!(scrape.sum("process_open_fds"), Some(12.0));
        assert_eq!(scrape.sum("absent"), None);
        let routes = scrape.by_label("kiln_route_query_duration_seconds_sum", "route");
        assert_eq!(routes.get("GET /a\"b"), Some(&0.5));
        let classes = scrape.by_label("kiln_http_request_duration_seconds_bucket", "class");
        assert_eq!(classes.get("asset"), Some(&2.0));
    }

    #[test]
    fn a_point_is_the_difference_of_two_readings() {
        let before = Scrape::parse(
            "process_cpu_seconds_total 10\nkiln_http_requests_total{class=\"asset\"} 100\n\
             kiln_cache_hits_total{level=\"memory\"} 0\nkiln_cache_misses_total{level=\"memory\"} 0\n",
            1.0,
        );
        let after = Scrape::parse(
            "process_cpu_seconds_total 12\nkiln_http_requests_total{class=\"asset\"} 1100\n\
             kiln_cache_hits_total{level=\"memory\"} 90\nkiln_cache_misses_total{level=\"memory\"} 10\n\
             kiln_db_waiters 3\n",
            3.0,
        );
        // Half a second of it was a generator's, not the server's.
        let point = point(&before, &after, 0.5);
        assert_eq!(point.cpu_cores, 0.75);
        assert_eq!(point.served_per_s, 500.0);
        assert_eq!(point.pool_waiters, 3.0);
        assert_eq!(point.hit_ratio, Some(0.9));
        assert_eq!(super::point(&before, &after, 0.0).cpu_cores, 1.0);
    }

    #[test]
    fn a_cached_routes_hit_ratio_counts_fresh_and_stale_answers() {
        let reading = |hit: u32, stale: u32, miss: u32, at: f64| {
            Scrape::parse(
                &format!(
                    "kiln_route_cache_answers_total{{route=\"GET /a\",answer=\"hit\"}} {hit}\n\
                     kiln_route_cache_answers_total{{route=\"GET /a\",answer=\"stale\"}} {stale}\n\
                     kiln_route_cache_answers_total{{route=\"GET /a\",answer=\"miss\"}} {miss}\n\
                     kiln_route_cache_answers_total{{route=\"GET /b\",answer=\"miss\"}} 4\n"
                ),
                at,
            )
        };
        let ratios = route_hit_ratios(&reading(10, 0, 5, 0.0), &reading(16, 2, 7, 1.0));
        // 6 hits and 2 stale of 10 answers; /b answered nothing new.
        assert_eq!(ratios.get("GET /a"), Some(&0.8));
        assert_eq!(ratios.get("GET /b"), None);
    }
}
