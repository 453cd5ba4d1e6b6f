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

pub mod store;
pub mod work;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{JobConfig, JobKind, JobsConfig, RouteEnqueueConfig, Settings};
use crate::dynamic::db::sql::{Statement, parse_typed};
use crate::dynamic::db::{Database, DbError, Followup, Row, SqlValue};
use crate::dynamic::routes::fill::fill_template;
use crate::dynamic::routes::{Route, Values};
use crate::http::metrics::{Exposition, Histogram, label_value};
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

/// One declared job, its statements compiled.
pub(crate) struct Job {
    pub config: JobConfig,
    statements: Vec<Statement>,
    /// Seconds each run took.
    run_time: Histogram,
}

/// Counts by job and what happened, for `/metrics`.
#[derive(Default)]
struct Counts(Mutex<BTreeMap<(String, &'static str), u64>>);

impl Counts {
    fn add(&self, job: &str, event: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        *counts.entry((job.to_string(), event)).or_default() += 1;
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
    store: Store,
    jobs: HashMap<String, Job>,
    pub(crate) config: JobsConfig,
    events: Counts,
    /// Jobs running now in this process.
    running: AtomicUsize,
    /// Their ids, to give back if a stop cannot wait for them.
    claimed: Mutex<std::collections::HashSet<i64>>,
    /// Jobs by state, as last read by the workers.
    depth: Mutex<Vec<(String, i64)>>,
    /// Milliseconds the oldest ready job has waited (-1: none).
    oldest_ready_ms: AtomicI64,
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
            let statements = match config.kind {
                JobKind::Sql => config
                    .exec
                    .iter()
                    .enumerate()
                    .map(|(number, sql)| {
                        parse_typed(sql, &|_| None).map_err(|err| {
                            JobsError::Declaration(format!(
                                "job[{index}] ({:?}): exec[{number}]: {err}",
                                config.name
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            jobs.insert(
                config.name.clone(),
                Job {
                    config: config.clone(),
                    statements,
                    run_time: Histogram::default(),
                },
            );
        }
        let names: Vec<String> = declared.iter().map(|job| job.name.clone()).collect();
        Ok(Some(Jobs {
            database: Arc::clone(database),
            store: Store::new(database.backend(), &names),
            jobs,
            config: settings.jobs().clone(),
            events: Counts::default(),
            running: AtomicUsize::new(0),
            claimed: Mutex::new(Default::default()),
            depth: Mutex::new(Vec::new()),
            oldest_ready_ms: AtomicI64::new(-1),
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

    /// Creates the queue's table when it is missing.
    pub async fn ensure(&self) -> Result<(), JobsError> {
        Ok(self.store.ensure(&self.database).await?)
    }

    /// Enqueues `name` with `payload` (a JSON object), due now; returns
    /// its id.
    pub async fn enqueue(&self, name: &str, payload: &serde_json::Value) -> Result<i64, JobsError> {
        let job = self
            .jobs
            .get(name)
            .ok_or_else(|| JobsError::Unknown(name.to_string()))?;
        let text = self.check_payload(job, payload)?;
        let now = now_ms();
        let statement = self.store.enqueue_statement(&job.config, text, now, now);
        let row = self.database.write(vec![statement], None).await?;
        self.events.add(name, "enqueued");
        match row.get("id") {
            Some(SqlValue::Int(id)) => Ok(*id),
            _ => Err(JobsError::Database(DbError::Query(
                "the insert returned no id".to_string(),
            ))),
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
        let missing: Vec<&str> = job
            .statements
            .iter()
            .flat_map(|statement| &statement.params)
            .filter(|name| *name != "payload" && !object.contains_key(name.as_str()))
            .map(String::as_str)
            .collect();
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
            let missing: Vec<&str> = job
                .statements
                .iter()
                .flat_map(|statement| &statement.params)
                .filter(|name| *name != "payload" && !enqueue.payload.contains_key(name.as_str()))
                .map(String::as_str)
                .collect();
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
                    Ok(jobs.store.enqueue_statement(&job.config, text, now, now))
                })
                .collect()
        }))
    }

    /// Counts the jobs a route's committed write enqueued.
    pub(crate) fn enqueued_by(&self, route: &Route) {
        for enqueue in &route.enqueue {
            self.events.add(&enqueue.job, "enqueued");
        }
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

    /// The newest jobs (in `state`), as JSON rows for `kiln jobs list`.
    pub async fn list(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, JobsError> {
        let rows = self.store.list(&self.database, state, limit).await?;
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

    /// Runs one claimed job to its end, noting it as this process's
    /// while it runs.
    async fn run(&self, claimed: store::Claimed) {
        let id = claimed.id;
        self.claimed_ids().insert(id);
        self.run_claimed(claimed).await;
        self.claimed_ids().remove(&id);
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

    /// Runs one claimed job to its end: success, a retry or burial.
    async fn run_claimed(&self, claimed: store::Claimed) {
        let Some(job) = self.jobs.get(&claimed.job) else {
            return;
        };
        let name = job.config.name.as_str();
        let now = now_ms();
        if claimed.attempt > claimed.max_attempts {
            // Its last attempt's process died holding it.
            self.events.add(name, "dead");
            let _ = self
                .store
                .bury(
                    &self.database,
                    claimed.id,
                    now,
                    "the lease of its last attempt ran out",
                )
                .await;
            return;
        }
        self.events.add(name, "started");
        let started = std::time::Instant::now();
        let timeout = Duration::from_millis(job.config.timeout_ms);
        let outcome = match tokio::time::timeout(timeout, self.execute(job, &claimed)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "ran longer than timeout_ms ({})",
                job.config.timeout_ms
            )),
        };
        job.run_time.observe(started.elapsed());
        let now = now_ms();
        let recorded = match outcome {
            // A sql job's success committed with its statements.
            Ok(Recorded::Already) => {
                self.events.add(name, "succeeded");
                Ok(())
            }
            Err(error) if claimed.attempt < claimed.max_attempts => {
                self.events.add(name, "retried");
                let delay = backoff(&job.config, claimed.attempt);
                tracing::warn!(
                    "job {name} #{} failed (attempt {} of {}), retried in {} ms: {error}",
                    claimed.id,
                    claimed.attempt,
                    claimed.max_attempts,
                    delay.as_millis()
                );
                let run_at = now + delay.as_millis() as i64;
                self.store
                    .retry(&self.database, claimed.id, run_at, &error)
                    .await
            }
            Err(error) => {
                self.events.add(name, "dead");
                tracing::warn!(
                    "job {name} #{} failed its last attempt ({}): {error}",
                    claimed.id,
                    claimed.attempt
                );
                self.store
                    .bury(&self.database, claimed.id, now, &error)
                    .await
            }
        };
        if let Err(err) = recorded {
            // The lease runs out and the job is claimed again: at least
            // once, never lost.
            tracing::warn!("job {name} #{}: recording its end: {err}", claimed.id);
        }
    }

    async fn execute(&self, job: &Job, claimed: &store::Claimed) -> Result<Recorded, String> {
        let payload: serde_json::Value =
            serde_json::from_str(&claimed.payload).map_err(|err| format!("payload: {err}"))?;
        match job.config.kind {
            JobKind::Sql => {
                let statements = job
                    .statements
                    .iter()
                    .map(|statement| {
                        let args = statement
                            .params
                            .iter()
                            .map(|name| match name.as_str() {
                                "payload" => SqlValue::Text(claimed.payload.clone()),
                                name => sql_value(&payload[name]),
                            })
                            .collect();
                        (statement.text(self.database.backend()).to_string(), args)
                    })
                    .collect();
                // The job's writes and its success commit together: a
                // crash after the commit cannot run them twice.
                let success = self.store.succeed_statement(claimed.id, now_ms());
                let followup: Followup = Arc::new(move |_: &Row| Ok(vec![success.clone()]));
                self.database
                    .write_then(statements, None, Some(followup))
                    .await
                    .map(|_| Recorded::Already)
                    .map_err(|err| err.to_string())
            }
        }
    }

    /// `/metrics`: events by job, queue depth by state, the oldest ready
    /// job's wait, run times and the workers in use.
    pub(crate) fn encode_metrics(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let events = self.events.snapshot();
        out.counters(
            "kiln_jobs",
            "Jobs by name and event: enqueued (here), started, succeeded, retried, dead.",
            events.iter().map(|((job, event), count)| {
                (
                    [("job", label_value(job)), ("event", (*event).into())],
                    *count,
                )
            }),
        )?;
        let depth = self
            .depth
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        out.gauges(
            "kiln_jobs_queued",
            "Jobs in the queue's table by state, as the workers last read it.",
            depth
                .iter()
                .map(|(state, count)| ([("state", label_value(state))], *count)),
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

/// Whether a run's success is already in the table.
enum Recorded {
    /// Committed with the job's own statements.
    Already,
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
