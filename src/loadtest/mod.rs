//! `kiln loadtest`: the site's own traffic, at a scheduled rate, against
//! its own server (started here with the production settings) or any
//! `--target`, with latency measured without coordinated omission, and a
//! verdict against the objectives in `[loadtest]`. The layer above the
//! server, as `watch` is: it composes `site` knowledge and `server`.
//!
//! [`mix`] reads the traffic off the site, [`schedule`] says when each
//! request is due, [`run`] sends them over [`client`] connections into a
//! [`record`], and [`report`] sums it up.

pub(crate) mod client;
pub(crate) mod mix;
pub(crate) mod record;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod schedule;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use crate::config::{AccessLogFormat, LoadtestConfig, Settings};
use crate::server::{ServeOptions, access_log::AccessLog};
use report::Summary;
use run::{Mix, Pace, Target};
use schedule::Shape;

/// A named traffic shape, multiples of `loadtest.rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `rate` for `duration_secs`.
    Normal,
    /// From `rate` up to 3× over the first half, held for the second.
    Peak,
    /// `rate`, with 5× for a sixth of the run from its first third.
    Spike,
    /// `rate`, 2×, 3×… for `step_secs` each, until a step misses an
    /// objective: the last step that met them is the knee.
    Stress,
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(name: &str) -> Result<Scenario, String> {
        match name {
            "normal" => Ok(Scenario::Normal),
            "peak" => Ok(Scenario::Peak),
            "spike" => Ok(Scenario::Spike),
            "stress" => Ok(Scenario::Stress),
            other => Err(format!(
                "unknown scenario {other:?}: expected normal, peak, spike or stress"
            )),
        }
    }
}

/// What `kiln loadtest` was asked.
#[derive(Debug, Clone)]
pub struct LoadtestOptions {
    /// `http://HOST:PORT` of a running server; `None`: start the site's.
    pub target: Option<String>,
    pub scenario: Scenario,
    /// Where `loadtest.json` and `summary.txt` go.
    pub report: Option<PathBuf>,
    /// Allow a target that is not on this machine.
    pub allow_remote: bool,
}

/// How a load test ended.
pub struct Verdict {
    /// The summary printed for the user.
    pub text: String,
    /// Every objective was met (the exit code says so).
    pub met: bool,
}

/// Why a load test could not run.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("--target {target}: {reason}")]
    Target { target: String, reason: String },
    #[error("starting the site's server: {0}")]
    Serve(#[from] crate::server::ServeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "nothing to request: the site has no built page, asset or GET route, and [[loadtest.url]] adds none"
    )]
    NoTraffic,
}

/// Runs `options.scenario` against the target or the site's own server.
pub fn run(settings: &Settings, options: &LoadtestOptions) -> Result<Verdict, LoadtestError> {
    let config = settings.loadtest().clone();
    let (addr, host, server) = match &options.target {
        Some(target) => {
            let (addr, host) = target_addr(target, options.allow_remote)?;
            (addr, host, None)
        }
        None => {
            let server = crate::server::start(settings, own_server_options())?;
            (server.addr, server.addr.to_string(), Some(server))
        }
    };
    let outcome = test(settings, &config, options, addr, &host);
    if let Some(server) = server {
        let _ = server.stop(true);
    }
    outcome
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

/// The address and `Host` of `--target`; only this machine's addresses
/// unless `allow_remote`.
fn target_addr(target: &str, allow_remote: bool) -> Result<(SocketAddr, String), LoadtestError> {
    let refuse = |reason: &str| LoadtestError::Target {
        target: target.to_string(),
        reason: reason.to_string(),
    };
    let rest = target
        .strip_prefix("http://")
        .ok_or_else(|| refuse("expected http://HOST:PORT (https is not supported yet)"))?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(refuse("expected http://HOST:PORT, without a path"));
    }
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:80")
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
    Ok((addr, host.to_string()))
}

fn test(
    settings: &Settings,
    config: &LoadtestConfig,
    options: &LoadtestOptions,
    addr: SocketAddr,
    host: &str,
) -> Result<Verdict, LoadtestError> {
    let (targets, refused) = learn(addr, mix::of_site(settings, host), host)?;
    if targets.is_empty() {
        return Err(LoadtestError::NoTraffic);
    }
    let mix = Rc::new(Mix::new(targets, config.revalidate));
    let pace = |shape: Shape, length: Duration| Pace {
        shape,
        length,
        connections: config.connections,
        timeout: Duration::from_millis(config.timeout_ms),
    };
    let duration = Duration::from_secs(config.duration_secs);
    let rate = config.rate;
    let mut text = String::new();
    for (path, status) in &refused {
        text.push_str(&format!(
            "left out of the mix: GET {path} answered {status}\n"
        ));
    }
    let mut runs = Vec::new();
    let met = match options.scenario {
        Scenario::Stress => {
            let step = Duration::from_secs(config.step_secs);
            let mut knee = None;
            for multiple in 1..=MAX_STEPS {
                let asked = rate * multiple as f64;
                let recorder = run::run(addr, &mix, &pace(Shape::Constant { rate: asked }, step))?;
                let summary = Summary {
                    name: format!("stress step {multiple} ({asked:.0} req/s)"),
                    target_rate: asked,
                    recorder: &recorder,
                };
                text.push_str(&summary.to_text());
                runs.push(summary.to_json());
                if !meets(config, &recorder) {
                    break;
                }
                knee = Some(asked);
            }
            match knee {
                Some(knee) => text.push_str(&format!(
                    "knee: {knee:.0} req/s, the highest rate whose step met p99 ≤ {} ms and errors ≤ {}%\n",
                    config.p99_ms,
                    config.error_rate * 100.0
                )),
                None => text.push_str("knee: none; the first step already missed an objective\n"),
            }
            knee.is_some()
        }
        scenario => {
            let (shape, peak) = shape_of(scenario, rate, duration);
            let recorder = run::run(addr, &mix, &pace(shape, duration))?;
            let summary = Summary {
                name: format!("{scenario:?}").to_lowercase(),
                target_rate: peak,
                recorder: &recorder,
            };
            text.push_str(&summary.to_text());
            runs.push(summary.to_json());
            meets(config, &recorder)
        }
    };
    text.push_str(&verdict_line(config, met));
    if let Some(dir) = &options.report {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::json!({
            "scenario": format!("{:?}", options.scenario).to_lowercase(),
            "objectives": { "p99_ms": config.p99_ms, "error_rate": config.error_rate },
            "met": met,
            "runs": runs,
        });
        std::fs::write(dir.join("loadtest.json"), format!("{json:#}\n"))?;
        std::fs::write(dir.join("summary.txt"), &text)?;
    }
    Ok(Verdict { text, met })
}

/// Most steps a stress run takes (up to 30× the normal rate).
const MAX_STEPS: u32 = 30;

/// The schedule of a one-run scenario, and its highest rate.
fn shape_of(scenario: Scenario, rate: f64, duration: Duration) -> (Shape, f64) {
    match scenario {
        Scenario::Peak => (
            Shape::Ramp {
                from: rate,
                to: rate * 3.0,
                ramp: duration / 2,
            },
            rate * 3.0,
        ),
        Scenario::Spike => (
            Shape::Spike {
                base: rate,
                peak: rate * 5.0,
                at: duration / 3,
                length: (duration / 6).max(Duration::from_secs(1)),
            },
            rate * 5.0,
        ),
        Scenario::Normal | Scenario::Stress => (Shape::Constant { rate }, rate),
    }
}

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
    addr: SocketAddr,
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
        for mut target in targets {
            let answer = async {
                if connection.is_none() {
                    connection = Some(client::Connection::open(addr).await?);
                }
                match &mut connection {
                    Some(open) => open.exchange(&target.request, false, true).await,
                    None => Err(client::ClientError::Closed),
                }
            };
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
