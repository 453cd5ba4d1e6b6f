//! Metrics: the HTTP server's counters (requests and latency by route
//! class and status, bytes sent, open connections, reloads) and the
//! [`Exposition`] writer every subsystem's collector uses. The registry that
//! gathers the collectors and encodes `/metrics` is `server::metrics`.
//!
//! Counters are plain atomics indexed by (class, status), so recording a
//! request costs a few uncontended atomic adds and no allocation; they are
//! read into prometheus-client's encoder only when `/metrics` is scraped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, MetricEncoder,
    NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::Exemplar;

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
    /// The route cache's admin endpoints (`kiln cache`).
    Cache,
    /// The admin listener's status page and its event stream.
    Status,
}

const CLASSES: [RouteClass; 12] = [
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
    RouteClass::Cache,
    RouteClass::Status,
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
            RouteClass::Cache => "cache",
            RouteClass::Status => "status",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Statuses the server produces; anything else is counted as "other".
const STATUSES: [u16; 23] = [
    200, 204, 206, 303, 304, 308, 400, 403, 404, 405, 406, 408, 412, 413, 415, 416, 421, 422, 429,
    431, 500, 503, 0,
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

/// The HTTP server's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; CLASSES.len()],
    latency: [Histogram; CLASSES.len()],
    bytes_sent: [AtomicU64; CLASSES.len()],
    open_connections: AtomicI64,
    connections_refused: [AtomicU64; ConnectionRefused::ALL.len()],
    timed_out: [AtomicU64; TimedOut::ALL.len()],
    reloads: AtomicU64,
    /// HTTP worker threads, once the server has started them.
    workers: AtomicU64,
    /// The last server errors, for the status page.
    recent_errors: Recent<RecentError>,
}

/// A 5xx answered, as the status page lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct RecentError {
    /// Unix time, milliseconds.
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// Now, as Unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// The last few of something, newest last, bounded.
pub(crate) struct Recent<T>(std::sync::Mutex<std::collections::VecDeque<T>>);

/// How many the status page keeps.
const RECENT: usize = 20;

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Recent(std::sync::Mutex::new(
            std::collections::VecDeque::with_capacity(RECENT),
        ))
    }
}

impl<T: Clone> Recent<T> {
    pub(crate) fn keep(&self, item: T) {
        let mut recent = match self.0.lock() {
            Ok(recent) => recent,
            Err(poisoned) => poisoned.into_inner(),
        };
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(item);
    }

    /// Oldest first.
    pub(crate) fn all(&self) -> Vec<T> {
        match self.0.lock() {
            Ok(recent) => recent.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionRefused {
    /// `server.max_connections` were open.
    MaxConnections,
    /// `server.max_connections_per_ip` were open from the client's address.
    MaxConnectionsPerIp,
}

impl ConnectionRefused {
    const ALL: [ConnectionRefused; 2] = [
        ConnectionRefused::MaxConnections,
        ConnectionRefused::MaxConnectionsPerIp,
    ];

    fn name(self) -> &'static str {
        match self {
            ConnectionRefused::MaxConnections => "max_connections",
            ConnectionRefused::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

/// What a client took too long over, closing its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimedOut {
    /// A request head (`server.header_timeout_secs`).
    Head,
    /// Nothing to do for longer than a kept-alive connection may idle.
    Idle,
    /// Reading a response (`server.send_timeout_secs`).
    Send,
}

impl TimedOut {
    const ALL: [TimedOut; 3] = [TimedOut::Head, TimedOut::Idle, TimedOut::Send];

    fn name(self) -> &'static str {
        match self {
            TimedOut::Head => "head",
            TimedOut::Idle => "idle",
            TimedOut::Send => "send",
        }
    }

    /// Why the connection was closed, for the I/O error that closes it.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            TimedOut::Head => "the request head was not complete within server.header_timeout_secs",
            TimedOut::Idle => "the connection stayed idle past its keep-alive time",
            TimedOut::Send => {
                "the client did not read the response within server.send_timeout_secs"
            }
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

    /// Keeps a server error for the status page (its path without the
    /// query, which may hold what a visitor typed).
    pub(crate) fn server_error(&self, method: &str, path: &str, status: u16) {
        self.recent_errors.keep(RecentError {
            at_ms: unix_ms(),
            method: method.to_string(),
            path: path.chars().take(200).collect(),
            status,
        });
    }

    /// The last server errors, oldest first.
    pub(crate) fn recent_errors(&self) -> Vec<RecentError> {
        self.recent_errors.all()
    }

    /// Records how many worker threads serve requests.
    pub(crate) fn set_workers(&self, workers: usize) {
        self.workers.store(workers as u64, Ordering::Relaxed);
    }

    pub(crate) fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_refused(&self, why: ConnectionRefused) {
        self.connections_refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn timed_out(&self, what: TimedOut) {
        self.timed_out[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection until the returned guard is dropped.
    pub(crate) fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    fn encode_requests(&self, out: &mut Exposition<'_>) -> fmt::Result {
        let mut samples = Vec::new();
        for class in CLASSES {
            for (slot, status) in STATUSES.iter().enumerate() {
                let count = self.requests[class.index()][slot].load(Ordering::Relaxed);
                if count > 0 {
                    let status = match status {
                        0 => Cow::Borrowed("other"),
                        code => Cow::Owned(code.to_string()),
                    };
                    samples.push((
                        [("class", Cow::Borrowed(class.name())), ("status", status)],
                        count,
                    ));
                }
            }
        }
        out.counters(
            "kiln_http_requests",
            "Requests by route class and status.",
            samples,
        )
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Collector for Metrics {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut out = Exposition::new(encoder);
        self.encode_requests(&mut out)?;
        out.histograms(
            "kiln_http_request_duration_seconds",
            "Time to produce a response (headers ready).",
            CLASSES
                .iter()
                .map(|class| ([("class", class.name())], &self.latency[class.index()]))
                .filter(|(_, histogram)| histogram.count() > 0),
        )?;
        out.counters(
            "kiln_http_response_body_bytes",
            "Response body bytes sent.",
            CLASSES.iter().map(|class| {
                let sent = self.bytes_sent[class.index()].load(Ordering::Relaxed);
                ([("class", class.name())], sent)
            }),
        )?;
        out.gauge(
            "kiln_open_connections",
            "Open client connections.",
            self.open_connections.load(Ordering::Relaxed),
        )?;
        out.counters(
            "kiln_connections_refused",
            "Connections closed on accept, by the cap they would have exceeded.",
            ConnectionRefused::ALL.iter().map(|why| {
                let refused = self.connections_refused[*why as usize].load(Ordering::Relaxed);
                ([("reason", why.name())], refused)
            }),
        )?;
        out.counters(
            "kiln_connections_timed_out",
            "Connections closed because the client was too slow, by what it was slow at.",
            TimedOut::ALL.iter().map(|what| {
                let closed = self.timed_out[*what as usize].load(Ordering::Relaxed);
                ([("phase", what.name())], closed)
            }),
        )?;
        out.gauge(
            "kiln_workers",
            "HTTP worker threads.",
            self.workers.load(Ordering::Relaxed),
        )?;
        out.counter(
            "kiln_reloads",
            "New builds picked up without a restart.",
            self.reloads.load(Ordering::Relaxed),
        )
    }
}

/// Decrements the open-connection gauge when the connection closes.
pub(crate) struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Histogram {
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn encode(&self, metric: &mut MetricEncoder<'_>) -> fmt::Result {
        // prometheus-client takes per-bucket counts and accumulates them;
        // the last bucket (`+Inf`) holds what fell above every bound.
        let mut buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, bucket)| (*bound, bucket.load(Ordering::Relaxed)))
            .collect();
        let count = self.count();
        let bounded: u64 = buckets.iter().map(|(_, n)| n).sum();
        buckets.push((f64::MAX, count.saturating_sub(bounded)));
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        metric.encode_histogram::<NoLabelSet>(sum, count, &buckets, None::<&NoExemplars>)
    }
}

type NoExemplars = HashMap<usize, Exemplar<NoLabelSet, f64>>;

/// One scrape's writer, given to each subsystem's collector: families of
/// values read at scrape time, encoded (OpenMetrics text) by prometheus-client.
///
/// Names are given without the `_total` suffix of counters, which the
/// encoder appends to each sample, so the series keep their names.
pub(crate) struct Exposition<'e> {
    encoder: DescriptorEncoder<'e>,
}

impl<'e> Exposition<'e> {
    pub(crate) fn new(encoder: DescriptorEncoder<'e>) -> Self {
        Exposition { encoder }
    }

    pub(crate) fn counter(
        &mut self,
        name: &str,
        help: &str,
        value: impl EncodeCounterValue,
    ) -> fmt::Result {
        self.encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)
    }

    pub(crate) fn counters<L: EncodeLabelSet, V: EncodeCounterValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in samples {
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }

    pub(crate) fn gauge(
        &mut self,
        name: &str,
        help: &str,
        value: impl EncodeGaugeValue,
    ) -> fmt::Result {
        self.encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?
            .encode_gauge(&value)
    }

    pub(crate) fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in samples {
            family.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    pub(crate) fn histogram(
        &mut self,
        name: &str,
        help: &str,
        histogram: &Histogram,
    ) -> fmt::Result {
        let mut metric = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        histogram.encode(&mut metric)
    }

    pub(crate) fn histograms<'h, L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, &'h Histogram)>,
    ) -> fmt::Result {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, histogram) in samples {
            histogram.encode(&mut family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The series of one subsystem alone, as OpenMetrics text (tests read
/// one subsystem's counters this way).
pub(crate) fn text_of(collector: impl Collector) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(collector));
    let mut text = String::new();
    // Writing to a String fails only if a collector fails, and ours do not.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// `value` as an OpenMetrics label value: the encoder writes label values
/// as given, so backslashes, quotes and newlines are escaped here.
pub(crate) fn label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}
