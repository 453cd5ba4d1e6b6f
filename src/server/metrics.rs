//! The one Prometheus registry: each subsystem registers a collector (the
//! HTTP counters, the file table, the dynamic app's pool, sessions, route
//! cache and routes, the process), and `/metrics` encodes them all.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::dynamic::app::DynamicApp;
use crate::http::metrics::{Exposition, Metrics};
use crate::http::table::Table;

/// The registry of a running server.
pub(crate) fn registry(
    http: &Arc<Metrics>,
    table: &Arc<ArcSwap<Table>>,
    dynamic: Option<&Arc<DynamicApp>>,
) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Arc::clone(http)));
    registry.register_collector(Box::new(TableCollector(Arc::clone(table))));
    if let Some(dynamic) = dynamic {
        registry.register_collector(Box::new(DynamicCollector(Arc::clone(dynamic))));
    }
    registry.register_collector(Box::new(ProcessCollector {
        started: SystemTime::now(),
    }));
    registry
}

/// The `/metrics` body and its content type.
pub(crate) fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut body = String::with_capacity(8 * 1024);
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(body)
}

pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The size of the build being served (it changes with each reload).
struct TableCollector(Arc<ArcSwap<Table>>);

impl fmt::Debug for TableCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TableCollector")
    }
}

impl Collector for TableCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let stats = self.0.load().stats;
        let mut out = Exposition::new(encoder);
        out.gauge(
            "kiln_static_resources",
            "Files in the served table.",
            stats.resources as u64,
        )?;
        out.gauge(
            "kiln_static_memory_bytes",
            "Bytes of file contents held in memory.",
            stats.memory_bytes,
        )?;
        out.gauges(
            "kiln_static_variants",
            "Stored variants (encodings) by where they live.",
            [
                ([("storage", "memory")], stats.memory_variants as u64),
                ([("storage", "disk")], stats.disk_variants as u64),
            ],
        )
    }
}

struct DynamicCollector(Arc<DynamicApp>);

impl fmt::Debug for DynamicCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DynamicCollector")
    }
}

impl Collector for DynamicCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        self.0.encode_metrics(&mut Exposition::new(encoder))
    }
}

/// The standard `process_*` metrics, read from `/proc/self`.
#[derive(Debug)]
struct ProcessCollector {
    started: SystemTime,
}

impl Collector for ProcessCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut out = Exposition::new(encoder);
        if let Some((cpu_seconds, rss_bytes)) = process_stat() {
            out.counter(
                "process_cpu_seconds",
                "User and system CPU time.",
                cpu_seconds,
            )?;
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory.",
                rss_bytes,
            )?;
        }
        if let Some(io) = process_io() {
            out.counters(
                "process_io_bytes",
                "Bytes read and written through system calls: files and sockets (rchar, wchar).",
                [
                    ([("direction", "read")], io.read_calls),
                    ([("direction", "written")], io.written_calls),
                ],
            )?;
            out.counters(
                "process_disk_bytes",
                "Bytes read from and written to storage (read_bytes, write_bytes).",
                [
                    ([("direction", "read")], io.read_disk),
                    ([("direction", "written")], io.written_disk),
                ],
            )?;
        }
        if let Ok(cpus) = std::thread::available_parallelism() {
            out.gauge(
                "process_cpus",
                "CPUs this process may run on (its affinity, its cgroup's quota).",
                cpus.get() as u64,
            )?;
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            out.gauge(
                "process_open_fds",
                "Open file descriptors.",
                entries.count() as u64,
            )?;
        }
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs_f64())
            .unwrap_or(0.0);
        out.gauge(
            "process_start_time_seconds",
            "Start time since the Unix epoch.",
            start,
        )
    }
}

/// This process's I/O counters, from `/proc/self/io`.
struct ProcessIo {
    read_calls: u64,
    written_calls: u64,
    read_disk: u64,
    written_disk: u64,
}

fn process_io() -> Option<ProcessIo> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    Some(ProcessIo {
        read_calls: field("rchar")?,
        written_calls: field("wchar")?,
        read_disk: field("read_bytes").unwrap_or(0),
        written_disk: field("write_bytes").unwrap_or(0),
    })
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
    use std::time::Duration;

    use super::*;
    use crate::http::metrics::RouteClass;

    #[test]
    fn encodes_every_collector_with_todays_series_names() {
        let metrics = Arc::new(Metrics::default());
        metrics.observe(RouteClass::Asset, 200, Duration::from_micros(80), 2048);
        metrics.observe(RouteClass::Asset, 304, Duration::from_millis(3), 0);
        metrics.observe(RouteClass::NotFound, 404, Duration::from_micros(10), 100);
        let guard = metrics.connection();
        let table = Arc::new(ArcSwap::from_pointee(Table::default()));
        let registry = registry(&metrics, &table, None);
        let text = encode(&registry).expect("encodes");
        for expected in [
            "kiln_http_requests_total{class=\"asset\",status=\"200\"} 1",
            "kiln_http_requests_total{class=\"asset\",status=\"304\"} 1",
            "kiln_http_request_duration_seconds_bucket{le=\"0.0001\",class=\"asset\"} 1",
            "kiln_http_request_duration_seconds_bucket{le=\"+Inf\",class=\"asset\"} 2",
            "kiln_http_request_duration_seconds_count{class=\"asset\"} 2",
            "kiln_http_response_body_bytes_total{class=\"asset\"} 2048",
            "kiln_open_connections 1",
            "kiln_reloads_total 0",
            "kiln_static_memory_bytes 0",
            "kiln_static_variants{storage=\"disk\"} 0",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "# TYPE kiln_http_requests counter",
            "# EOF",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        drop(guard);
        let text = encode(&registry).expect("encodes");
        assert!(text.contains("kiln_open_connections 0"), "{text}");
    }

    #[test]
    fn escapes_label_values_the_encoder_writes_verbatim() {
        use crate::http::metrics::label_value;
        assert_eq!(label_value("GET /a"), "GET /a");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
