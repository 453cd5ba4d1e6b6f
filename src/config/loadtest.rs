//! `[loadtest]`: the traffic `kiln loadtest` sends, its pace and the
//! objectives a run must meet.

use serde::{Deserialize, Serialize};

use super::{ConfigError, config_error};

/// The `[loadtest]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadtestConfig {
    /// The `normal` arrival rate, requests per second; the other
    /// scenarios are multiples of it.
    pub rate: f64,
    /// Seconds a scenario runs (`stress` runs steps of `step_secs` instead).
    pub duration_secs: u64,
    /// Seconds each step of `stress` lasts.
    pub step_secs: u64,
    /// Keep-alive connections requests are spread over.
    pub connections: usize,
    /// Milliseconds after which an unanswered request counts as a timeout.
    pub timeout_ms: u64,
    /// Objective: the 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Objective: the share of requests that may fail (transport errors,
    /// timeouts, 5xx and unexpected 4xx).
    pub error_rate: f64,
    /// Share of requests for a page or asset that revalidate it, as a
    /// repeat visit does (`If-None-Match`).
    pub revalidate: f64,
    /// The rate the site must serve at its busiest, requests per second:
    /// the analysis says how many cores and instances it takes.
    pub goal_rate: Option<f64>,
    /// `--compare`: the relative change (0.10: 10%) in throughput, p50,
    /// p99, error rate or knee that counts as a regression.
    pub regression: f64,
    /// Seconds the `soak` scenario runs.
    pub soak_secs: u64,
    /// The `recovery` scenario's overload, a multiple of `rate`.
    pub overload: f64,
    /// Share of the `errors` scenario's requests that are error probes.
    pub error_share: f64,
    /// `open`: requests at the scheduled rate; `closed`: `users` virtual
    /// users, each sending its next request `think_ms` after an answer.
    pub model: LoadModel,
    /// Virtual users of the closed model; 0: `connections`.
    pub users: usize,
    /// Mean think time of a closed-model user, milliseconds (each pause
    /// drawn between half and one and a half of it).
    pub think_ms: u64,
    /// The protocol requests are sent in: `auto` (HTTP/2 when a TLS
    /// server agrees to it by ALPN, else HTTP/1.1), `http1` or `http2`
    /// (over plain TCP: prior knowledge, h2c).
    pub protocol: LoadProtocol,
    /// Requests each connection carries at once over HTTP/2 (its
    /// streams); the run's concurrency is `connections × streams`. Over
    /// HTTP/1.1 each of those is a connection of its own.
    pub streams: usize,
    /// PEM file of CA certificates trusted for an `https://` target,
    /// beside the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept any certificate from an `https://` target (a self-signed
    /// test server). The server `kiln loadtest` starts itself is always
    /// accepted: it is this process.
    pub insecure: bool,
    /// Relative weights of the URL classes.
    pub weights: MixWeights,
    /// URLs added to the mix (dynamic routes with parameters, say).
    pub url: Vec<LoadUrl>,
    /// Values for GET routes' parameters: given, or from a query.
    pub route: Vec<LoadRoute>,
}

impl Default for LoadtestConfig {
    fn default() -> Self {
        LoadtestConfig {
            rate: 500.0,
            duration_secs: 20,
            step_secs: 5,
            connections: 32,
            timeout_ms: 5000,
            p99_ms: 250.0,
            error_rate: 0.01,
            revalidate: 0.5,
            goal_rate: None,
            regression: 0.10,
            soak_secs: 600,
            overload: 10.0,
            error_share: 0.2,
            model: LoadModel::Open,
            users: 0,
            think_ms: 1000,
            protocol: LoadProtocol::Auto,
            streams: 1,
            ca_file: None,
            insecure: false,
            weights: MixWeights::default(),
            url: Vec::new(),
            route: Vec::new(),
        }
    }
}

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    /// At the scenario's arrival rate, whatever the server does.
    Open,
    /// By virtual users who wait for each answer, then think.
    Closed,
}

/// What `kiln loadtest` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadProtocol {
    /// HTTP/2 when a TLS server agrees to it, else HTTP/1.1.
    Auto,
    Http1,
    Http2,
}

/// `[loadtest.weights]`: how the requests divide between the classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixWeights {
    /// Built pages (`index.html` files).
    pub pages: f64,
    /// Hashed files the manifest names (styles, scripts, images).
    pub assets: f64,
    /// GET routes without path parameters, at their parameters' defaults.
    pub routes: f64,
    /// The `[[loadtest.url]]` entries.
    pub urls: f64,
    /// Form posts (GET the form, POST it with its CSRF token, follow the
    /// redirect). They write to the database: 0 unless asked for.
    pub forms: f64,
}

impl Default for MixWeights {
    fn default() -> Self {
        MixWeights {
            pages: 3.0,
            assets: 6.0,
            routes: 1.0,
            urls: 1.0,
            forms: 0.0,
        }
    }
}

/// `[[loadtest.url]]`: one URL of the mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadUrl {
    /// A path on the site, with its query (`/catalogue/42?page=2`).
    pub path: String,
    /// Its weight among the `url` class.
    #[serde(default = "one")]
    pub weight: f64,
}

/// `[[loadtest.route]]`: the values a route with parameters is requested
/// with: a GET route's path parameters and query, or a POST route's path
/// parameters and form fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRoute {
    /// The route's path, as declared in `[[route]]` (`/catalogue/{id:int}`).
    pub path: String,
    /// The route's method, as declared in `[[route]]`: `GET` (the
    /// default) or `POST` (its rows fill the form's path and fields).
    #[serde(default)]
    pub method: super::RouteMethod,
    /// Rows of parameter values (`{ id = 3 }`, `{ id = 7, page = 2 }`):
    /// path parameters by name, the rest as the query.
    #[serde(default)]
    pub samples: Vec<toml::Table>,
    /// A read-only query on the site's database whose rows are used as
    /// samples, columns named as the parameters
    /// (`SELECT id FROM products ORDER BY id LIMIT 100`).
    pub sql: Option<String>,
    /// The route's weight among the `routes` class, or the `forms` class
    /// for a POST route (each route without an entry weighs 1).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// Stage two for `[loadtest]`.
pub(crate) fn validate(loadtest: &LoadtestConfig) -> Result<(), ConfigError> {
    let positive = [
        ("loadtest.rate", loadtest.rate),
        ("loadtest.p99_ms", loadtest.p99_ms),
        ("loadtest.goal_rate", loadtest.goal_rate.unwrap_or(1.0)),
        ("loadtest.regression", loadtest.regression),
        ("loadtest.overload", loadtest.overload),
    ];
    if let Some((key, value)) = positive
        .iter()
        .find(|(_, value)| !(value.is_finite() && *value > 0.0))
    {
        return Err(config_error(format!("{key} = {value}: must be above 0")));
    }
    let shares = [
        ("loadtest.error_rate", loadtest.error_rate),
        ("loadtest.revalidate", loadtest.revalidate),
        ("loadtest.error_share", loadtest.error_share),
    ];
    if let Some((key, value)) = shares
        .iter()
        .find(|(_, value)| !(0.0..=1.0).contains(value))
    {
        return Err(config_error(format!(
            "{key} = {value}: must be between 0 and 1"
        )));
    }
    let counts = [
        ("loadtest.duration_secs", loadtest.duration_secs),
        ("loadtest.step_secs", loadtest.step_secs),
        ("loadtest.connections", loadtest.connections as u64),
        ("loadtest.timeout_ms", loadtest.timeout_ms),
        ("loadtest.soak_secs", loadtest.soak_secs),
        ("loadtest.streams", loadtest.streams as u64),
    ];
    if let Some((key, _)) = counts.iter().find(|(_, value)| *value == 0) {
        return Err(config_error(format!("{key} = 0: must be at least 1")));
    }
    if loadtest.streams > 1 && loadtest.protocol == LoadProtocol::Http1 {
        return Err(config_error(format!(
            "loadtest.streams = {}: several requests on one connection need HTTP/2; set loadtest.protocol = \"http2\" or \"auto\"",
            loadtest.streams
        )));
    }
    let weights = &loadtest.weights;
    let all = [
        weights.pages,
        weights.assets,
        weights.routes,
        weights.urls,
        weights.forms,
    ];
    if all
        .iter()
        .any(|weight| !(weight.is_finite() && *weight >= 0.0))
    {
        return Err(config_error("loadtest.weights: weights must be 0 or more"));
    }
    for route in &loadtest.route {
        if route.samples.is_empty() && route.sql.is_none() {
            return Err(config_error(format!(
                "loadtest.route {:?}: give samples or sql",
                route.path
            )));
        }
        if !(route.weight.is_finite() && route.weight >= 0.0) {
            return Err(config_error(format!(
                "loadtest.route {:?}: weight must be 0 or more",
                route.path
            )));
        }
    }
    for url in &loadtest.url {
        if !url.path.starts_with('/') {
            return Err(config_error(format!(
                "loadtest.url: {:?} must be a path on the site (start with /)",
                url.path
            )));
        }
        if !(url.weight.is_finite() && url.weight >= 0.0) {
            return Err(config_error(format!(
                "loadtest.url {:?}: weight must be 0 or more",
                url.path
            )));
        }
    }
    Ok(())
}
