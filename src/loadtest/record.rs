//! What a run measured: latency histograms (HDR, microseconds) overall,
//! per URL class and per second of intended send time, with outcomes
//! counted the same three ways.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency a histogram records; longer ones are clamped to it.
const HIGHEST_US: u64 = 120_000_000;

fn histogram(significant: u8) -> Histogram<u64> {
    // Bounds and precision are constants within hdrhistogram's limits.
    Histogram::new_with_bounds(1, HIGHEST_US, significant).unwrap_or_else(|_| {
        Histogram::new(significant).unwrap_or_else(|_| Histogram::new(2).expect("2 digits"))
    })
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// 2xx or 3xx (a 304 included).
    Ok,
    /// A 4xx the URL's class expects (the `errors` scenario's probes).
    ExpectedError,
    /// A 4xx nobody asked for: a broken link or a refused request.
    ClientError,
    /// 5xx.
    ServerError,
    /// No answer within the request timeout.
    Timeout,
    /// Connecting, writing or reading failed, or the answer was not HTTP.
    Transport,
    /// A form's page had no CSRF token: the flow could not go on.
    BrokenFlow,
}

impl Outcome {
    /// Counted against the `error_rate` objective.
    pub(crate) fn failed(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::ExpectedError)
    }
}

/// Counts and latencies of a set of requests.
#[derive(Clone)]
pub(crate) struct Tally {
    pub latency: Histogram<u64>,
    pub outcomes: BTreeMap<Outcome, u64>,
    pub bytes: u64,
}

impl Tally {
    fn new(significant: u8) -> Tally {
        Tally {
            latency: histogram(significant),
            outcomes: BTreeMap::new(),
            bytes: 0,
        }
    }

    fn add(&mut self, latency: Duration, outcome: Outcome, bytes: u64) {
        let micros = (latency.as_micros() as u64).clamp(1, HIGHEST_US);
        let _ = self.latency.record(micros);
        *self.outcomes.entry(outcome).or_default() += 1;
        self.bytes += bytes;
    }

    /// Adds `other`'s requests to these.
    pub(crate) fn merge(&mut self, other: &Tally) {
        let _ = self.latency.add(&other.latency);
        for (outcome, count) in &other.outcomes {
            *self.outcomes.entry(*outcome).or_default() += count;
        }
        self.bytes += other.bytes;
    }

    pub(crate) fn requests(&self) -> u64 {
        self.outcomes.values().sum()
    }

    pub(crate) fn failures(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(outcome, _)| outcome.failed())
            .map(|(_, count)| count)
            .sum()
    }

    pub(crate) fn error_rate(&self) -> f64 {
        match self.requests() {
            0 => 0.0,
            requests => self.failures() as f64 / requests as f64,
        }
    }

    /// The latency at `quantile` (0..=1), in milliseconds.
    pub(crate) fn ms_at(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Everything a run records.
pub(crate) struct Recorder {
    pub total: Tally,
    pub by_class: BTreeMap<&'static str, Tally>,
    /// By second of intended send time.
    pub by_second: Vec<Tally>,
    /// Requests that were due but not yet sent when they became due: the
    /// generator (or its connections) fell behind the schedule.
    pub late_sends: u64,
    /// Requests still due when the run's time was up, never sent.
    pub unsent: u64,
    /// From the start to the last answer.
    pub elapsed: Duration,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            total: Tally::new(3),
            by_class: BTreeMap::new(),
            by_second: Vec::new(),
            late_sends: 0,
            unsent: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// One request, due `due` into the run.
    pub(crate) fn record(
        &mut self,
        class: &'static str,
        due: Duration,
        latency: Duration,
        outcome: Outcome,
        bytes: u64,
    ) {
        self.total.add(latency, outcome, bytes);
        self.by_class
            .entry(class)
            .or_insert_with(|| Tally::new(3))
            .add(latency, outcome, bytes);
        let second = due.as_secs() as usize;
        if self.by_second.len() <= second {
            self.by_second.resize_with(second + 1, || Tally::new(2));
        }
        self.by_second[second].add(latency, outcome, bytes);
    }
}
