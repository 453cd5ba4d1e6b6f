//! What a scenario runs: the presets' shapes in multiples of
//! `loadtest.rate`, and scenario files (k6-style stages, `[loadtest]`
//! overrides, error probes) read and validated into the same plan.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{LoadModel, LoadtestConfig};

use super::schedule::{Shape, Stage};

/// A named traffic shape, or a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `rate` for `soak_secs`, with the drift of memory, open files and
    /// latency per minute.
    Soak,
    /// `rate`, a share `error_share` of it requests that must fail:
    /// malformed, oversized, unauthorised, not found.
    Errors,
    /// `rate`, then `overload`× for a quarter of the run, then `rate`:
    /// how long until p99 and errors are back under the objectives.
    Recovery,
    /// A scenario file (TOML).
    File(PathBuf),
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(name: &str) -> Result<Scenario, String> {
        match name {
            "normal" => Ok(Scenario::Normal),
            "peak" => Ok(Scenario::Peak),
            "spike" => Ok(Scenario::Spike),
            "stress" => Ok(Scenario::Stress),
            "soak" => Ok(Scenario::Soak),
            "errors" => Ok(Scenario::Errors),
            "recovery" => Ok(Scenario::Recovery),
            file if file.ends_with(".toml") => Ok(Scenario::File(PathBuf::from(file))),
            other => Err(format!(
                "unknown scenario {other:?}: expected normal, peak, spike, stress, soak, errors, recovery or a scenario file (.toml)"
            )),
        }
    }
}

impl Scenario {
    /// The name reports use.
    pub(crate) fn name(&self) -> String {
        match self {
            Scenario::File(path) => path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".to_string()),
            preset => format!("{preset:?}").to_lowercase(),
        }
    }
}

/// How a scenario's runs go.
#[derive(Debug, Clone)]
pub(crate) enum Runs {
    /// One run of `shape` for `length`.
    One { shape: Shape, length: Duration },
    /// Steps of `step` at `rate`, 2×, 3×… until one misses an objective.
    Steps { step: Duration },
}

/// How a scenario's outcome is judged, beyond the objectives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Judge {
    /// p99 and error rate over the run (or each step).
    Objectives,
    /// The seconds after `overload_ends` until every later second meets
    /// the objectives; the run meets them when that happens.
    Recovery { overload_ends: Duration },
    /// The objectives, and the drift per minute reported.
    Soak,
}

/// A scenario resolved against the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub name: String,
    pub runs: Runs,
    /// Error probes join the mix.
    pub probes: bool,
    pub judge: Judge,
    /// `[loadtest]`, with a scenario file's overrides.
    pub config: LoadtestConfig,
}

/// Why a scenario file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("scenario {path}: {reason}")]
pub struct ScenarioError {
    pub path: PathBuf,
    pub reason: String,
}

/// The plan of `scenario` under `config`. In the closed model a shape
/// counts virtual users, not requests per second.
pub(crate) fn plan(scenario: &Scenario, config: &LoadtestConfig) -> Result<Plan, ScenarioError> {
    let rate = match config.model {
        LoadModel::Open => config.rate,
        LoadModel::Closed => closed_users(config) as f64,
    };
    let duration = Duration::from_secs(config.duration_secs);
    let one = |shape: Shape, length: Duration| Runs::One { shape, length };
    let (runs, probes, judge) = match scenario {
        Scenario::Normal => (
            one(Shape::Constant { rate }, duration),
            false,
            Judge::Objectives,
        ),
        Scenario::Peak => (
            one(
                Shape::Ramp {
                    from: rate,
                    to: rate * 3.0,
                    ramp: duration / 2,
                },
                duration,
            ),
            false,
            Judge::Objectives,
        ),
        Scenario::Spike => (
            one(
                Shape::Spike {
                    base: rate,
                    peak: rate * 5.0,
                    at: duration / 3,
                    length: (duration / 6).max(Duration::from_secs(1)),
                },
                duration,
            ),
            false,
            Judge::Objectives,
        ),
        Scenario::Stress => (
            Runs::Steps {
                step: Duration::from_secs(config.step_secs),
            },
            false,
            Judge::Objectives,
        ),
        Scenario::Soak => (
            one(
                Shape::Constant { rate },
                Duration::from_secs(config.soak_secs),
            ),
            false,
            Judge::Soak,
        ),
        Scenario::Errors => (
            one(Shape::Constant { rate }, duration),
            true,
            Judge::Objectives,
        ),
        Scenario::Recovery => recovery(rate, config.overload, duration),
        Scenario::File(path) => return from_file(path, config),
    };
    Ok(Plan {
        name: scenario.name(),
        runs,
        probes,
        judge,
        config: config.clone(),
    })
}

/// The closed model's users: `users`, else one per connection.
pub(crate) fn closed_users(config: &LoadtestConfig) -> usize {
    if config.users == 0 {
        config.connections
    } else {
        config.users
    }
}

/// `rate` for a quarter, `overload`× for a quarter, `rate` for the half
/// left to recover in.
fn recovery(rate: f64, overload: f64, duration: Duration) -> (Runs, bool, Judge) {
    let quarter = duration / 4;
    let stage = |length: Duration, rate: f64| Stage { length, rate };
    let shape = Shape::Stages {
        start: rate,
        stages: vec![
            stage(quarter, rate),
            stage(Duration::ZERO, rate * overload),
            stage(quarter, rate * overload),
            stage(Duration::ZERO, rate),
        ],
    };
    (
        Runs::One {
            shape,
            length: duration,
        },
        false,
        Judge::Recovery {
            overload_ends: quarter * 2,
        },
    )
}

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    /// The rate before the first stage; default: the first stage's.
    start_rate: Option<f64>,
    /// The closed model's users before the first stage; default: the
    /// first stage's.
    start_users: Option<f64>,
    #[serde(default)]
    stage: Vec<StageFile>,
    /// Error probes join the mix (`loadtest.error_share` of it).
    #[serde(default)]
    probes: bool,
    /// Keys of `[loadtest]` this scenario sets.
    loadtest: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    duration_secs: f64,
    /// Requests per second at the stage's end (the open model).
    rate: Option<f64>,
    /// Virtual users at the stage's end (the closed model: k6's
    /// `ramping-vus`).
    users: Option<f64>,
}

fn from_file(path: &Path, config: &LoadtestConfig) -> Result<Plan, ScenarioError> {
    let fail = |reason: String| ScenarioError {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
    let file: ScenarioFile = toml::from_str(&text).map_err(|err| fail(toml_error(&text, &err)))?;
    let config = match file.loadtest {
        Some(overrides) => merged(config, overrides).map_err(fail)?,
        None => config.clone(),
    };
    if file.stage.is_empty() {
        return Err(fail(
            "no [[stage]]: a scenario file lists stages of duration_secs and rate (or users, in the closed model)".to_string(),
        ));
    }
    let (key, start) = match config.model {
        LoadModel::Open => ("rate", file.start_rate),
        LoadModel::Closed => ("users", file.start_users),
    };
    let mut stages = Vec::with_capacity(file.stage.len());
    for (index, stage) in file.stage.iter().enumerate() {
        if !(stage.duration_secs.is_finite()
            && stage.duration_secs >= 0.0
            && stage.duration_secs <= 86_400.0)
        {
            return Err(fail(format!(
                "stage {}: duration_secs = {} must be between 0 and 86400",
                index + 1,
                stage.duration_secs
            )));
        }
        let (value, other) = match config.model {
            LoadModel::Open => (stage.rate, stage.users.map(|_| "users")),
            LoadModel::Closed => (stage.users, stage.rate.map(|_| "rate")),
        };
        if let Some(other) = other {
            return Err(fail(format!(
                "stage {}: {other} belongs to the {} model; this run is {} (loadtest.model)",
                index + 1,
                if other == "rate" { "open" } else { "closed" },
                if key == "rate" { "open" } else { "closed" },
            )));
        }
        let Some(value) = value else {
            return Err(fail(format!("stage {}: no {key}", index + 1)));
        };
        if !(value.is_finite() && value >= 0.0) {
            return Err(fail(format!(
                "stage {}: {key} = {value} must be 0 or more",
                index + 1,
            )));
        }
        stages.push(Stage {
            length: Duration::from_secs_f64(stage.duration_secs),
            rate: value,
        });
    }
    let length: Duration = stages.iter().map(|stage| stage.length).sum();
    if length.is_zero() {
        return Err(fail("the stages last 0 seconds".to_string()));
    }
    let start = start.unwrap_or(stages[0].rate);
    if !(start.is_finite() && start >= 0.0) {
        return Err(fail(format!("start_{key} = {start} must be 0 or more")));
    }
    Ok(Plan {
        name: Scenario::File(path.to_path_buf()).name(),
        runs: Runs::One {
            shape: Shape::Stages { start, stages },
            length,
        },
        probes: file.probes,
        judge: Judge::Objectives,
        config,
    })
}

/// `config` with the scenario's `[loadtest]` keys over it, validated as
/// build.toml's are.
fn merged(config: &LoadtestConfig, overrides: toml::Table) -> Result<LoadtestConfig, String> {
    let toml::Value::Table(mut table) =
        toml::Value::try_from(config).map_err(|err| err.to_string())?
    else {
        return Err("[loadtest] is not a table".to_string());
    };
    for (key, value) in overrides {
        table.insert(key, value);
    }
    let merged: LoadtestConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|err: toml::de::Error| format!("[loadtest]: {}", err.message()))?;
    crate::config::validate_loadtest(&merged).map_err(|err| err.to_string())?;
    Ok(merged)
}

/// A TOML error with its line and column.
fn toml_error(text: &str, err: &toml::de::Error) -> String {
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
            format!("line {line}, column {column}: {}", err.message())
        }
        None => err.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("launch.toml");
        std::fs::write(&path, text).expect("written");
        (dir, path)
    }

    #[test]
    fn a_scenario_file_gives_its_stages_and_overrides() {
        let (_dir, path) = file(
            "start_rate = 10\nprobes = true\n\
             [[stage]]\nduration_secs = 2\nrate = 100\n\
             [[stage]]\nduration_secs = 1\nrate = 100\n\
             [loadtest]\np99_ms = 40\nconnections = 8\n",
        );
        let plan = plan(&Scenario::File(path), &LoadtestConfig::default()).expect("a plan");
        assert_eq!(plan.name, "launch");
        assert!(plan.probes);
        assert_eq!(plan.config.p99_ms, 40.0);
        assert_eq!(plan.config.connections, 8);
        assert_eq!(plan.config.rate, 500.0, "the rest as configured");
        match plan.runs {
            Runs::One { shape, length } => {
                assert_eq!(length, Duration::from_secs(3));
                assert_eq!(shape.rate_at(Duration::ZERO), 10.0);
                assert_eq!(shape.rate_at(Duration::from_secs(1)), 55.0);
                assert_eq!(shape.peak(), 100.0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_scenario_file_names_the_line_or_the_key() {
        let (_dir, path) = file("[[stage]]\nduration_secs = 2\nrat = 100\n");
        let err = plan(&Scenario::File(path), &LoadtestConfig::default()).unwrap_err();
        assert!(
            err.reason
                .starts_with("line 3, column 1: unknown field `rat`"),
            "{err}"
        );
        let (_dir, path) =
            file("[[stage]]\nduration_secs = 2\nrate = 1\n[loadtest]\np99_ms = -1\n");
        let err = plan(&Scenario::File(path), &LoadtestConfig::default()).unwrap_err();
        assert!(
            err.reason.contains("loadtest.p99_ms = -1: must be above 0"),
            "{err}"
        );
    }

    #[test]
    fn recovery_overloads_the_second_quarter() {
        let plan = plan(&Scenario::Recovery, &LoadtestConfig::default()).expect("a plan");
        let Runs::One { shape, .. } = plan.runs else {
            panic!("one run")
        };
        assert_eq!(shape.rate_at(Duration::from_secs(1)), 500.0);
        assert_eq!(shape.rate_at(Duration::from_secs(6)), 5000.0);
        assert_eq!(shape.rate_at(Duration::from_secs(11)), 500.0);
        assert_eq!(
            plan.judge,
            Judge::Recovery {
                overload_ends: Duration::from_secs(10)
            }
        );
    }
}
