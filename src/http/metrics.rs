//! Prometheus metrics at `/metrics`: requests and latency by route class and
//! status, bytes sent, the file table's size, open connections, and the
//! process's CPU time, resident memory and open file descriptors.
//!
//! Counters are plain atomics indexed by (class, status), so recording a
//! request costs a few uncontended atomic adds and no allocation.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::table::TableStats;

/// What kind of request a response answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteClass {
    /// A content-hashed build output.
    Asset,
    /// An HTML page.
    Page,
    /// Any other static file.
    File,
    /// A redirect (pretty URLs).
    Redirect,
    /// Nothing at that path.
    NotFound,
    /// `/healthz`.
    Health,
    /// `/metrics`.
    Metrics,
    /// Refused before lookup: bad path, method, size limits.
    Rejected,
    /// A declared `[[route]]`.
    Dynamic,
    /// `kiln watch`'s live-reload client and event stream.
    Live,
}

const CLASSES: [RouteClass; 10] = [
    RouteClass::Asset,
    RouteClass::Page,
    RouteClass::File,
    RouteClass::Redirect,
    RouteClass::NotFound,
    RouteClass::Health,
    RouteClass::Metrics,
    RouteClass::Rejected,
    RouteClass::Dynamic,
    RouteClass::Live,
];

impl RouteClass {
    pub(crate) fn name(self) -> &'static str {
        match self {
            RouteClass::Asset => "asset",
            RouteClass::Page => "page",
            RouteClass::File => "file",
            RouteClass::Redirect => "redirect",
            RouteClass::NotFound => "not_found",
            RouteClass::Health => "health",
            RouteClass::Metrics => "metrics",
            RouteClass::Rejected => "rejected",
            RouteClass::Dynamic => "dynamic",
            RouteClass::Live => "live",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Statuses the server produces; anything else is counted as "other".
const STATUSES: [u16; 20] = [
    200, 204, 206, 303, 304, 308, 400, 403, 404, 405, 406, 412, 413, 415, 416, 422, 431, 500, 503,
    0,
];

fn status_slot(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&known| known == status)
        .unwrap_or(STATUSES.len() - 1)
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// A latency histogram over [`BUCKETS`], in atomics.
#[derive(Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(slot) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The server's counters.
pub(crate) struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; CLASSES.len()],
    latency: [Histogram; CLASSES.len()],
    bytes_sent: [AtomicU64; CLASSES.len()],
    open_connections: AtomicI64,
    reloads: AtomicU64,
    started: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Default::default(),
            latency: Default::default(),
            bytes_sent: Default::default(),
            open_connections: AtomicI64::new(0),
            reloads: AtomicU64::new(0),
            started: SystemTime::now(),
        }
    }
}

impl Metrics {
    /// Records one response.
    pub(crate) fn observe(
        &self,
        class: RouteClass,
        status: u16,
        elapsed: Duration,
        body_bytes: u64,
    ) {
        let class = class.index();
        self.requests[class][status_slot(status)].fetch_add(1, Ordering::Relaxed);
        self.latency[class].observe(elapsed);
        self.bytes_sent[class].fetch_add(body_bytes, Ordering::Relaxed);
    }

    pub(crate) fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection until the returned guard is dropped.
    pub(crate) fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self, table: &TableStats) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        family(
            &mut out,
            "kiln_http_response_body_bytes_total",
            "counter",
            "Response body bytes sent.",
        );
        for class in CLASSES {
            let value = self.bytes_sent[class.index()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "kiln_http_response_body_bytes_total{{class=\"{}\"}} {value}",
                class.name()
            );
        }
        gauge(
            &mut out,
            "kiln_open_connections",
            "Open client connections.",
            self.open_connections.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "kiln_static_resources",
            "Files in the served table.",
            table.resources,
        );
        gauge(
            &mut out,
            "kiln_static_memory_bytes",
            "Bytes of file contents held in memory.",
            table.memory_bytes,
        );
        family(
            &mut out,
            "kiln_static_variants",
            "gauge",
            "Stored variants (encodings) by where they live.",
        );
        let _ = writeln!(
            out,
            "kiln_static_variants{{storage=\"memory\"}} {}",
            table.memory_variants
        );
        let _ = writeln!(
            out,
            "kiln_static_variants{{storage=\"disk\"}} {}",
            table.disk_variants
        );
        family(
            &mut out,
            "kiln_reloads_total",
            "counter",
            "New builds picked up without a restart.",
        );
        let _ = writeln!(
            out,
            "kiln_reloads_total {}",
            self.reloads.load(Ordering::Relaxed)
        );
        render_process(&mut out, self.started);
        out
    }

    fn render_requests(&self, out: &mut String) {
        family(
            out,
            "kiln_http_requests_total",
            "counter",
            "Requests by route class and status.",
        );
        for class in CLASSES {
            for (slot, status) in STATUSES.iter().enumerate() {
                let count = self.requests[class.index()][slot].load(Ordering::Relaxed);
                if count > 0 {
                    let status = if *status == 0 {
                        "other".to_string()
                    } else {
                        status.to_string()
                    };
                    let _ = writeln!(
                        out,
                        "kiln_http_requests_total{{class=\"{}\",status=\"{status}\"}} {count}",
                        class.name()
                    );
                }
            }
        }
    }

    fn render_latency(&self, out: &mut String) {
        let name = "kiln_http_request_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "Time to produce a response (headers ready).",
        );
        for class in CLASSES {
            let histogram = &self.latency[class.index()];
            let count = histogram.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            histogram.render(out, name, &format!("class=\"{}\"", class.name()));
        }
    }
}

impl Histogram {
    /// Writes the `_bucket`, `_sum` and `_count` series of `name` with
    /// `labels` (`key="value"`, comma-separated; may be empty).
    pub(crate) fn render(&self, out: &mut String, name: &str, labels: &str) {
        let count = self.count.load(Ordering::Relaxed);
        let separator = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Decrements the open-connection gauge when the connection closes.
pub(crate) struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub(crate) fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// The standard `process_*` metrics, read from `/proc/self`.
fn render_process(out: &mut String, started: SystemTime) {
    if let Some((cpu_seconds, rss_bytes)) = process_stat() {
        family(
            out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {cpu_seconds}");
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory.",
            rss_bytes,
        );
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "Open file descriptors.",
            entries.count(),
        );
    }
    let start = started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge(
        out,
        "process_start_time_seconds",
        "Start time since the Unix epoch.",
        start,
    );
}

/// CPU seconds and resident bytes from `/proc/self/stat`.
fn process_stat() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<f64>().ok();
    // SAFETY: sysconf only reads configuration values.
    let (ticks_per_second, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    // utime and stime are fields 14 and 15 of stat(5); index 0 here is field 3.
    let cpu = (ticks(11)? + ticks(12)?) / ticks_per_second.max(1) as f64;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some((cpu, rss_pages * page_size.max(1) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histograms() {
        let metrics = Arc::new(Metrics::default());
        metrics.observe(RouteClass::Asset, 200, Duration::from_micros(80), 2048);
        metrics.observe(RouteClass::Asset, 304, Duration::from_millis(3), 0);
        metrics.observe(RouteClass::NotFound, 404, Duration::from_micros(10), 100);
        let guard = metrics.connection();
        let text = metrics.render(&TableStats {
            resources: 3,
            memory_bytes: 4096,
            memory_variants: 5,
            disk_variants: 1,
        });
        assert!(
            text.contains("kiln_http_requests_total{class=\"asset\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kiln_http_requests_total{class=\"asset\",status=\"304\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "kiln_http_request_duration_seconds_bucket{class=\"asset\",le=\"0.0001\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("kiln_http_request_duration_seconds_count{class=\"asset\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kiln_http_response_body_bytes_total{class=\"asset\"} 2048"),
            "{text}"
        );
        assert!(text.contains("kiln_open_connections 1"), "{text}");
        assert!(text.contains("kiln_static_memory_bytes 4096"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_open_fds "), "{text}");
        drop(guard);
        assert!(
            metrics
                .render(&TableStats::default())
                .contains("kiln_open_connections 0")
        );
    }
}
