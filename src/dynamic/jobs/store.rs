//! The queue's table in the site's database, `kiln_jobs`, and the
//! statements that move a job through its states:
//!
//! `ready` → (claimed) `running` → `succeeded`, or back to `ready` with a
//! later `run_at` (a retry), or `dead` after its last attempt.
//!
//! A claim takes the ready job of highest priority (then earliest due,
//! then oldest) in one statement, `UPDATE … WHERE id = (SELECT … LIMIT 1)
//! RETURNING`, and leases it until `locked_until`; a running job whose
//! lease ran out (its process died) is claimable again. On PostgreSQL the
//! inner select takes `FOR UPDATE SKIP LOCKED`, so instances claiming at
//! once skip each other's rows instead of waiting (River's and
//! graphile-worker's scheme); SQLite serialises writers, so the statement
//! is atomic there as it stands.

use crate::dynamic::db::sql::{Statement, parse_typed};
use crate::dynamic::db::{Backend, Database, DbError, Row, SqlValue};

/// The table and its index, as each backend writes them.
fn schema(backend: Backend) -> [&'static str; 2] {
    let table = match backend {
        Backend::Sqlite => {
            "CREATE TABLE IF NOT EXISTS kiln_jobs (\
             id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, queue TEXT NOT NULL, \
             priority INTEGER NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL, \
             attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, \
             run_at INTEGER NOT NULL, locked_until INTEGER, last_error TEXT, \
             created_ms INTEGER NOT NULL, finished_ms INTEGER)"
        }
        Backend::Postgres => {
            "CREATE TABLE IF NOT EXISTS kiln_jobs (\
             id BIGSERIAL PRIMARY KEY, job TEXT NOT NULL, queue TEXT NOT NULL, \
             priority INTEGER NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL, \
             attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, \
             run_at BIGINT NOT NULL, locked_until BIGINT, last_error TEXT, \
             created_ms BIGINT NOT NULL, finished_ms BIGINT)"
        }
    };
    [
        table,
        "CREATE INDEX IF NOT EXISTS kiln_jobs_ready ON kiln_jobs (state, priority DESC, run_at, id)",
    ]
}

/// The statements, compiled once for the backend and the job names this
/// process runs.
pub(crate) struct Store {
    backend: Backend,
    enqueue: Statement,
    claim: Statement,
    succeed: Statement,
    retry: Statement,
    bury: Statement,
    release: Statement,
    prune: Statement,
    depth: Statement,
    oldest_ready: Statement,
}

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
}

fn compile(sql: &str) -> Statement {
    // Every statement here is kiln's own and parses; a failure would be a
    // bug caught by the first test that runs a job.
    parse_typed(sql, &|_| None).unwrap_or_else(|err| panic!("kiln_jobs statement: {err}"))
}

impl Store {
    /// `names` are the jobs this process can run: it claims no other.
    pub(crate) fn new(backend: Backend, names: &[String]) -> Store {
        let known = if names.is_empty() {
            "FALSE".to_string()
        } else {
            let list: Vec<String> = names
                .iter()
                .map(|name| format!("'{}'", name.replace('\'', "''")))
                .collect();
            format!("job IN ({})", list.join(", "))
        };
        let skip_locked = match backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        Store {
            backend,
            enqueue: compile(
                "INSERT INTO kiln_jobs (job, queue, priority, payload, state, max_attempts, run_at, created_ms) \
                 VALUES (:job, :queue, :priority, :payload, 'ready', :max_attempts, :run_at, :now) RETURNING id",
            ),
            claim: compile(&format!(
                "UPDATE kiln_jobs SET state = 'running', attempts = attempts + 1, locked_until = :until \
                 WHERE id IN (SELECT id FROM kiln_jobs WHERE {known} AND \
                 ((state = 'ready' AND run_at <= :now) OR (state = 'running' AND locked_until < :now)) \
                 ORDER BY priority DESC, run_at, id LIMIT :limit{skip_locked}) \
                 RETURNING id, job, payload, attempts, max_attempts"
            )),
            succeed: compile(
                "UPDATE kiln_jobs SET state = 'succeeded', finished_ms = :now, locked_until = NULL, \
                 last_error = NULL WHERE id = :id",
            ),
            retry: compile(
                "UPDATE kiln_jobs SET state = 'ready', run_at = :run_at, locked_until = NULL, \
                 last_error = :error WHERE id = :id",
            ),
            bury: compile(
                "UPDATE kiln_jobs SET state = 'dead', finished_ms = :now, locked_until = NULL, \
                 last_error = :error WHERE id = :id",
            ),
            release: compile(
                "UPDATE kiln_jobs SET state = 'ready', locked_until = NULL, \
                 attempts = attempts - 1 WHERE id = :id AND state = 'running'",
            ),
            prune: compile(
                "DELETE FROM kiln_jobs WHERE (state = 'succeeded' AND finished_ms < :done_before) \
                 OR (state = 'dead' AND finished_ms < :dead_before)",
            ),
            depth: compile("SELECT state, COUNT(*) AS jobs FROM kiln_jobs GROUP BY state"),
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

    /// Creates the table when it is missing. A read looks first: once the
    /// table exists, `kiln jobs list` needs no write lock (which a running
    /// SQLite job may hold).
    pub(crate) async fn ensure(&self, database: &Database) -> Result<(), DbError> {
        let exists = vec![(
            "SELECT id FROM kiln_jobs WHERE 1 = 0".to_string(),
            Vec::new(),
        )];
        if database.read(exists).await.is_ok() {
            return Ok(());
        }
        let statements = schema(self.backend)
            .iter()
            .map(|sql| (sql.to_string(), Vec::new()))
            .collect();
        database.write(statements, None).await.map(|_| ())
    }

    /// The statement that enqueues a job, for a transaction of the caller's.
    pub(crate) fn enqueue_statement(
        &self,
        job: &crate::config::JobConfig,
        payload: String,
        run_at: i64,
        now: i64,
    ) -> (String, Vec<SqlValue>) {
        self.bind(
            &self.enqueue,
            &[
                ("job", SqlValue::Text(job.name.clone())),
                ("queue", SqlValue::Text(job.queue.clone())),
                ("priority", SqlValue::Int(i64::from(job.priority))),
                ("payload", SqlValue::Text(payload)),
                ("max_attempts", SqlValue::Int(i64::from(job.max_attempts))),
                ("run_at", SqlValue::Int(run_at)),
                ("now", SqlValue::Int(now)),
            ],
        )
    }

    /// Claims up to `limit` due jobs, leased until `until`. One
    /// statement, in autocommit: atomic on both backends, and a claim of
    /// several jobs costs one transaction, not one each.
    pub(crate) async fn claim(
        &self,
        database: &Database,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, DbError> {
        let statement = self.bind(
            &self.claim,
            &[
                ("now", SqlValue::Int(now)),
                ("until", SqlValue::Int(until)),
                ("limit", SqlValue::Int(limit as i64)),
            ],
        );
        let results = database.read(vec![statement]).await?;
        Ok(results
            .into_iter()
            .flatten()
            .filter_map(|row| claimed(&row))
            .collect())
    }

    /// The statement that records job `id`'s success, for the job's own
    /// transaction (a `sql` job's writes and its success commit together).
    pub(crate) fn succeed_statement(&self, id: i64, now: i64) -> (String, Vec<SqlValue>) {
        self.bind(
            &self.succeed,
            &[("id", SqlValue::Int(id)), ("now", SqlValue::Int(now))],
        )
    }

    pub(crate) async fn retry(
        &self,
        database: &Database,
        id: i64,
        run_at: i64,
        error: &str,
    ) -> Result<(), DbError> {
        let statement = self.bind(
            &self.retry,
            &[
                ("id", SqlValue::Int(id)),
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
        let statements = ids
            .iter()
            .map(|id| self.bind(&self.release, &[("id", SqlValue::Int(*id))]))
            .collect::<Vec<_>>();
        if statements.is_empty() {
            return Ok(());
        }
        database.write(statements, None).await.map(|_| ())
    }

    pub(crate) async fn bury(
        &self,
        database: &Database,
        id: i64,
        now: i64,
        error: &str,
    ) -> Result<(), DbError> {
        let statement = self.bind(
            &self.bury,
            &[
                ("id", SqlValue::Int(id)),
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
        database.write(vec![statement], None).await.map(|_| ())
    }

    /// Jobs by state, and when the oldest ready job fell due.
    pub(crate) async fn depth(
        &self,
        database: &Database,
        now: i64,
    ) -> Result<(Vec<(String, i64)>, Option<i64>), DbError> {
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
                    .filter_map(|row| Some((text(row, "state")?, int(row, "jobs")?)))
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

    /// The newest jobs, in `state` when given.
    pub(crate) async fn list(
        &self,
        database: &Database,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Row>, DbError> {
        let filter = if state.is_some() {
            "WHERE state = :state "
        } else {
            ""
        };
        let statement = compile(&format!(
            "SELECT id, job, queue, priority, state, attempts, max_attempts, run_at, last_error, payload \
             FROM kiln_jobs {filter}ORDER BY id DESC LIMIT :limit"
        ));
        let mut values = vec![("limit", SqlValue::Int(limit))];
        if let Some(state) = state {
            values.push(("state", SqlValue::Text(state.to_string())));
        }
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
