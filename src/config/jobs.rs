//! `[jobs]` and `[[job]]`: background jobs declared like routes, kept in
//! the site's database and run by the server's workers (or `kiln jobs
//! work`).

use std::collections::BTreeMap;

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
    /// Most jobs one delivery of a batched job may hold (`batch.size`
    /// is refused above it): bounds the payloads held in memory at once.
    pub max_batch: usize,
    /// Requests per second `http` jobs send to any one host (0: no
    /// limit), so a backlog does not flood a partner's API.
    pub http_rate_per_host: f64,
    /// Per queue: `[jobs.queues.NAME] concurrency = N`.
    pub queues: BTreeMap<String, QueueConfig>,
    /// Unbatched `sql` jobs claimed together run in one transaction, each
    /// in a savepoint of its own, up to this many per commit (group
    /// commit; 1: a transaction each).
    pub commit_group: usize,
}

/// `[jobs.queues.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Jobs of this queue this process runs at once.
    pub concurrency: usize,
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
            max_batch: 1000,
            http_rate_per_host: 0.0,
            queues: BTreeMap::new(),
            commit_group: 32,
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
    /// Runs of this job this process runs at once (no limit beyond
    /// `jobs.workers` when left out).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Seconds in which a second enqueue with the same `unique_key` is
    /// dropped (the first job's id is kept): deduplication.
    #[serde(default)]
    pub unique_for_secs: Option<u64>,
    /// The key jobs are told apart by, a template over the payload
    /// (`"{product_id}"`); the whole payload when left out.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// Payloads delivered together: to one `http` call (a JSON array)
    /// or one run of the `sql` statements (`:payloads`, a JSON array).
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Cron expression with seconds (`sec min hour day month weekday
    /// [year]`): the job is enqueued at each tick, once across every
    /// instance sharing the database.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The time zone `schedule` is read in (an IANA name).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The payload of scheduled runs.
    #[serde(default)]
    pub payload: toml::Table,
    /// `http`: where the request goes; `{name}` placeholders are filled
    /// from the payload (percent-encoded), `${VAR}` / `${VAR:-default}`
    /// from the environment at start.
    #[serde(default)]
    pub url: Option<String>,
    /// `http`: the request method.
    #[serde(default = "default_method")]
    pub method: String,
    /// `http`: extra request headers; values may use `{name}` and
    /// `${VAR}` / `${VAR:-default}` (secrets stay out of build.toml).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `http`: a query whose rows (a JSON array of objects) are the body
    /// instead of the payload; its `:name` parameters come from the
    /// payload.
    #[serde(default)]
    pub body_sql: Option<String>,
    /// `http`: status classes (`"2xx"`) or codes (`"404"`) that count as
    /// success.
    #[serde(default = "default_success")]
    pub success: Vec<String>,
    /// `warm`: the URLs (path and query) rendered into the route cache;
    /// `{name}` filled from the payload.
    #[serde(default)]
    pub urls: Vec<String>,
    /// `purge`: the cache tags dropped (`"product:{id}"`).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `[job.batch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most payloads one delivery holds.
    pub size: usize,
    /// Longest the first due payload waits for others before a smaller
    /// batch goes.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// SQL statements with parameters from the payload, in one transaction.
    Sql,
    /// An HTTP request: webhooks, search indexers, mail APIs.
    Http,
    /// kiln's own maintenance, run by `kiln serve` on its caches: URLs
    /// rendered into the route cache.
    Warm,
    /// Route-cache entries dropped by tag, on every server.
    Purge,
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
fn default_max_wait_ms() -> u64 {
    1000
}
fn default_time_zone() -> String {
    "UTC".to_string()
}
fn default_method() -> String {
    "POST".to_string()
}
fn default_success() -> Vec<String> {
    vec!["2xx".to_string()]
}

/// Whether `status` is one of `success`'s classes (`2xx`) or codes.
pub(crate) fn status_succeeds(success: &[String], status: u16) -> bool {
    success
        .iter()
        .any(|pattern| match pattern.strip_suffix("xx") {
            Some(class) => class.parse::<u16>() == Ok(status / 100),
            None => pattern.parse::<u16>() == Ok(status),
        })
}

/// Stage two for `[jobs]` and `[[job]]`.
pub(crate) fn validate(jobs: &JobsConfig, declared: &[JobConfig]) -> Result<(), ConfigError> {
    for (key, value) in [
        ("jobs.workers", jobs.workers as u64),
        ("jobs.poll_ms", jobs.poll_ms),
        ("jobs.lease_secs", jobs.lease_secs),
        ("jobs.max_payload_bytes", jobs.max_payload_bytes as u64),
        ("jobs.max_batch", jobs.max_batch as u64),
        ("jobs.commit_group", jobs.commit_group as u64),
    ] {
        if value == 0 {
            return Err(config_error(format!("{key} = 0: must be at least 1")));
        }
    }
    if !(jobs.http_rate_per_host >= 0.0 && jobs.http_rate_per_host.is_finite()) {
        return Err(config_error(format!(
            "jobs.http_rate_per_host = {}: give requests per second, 0 for no limit",
            jobs.http_rate_per_host
        )));
    }
    for (name, queue) in &jobs.queues {
        if queue.concurrency == 0 {
            return Err(config_error(format!(
                "jobs.queues.{name}.concurrency = 0: must be at least 1"
            )));
        }
    }
    for (index, job) in declared.iter().enumerate() {
        let at = format!("job[{index}] ({:?})", job.name);
        validate_job(jobs, job, &at)?;
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
    }
    Ok(())
}

/// A job's kind-specific keys, batching, uniqueness and schedule.
fn validate_job(jobs: &JobsConfig, job: &JobConfig, at: &str) -> Result<(), ConfigError> {
    match job.kind {
        // The statements' parameters are read when the jobs are compiled,
        // as routes' are.
        JobKind::Sql => {
            if job.exec.is_empty() {
                return Err(config_error(format!(
                    "{at}: a sql job needs exec = [\"…\"]"
                )));
            }
        }
        JobKind::Http => validate_http(job, at)?,
        JobKind::Warm if job.urls.is_empty() => {
            return Err(config_error(format!(
                "{at}: a warm job needs urls = [\"/path?query\"]"
            )));
        }
        JobKind::Purge if job.tags.is_empty() => {
            return Err(config_error(format!(
                "{at}: a purge job needs tags = [\"tag\"]"
            )));
        }
        JobKind::Warm | JobKind::Purge if job.batch.is_some() => {
            return Err(config_error(format!(
                "{at}: warm and purge jobs are not batched"
            )));
        }
        JobKind::Warm | JobKind::Purge => {}
    }
    let foreign = [
        (JobKind::Sql, "exec", !job.exec.is_empty()),
        (
            JobKind::Http,
            "url, headers and body_sql",
            job.url.is_some() || job.body_sql.is_some() || !job.headers.is_empty(),
        ),
        (JobKind::Warm, "urls", !job.urls.is_empty()),
        (JobKind::Purge, "tags", !job.tags.is_empty()),
    ];
    if let Some((kind, keys, _)) = foreign
        .iter()
        .find(|(kind, _, given)| *given && *kind != job.kind)
    {
        return Err(config_error(format!(
            "{at}: {keys} belong to {} jobs",
            format!("{kind:?}").to_lowercase()
        )));
    }
    if job.concurrency == Some(0) {
        return Err(config_error(format!(
            "{at}: concurrency = 0: must be at least 1"
        )));
    }
    if job.unique_for_secs == Some(0) {
        return Err(config_error(format!(
            "{at}: unique_for_secs = 0: must be at least 1"
        )));
    }
    if job.unique_key.is_some() && job.unique_for_secs.is_none() {
        return Err(config_error(format!(
            "{at}: unique_key needs unique_for_secs (the window jobs are deduplicated in)"
        )));
    }
    if let Some(batch) = &job.batch
        && (batch.size == 0 || batch.size > jobs.max_batch)
    {
        return Err(config_error(format!(
            "{at}: batch.size = {}: must be 1 to jobs.max_batch ({})",
            batch.size, jobs.max_batch
        )));
    }
    if job.unique_for_secs.is_some() && job.schedule.is_some() {
        return Err(config_error(format!(
            "{at}: a scheduled job is already once per tick; leave out unique_for_secs"
        )));
    }
    if job.schedule.is_none() && !job.payload.is_empty() {
        return Err(config_error(format!(
            "{at}: payload is the payload of scheduled runs; give schedule too"
        )));
    }
    // The expression and the time zone are read when the jobs are
    // compiled (`jobs::schedule`), where the cron crate reports the field.
    Ok(())
}

fn validate_http(job: &JobConfig, at: &str) -> Result<(), ConfigError> {
    let Some(url) = &job.url else {
        return Err(config_error(format!(
            "{at}: an http job needs url = \"https://…\""
        )));
    };
    // `${VAR}` is read when the jobs are compiled, and checked there.
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("${")) {
        return Err(config_error(format!(
            "{at}: url {url:?}: must start with http:// or https://"
        )));
    }
    let method_ok =
        !job.method.is_empty() && job.method.bytes().all(|byte| byte.is_ascii_uppercase());
    if !method_ok {
        return Err(config_error(format!(
            "{at}: method {:?}: give an HTTP method in capitals (POST, PUT, …)",
            job.method
        )));
    }
    for (name, value) in &job.headers {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
        if !name_ok || value.contains(['\r', '\n']) {
            return Err(config_error(format!(
                "{at}: headers.{name}: not a valid header name and value"
            )));
        }
        if ["host", "content-length", "transfer-encoding", "connection"]
            .contains(&name.to_ascii_lowercase().as_str())
        {
            return Err(config_error(format!(
                "{at}: headers.{name}: kiln sets this header itself"
            )));
        }
    }
    let valid_class = |pattern: &String| match pattern.strip_suffix("xx") {
        Some(class) => matches!(class, "1" | "2" | "3" | "4" | "5"),
        None => pattern
            .parse::<u16>()
            .is_ok_and(|code| (100..600).contains(&code)),
    };
    if job.success.is_empty() || !job.success.iter().all(valid_class) {
        return Err(config_error(format!(
            "{at}: success = {:?}: give status classes (\"2xx\") or codes (\"404\")",
            job.success
        )));
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
