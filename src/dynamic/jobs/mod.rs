//! Background jobs: `[[job]]`s kept in the site's own database
//! ([`store`], the `kiln_jobs` table), claimed under a lease and run by a
//! bounded set of workers ([`work`]), retried with exponential backoff and
//! jitter, and buried (`dead`) after their last attempt.
//!
//! The queue is a table of kiln's own rather than `apalis`: its storages
//! sit on sqlx, a second database stack beside the rusqlite and
//! tokio-postgres pools kiln already has, and an enqueue must be able to
//! join a route's own write transaction on those connections. The table,
//! the claim and the lease follow River and graphile-worker (see
//! docs/design.md).

mod declared;
mod deliver;
pub(crate) mod maintenance;
mod schedule;
pub mod store;
pub mod work;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::outbound::Outbound;
use crate::config::{JobConfig, JobsConfig, RouteEnqueueConfig, Settings};
use crate::dynamic::db::{Database, DbError, Followup, Row, SqlValue};
use crate::dynamic::routes::fill::fill_template;
use crate::dynamic::routes::{Route, Values};
use crate::http::metrics::{Exposition, label_value};
use declared::Job;
use store::Store;

/// Why a job could not be enqueued or the jobs could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("no [[job]] is named {0:?}")]
    Unknown(String),
    #[error("job {job:?}: payload: {reason}")]
    Payload { job: String, reason: String },
    #[error("{0}")]
    Declaration(String),
    #[error("{0}")]
    Database(#[from] DbError),
}

/// Counts by job and what happened, for `/metrics`.
#[derive(Default)]
struct Counts(Mutex<BTreeMap<(String, &'static str), u64>>);

impl Counts {
    fn add(&self, job: &str, event: &'static str, count: u64) {
        let mut counts = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        *counts.entry((job.to_string(), event)).or_default() += count;
    }

    fn snapshot(&self) -> Vec<((String, &'static str), u64)> {
        let counts = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        counts
            .iter()
            .map(|(key, value)| (key.clone(), *value))
            .collect()
    }
}

/// The site's jobs: their declarations, the queue's table and the workers'
/// state.
pub struct Jobs {
    pub(crate) database: Arc<Database>,
    store: Arc<Store>,
    jobs: HashMap<String, Job>,
    pub(crate) config: JobsConfig,
    events: Counts,
    /// Deliveries running now in this process, in all, by job and by
    /// queue (for `concurrency` limits).
    running: AtomicUsize,
    running_by_job: HashMap<String, AtomicUsize>,
    running_by_queue: HashMap<String, AtomicUsize>,
    /// Microseconds the workers spent running jobs (utilisation).
    busy_micros: AtomicU64,
    /// Ids of the jobs running here: their leases are extended while
    /// they run, and they are given back if a stop cannot wait for them.
    claimed: Mutex<std::collections::HashSet<i64>>,
    /// Jobs by state and priority, as last read by the workers.
    depth: Mutex<Vec<(String, i64, i64)>>,
    /// Milliseconds the oldest ready job has waited (-1: none).
    oldest_ready_ms: AtomicI64,
    /// `http` jobs' requests.
    outbound: Outbound,
    /// Woken when a job is enqueued here (or, on PostgreSQL, anywhere):
    /// workers claim at once instead of at their next poll.
    pub(crate) wake: tokio::sync::Notify,
    /// Tells this instance's schedule ticks from other instances'.
    token: String,
    /// The server whose caches `warm` and `purge` jobs act on.
    maintenance: std::sync::OnceLock<std::sync::Weak<dyn maintenance::Maintenance>>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job, with its id.
    New(i64),
    /// Dropped: a job of the same `unique_key` was enqueued within
    /// `unique_for_secs`.
    Duplicate,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    crate::http::metrics::unix_ms() as i64
}

impl Jobs {
    /// Compiles the declared jobs over `database`; `None` when none is
    /// declared.
    pub(crate) fn open(
        settings: &Settings,
        database: &Arc<Database>,
    ) -> Result<Option<Jobs>, JobsError> {
        let declared = settings.declared_jobs();
        if declared.is_empty() {
            return Ok(None);
        }
        let mut jobs = HashMap::new();
        for (index, config) in declared.iter().enumerate() {
            let at = format!("job[{index}] ({:?})", config.name);
            let job = Job::compile(config, &at).map_err(JobsError::Declaration)?;
            jobs.insert(config.name.clone(), job);
        }
        let config = settings.jobs().clone();
        let running_by_job = declared
            .iter()
            .map(|job| (job.name.clone(), AtomicUsize::new(0)))
            .collect();
        let running_by_queue = declared
            .iter()
            .map(|job| (job.queue.clone(), AtomicUsize::new(0)))
            .collect();
        let mut token = [0u8; 16];
        let _ = getrandom::fill(&mut token);
        Ok(Some(Jobs {
            database: Arc::clone(database),
            store: Arc::new(Store::new(database.backend())),
            jobs,
            outbound: Outbound::new(config.http_rate_per_host),
            config,
            events: Counts::default(),
            running: AtomicUsize::new(0),
            running_by_job,
            running_by_queue,
            busy_micros: AtomicU64::new(0),
            claimed: Mutex::new(Default::default()),
            depth: Mutex::new(Vec::new()),
            oldest_ready_ms: AtomicI64::new(-1),
            wake: tokio::sync::Notify::new(),
            token: token.iter().map(|byte| format!("{byte:02x}")).collect(),
            maintenance: std::sync::OnceLock::new(),
        }))
    }

    /// The site's jobs over a pool of their own, for `kiln jobs`.
    pub fn open_standalone(settings: &Settings) -> Result<Arc<Jobs>, JobsError> {
        let database = Database::open(settings.database(), &settings.root)
            .map_err(|err| JobsError::Declaration(format!("database: {err}")))?;
        Jobs::open(settings, &Arc::new(database))?
            .map(Arc::new)
            .ok_or_else(|| JobsError::Declaration("build.toml declares no [[job]]".to_string()))
    }

    /// Attaches the server whose caches `warm` and `purge` jobs act on;
    /// until then (and in `kiln jobs work`) no maintenance job is claimed.
    pub(crate) fn attach(&self, server: std::sync::Weak<dyn maintenance::Maintenance>) {
        let _ = self.maintenance.set(server);
    }

    fn maintained(&self) -> Option<Arc<dyn maintenance::Maintenance>> {
        self.maintenance.get()?.upgrade()
    }

    /// Creates the queue's table when it is missing.
    pub async fn ensure(&self) -> Result<(), JobsError> {
        Ok(self.store.ensure(&self.database).await?)
    }

    /// Enqueues `name` with `payload` (a JSON object), due now.
    pub async fn enqueue(
        &self,
        name: &str,
        payload: &serde_json::Value,
    ) -> Result<Enqueued, JobsError> {
        let job = self
            .jobs
            .get(name)
            .ok_or_else(|| JobsError::Unknown(name.to_string()))?;
        let text = self.check_payload(job, payload)?;
        let now = now_ms();
        let unique = unique_of(&job.config, payload, &text, now)
            .map_err(|reason| payload_error(job, reason))?;
        let statements = self
            .store
            .enqueue_statements(&job.config, text, now, now, unique);
        let row = self.database.write(statements, None).await?;
        match row.get("id") {
            Some(SqlValue::Int(id)) => {
                self.events.add(name, "enqueued", 1);
                self.wake.notify_one();
                Ok(Enqueued::New(*id))
            }
            _ => {
                self.events.add(name, "deduplicated", 1);
                Ok(Enqueued::Duplicate)
            }
        }
    }

    /// The payload as stored: a JSON object within the size limit that
    /// gives every parameter the job's statements name.
    fn check_payload(&self, job: &Job, payload: &serde_json::Value) -> Result<String, JobsError> {
        let refuse = |reason: String| JobsError::Payload {
            job: job.config.name.clone(),
            reason,
        };
        let Some(object) = payload.as_object() else {
            return Err(refuse("must be a JSON object".to_string()));
        };
        let text = payload.to_string();
        if text.len() > self.config.max_payload_bytes {
            return Err(refuse(format!(
                "{} bytes, over jobs.max_payload_bytes ({})",
                text.len(),
                self.config.max_payload_bytes
            )));
        }
        let missing = job.missing_fields(object);
        if !missing.is_empty() {
            return Err(refuse(format!("no value for {}", missing.join(", "))));
        }
        Ok(text)
    }

    /// Checks at load that each `[route.enqueue]` of `route` gives every
    /// parameter its job's statements name.
    pub(crate) fn check_enqueues(&self, route: &Route) -> Result<(), JobsError> {
        for enqueue in &route.enqueue {
            let job = self
                .jobs
                .get(&enqueue.job)
                .ok_or_else(|| JobsError::Unknown(enqueue.job.clone()))?;
            let missing = job.missing_keys(|name| enqueue.payload.contains_key(name));
            if !missing.is_empty() {
                return Err(JobsError::Declaration(format!(
                    "route {}: enqueue {:?}: the payload gives no {}",
                    route.label,
                    enqueue.job,
                    missing.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The statements that enqueue `route`'s jobs, made in its write's
    /// transaction from its inputs and the row the write returned; `None`
    /// when it enqueues nothing.
    pub(crate) fn followup(self: &Arc<Self>, route: &Route, values: &Values) -> Option<Followup> {
        if route.enqueue.is_empty() {
            return None;
        }
        let jobs = Arc::clone(self);
        let enqueues = route.enqueue.clone();
        let values = values.clone();
        Some(Arc::new(move |returned: &Row| {
            let now = now_ms();
            enqueues
                .iter()
                .map(|enqueue| {
                    let job = jobs
                        .jobs
                        .get(&enqueue.job)
                        .ok_or_else(|| format!("no [[job]] is named {:?}", enqueue.job))?;
                    let payload = payload_of(enqueue, &values, returned)?;
                    let text = jobs
                        .check_payload(job, &payload)
                        .map_err(|err| err.to_string())?;
                    let unique = unique_of(&job.config, &payload, &text, now)
                        .map_err(|reason| payload_error(job, reason).to_string())?;
                    Ok(jobs
                        .store
                        .enqueue_statements(&job.config, text, now, now, unique))
                })
                .collect::<Result<Vec<_>, String>>()
                .map(|lists| lists.into_iter().flatten().collect())
        }))
    }

    /// Counts the jobs a route's committed write enqueued, and wakes the
    /// workers for them.
    pub(crate) fn enqueued_by(&self, route: &Route) {
        for enqueue in &route.enqueue {
            self.events.add(&enqueue.job, "enqueued", 1);
        }
        self.wake.notify_one();
    }

    /// Retries, cancels or purges job `id`, or every dead job; returns
    /// how many it changed.
    pub async fn operate(
        &self,
        operation: store::Operation,
        id: Option<i64>,
    ) -> Result<i64, JobsError> {
        Ok(self
            .store
            .operate(&self.database, operation, id, now_ms())
            .await?)
    }

    /// The newest jobs (in `state`, of `queue`), as JSON rows for `kiln
    /// jobs list`.
    pub async fn list(
        &self,
        state: Option<&str>,
        queue: Option<&str>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, JobsError> {
        let rows = self.store.list(&self.database, state, queue, limit).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(column, value)| {
                        (column, serde_json::to_value(value).unwrap_or_default())
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            })
            .collect())
    }

    /// Runs one delivery to its end, noting its jobs as this process's
    /// while it runs: a batch of `job`'s, unbatched `sql` jobs gathered
    /// into one transaction, or a single job.
    async fn run(&self, job: &Job, claimed: Vec<store::Claimed>) {
        let ids: Vec<i64> = claimed.iter().map(|claimed| claimed.id).collect();
        self.claimed_ids().extend(ids.iter().copied());
        if claimed.len() > 1 && job.config.batch.is_none() {
            self.deliver_gathered(claimed).await;
        } else {
            self.deliver(job, claimed).await;
        }
        let mut held = self.claimed_ids();
        for id in &ids {
            held.remove(id);
        }
    }

    fn claimed_ids(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<i64>> {
        self.claimed
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Gives back the jobs still running here: ready for another worker
    /// at once rather than after their lease.
    pub(crate) async fn release_running(&self) {
        let ids: Vec<i64> = self.claimed_ids().iter().copied().collect();
        if ids.is_empty() {
            return;
        }
        match self.store.release(&self.database, &ids).await {
            Ok(()) => tracing::info!("jobs: gave back {} running job(s) at stop", ids.len()),
            Err(err) => tracing::warn!(
                "jobs: giving back {} running job(s): {err}; they are claimed again after their lease",
                ids.len()
            ),
        }
    }

    /// `/metrics`: events by job and queue, queue depth by state and
    /// priority, the oldest ready job's wait, run times, batch sizes and
    /// the workers in use.
    pub(crate) fn encode_metrics(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let events = self.events.snapshot();
        let queue_of = |job: &str| {
            self.jobs
                .get(job)
                .map_or_else(String::new, |job| job.config.queue.clone())
        };
        let of = |wanted: &[&str]| {
            events
                .iter()
                .filter(|((_, event), _)| wanted.contains(event))
                .map(|((job, event), count)| {
                    (
                        [
                            ("job", label_value(job)),
                            ("queue", label_value(&queue_of(job)).into_owned().into()),
                            ("event", (*event).into()),
                        ],
                        *count,
                    )
                })
                .collect::<Vec<_>>()
        };
        out.counters(
            "kiln_jobs",
            "Jobs by name, queue and event: enqueued (here), deduplicated, started, succeeded, retried, dead.",
            of(&["enqueued", "deduplicated", "started", "succeeded", "retried", "dead"]),
        )?;
        out.counters(
            "kiln_job_deliveries",
            "Deliveries (runs) by job, queue and what they carried: delivered counts deliveries, payloads the jobs in them; payloads / delivered is the mean batch size.",
            of(&["delivered", "payloads"]),
        )?;
        let depth = self
            .depth
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        out.gauges(
            "kiln_jobs_queued",
            "Jobs in the queue's table by state and priority, as the workers last read it.",
            depth.iter().map(|(state, priority, count)| {
                (
                    [
                        ("state", label_value(state)),
                        ("priority", priority.to_string().into()),
                    ],
                    *count,
                )
            }),
        )?;
        out.counter(
            "kiln_jobs_busy_seconds",
            "Time the workers spent running jobs; its rate over kiln_jobs_workers is their utilisation.",
            self.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )?;
        let oldest = self.oldest_ready_ms.load(Ordering::Relaxed);
        out.gauge(
            "kiln_jobs_oldest_ready_seconds",
            "How long the oldest due job has waited to start (0: none waits).",
            oldest.max(0) as f64 / 1000.0,
        )?;
        out.gauge(
            "kiln_jobs_running",
            "Jobs this process runs now.",
            self.running.load(Ordering::Relaxed) as i64,
        )?;
        out.gauge(
            "kiln_jobs_workers",
            "Jobs this process may run at once (jobs.workers).",
            self.config.workers as i64,
        )?;
        let mut jobs: Vec<&Job> = self.jobs.values().collect();
        jobs.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        out.histograms(
            "kiln_job_run_duration_seconds",
            "Time each run of each job took.",
            jobs.into_iter()
                .filter(|job| job.run_time.count() > 0)
                .map(|job| ([("job", label_value(&job.config.name))], &job.run_time)),
        )
    }
}

/// A payload refused for `job`.
fn payload_error(job: &Job, reason: String) -> JobsError {
    JobsError::Payload {
        job: job.config.name.clone(),
        reason,
    }
}

/// The key and window start of a `unique_for_secs` job: the
/// `unique_key` template filled from the payload, or the payload itself.
fn unique_of(
    job: &JobConfig,
    payload: &serde_json::Value,
    text: &str,
    now: i64,
) -> Result<Option<(String, i64)>, String> {
    let Some(window) = job.unique_for_secs else {
        return Ok(None);
    };
    let key = match &job.unique_key {
        None => text.to_string(),
        Some(template) => fill_template(
            template,
            &deliver::payload_fields(payload),
            &Row::new(),
            false,
        )
        .map_err(|name| format!("unique_key: the payload gives no {name}"))?,
    };
    Ok(Some((key, now - (window * 1000) as i64)))
}

/// A route's payload: each template filled from the inputs and the
/// returned row (a lone `{name}` keeps its value's type).
fn payload_of(
    enqueue: &RouteEnqueueConfig,
    values: &Values,
    returned: &Row,
) -> Result<serde_json::Value, String> {
    let mut payload = serde_json::Map::new();
    for (key, template) in &enqueue.payload {
        let value = match template {
            toml::Value::String(text) => match lone_placeholder(text) {
                Some(name) => {
                    let found = returned.get(name).or_else(|| {
                        values
                            .iter()
                            .find(|(known, _)| known == name)
                            .map(|(_, value)| value)
                    });
                    match found {
                        Some(value) => serde_json::to_value(value).unwrap_or_default(),
                        None => return Err(unfilled(enqueue, key, name)),
                    }
                }
                None => serde_json::Value::String(
                    fill_template(text, values, returned, false)
                        .map_err(|name| unfilled(enqueue, key, &name))?,
                ),
            },
            other => serde_json::to_value(other).unwrap_or_default(),
        };
        payload.insert(key.clone(), value);
    }
    Ok(payload.into())
}

fn unfilled(enqueue: &RouteEnqueueConfig, key: &str, name: &str) -> String {
    format!(
        "enqueue {:?}: payload.{key}: {{{name}}} is neither an input nor a RETURNING column",
        enqueue.job
    )
}

/// `name` when `text` is exactly `{name}`.
fn lone_placeholder(text: &str) -> Option<&str> {
    let name = text.strip_prefix('{')?.strip_suffix('}')?;
    (!name.is_empty() && !name.contains(['{', '}'])).then_some(name)
}

/// A payload value as the SQL value it binds: objects and arrays as JSON
/// text.
fn sql_value(value: &serde_json::Value) -> SqlValue {
    match value {
        serde_json::Value::Null => SqlValue::Null,
        serde_json::Value::Bool(flag) => SqlValue::Bool(*flag),
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(int) => SqlValue::Int(int),
            None => SqlValue::Float(number.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(text) => SqlValue::Text(text.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// The wait before attempt `attempt + 1`: `backoff_ms` doubled for each
/// attempt after the first, capped at `backoff_max_ms`, then drawn
/// between half of it and all of it (jitter, so jobs that failed together
/// do not come back together).
fn backoff(job: &JobConfig, attempt: u32) -> Duration {
    let doubled = job
        .backoff_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(40));
    let capped = doubled.min(job.backoff_max_ms);
    let mut bytes = [0u8; 8];
    let draw = match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes) as f64 / u64::MAX as f64,
        Err(_) => 1.0,
    };
    Duration::from_millis((capped as f64 * (0.5 + draw / 2.0)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(backoff_ms: u64, backoff_max_ms: u64) -> JobConfig {
        toml::from_str(&format!(
            "name = \"j\"\nkind = \"sql\"\nexec = [\"SELECT 1\"]\nbackoff_ms = {backoff_ms}\nbackoff_max_ms = {backoff_max_ms}\n"
        ))
        .expect("a job")
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let config = job(100, 1000);
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            let wait = backoff(&config, attempt).as_millis() as u64;
            assert!(
                (full / 2..=full).contains(&wait),
                "attempt {attempt}: {wait} ms"
            );
        }
    }

    #[test]
    fn payload_values_bind_as_their_sql_types() {
        let payload = serde_json::json!({"n": 3, "x": 1.5, "s": "a", "b": true, "o": {"k": 1}});
        assert_eq!(sql_value(&payload["n"]), SqlValue::Int(3));
        assert_eq!(sql_value(&payload["x"]), SqlValue::Float(1.5));
        assert_eq!(sql_value(&payload["s"]), SqlValue::Text("a".into()));
        assert_eq!(sql_value(&payload["b"]), SqlValue::Bool(true));
        assert_eq!(sql_value(&payload["o"]), SqlValue::Text("{\"k\":1}".into()));
        assert_eq!(sql_value(&payload["missing"]), SqlValue::Null);
    }
}
