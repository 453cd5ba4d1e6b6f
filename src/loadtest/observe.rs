//! The server seen from inside while it is loaded: its `/metrics` read
//! every second (in process when `kiln loadtest` started the server, else
//! over the admin listener), turned into one point per second of CPU,
//! memory, open files, connections, admission, pool, cache and bytes
//! sent, plus totals over the run (query time per route, hits per cache
//! level). The generator's own CPU is read alongside, so a server in the
//! same process is not charged for it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::server::readings::{self, Scrape, label_deltas};
use crate::server::state::AppState;

/// Where the server's metrics come from.
#[derive(Clone)]
pub(crate) enum Source {
    /// The server `kiln loadtest` started, in this process.
    InProcess(Arc<AppState>),
    /// `GET /metrics` on this address (the target's admin listener).
    Admin(SocketAddr),
}

impl Source {
    /// The OpenMetrics text, or why there is none.
    fn read(&self) -> Result<String, String> {
        match self {
            Source::InProcess(state) => crate::server::metrics::encode(&state.registry)
                .map_err(|_| "the metrics could not be encoded".to_string()),
            Source::Admin(addr) => fetch_metrics(*addr),
        }
    }

    /// Whether the server's CPU counter includes this process's threads.
    fn shares_process(&self) -> bool {
        matches!(self, Source::InProcess(_))
    }

    /// For messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::InProcess(_) => "the server started for the test".to_string(),
            Source::Admin(addr) => format!("http://{addr}/metrics"),
        }
    }
}

/// `GET /metrics` over a short-lived connection.
fn fetch_metrics(addr: SocketAddr) -> Result<String, String> {
    let fail = |err: std::io::Error| format!("http://{addr}/metrics: {err}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(fail)?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut response = Vec::new();
    stream
        .take(16 * 1024 * 1024)
        .read_to_end(&mut response)
        .map_err(fail)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("http://{addr}/metrics: not an HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("http://{addr}/metrics answered {status}"));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// The body of a chunked response.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// One reading of the server's metrics, and the generator's CPU then.
struct Reading {
    scrape: Scrape,
    /// CPU seconds of the generator's thread so far.
    generator_cpu: f64,
}

impl Reading {
    fn new(text: &str, at: f64, generator_cpu: f64) -> Reading {
        Reading {
            scrape: Scrape::parse(text, at),
            generator_cpu,
        }
    }
}

/// The server over one interval, and the generator beside it.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Point {
    #[serde(flatten)]
    pub server: readings::Point,
    /// Cores the generator kept busy.
    pub generator_cores: f64,
}

/// The two readings' interval as a point: the generator's CPU is not the
/// server's when they share the process.
fn point(before: &Reading, after: &Reading, shares_process: bool) -> Point {
    let generator = (after.generator_cpu - before.generator_cpu).max(0.0);
    let excluded = if shares_process { generator } else { 0.0 };
    let seconds = (after.scrape.at - before.scrape.at).max(1e-3);
    Point {
        server: readings::point(&before.scrape, &after.scrape, excluded),
        generator_cores: generator / seconds,
    }
}

/// Reads the metrics every second on a thread of its own until finished.
pub(crate) struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Sampled>,
}

/// What a sampler collected.
pub(crate) struct Sampled {
    readings: Vec<Reading>,
    /// Why reading failed, when it never succeeded.
    error: Option<String>,
    shares_process: bool,
}

/// How often the sampler reads.
const INTERVAL: Duration = Duration::from_secs(1);
/// The shortest interval that makes a point, seconds.
const MIN_INTERVAL: f64 = 0.5;

impl Sampler {
    /// Starts reading `source`; the generator runs on the calling thread.
    pub(crate) fn start(source: Source) -> Sampler {
        let generator = thread_id();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kiln-loadtest-metrics".to_string())
            .spawn(move || sample(&source, generator, &stopped));
        match thread {
            Ok(thread) => Sampler { stop, thread },
            Err(err) => {
                let message = format!("no thread for reading metrics: {err}");
                Sampler {
                    stop,
                    thread: std::thread::spawn(move || Sampled {
                        readings: Vec::new(),
                        error: Some(message),
                        shares_process: false,
                    }),
                }
            }
        }
    }

    /// Takes a last reading and returns them all.
    pub(crate) fn finish(self) -> Sampled {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_else(|_| Sampled {
            readings: Vec::new(),
            error: Some("the metrics thread panicked".to_string()),
            shares_process: false,
        })
    }
}

fn sample(source: &Source, generator: Option<i32>, stopped: &mpsc::Receiver<()>) -> Sampled {
    let start = Instant::now();
    let mut sampled = Sampled {
        readings: Vec::new(),
        error: None,
        shares_process: source.shares_process(),
    };
    let mut next = start;
    loop {
        let at = start.elapsed().as_secs_f64();
        let generator_cpu = generator.and_then(thread_cpu_seconds).unwrap_or(0.0);
        match source.read() {
            Ok(text) => sampled
                .readings
                .push(Reading::new(&text, at, generator_cpu)),
            Err(err) => {
                sampled.error.get_or_insert(err);
            }
        }
        next += INTERVAL;
        match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => continue,
            // Stopped (or the run is gone): one last reading closes the
            // final interval.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let at = start.elapsed().as_secs_f64();
                let generator_cpu = generator.and_then(thread_cpu_seconds).unwrap_or(0.0);
                if let Ok(text) = source.read() {
                    sampled
                        .readings
                        .push(Reading::new(&text, at, generator_cpu));
                }
                break;
            }
        }
    }
    if !sampled.readings.is_empty() {
        sampled.error = None;
    }
    sampled
}

/// This thread's id, for reading its CPU time from another thread.
fn thread_id() -> Option<i32> {
    if cfg!(target_os = "linux") {
        // SAFETY: gettid has no preconditions.
        Some(unsafe { libc::gettid() })
    } else {
        None
    }
}

/// User and system CPU seconds of thread `tid` of this process.
fn thread_cpu_seconds(tid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<f64>().ok();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((ticks(11)? + ticks(12)?) / per_second)
}

/// The server over a whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Resources {
    /// Where the metrics came from.
    pub source: String,
    /// Why there are none, when there are none.
    pub error: Option<String>,
    pub points: Vec<Point>,
    /// CPU seconds the server used over the run.
    pub cpu_seconds: f64,
    /// CPU seconds the generator used.
    pub generator_cpu_seconds: f64,
    /// Requests the server counted over the run.
    pub served: f64,
    /// Database seconds per route label over the run.
    pub query_seconds: BTreeMap<String, f64>,
    /// Requests per dynamic route label over the run.
    pub route_requests: BTreeMap<String, f64>,
    /// Share of each cached route's requests the route cache answered.
    pub route_hit_ratio: BTreeMap<String, f64>,
    /// Route cache hits and misses per level over the run.
    pub cache_levels: BTreeMap<String, LevelCounts>,
    /// Dynamic requests shed and connection acquisitions timed out.
    pub shed: f64,
    pub acquire_timeouts: f64,
    /// The cores the server can use: the fewer of its worker threads and
    /// the CPUs it may run on, as it reports them.
    pub server_cores: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct LevelCounts {
    pub hits: f64,
    pub misses: f64,
}

impl Resources {
    /// The run's resources from what the sampler read.
    pub(crate) fn of(sampled: Sampled, source: &Source) -> Resources {
        let mut resources = Resources {
            source: source.describe(),
            error: sampled.error,
            ..Resources::default()
        };
        let readings = &sampled.readings;
        // One point per interval; the last reading, taken when the run
        // stopped, closes a shorter one, too short for CPU ticks (10 ms)
        // to mean anything: it counts in the totals only.
        for pair in readings.windows(2) {
            if pair[1].scrape.at - pair[0].scrape.at >= MIN_INTERVAL {
                resources
                    .points
                    .push(point(&pair[0], &pair[1], sampled.shares_process));
            }
        }
        if let (Some(first_reading), Some(last_reading)) = (readings.first(), readings.last()) {
            let (first, last) = (&first_reading.scrape, &last_reading.scrape);
            let delta = |name: &str| {
                (last.sum(name).unwrap_or(0.0) - first.sum(name).unwrap_or(0.0)).max(0.0)
            };
            let generator = (last_reading.generator_cpu - first_reading.generator_cpu).max(0.0);
            resources.generator_cpu_seconds = generator;
            let process = readings::cpu_seconds(first, last);
            resources.cpu_seconds = if sampled.shares_process {
                (process - generator).max(0.0)
            } else {
                process
            };
            resources.server_cores = match (last.sum("kiln_workers"), last.sum("process_cpus")) {
                (Some(workers), Some(cpus)) if workers > 0.0 => Some(workers.min(cpus)),
                (None | Some(_), Some(cpus)) => Some(cpus),
                (Some(workers), None) if workers > 0.0 => Some(workers),
                _ => None,
            };
            resources.served = delta("kiln_http_requests_total");
            resources.shed = delta("kiln_requests_shed_total");
            resources.acquire_timeouts = delta("kiln_db_acquire_timeouts_total");
            resources.query_seconds = label_deltas(
                first,
                last,
                "kiln_route_query_duration_seconds_sum",
                "route",
            );
            resources.route_requests = label_deltas(
                first,
                last,
                "kiln_route_request_duration_seconds_count",
                "route",
            );
            resources.route_hit_ratio = readings::route_hit_ratios(first, last);
            let hits = label_deltas(first, last, "kiln_cache_hits_total", "level");
            let misses = label_deltas(first, last, "kiln_cache_misses_total", "level");
            for (level, hits) in &hits {
                resources.cache_levels.insert(
                    level.clone(),
                    LevelCounts {
                        hits: *hits,
                        misses: misses.get(level).copied().unwrap_or(0.0),
                    },
                );
            }
        }
        resources
    }

    /// The highest reading of `field` over the run.
    pub(crate) fn max(&self, field: impl Fn(&Point) -> f64) -> f64 {
        self.points.iter().map(field).fold(0.0, f64::max)
    }

    /// Hits of every level over lookups (a lookup misses at most once
    /// per level, so lookups are the first level's hits and misses).
    pub(crate) fn hit_ratio(&self) -> Option<f64> {
        let first = self.cache_levels.get("memory")?;
        let lookups = first.hits + first.misses;
        let hits: f64 = self.cache_levels.values().map(|level| level.hits).sum();
        (lookups > 0.0).then(|| hits / lookups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_is_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
