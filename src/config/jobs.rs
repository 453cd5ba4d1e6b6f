//! `[jobs]` and `[[job]]`: background jobs declared like routes, kept in
//! the site's database and run by the server's workers (or `kiln jobs
//! work`).

use serde::{Deserialize, Serialize};

use super::{ConfigError, config_error};

/// The `[jobs]` table: how this process runs jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// `kiln serve` runs workers (when some `[[job]]` is declared).
    pub enabled: bool,
    /// Jobs this process runs at once.
    pub workers: usize,
    /// Milliseconds between looks at the queue while it is empty.
    pub poll_ms: u64,
    /// Seconds a claimed job is this process's; a job whose claim ran out
    /// (its process died) is claimed again.
    pub lease_secs: u64,
    /// Seconds succeeded jobs are kept (for `kiln jobs list`) before they
    /// are deleted; dead jobs are kept `dead_retention_secs`.
    pub keep_secs: u64,
    pub dead_retention_secs: u64,
    /// Largest payload accepted, in bytes of JSON.
    pub max_payload_bytes: usize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            enabled: true,
            workers: 4,
            poll_ms: 500,
            lease_secs: 60,
            keep_secs: 3600,
            dead_retention_secs: 7 * 24 * 3600,
            max_payload_bytes: 64 * 1024,
        }
    }
}

/// One `[[job]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// What routes, schedules and `kiln jobs enqueue` call it.
    pub name: String,
    pub kind: JobKind,
    /// `sql`: statements run in one transaction, `:name` bound to the
    /// payload's `name` (`:payload` to the whole payload as JSON text).
    #[serde(default)]
    pub exec: Vec<String>,
    /// Higher runs first among ready jobs.
    #[serde(default)]
    pub priority: i32,
    /// The queue it waits in.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Runs before the job is dead (kept, not retried).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the second attempt, doubled for each later one (with
    /// jitter), up to `backoff_max_ms`.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Longest one run may take before it counts as failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// SQL statements with parameters from the payload, in one transaction.
    Sql,
}

fn default_queue() -> String {
    "default".to_string()
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    1000
}
fn default_backoff_max_ms() -> u64 {
    300_000
}
fn default_timeout_ms() -> u64 {
    30_000
}

/// Stage two for `[jobs]` and `[[job]]`.
pub(crate) fn validate(jobs: &JobsConfig, declared: &[JobConfig]) -> Result<(), ConfigError> {
    for (key, value) in [
        ("jobs.workers", jobs.workers as u64),
        ("jobs.poll_ms", jobs.poll_ms),
        ("jobs.lease_secs", jobs.lease_secs),
        ("jobs.max_payload_bytes", jobs.max_payload_bytes as u64),
    ] {
        if value == 0 {
            return Err(config_error(format!("{key} = 0: must be at least 1")));
        }
    }
    for (index, job) in declared.iter().enumerate() {
        let at = format!("job[{index}] ({:?})", job.name);
        if job.name.is_empty()
            || !job
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(config_error(format!(
                "{at}: name must be letters, digits, '_', '-' or '.'"
            )));
        }
        if declared[..index].iter().any(|other| other.name == job.name) {
            return Err(config_error(format!("{at}: another [[job]] has this name")));
        }
        if job.queue.is_empty() {
            return Err(config_error(format!("{at}: queue must not be empty")));
        }
        if job.max_attempts == 0 || job.timeout_ms == 0 {
            return Err(config_error(format!(
                "{at}: max_attempts and timeout_ms must be at least 1"
            )));
        }
        if job.backoff_max_ms < job.backoff_ms {
            return Err(config_error(format!(
                "{at}: backoff_max_ms ({}) is below backoff_ms ({})",
                job.backoff_max_ms, job.backoff_ms
            )));
        }
        // The statements' parameters are read when the jobs are compiled
        // (`jobs::Catalog`), as routes' are.
        if job.kind == JobKind::Sql && job.exec.is_empty() {
            return Err(config_error(format!(
                "{at}: a sql job needs exec = [\"…\"]"
            )));
        }
    }
    Ok(())
}

/// Each `[route.enqueue]` names a declared job, on a POST route.
pub(crate) fn validate_enqueues(
    routes: &[super::RouteConfig],
    declared: &[JobConfig],
) -> Result<(), ConfigError> {
    for (index, route) in routes.iter().enumerate() {
        let at = format!("route[{index}] ({} {})", route.method, route.path);
        if !route.enqueue.is_empty() && route.method != super::RouteMethod::Post {
            return Err(config_error(format!(
                "{at}: enqueue: only a POST route enqueues jobs (a GET must not change anything)"
            )));
        }
        for enqueue in &route.enqueue {
            if !declared.iter().any(|job| job.name == enqueue.job) {
                return Err(config_error(format!(
                    "{at}: enqueue: no [[job]] is named {:?}",
                    enqueue.job
                )));
            }
            if let Some((key, _)) = enqueue.payload.iter().find(|(_, value)| {
                matches!(
                    value,
                    toml::Value::Table(_) | toml::Value::Array(_) | toml::Value::Datetime(_)
                )
            }) {
                return Err(config_error(format!(
                    "{at}: enqueue.payload.{key}: give a template string, a number or a boolean"
                )));
            }
        }
    }
    Ok(())
}
