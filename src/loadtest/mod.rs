//! `kiln loadtest`: the site's own traffic, at a scheduled rate, against
//! its own server (started here with the production settings) or any
//! `--target`, with latency measured without coordinated omission, and a
//! verdict against the objectives in `[loadtest]`. The layer above the
//! server, as `watch` is: it composes `site` knowledge and `server`.
//!
//! [`mix`] reads the traffic off the site, [`schedule`] says when each
//! request is due, [`run`] sends them over [`client`] connections into a
//! [`record`] while [`observe`] reads the server's metrics every second;
//! [`analysis`] names what limited the run, [`report`] sums it up (as
//! text, JSON and the [`html`] page of [`chart`]s), and [`compare`] sets
//! it against an earlier report.

pub(crate) mod analysis;
pub(crate) mod chart;
pub(crate) mod compare;
pub(crate) mod forms;
pub(crate) mod html;
pub(crate) mod mix;
pub(crate) mod observe;
pub(crate) mod params;
pub(crate) mod record;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod scenario;
pub(crate) mod schedule;
pub(crate) mod trend;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::client;
use crate::config::{AccessLogFormat, LoadModel, LoadtestConfig, Settings};
use crate::server::{ServeOptions, access_log::AccessLog};
use client::Endpoint;
use client::tls::{Tls, Trust};
use report::Summary;
use run::{Mix, Pace, Target, Users};
use scenario::{Judge, Plan, Runs};
use schedule::Shape;

pub use scenario::{Scenario, ScenarioError};

/// What `kiln loadtest` was asked.
#[derive(Debug, Clone)]
pub struct LoadtestOptions {
    /// `http://HOST:PORT` of a running server; `None`: start the site's.
    pub target: Option<String>,
    pub scenario: Scenario,
    /// Where `loadtest.json`, `summary.txt` and `report.html` go.
    pub report: Option<PathBuf>,
    /// Allow a target that is not on this machine.
    pub allow_remote: bool,
    /// The target's admin listener (`HOST:PORT`), for its `/metrics`;
    /// `None`: `server.admin_addr` when the target is on this machine.
    pub metrics: Option<String>,
    /// A `loadtest.json` of an earlier run to compare this one with.
    pub compare: Option<PathBuf>,
}

/// How a load test ended.
pub struct Verdict {
    /// The summary printed for the user.
    pub text: String,
    /// Every objective was met.
    pub met: bool,
    /// What got worse than the `--compare` report (the exit code says so,
    /// as for a missed objective).
    pub regressions: Vec<String>,
}

/// Why a load test could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("--target {target}: {reason}")]
    Target { target: String, reason: String },
    #[error("--metrics {metrics}: {reason}")]
    Metrics { metrics: String, reason: String },
    #[error("--compare {path}: {reason}")]
    Compare { path: PathBuf, reason: String },
    #[error("{0}")]
    Scenario(#[from] ScenarioError),
    #[error("{0}")]
    Routes(String),
    #[error(
        "the closed model (loadtest.model = \"closed\") runs the normal, soak and errors scenarios and scenario files with users in their stages; {0} needs an arrival rate"
    )]
    ClosedModel(String),
    #[error("starting the site's server: {0}")]
    Serve(#[from] crate::server::ServeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "nothing to request: no built page, asset, route, [[loadtest.url]] or form answered (or the weights leave them out)\n{0}"
    )]
    NoTraffic(String),
}

/// Runs `options.scenario` against the target or the site's own server.
pub fn run(settings: &Settings, options: &LoadtestOptions) -> Result<Verdict, LoadtestError> {
    let plan = scenario::plan(&options.scenario, settings.loadtest())?;
    let config = plan.config.clone();
    if config.model == LoadModel::Closed
        && !matches!(
            options.scenario,
            Scenario::Normal | Scenario::Soak | Scenario::Errors | Scenario::File(_)
        )
    {
        return Err(LoadtestError::ClosedModel(plan.name));
    }
    let old_report = options.compare.as_deref().map(read_report).transpose()?;
    let (endpoint, host, server) = match &options.target {
        Some(target) => {
            let (endpoint, host) = target_endpoint(settings, target, options.allow_remote)?;
            (endpoint, host, None)
        }
        None => {
            let server = crate::server::start(settings, own_server_options())?;
            let endpoint = own_endpoint(settings, server.addr)?;
            (endpoint, server.addr.to_string(), Some(server))
        }
    };
    let endpoint = Arc::new(endpoint);
    let addr = endpoint.addr;
    let source = match &server {
        Some(server) => Some(observe::Source::InProcess(Arc::clone(&server.state))),
        None => metrics_source(settings, options, addr)?,
    };
    let same_machine = addr.ip().is_loopback();
    let context = analysis::Context {
        cores: online_cpus(),
        workers: match settings.server().workers {
            0 => None,
            workers => Some(workers),
        }
        .filter(|_| same_machine),
        same_machine,
        connections: config.connections,
        goal_rate: config.goal_rate,
    };
    let probe = Probe { source, context };
    let outcome = test(
        settings,
        &plan,
        options,
        &endpoint,
        &host,
        &probe,
        old_report.as_ref(),
    );
    if let Some(server) = server {
        let _ = server.stop(true);
    }
    outcome
}

/// This machine's CPUs, whatever this process's affinity (the generator
/// may be pinned to one while the server runs on the others).
fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online > 0 {
        online as usize
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// The `loadtest.json` of `--compare`, with its path.
fn read_report(path: &std::path::Path) -> Result<(PathBuf, serde_json::Value), LoadtestError> {
    let fail = |reason: String| LoadtestError::Compare {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|err| fail(err.to_string()))?;
    let report: serde_json::Value = serde_json::from_slice(&text).map_err(|err| {
        fail(format!(
            "not a loadtest.json: line {}, column {}: {err}",
            err.line(),
            err.column()
        ))
    })?;
    if !report["runs"].is_array() {
        return Err(fail("not a loadtest.json: it has no \"runs\"".to_string()));
    }
    Ok((path.to_path_buf(), report))
}

/// Where the target's metrics are read: `--metrics`, else the site's
/// `server.admin_addr` when the target is on this machine.
fn metrics_source(
    settings: &Settings,
    options: &LoadtestOptions,
    target: SocketAddr,
) -> Result<Option<observe::Source>, LoadtestError> {
    match &options.metrics {
        Some(metrics) => {
            let refuse = |reason: String| LoadtestError::Metrics {
                metrics: metrics.clone(),
                reason,
            };
            let text = metrics
                .trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .trim_end_matches('/');
            let addr = text
                .to_socket_addrs()
                .map_err(|err| refuse(format!("expected HOST:PORT of the admin listener: {err}")))?
                .next()
                .ok_or_else(|| refuse("resolves to no address".to_string()))?;
            if !options.allow_remote && !addr.ip().is_loopback() {
                return Err(refuse(
                    "not on this machine; pass --allow-remote".to_string(),
                ));
            }
            Ok(Some(observe::Source::Admin(addr)))
        }
        None => Ok(settings
            .admin_addr()
            .filter(|_| target.ip().is_loopback())
            .map(observe::Source::Admin)),
    }
}

/// How the server is watched during a run.
struct Probe {
    source: Option<observe::Source>,
    context: analysis::Context,
}

impl Probe {
    fn start(&self) -> Option<observe::Sampler> {
        self.source.clone().map(observe::Sampler::start)
    }

    /// The run's resources and what they say.
    fn finish(
        &self,
        sampler: Option<observe::Sampler>,
        recorder: &record::Recorder,
    ) -> (observe::Resources, analysis::Analysis) {
        let resources = match (sampler, &self.source) {
            (Some(sampler), Some(source)) => observe::Resources::of(sampler.finish(), source),
            _ => observe::Resources {
                error: Some("no admin listener known".to_string()),
                ..Default::default()
            },
        };
        let analysis = analysis::analyse(recorder, &resources, &self.context);
        (resources, analysis)
    }
}

fn own_server_options() -> ServeOptions {
    ServeOptions {
        addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        workers: None,
        handle_signals: false,
        access_log: Some(AccessLog::stdout(AccessLogFormat::Off)),
        clock: Default::default(),
        live: None,
    }
}

/// Where `--target` is and how it is spoken to, and its `Host`; only
/// this machine's addresses unless `allow_remote`.
fn target_endpoint(
    settings: &Settings,
    target: &str,
    allow_remote: bool,
) -> Result<(Endpoint, String), LoadtestError> {
    let refuse = |reason: &str| LoadtestError::Target {
        target: target.to_string(),
        reason: reason.to_string(),
    };
    let (rest, secure) = match (
        target.strip_prefix("http://"),
        target.strip_prefix("https://"),
    ) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => return Err(refuse("expected http://HOST:PORT or https://HOST:PORT")),
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(refuse(
            "expected a scheme, a host and a port, without a path",
        ));
    }
    let port = host
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok());
    let (with_port, name) = match port {
        Some(_) => (
            host.to_string(),
            host.rsplit_once(':').map_or(host, |(name, _)| name),
        ),
        None => (format!("{host}:{}", if secure { 443 } else { 80 }), host),
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|err| refuse(&format!("cannot resolve: {err}")))?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| refuse("resolves to no address"))?;
    if !allow_remote && !addrs.iter().all(|addr| addr.ip().is_loopback()) {
        return Err(refuse(
            "not on this machine; pass --allow-remote to load a server elsewhere (only one you run)",
        ));
    }
    let config = settings.loadtest();
    let tls = if secure {
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let ca_file = config.ca_file.as_ref().map(|path| settings.root.join(path));
        let trust = if config.insecure {
            Trust::Anything
        } else {
            Trust::Verified {
                ca_file: ca_file.as_deref(),
            }
        };
        Some(Tls::new(name, trust, config.protocol).map_err(|reason| refuse(&reason))?)
    } else {
        None
    };
    Ok((Endpoint::new(addr, tls, config.protocol), host.to_string()))
}

/// The server kiln started: over TLS when the site serves HTTPS, its
/// certificate accepted as it is (this process holds its key).
fn own_endpoint(settings: &Settings, addr: SocketAddr) -> Result<Endpoint, LoadtestError> {
    let protocol = settings.loadtest().protocol;
    let tls = match settings.tls_files() {
        Some(_) => Some(
            Tls::new("localhost", Trust::Anything, protocol)
                .map_err(|reason| LoadtestError::Routes(format!("tls: {reason}")))?,
        ),
        None => None,
    };
    Ok(Endpoint::new(addr, tls, protocol))
}

fn test(
    settings: &Settings,
    plan: &Plan,
    options: &LoadtestOptions,
    endpoint: &Arc<Endpoint>,
    host: &str,
    probe: &Probe,
    old_report: Option<&(PathBuf, serde_json::Value)>,
) -> Result<Verdict, LoadtestError> {
    let config = &plan.config;
    let (site_targets, left_out) = mix::of_site(settings, host).map_err(LoadtestError::Routes)?;
    let (mut targets, refused) = learn(endpoint, site_targets, host)?;
    let mut text = String::new();
    for (path, reason) in &left_out {
        text.push_str(&format!(
            "left out of the mix: {}: {reason}\n",
            with_method(path)
        ));
    }
    for (path, status) in &refused {
        text.push_str(&format!(
            "left out of the mix: {} answered {status}\n",
            with_method(path)
        ));
    }
    if targets.is_empty() {
        return Err(LoadtestError::NoTraffic(text));
    }
    if plan.probes {
        let probes = mix::probes(settings, host, &targets, config.error_share);
        targets.extend(probes);
    }
    let mix = Rc::new(Mix::new(targets, config.revalidate));
    let measured = |name: String, asked: f64, shape: Shape, length: Duration| {
        measure(endpoint, &mix, probe, config, name, asked, shape, length)
    };
    let mut runs = Vec::new();
    let mut knee_line = None;
    let mut knee_rate = None;
    let met = match &plan.runs {
        Runs::Steps { step } => {
            for multiple in 1..=MAX_STEPS {
                let asked = config.rate * multiple as f64;
                let measured = measured(
                    format!("stress step {multiple} ({asked:.0} req/s)"),
                    asked,
                    Shape::Constant { rate: asked },
                    *step,
                )?;
                text.push_str(&measured.text);
                runs.push(measured.json);
                if !measured.met {
                    break;
                }
                knee_rate = Some(asked);
            }
            let line = match knee_rate {
                Some(knee) => format!(
                    "knee: {knee:.0} req/s, the highest rate whose step met p99 ≤ {} ms and errors ≤ {}%",
                    config.p99_ms,
                    config.error_rate * 100.0
                ),
                None => "knee: none; the first step already missed an objective".to_string(),
            };
            text.push_str(&line);
            text.push('\n');
            knee_line = Some(line);
            knee_rate.is_some()
        }
        Runs::One { shape, length } => {
            let mut measured = measured(plan.name.clone(), shape.peak(), shape.clone(), *length)?;
            let met = match plan.judge {
                Judge::Objectives => measured.met,
                Judge::Soak => {
                    let drift = trend::drift(&measured.recorder, &measured.resources);
                    measured.text.push_str(&drift.to_text());
                    measured.json["drift"] = serde_json::to_value(&drift).unwrap_or_default();
                    measured.met
                }
                Judge::Recovery { overload_ends } => {
                    let after = trend::recovered_after(&measured.recorder, config, overload_ends);
                    measured.text.push_str(&match after {
                        Some(seconds) => format!(
                            "  recovery: every second met the objectives from {seconds} s after the overload ended\n"
                        ),
                        None => format!(
                            "  recovery: NOT recovered within the {} s after the overload\n",
                            length.saturating_sub(overload_ends).as_secs()
                        ),
                    });
                    measured.json["recovered_after_secs"] = after.into();
                    after.is_some()
                }
            };
            text.push_str(&measured.text);
            runs.push(measured.json);
            met
        }
    };
    text.push_str(&verdict_line(config, met));
    let mut report = serde_json::json!({
        "scenario": plan.name,
        "model": config.model,
        "objectives": { "p99_ms": config.p99_ms, "error_rate": config.error_rate },
        "met": met,
        "runs": runs,
    });
    if let Some(line) = knee_line {
        report["knee"] = line.into();
        report["knee_rate"] = knee_rate.into();
    }
    let mut regressions = Vec::new();
    if let Some((path, old)) = old_report {
        let comparison =
            compare::compare(old, &report, config.regression, &path.display().to_string());
        text.push_str(&comparison.text);
        regressions = comparison.regressions;
    }
    if let Some(dir) = &options.report {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("loadtest.json"), format!("{report:#}\n"))?;
        std::fs::write(dir.join("report.html"), html::render(&report))?;
        text.push_str(&format!("report: {}\n", dir.join("report.html").display()));
        std::fs::write(dir.join("summary.txt"), &text)?;
    }
    Ok(Verdict {
        text,
        met,
        regressions,
    })
}

/// A left-out target as a request line: forms name their POST already.
fn with_method(path: &str) -> String {
    if path.starts_with("POST ") {
        path.to_string()
    } else {
        format!("GET {path}")
    }
}

/// One run, watched.
struct Measured {
    text: String,
    json: serde_json::Value,
    /// The objectives were met.
    met: bool,
    recorder: record::Recorder,
    resources: observe::Resources,
}

/// Runs `shape` for `length` (or the closed model's users) while the
/// probe watches the server; sums it up.
#[allow(clippy::too_many_arguments)]
fn measure(
    endpoint: &Arc<Endpoint>,
    mix: &Rc<Mix>,
    probe: &Probe,
    config: &LoadtestConfig,
    name: String,
    asked: f64,
    shape: Shape,
    length: Duration,
) -> Result<Measured, LoadtestError> {
    let sampler = probe.start();
    let opened_before = endpoint.opened();
    let timeout = Duration::from_millis(config.timeout_ms);
    let (recorder, name) = match config.model {
        LoadModel::Open => {
            let pace = Pace {
                shape,
                length,
                connections: config.connections,
                streams: config.streams,
                timeout,
            };
            (run::run(endpoint, mix, &pace)?, name)
        }
        LoadModel::Closed => {
            let users = Users {
                curve: shape.clone(),
                streams: config.streams,
                think: Duration::from_millis(config.think_ms),
                length,
                timeout,
            };
            let count = match &shape {
                Shape::Constant { rate } => format!("{rate:.0} users"),
                _ => format!("up to {:.0} users", shape.peak()),
            };
            let name = format!(
                "{name} (closed model: {count}, think {} ms; latency from each send)",
                config.think_ms
            );
            (run::run_closed(endpoint, mix, &users)?, name)
        }
    };
    let (resources, analysis) = probe.finish(sampler, &recorder);
    let opened = endpoint.opened();
    let connections = client::OpenedCount {
        http1: opened.http1 - opened_before.http1,
        http2: opened.http2 - opened_before.http2,
    };
    let asked = match config.model {
        LoadModel::Open => asked,
        LoadModel::Closed => 0.0,
    };
    let summary = Summary {
        name,
        target_rate: asked,
        recorder: &recorder,
        resources: &resources,
        analysis: &analysis,
        connections,
    };
    Ok(Measured {
        text: summary.to_text(),
        json: summary.to_json(),
        met: meets(config, &recorder),
        recorder,
        resources,
    })
}

/// Most steps a stress run takes (up to 30× the normal rate).
const MAX_STEPS: u32 = 30;

/// The run met the objectives: its p99 and error rate, and it sent what
/// was due (requests left unsent count against `error_rate` too: the
/// server did not take the rate).
fn meets(config: &LoadtestConfig, recorder: &record::Recorder) -> bool {
    let total = &recorder.total;
    let due = total.requests() + recorder.unsent;
    total.requests() > 0
        && total.ms_at(0.99) <= config.p99_ms
        && total.error_rate() <= config.error_rate
        && recorder.unsent as f64 <= due as f64 * config.error_rate
}

fn verdict_line(config: &LoadtestConfig, met: bool) -> String {
    let objectives = format!(
        "p99 ≤ {} ms, errors ≤ {}%",
        config.p99_ms,
        config.error_rate * 100.0
    );
    if met {
        format!("objectives met ({objectives})\n")
    } else {
        format!("objectives MISSED ({objectives})\n")
    }
}

/// A URL left out of the mix, and what it answered.
type Refused = (String, String);

/// Fetches every target once, as a first visit: keeps those that answer
/// (with the validator they gave, for revalidating requests) and returns
/// the others with their status.
fn learn(
    endpoint: &Arc<Endpoint>,
    targets: Vec<Target>,
    host: &str,
) -> Result<(Vec<Target>, Vec<Refused>), LoadtestError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut kept = Vec::new();
        let mut refused = Vec::new();
        let mut connection: Option<client::Connection> = None;
        let dialer = client::Dialer::new(endpoint);
        for mut target in targets {
            if let Some(form) = &target.form {
                // A trial post: kept when it ends on a page.
                let mut flow_connection = None;
                let tried = tokio::time::timeout(
                    Duration::from_secs(10),
                    forms::post(&mut flow_connection, &client::Dialer::new(endpoint), form),
                )
                .await;
                match tried {
                    Ok(Ok(forms::Ended::Answered { status, .. })) if status < 400 => {
                        kept.push(target)
                    }
                    Ok(Ok(forms::Ended::Answered { status, .. })) => {
                        refused.push((target.path, status.to_string()))
                    }
                    Ok(Ok(forms::Ended::NoToken)) => refused.push((
                        target.path,
                        "no csrf_token field on the form's page".to_string(),
                    )),
                    Ok(Err(error)) => refused.push((target.path, error.to_string())),
                    Err(_) => refused.push((target.path, "nothing within 10 s".to_string())),
                }
                continue;
            }
            let answer = dialer.exchange(&mut connection, &target.request, true);
            match tokio::time::timeout(Duration::from_secs(10), answer).await {
                Ok(Ok(answer)) if answer.status < 400 || target.expects_error => {
                    if answer.closes {
                        connection = None;
                    }
                    target.conditional = answer
                        .etag
                        .as_deref()
                        .map(|etag| mix::get(&target.path, host, Some(etag)));
                    kept.push(target);
                }
                Ok(Ok(answer)) => {
                    if answer.closes {
                        connection = None;
                    }
                    refused.push((target.path, answer.status.to_string()));
                }
                Ok(Err(error)) => {
                    connection = None;
                    refused.push((target.path, error.to_string()));
                }
                Err(_) => {
                    connection = None;
                    refused.push((target.path, "nothing within 10 s".to_string()));
                }
            }
        }
        Ok((kept, refused))
    })
}
