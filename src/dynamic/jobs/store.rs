//! The queue's table in the site's database, `kiln_jobs`, and the
//! statements that move a job through its states:
//!
//! `ready` → (claimed) `running` → `succeeded`, or back to `ready` with a
//! later `run_at` (a retry), or `dead` after its last attempt.
//!
//! A claim takes the due jobs of highest priority (then earliest due,
//! then oldest) in one statement, `UPDATE … WHERE id IN (SELECT … LIMIT
//! n) RETURNING`, and leases them until `locked_until`, which the
//! workers' heartbeat moves on while they run; a running job whose lease
//! ran out (its process died) is made ready again by the rescue, as
//! River's rescuer does, and claimed as any other. On PostgreSQL the
//! inner select takes `FOR UPDATE SKIP LOCKED`, so instances claiming at
//! once skip each other's rows instead of waiting (River's and
//! graphile-worker's scheme); SQLite serialises writers, so the statement
//! is atomic there as it stands.

use crate::dynamic::db::sql::{Statement, parse_typed};
use crate::dynamic::db::{Backend, Database, DbError, Row, SqlValue};

/// The table and its index, as each backend writes them.
fn schema(backend: Backend) -> [&'static str; 4] {
    let table = match backend {
        Backend::Sqlite => {
            "CREATE TABLE IF NOT EXISTS kiln_jobs (\
             id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, queue TEXT NOT NULL, \
             priority INTEGER NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL, \
             attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, \
             run_at INTEGER NOT NULL, locked_until INTEGER, last_error TEXT, \
             created_ms INTEGER NOT NULL, finished_ms INTEGER, unique_key TEXT)"
        }
        Backend::Postgres => {
            "CREATE TABLE IF NOT EXISTS kiln_jobs (\
             id BIGSERIAL PRIMARY KEY, job TEXT NOT NULL, queue TEXT NOT NULL, \
             priority INTEGER NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL, \
             attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, \
             run_at BIGINT NOT NULL, locked_until BIGINT, last_error TEXT, \
             created_ms BIGINT NOT NULL, finished_ms BIGINT, unique_key TEXT)"
        }
    };
    [
        table,
        "CREATE INDEX IF NOT EXISTS kiln_jobs_ready ON kiln_jobs (state, priority DESC, run_at, id)",
        "CREATE INDEX IF NOT EXISTS kiln_jobs_unique ON kiln_jobs (job, unique_key) WHERE unique_key IS NOT NULL",
        // One row per schedule tick taken: the instance that inserts it
        // enqueues the tick's run, the others find it there.
        "CREATE TABLE IF NOT EXISTS kiln_job_ticks (job TEXT NOT NULL, tick BIGINT NOT NULL, \
         token TEXT NOT NULL, PRIMARY KEY (job, tick))",
    ]
}

/// `ids` as the JSON array the id-list statements bind.
fn id_list(ids: &[i64]) -> SqlValue {
    SqlValue::Text(serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_string()))
}

/// `id IN (…the JSON array :ids…)`, as each backend reads a JSON array.
fn ids_in(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "id IN (SELECT value FROM json_each(:ids))",
        Backend::Postgres => {
            "id IN (SELECT value::bigint FROM json_array_elements_text(:ids::text::json))"
        }
    }
}

/// The statements, compiled once for the backend.
pub(crate) struct Store {
    backend: Backend,
    enqueue: Statement,
    enqueue_unique: Statement,
    /// PostgreSQL: serialises enqueues of one unique key until commit.
    lock_key: Option<Statement>,
    notify: Option<Statement>,
    take_tick: Statement,
    enqueue_tick: Statement,
    prune_ticks: Statement,
    batch_due: Statement,
    succeed: Statement,
    retry: Statement,
    bury: Statement,
    release: Statement,
    extend: Statement,
    rescue: Statement,
    prune: Statement,
    depth: Statement,
    oldest_ready: Statement,
}

/// A claim statement for some of the jobs: those of a group that shares
/// a concurrency limit or a batch.
pub(crate) struct ClaimStatement(Statement);

/// What `kiln jobs retry|cancel|purge` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A dead job (or every one) runs again, its attempts from zero.
    Retry,
    /// A ready job is deleted before it runs.
    Cancel,
    /// A finished job (or every dead one) is deleted.
    Purge,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub id: i64,
    pub job: String,
    pub payload: String,
    /// This run's number, from 1.
    pub attempt: u32,
    pub max_attempts: u32,
    pub priority: i64,
    pub run_at: i64,
}

fn compile(sql: &str) -> Statement {
    // Every statement here is kiln's own and parses; a failure would be a
    // bug caught by the first test that runs a job.
    parse_typed(sql, &|_| None).unwrap_or_else(|err| panic!("kiln_jobs statement: {err}"))
}

/// Due: ready and its time has come. (A job running under a lease that
/// ran out is made ready again by [`Store::rescue`]: an `OR` here would
/// keep the claim off the index, and every claim would read the table.)
const DUE: &str = "state = 'ready' AND run_at <= :now";

const INSERT_COLUMNS: &str = "INSERT INTO kiln_jobs (job, queue, priority, payload, state, max_attempts, run_at, created_ms, unique_key)";
const INSERT_VALUES: &str =
    ":job, :queue, :priority, :payload, 'ready', :max_attempts, :run_at, :now, :unique_key";

impl Store {
    pub(crate) fn new(backend: Backend) -> Store {
        let ids = ids_in(backend);
        Store {
            backend,
            enqueue: compile(&format!(
                "{INSERT_COLUMNS} VALUES ({INSERT_VALUES}) RETURNING id"
            )),
            // The first job of a key within the window stays; a dead one
            // no longer counts.
            enqueue_unique: compile(&format!(
                "{INSERT_COLUMNS} SELECT {INSERT_VALUES} WHERE NOT EXISTS (SELECT 1 FROM kiln_jobs \
                 WHERE job = :job AND unique_key = :unique_key AND created_ms > :since AND state <> 'dead') \
                 RETURNING id"
            )),
            lock_key: (backend == Backend::Postgres).then(|| {
                compile(
                    "SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtextextended(:unique_key, 0))) AS held",
                )
            }),
            notify: (backend == Backend::Postgres)
                .then(|| compile("SELECT 1 AS told FROM (SELECT pg_notify('kiln_jobs', :job)) AS sent")),
            take_tick: compile(
                "INSERT INTO kiln_job_ticks (job, tick, token) VALUES (:job, :tick, :token) \
                 ON CONFLICT DO NOTHING",
            ),
            enqueue_tick: compile(&format!(
                "{INSERT_COLUMNS} SELECT {INSERT_VALUES} WHERE EXISTS (SELECT 1 FROM kiln_job_ticks \
                 WHERE job = :job AND tick = :tick AND token = :token) RETURNING id"
            )),
            prune_ticks: compile("DELETE FROM kiln_job_ticks WHERE tick < :before"),
            batch_due: compile(&format!(
                "SELECT COUNT(*) AS due, MIN(run_at) AS oldest FROM (SELECT run_at FROM kiln_jobs \
                 WHERE job = :job AND {DUE} LIMIT :size) AS due_jobs"
            )),
            succeed: compile(&format!(
                "UPDATE kiln_jobs SET state = 'succeeded', finished_ms = :now, locked_until = NULL, \
                 last_error = NULL WHERE {ids}"
            )),
            // Only while still running: a timed-out SQLite transaction
            // may commit after all, and its success must stand.
            retry: compile(&format!(
                "UPDATE kiln_jobs SET state = 'ready', run_at = :run_at, locked_until = NULL, \
                 last_error = :error WHERE {ids} AND state = 'running'"
            )),
            bury: compile(&format!(
                "UPDATE kiln_jobs SET state = 'dead', finished_ms = :now, locked_until = NULL, \
                 last_error = :error WHERE {ids} AND state = 'running'"
            )),
            release: compile(&format!(
                "UPDATE kiln_jobs SET state = 'ready', locked_until = NULL, \
                 attempts = attempts - 1 WHERE {ids} AND state = 'running'"
            )),
            extend: compile(&format!(
                "UPDATE kiln_jobs SET locked_until = :until WHERE {ids} AND state = 'running'"
            )),
            rescue: compile(
                "UPDATE kiln_jobs SET state = 'ready', locked_until = NULL \
                 WHERE state = 'running' AND locked_until < :now RETURNING id",
            ),
            prune: compile(
                "DELETE FROM kiln_jobs WHERE (state = 'succeeded' AND finished_ms < :done_before) \
                 OR (state = 'dead' AND finished_ms < :dead_before)",
            ),
            depth: compile(
                "SELECT state, priority, COUNT(*) AS jobs FROM kiln_jobs GROUP BY state, priority",
            ),
            oldest_ready: compile(
                "SELECT MIN(run_at) AS due FROM kiln_jobs WHERE state = 'ready' AND run_at <= :now",
            ),
        }
    }

    /// Binds `values` by name to `statement`'s parameters (a name left
    /// out binds NULL).
    fn bind(&self, statement: &Statement, values: &[(&str, SqlValue)]) -> (String, Vec<SqlValue>) {
        let args = statement
            .params
            .iter()
            .map(|name| {
                values
                    .iter()
                    .find(|(given, _)| given == name)
                    .map_or(SqlValue::Null, |(_, value)| value.clone())
            })
            .collect();
        (statement.text(self.backend).to_string(), args)
    }

    /// Creates the tables when they are missing, and adds the columns
    /// later versions of kiln need. A read looks first: once the table is
    /// current, `kiln jobs list` needs no write lock (which a running
    /// SQLite job may hold).
    pub(crate) async fn ensure(&self, database: &Database) -> Result<(), DbError> {
        let current = vec![(
            "SELECT unique_key FROM kiln_jobs, kiln_job_ticks WHERE 1 = 0".to_string(),
            Vec::new(),
        )];
        if database.read(current).await.is_ok() {
            return Ok(());
        }
        let statements = schema(self.backend)[..1]
            .iter()
            .map(|sql| (sql.to_string(), Vec::new()))
            .collect();
        database.write(statements, None).await?;
        // A table from before `unique_key` (kiln 0.x): SQLite has no
        // `ADD COLUMN IF NOT EXISTS`, so the column is looked for first.
        let has_key = vec![(
            "SELECT unique_key FROM kiln_jobs WHERE 1 = 0".to_string(),
            Vec::new(),
        )];
        if database.read(has_key).await.is_err() {
            let add = match self.backend {
                Backend::Sqlite => "ALTER TABLE kiln_jobs ADD COLUMN unique_key TEXT",
                Backend::Postgres => {
                    "ALTER TABLE kiln_jobs ADD COLUMN IF NOT EXISTS unique_key TEXT"
                }
            }
            .to_string();
            database.write(vec![(add, Vec::new())], None).await?;
        }
        let rest = schema(self.backend)[1..]
            .iter()
            .map(|sql| (sql.to_string(), Vec::new()))
            .collect();
        database.write(rest, None).await.map(|_| ())
    }

    /// The statements that enqueue a job, for a transaction of the
    /// caller's. With `unique` (its key and the window's start) the job
    /// is inserted only when no job of the key was within the window.
    pub(crate) fn enqueue_statements(
        &self,
        job: &crate::config::JobConfig,
        payload: String,
        run_at: i64,
        now: i64,
        unique: Option<(String, i64)>,
    ) -> Vec<(String, Vec<SqlValue>)> {
        let mut values = vec![
            ("job", SqlValue::Text(job.name.clone())),
            ("queue", SqlValue::Text(job.queue.clone())),
            ("priority", SqlValue::Int(i64::from(job.priority))),
            ("payload", SqlValue::Text(payload)),
            ("max_attempts", SqlValue::Int(i64::from(job.max_attempts))),
            ("run_at", SqlValue::Int(run_at)),
            ("now", SqlValue::Int(now)),
        ];
        let mut statements = Vec::with_capacity(3);
        match unique {
            None => statements.push(self.bind(&self.enqueue, &values)),
            Some((key, since)) => {
                values.push(("unique_key", SqlValue::Text(key)));
                values.push(("since", SqlValue::Int(since)));
                if let Some(lock) = &self.lock_key {
                    statements.push(self.bind(lock, &values));
                }
                statements.push(self.bind(&self.enqueue_unique, &values));
            }
        }
        if let Some(notify) = &self.notify {
            statements.push(self.bind(notify, &values));
        }
        statements
    }

    /// The statements that enqueue schedule tick `tick` of `job` unless
    /// another instance took the tick first (`token` tells this
    /// instance's row from theirs).
    pub(crate) fn tick_statements(
        &self,
        job: &crate::config::JobConfig,
        payload: String,
        tick: i64,
        token: &str,
    ) -> Vec<(String, Vec<SqlValue>)> {
        let values = [
            ("job", SqlValue::Text(job.name.clone())),
            ("queue", SqlValue::Text(job.queue.clone())),
            ("priority", SqlValue::Int(i64::from(job.priority))),
            ("payload", SqlValue::Text(payload)),
            ("max_attempts", SqlValue::Int(i64::from(job.max_attempts))),
            ("run_at", SqlValue::Int(tick)),
            ("now", SqlValue::Int(tick)),
            ("tick", SqlValue::Int(tick)),
            ("token", SqlValue::Text(token.to_string())),
        ];
        let mut statements = vec![
            self.bind(&self.take_tick, &values),
            self.bind(&self.enqueue_tick, &values),
        ];
        if let Some(notify) = &self.notify {
            statements.push(self.bind(notify, &values));
        }
        statements
    }

    /// A claim statement for the jobs named `names`.
    pub(crate) fn claim_statement(&self, names: &[String]) -> ClaimStatement {
        let list: Vec<String> = names
            .iter()
            .map(|name| format!("'{}'", name.replace('\'', "''")))
            .collect();
        let known = if list.is_empty() {
            "FALSE".to_string()
        } else {
            format!("job IN ({})", list.join(", "))
        };
        let skip_locked = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        ClaimStatement(compile(&format!(
            "UPDATE kiln_jobs SET state = 'running', attempts = attempts + 1, locked_until = :until \
             WHERE id IN (SELECT id FROM kiln_jobs WHERE {known} AND {DUE} \
             ORDER BY priority DESC, run_at, id LIMIT :limit{skip_locked}) \
             RETURNING id, job, payload, attempts, max_attempts, priority, run_at"
        )))
    }

    /// Claims up to `limit` due jobs of `statement`'s group, leased
    /// until `until`. One statement, in autocommit: atomic on both
    /// backends, and a claim of several jobs costs one transaction, not
    /// one each.
    pub(crate) async fn claim(
        &self,
        database: &Database,
        statement: &ClaimStatement,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, DbError> {
        let statement = self.bind(
            &statement.0,
            &[
                ("now", SqlValue::Int(now)),
                ("until", SqlValue::Int(until)),
                ("limit", SqlValue::Int(limit as i64)),
            ],
        );
        let results = database.read(vec![statement]).await?;
        let mut claimed: Vec<Claimed> = results
            .into_iter()
            .flatten()
            .filter_map(|row| claimed(&row))
            .collect();
        // RETURNING gives no order: deliveries keep the queue's.
        claimed.sort_by_key(|job| (std::cmp::Reverse(job.priority), job.run_at, job.id));
        Ok(claimed)
    }

    /// How many of `job`'s jobs are due (up to `size`), and when the
    /// first of them fell due.
    pub(crate) async fn batch_due(
        &self,
        database: &Database,
        job: &str,
        size: usize,
        now: i64,
    ) -> Result<(i64, Option<i64>), DbError> {
        let statement = self.bind(
            &self.batch_due,
            &[
                ("job", SqlValue::Text(job.to_string())),
                ("size", SqlValue::Int(size as i64)),
                ("now", SqlValue::Int(now)),
            ],
        );
        let results = database.read(vec![statement]).await?;
        let row = results.first().and_then(|rows| rows.first());
        Ok((
            row.and_then(|row| int(row, "due")).unwrap_or(0),
            row.and_then(|row| int(row, "oldest")),
        ))
    }

    /// The statement that records the success of jobs `ids`, for the
    /// jobs' own transaction (a `sql` job's writes and its success commit
    /// together).
    pub(crate) fn succeed_statement(&self, ids: &[i64], now: i64) -> (String, Vec<SqlValue>) {
        self.bind(
            &self.succeed,
            &[("ids", id_list(ids)), ("now", SqlValue::Int(now))],
        )
    }

    pub(crate) async fn succeed(
        &self,
        database: &Database,
        ids: &[i64],
        now: i64,
    ) -> Result<(), DbError> {
        let statement = self.succeed_statement(ids, now);
        database.write(vec![statement], None).await.map(|_| ())
    }

    pub(crate) async fn retry(
        &self,
        database: &Database,
        ids: &[i64],
        run_at: i64,
        error: &str,
    ) -> Result<(), DbError> {
        let statement = self.bind(
            &self.retry,
            &[
                ("ids", id_list(ids)),
                ("run_at", SqlValue::Int(run_at)),
                ("error", SqlValue::Text(error.to_string())),
            ],
        );
        database.write(vec![statement], None).await.map(|_| ())
    }

    /// Gives back jobs this process claimed and did not finish (a stop
    /// past its grace): ready again at once, the interrupted attempt not
    /// counted.
    pub(crate) async fn release(&self, database: &Database, ids: &[i64]) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        let statement = self.bind(&self.release, &[("ids", id_list(ids))]);
        database.write(vec![statement], None).await.map(|_| ())
    }

    /// Heartbeat: the leases of jobs `ids`, still running here, run on
    /// to `until`.
    pub(crate) async fn extend(
        &self,
        database: &Database,
        ids: &[i64],
        until: i64,
    ) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        let statement = self.bind(
            &self.extend,
            &[("ids", id_list(ids)), ("until", SqlValue::Int(until))],
        );
        database.write(vec![statement], None).await.map(|_| ())
    }

    /// Makes the jobs whose lease ran out (their process died, or stopped
    /// beating) ready again, to be claimed as any other; the lost attempt
    /// stays counted. Whether there were any.
    pub(crate) async fn rescue(&self, database: &Database, now: i64) -> Result<bool, DbError> {
        let statement = self.bind(&self.rescue, &[("now", SqlValue::Int(now))]);
        let row = database.write(vec![statement], None).await?;
        Ok(row.contains_key("id"))
    }

    pub(crate) async fn bury(
        &self,
        database: &Database,
        ids: &[i64],
        now: i64,
        error: &str,
    ) -> Result<(), DbError> {
        let statement = self.bind(
            &self.bury,
            &[
                ("ids", id_list(ids)),
                ("now", SqlValue::Int(now)),
                ("error", SqlValue::Text(error.to_string())),
            ],
        );
        database.write(vec![statement], None).await.map(|_| ())
    }

    pub(crate) async fn prune(
        &self,
        database: &Database,
        done_before: i64,
        dead_before: i64,
    ) -> Result<(), DbError> {
        let statement = self.bind(
            &self.prune,
            &[
                ("done_before", SqlValue::Int(done_before)),
                ("dead_before", SqlValue::Int(dead_before)),
            ],
        );
        // A tick is taken by an instance within seconds of it; a day
        // leaves room for clocks that disagree.
        let ticks = self.bind(
            &self.prune_ticks,
            &[(
                "before",
                SqlValue::Int(done_before.min(dead_before) - 86_400_000),
            )],
        );
        database
            .write(vec![statement, ticks], None)
            .await
            .map(|_| ())
    }

    /// Jobs by state and priority, and when the oldest ready job fell
    /// due.
    pub(crate) async fn depth(
        &self,
        database: &Database,
        now: i64,
    ) -> Result<(Vec<(String, i64, i64)>, Option<i64>), DbError> {
        let results = database
            .read(vec![
                self.bind(&self.depth, &[]),
                self.bind(&self.oldest_ready, &[("now", SqlValue::Int(now))]),
            ])
            .await?;
        let by_state = results
            .first()
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| {
                        Some((
                            text(row, "state")?,
                            int(row, "priority")?,
                            int(row, "jobs")?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let oldest = results
            .get(1)
            .and_then(|rows| rows.first())
            .and_then(|row| int(row, "due"));
        Ok((by_state, oldest))
    }

    /// `kiln jobs retry|cancel|purge`: changes the jobs `selector` picks
    /// (`id = :id AND …` or `state = 'dead'`); returns how many it changed.
    pub(crate) async fn operate(
        &self,
        database: &Database,
        operation: Operation,
        id: Option<i64>,
        now: i64,
    ) -> Result<i64, DbError> {
        let selector = match (operation, id) {
            (Operation::Retry, Some(_)) => "id = :id AND state = 'dead'",
            (Operation::Cancel, Some(_)) => "id = :id AND state = 'ready'",
            (_, None) => "state = 'dead'",
            (Operation::Purge, Some(_)) => "id = :id AND state IN ('dead', 'succeeded')",
        };
        let change = match operation {
            Operation::Retry => format!(
                "UPDATE kiln_jobs SET state = 'ready', attempts = 0, run_at = :now, \
                 finished_ms = NULL WHERE {selector}"
            ),
            Operation::Cancel | Operation::Purge => {
                format!("DELETE FROM kiln_jobs WHERE {selector}")
            }
        };
        let count = compile(&format!(
            "SELECT count(*) AS jobs FROM kiln_jobs WHERE {selector}"
        ));
        let values = [
            ("id", SqlValue::Int(id.unwrap_or(0))),
            ("now", SqlValue::Int(now)),
        ];
        // Counted, then changed in one transaction: the count is what the
        // change touched.
        let row = database
            .write(
                vec![
                    self.bind(&count, &values),
                    self.bind(&compile(&change), &values),
                ],
                None,
            )
            .await?;
        Ok(int(&row, "jobs").unwrap_or(0))
    }

    /// The newest jobs, in `state` and `queue` when given.
    pub(crate) async fn list(
        &self,
        database: &Database,
        state: Option<&str>,
        queue: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Row>, DbError> {
        let mut conditions = Vec::new();
        let mut values = vec![("limit", SqlValue::Int(limit))];
        if let Some(state) = state {
            conditions.push("state = :state");
            values.push(("state", SqlValue::Text(state.to_string())));
        }
        if let Some(queue) = queue {
            conditions.push("queue = :queue");
            values.push(("queue", SqlValue::Text(queue.to_string())));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {} ", conditions.join(" AND "))
        };
        let statement = compile(&format!(
            "SELECT id, job, queue, priority, state, attempts, max_attempts, run_at, last_error, payload \
             FROM kiln_jobs {filter}ORDER BY id DESC LIMIT :limit"
        ));
        let results = database.read(vec![self.bind(&statement, &values)]).await?;
        Ok(results.into_iter().next().unwrap_or_default())
    }
}

fn claimed(row: &Row) -> Option<Claimed> {
    Some(Claimed {
        id: int(row, "id")?,
        job: text(row, "job")?,
        payload: text(row, "payload")?,
        attempt: u32::try_from(int(row, "attempts")?).ok()?,
        max_attempts: u32::try_from(int(row, "max_attempts")?).ok()?,
        priority: int(row, "priority")?,
        run_at: int(row, "run_at")?,
    })
}

fn int(row: &Row, column: &str) -> Option<i64> {
    match row.get(column)? {
        SqlValue::Int(value) => Some(*value),
        SqlValue::Float(value) => Some(*value as i64),
        SqlValue::Text(text) => text.parse().ok(),
        _ => None,
    }
}

fn text(row: &Row, column: &str) -> Option<String> {
    match row.get(column)? {
        SqlValue::Text(text) => Some(text.clone()),
        SqlValue::Int(value) => Some(value.to_string()),
        _ => None,
    }
}
