//! The database behind dynamic routes: one pool (deadpool) over SQLite
//! (embedded default) or PostgreSQL, chosen by `[database].url`.
//!
//! The pool hands out idle connections in LIFO or FIFO order, checks them
//! before reuse (`pre_ping`), replaces them past `max_lifetime`, closes
//! those idle past `idle_timeout` down to `min_idle`, and gives up waiting
//! after `acquire_timeout` (the route answers 503, never hangs). Write
//! transactions that lose to another writer (SQLITE_BUSY, serialization
//! failure, deadlock) are retried with jittered backoff.

pub(crate) mod migrate;
pub(crate) mod postgres;
pub(crate) mod sql;
pub(crate) mod sqlite;
pub(crate) mod value;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use deadpool::Runtime;
use deadpool::managed::{self, Object, PoolError, QueueMode, Timeouts};

use crate::config::{DatabaseConfig, Isolation, QueueOrder};
use crate::http::metrics::{Exposition, Histogram};
pub use sql::Statement;
pub use value::{Row, SqlValue};

/// Statements a write transaction runs after its own, made from the row
/// they returned (a job enqueued with a RETURNING column in its payload):
/// they commit with the write or not at all, and what they return is not
/// the write's. An error rolls the whole transaction back.
/// Statements with their arguments, as a transaction runs them.
pub type Statements = Vec<(String, Vec<SqlValue>)>;

/// Statements run after [`Database::write_each`]'s groups, in their
/// transaction, given the indices of the groups that succeeded.
pub type ThenStatements = dyn Fn(&[usize]) -> Vec<(String, Vec<SqlValue>)> + Send + Sync;

pub type Followup = Arc<dyn Fn(&Row) -> Result<Vec<(String, Vec<SqlValue>)>, String> + Send + Sync>;

/// Which server the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl Statement {
    /// The statement's text for `backend`.
    pub fn text(&self, backend: Backend) -> &str {
        match backend {
            Backend::Sqlite => &self.sqlite,
            Backend::Postgres => &self.postgres,
        }
    }
}

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Every connection stayed busy for `acquire_timeout`.
    #[error("no database connection became free within {0:?}")]
    Timeout(Duration),
    /// The database cannot be reached (or a connection broke mid-call).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A write kept losing to other writers through every retry.
    #[error("the database stayed busy through {0} retries")]
    Busy(u32),
    /// A statement ran past `database.statement_timeout_ms` and was cancelled.
    #[error("a statement ran longer than database.statement_timeout_ms ({0:?}) and was cancelled")]
    StatementTimeout(Duration),
    /// The statement itself failed.
    #[error("{0}")]
    Query(String),
}

impl DbError {
    /// Temporary: the client should retry later (503), not a bug (500).
    pub fn is_temporary(&self) -> bool {
        !matches!(self, DbError::Query(_))
    }
}

enum Pool {
    Sqlite(managed::Pool<sqlite::Manager>),
    Postgres(managed::Pool<postgres::Manager>),
}

/// A connection checked out of the pool; back in the pool when dropped.
pub enum Conn {
    Sqlite(Object<sqlite::Manager>),
    /// Boxed: a client with its statement cache is several times the size
    /// of a SQLite handle.
    Postgres(Box<Object<postgres::Manager>>),
}

impl Conn {
    /// The connection's number, in order of creation.
    pub fn id(&self) -> u64 {
        match self {
            Conn::Sqlite(conn) => conn.id,
            Conn::Postgres(conn) => conn.id,
        }
    }

    /// Runs read statements on this connection, in order. A statement
    /// running past `limit` is cancelled (PostgreSQL cancels it itself, by
    /// the connection's `statement_timeout`). A statement whose caller
    /// stops waiting (the request was dropped: its client went away) is
    /// interrupted on SQLite, and cancelled on PostgreSQL, whose connection
    /// then leaves the pool ([`CancelOnDrop`]).
    pub async fn read(
        self,
        statements: Vec<(String, Vec<SqlValue>)>,
        limit: Option<Duration>,
    ) -> Result<Vec<Vec<Row>>, DbError> {
        let timed_out = || DbError::StatementTimeout(limit.unwrap_or_default());
        match self {
            Conn::Sqlite(conn) => conn
                .interact_within(limit, move |conn| {
                    statements
                        .iter()
                        .map(|(sql, args)| sqlite::query(conn, sql, args))
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .await
                .map_err(|err| DbError::Query(err.to_string()))?
                .map_err(|err| match sqlite::is_interrupted(&err) {
                    true => timed_out(),
                    false => DbError::Query(err.to_string()),
                }),
            Conn::Postgres(conn) => {
                let mut guard = CancelOnDrop(Some(conn));
                let mut results = Vec::with_capacity(statements.len());
                for (sql, args) in &statements {
                    let Some(conn) = guard.0.as_mut() else {
                        break;
                    };
                    match conn.query(sql, args).await {
                        Ok(rows) => results.push(rows),
                        Err(err) => {
                            let Some(conn) = guard.0.take() else {
                                break;
                            };
                            if err.is_cancelled() {
                                return Err(timed_out());
                            }
                            return Err(postgres_failure(*conn, err));
                        }
                    }
                }
                guard.0.take();
                Ok(results)
            }
        }
    }

    /// Runs write statements in one transaction.
    async fn write(
        self,
        statements: Arc<Vec<(String, Vec<SqlValue>)>>,
        isolation: Isolation,
        followup: Option<Followup>,
    ) -> Result<Row, (DbError, bool)> {
        match self {
            Conn::Sqlite(conn) => sqlite_outcome(
                conn.interact(move |conn| sqlite::write(conn, &statements, followup.as_ref()))
                    .await,
            ),
            Conn::Postgres(mut conn) => {
                let result = conn.write(&statements, isolation, followup.as_ref()).await;
                postgres_outcome(*conn, result)
            }
        }
    }

    /// Each group in its own savepoint of one transaction.
    async fn write_each(
        self,
        groups: Arc<Vec<Statements>>,
        isolation: Isolation,
        then: Arc<ThenStatements>,
    ) -> Result<Vec<Option<String>>, (DbError, bool)> {
        match self {
            Conn::Sqlite(conn) => sqlite_outcome(
                conn.interact(move |conn| sqlite::write_each(conn, &groups, then.as_ref()))
                    .await,
            ),
            Conn::Postgres(mut conn) => {
                let result = conn.write_each(&groups, isolation, then.as_ref()).await;
                postgres_outcome(*conn, result)
            }
        }
    }

    /// Tables `sql` reads by scanning every row.
    pub async fn scanned_tables(
        self,
        sql: String,
        args: Vec<SqlValue>,
    ) -> Result<Vec<String>, DbError> {
        match self {
            Conn::Sqlite(conn) => conn
                .interact(move |conn| sqlite::scanned_tables(conn, &sql, &args))
                .await
                .map_err(|err| DbError::Query(err.to_string()))?
                .map_err(|err| DbError::Query(err.to_string())),
            Conn::Postgres(mut conn) => conn
                .scanned_tables(&sql, &args)
                .await
                .map_err(|err| DbError::Query(err.to_string())),
        }
    }
}

/// A SQLite write's outcome for the retry loop: the error, and whether
/// another writer held the lock (worth retrying).
fn sqlite_outcome<T, E: std::fmt::Display>(
    result: Result<rusqlite::Result<T>, E>,
) -> Result<T, (DbError, bool)> {
    result
        .map_err(|err| (DbError::Query(err.to_string()), false))?
        .map_err(|err| {
            let busy = sqlite::is_busy(&err);
            (DbError::Query(err.to_string()), busy)
        })
}

/// A PostgreSQL write's outcome for the retry loop: a cancelled
/// statement is a timeout, a serialisation failure worth retrying.
fn postgres_outcome<T>(
    conn: Object<postgres::Manager>,
    result: Result<T, postgres::QueryError>,
) -> Result<T, (DbError, bool)> {
    match result {
        Ok(done) => Ok(done),
        Err(err) if err.is_cancelled() => Err((DbError::StatementTimeout(Duration::ZERO), false)),
        Err(err) => {
            let retry = err.is_retryable();
            Err((postgres_failure(conn, err), retry))
        }
    }
}

/// The indices of the groups [`Database::write_each`] committed.
pub(crate) fn succeeded(outcomes: &[Option<String>]) -> Vec<usize> {
    outcomes
        .iter()
        .enumerate()
        .filter(|(_, outcome)| outcome.is_none())
        .map(|(index, _)| index)
        .collect()
}

/// A PostgreSQL connection lent to reads. If the reads are dropped before
/// they finish (the client went away), the connection leaves the pool for
/// good and the server is asked to cancel its statement: since no request
/// can be lent it again, the cancel request cannot reach another one's.
struct CancelOnDrop(Option<Box<Object<postgres::Manager>>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(conn) = self.0.take() else {
            return;
        };
        let cancel = conn.client.cancel_token();
        drop(Object::take(*conn));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = cancel.cancel_query(tokio_postgres::NoTls).await;
            });
        }
    }
}

/// Classifies a PostgreSQL failure; a connection that broke is dropped
/// instead of going back to the pool.
fn postgres_failure(conn: Object<postgres::Manager>, err: postgres::QueryError) -> DbError {
    if err.is_connection_lost() || conn.client.is_closed() {
        let _ = Object::take(conn);
        return DbError::Unavailable(err.to_string());
    }
    DbError::Query(err.to_string())
}

/// The pool settings that act after start-up.
#[derive(Debug, Clone)]
struct Policy {
    min_idle: usize,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    acquire_timeout: Duration,
    retries: u32,
    isolation: Isolation,
    /// `database.statement_timeout_ms`, when set.
    statement_timeout: Option<Duration>,
}

/// Pool counters for `/metrics`.
#[derive(Default)]
pub struct PoolMetrics {
    acquire_wait: Histogram,
    acquire_timeouts: AtomicU64,
    write_retries: AtomicU64,
    write_busy_failures: AtomicU64,
}

/// The pool and its policy.
pub struct Database {
    pool: Pool,
    backend: Backend,
    policy: Policy,
    pub metrics: PoolMetrics,
}

/// How often idle connections are retired and `min_idle` topped up.
const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(500);

impl Database {
    /// Builds the pool (connections open on demand). `root` resolves a
    /// relative SQLite path; its directory is created when missing.
    pub fn open(config: &DatabaseConfig, root: &Path) -> Result<Database, DbError> {
        let seconds = |value: u64| (value > 0).then(|| Duration::from_secs(value));
        let policy = Policy {
            min_idle: config.min_idle,
            idle_timeout: seconds(config.idle_timeout_secs),
            max_lifetime: seconds(config.max_lifetime_secs),
            acquire_timeout: Duration::from_millis(config.acquire_timeout_ms),
            retries: config.retries,
            isolation: config.isolation,
            statement_timeout: (config.statement_timeout_ms > 0)
                .then(|| Duration::from_millis(config.statement_timeout_ms)),
        };
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let (pool, backend) = if let Some(path) = config.url.strip_prefix("sqlite://") {
            let path = sqlite_path(root, path)?;
            let manager = sqlite::Manager::new(
                path,
                Duration::from_millis(config.busy_timeout_ms),
                config.statement_cache,
                config.pre_ping,
                policy.max_lifetime,
            );
            (Pool::Sqlite(build_pool(manager, config)?), Backend::Sqlite)
        } else {
            let mut pg: tokio_postgres::Config = config
                .url
                .parse()
                .map_err(|err| DbError::Unavailable(format!("database.url: {err}")))?;
            pg.connect_timeout(connect_timeout);
            if pg.get_application_name().is_none() {
                pg.application_name("kiln");
            }
            let manager = postgres::Manager::new(
                pg,
                config.statement_cache,
                config.pre_ping,
                policy.max_lifetime,
                config.statement_timeout_ms,
            );
            (
                Pool::Postgres(build_pool(manager, config)?),
                Backend::Postgres,
            )
        };
        Ok(Database {
            pool,
            backend,
            policy,
            metrics: PoolMetrics::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// On PostgreSQL, notifications on `channel` (`LISTEN`) from a
    /// connection outside the pool; `None` on SQLite.
    pub(crate) fn listen(&self, channel: &str) -> Option<tokio::sync::mpsc::Receiver<()>> {
        match &self.pool {
            Pool::Sqlite(_) => None,
            Pool::Postgres(pool) => Some(postgres::listen(pool.manager().config.clone(), channel)),
        }
    }

    /// Checks a connection out, waiting at most `acquire_timeout`.
    pub async fn acquire(&self) -> Result<Conn, DbError> {
        let started = Instant::now();
        let result = match &self.pool {
            Pool::Sqlite(pool) => pool.get().await.map(Conn::Sqlite).map_err(pool_error),
            Pool::Postgres(pool) => pool
                .get()
                .await
                .map(|conn| Conn::Postgres(Box::new(conn)))
                .map_err(pool_error),
        };
        self.metrics.acquire_wait.observe(started.elapsed());
        if matches!(result, Err(DbError::Timeout(_))) {
            self.metrics
                .acquire_timeouts
                .fetch_add(1, Ordering::Relaxed);
            return Err(DbError::Timeout(self.policy.acquire_timeout));
        }
        result
    }

    /// Runs read statements on one connection.
    pub async fn read(
        &self,
        statements: Vec<(String, Vec<SqlValue>)>,
    ) -> Result<Vec<Vec<Row>>, DbError> {
        self.acquire()
            .await?
            .read(statements, self.policy.statement_timeout)
            .await
    }

    /// Runs write statements in one transaction, retrying with jittered
    /// backoff when another writer got in the way. `isolation` overrides
    /// the configured level (PostgreSQL).
    pub async fn write(
        &self,
        statements: Vec<(String, Vec<SqlValue>)>,
        isolation: Option<Isolation>,
    ) -> Result<Row, DbError> {
        self.write_then(statements, isolation, None).await
    }

    /// [`Database::write`], with `followup`'s statements in the same
    /// transaction after the write's own.
    pub async fn write_then(
        &self,
        statements: Vec<(String, Vec<SqlValue>)>,
        isolation: Option<Isolation>,
        followup: Option<Followup>,
    ) -> Result<Row, DbError> {
        let statements = Arc::new(statements);
        let isolation = isolation.unwrap_or(self.policy.isolation);
        self.with_retries(|conn| conn.write(Arc::clone(&statements), isolation, followup.clone()))
            .await
    }

    /// Runs `attempt` on a pooled connection, again with jittered backoff
    /// while it fails in a way worth retrying (another writer got in the
    /// way), up to the policy's retries.
    async fn with_retries<T, Attempt>(
        &self,
        attempt: impl Fn(Conn) -> Attempt,
    ) -> Result<T, DbError>
    where
        Attempt: std::future::Future<Output = Result<T, (DbError, bool)>>,
    {
        let mut tries = 0;
        loop {
            let conn = self.acquire().await?;
            match attempt(conn).await {
                Ok(done) => return Ok(done),
                Err((DbError::StatementTimeout(_), _)) => {
                    let limit = self.policy.statement_timeout.unwrap_or_default();
                    return Err(DbError::StatementTimeout(limit));
                }
                Err((_, true)) if tries < self.policy.retries => {
                    self.metrics.write_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff(tries)).await;
                    tries += 1;
                }
                Err((_, true)) => {
                    self.metrics
                        .write_busy_failures
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(DbError::Busy(self.policy.retries));
                }
                Err((err, false)) => return Err(err),
            }
        }
    }

    /// Runs each group of statements in its own savepoint of one
    /// transaction, then `then`'s statements (given the groups that
    /// succeeded): independent units of work committed together (group
    /// commit), each kept or rolled back on its own. Returns each group's
    /// error, if it failed; the whole is retried like [`Database::write`]
    /// when another writer got in the way.
    pub async fn write_each(
        &self,
        groups: Vec<Statements>,
        then: Arc<ThenStatements>,
    ) -> Result<Vec<Option<String>>, DbError> {
        let groups = Arc::new(groups);
        let isolation = self.policy.isolation;
        self.with_retries(|conn| conn.write_each(Arc::clone(&groups), isolation, Arc::clone(&then)))
            .await
    }

    /// Connections open, idle, and requests waiting for one.
    pub fn status(&self) -> deadpool::Status {
        match &self.pool {
            Pool::Sqlite(pool) => pool.status(),
            Pool::Postgres(pool) => pool.status(),
        }
    }

    /// Starts the task that retires idle and aged connections and keeps
    /// `min_idle` open. It ends when the database is dropped.
    pub fn spawn_maintenance(self: &Arc<Self>) {
        let database: Weak<Database> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(database) = database.upgrade() else {
                    break;
                };
                database.maintain().await;
                drop(database);
                tokio::time::sleep(MAINTENANCE_INTERVAL).await;
            }
        });
    }

    /// One maintenance pass (also run once at start-up, to open `min_idle`).
    pub async fn maintain(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => {
                retire(pool, &self.policy);
                fill(pool, self.policy.min_idle).await;
            }
            Pool::Postgres(pool) => {
                retire(pool, &self.policy);
                fill(pool, self.policy.min_idle).await;
            }
        }
    }

    /// The pool's series alone, as OpenMetrics text.
    pub fn metrics_text(self: &Arc<Self>) -> String {
        struct Pool(Arc<Database>);
        impl std::fmt::Debug for Pool {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Pool")
            }
        }
        impl prometheus_client::collector::Collector for Pool {
            fn encode(
                &self,
                encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
            ) -> std::fmt::Result {
                self.0.encode_metrics(&mut Exposition::new(encoder))
            }
        }
        crate::http::metrics::text_of(Pool(Arc::clone(self)))
    }

    /// The pool's series.
    pub(crate) fn encode_metrics(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let status = self.status();
        let in_use = status.size.saturating_sub(status.available);
        out.gauge(
            "kiln_db_connections_in_use",
            "Connections checked out.",
            in_use,
        )?;
        out.gauge(
            "kiln_db_connections_idle",
            "Open connections waiting in the pool.",
            status.available,
        )?;
        out.gauge(
            "kiln_db_connections_max",
            "The pool's max_size.",
            status.max_size,
        )?;
        out.gauge(
            "kiln_db_waiters",
            "Requests waiting for a connection.",
            status.waiting,
        )?;
        out.histogram(
            "kiln_db_acquire_wait_seconds",
            "Time to check a connection out of the pool.",
            &self.metrics.acquire_wait,
        )?;
        for (name, help, counter) in [
            (
                "kiln_db_acquire_timeouts",
                "Requests that gave up waiting for a connection (503).",
                &self.metrics.acquire_timeouts,
            ),
            (
                "kiln_db_write_retries",
                "Write transactions retried after SQLITE_BUSY, a serialization failure or a deadlock.",
                &self.metrics.write_retries,
            ),
            (
                "kiln_db_write_busy_failures",
                "Write transactions that failed through every retry (503).",
                &self.metrics.write_busy_failures,
            ),
        ] {
            out.counter(name, help, counter.load(Ordering::Relaxed))?;
        }
        Ok(())
    }
}

/// A pool over `manager` with the configured size, order and timeouts.
fn build_pool<M: managed::Manager>(
    manager: M,
    config: &DatabaseConfig,
) -> Result<managed::Pool<M>, DbError> {
    let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
    let timeouts = Timeouts {
        wait: Some(Duration::from_millis(config.acquire_timeout_ms)),
        create: Some(connect_timeout),
        recycle: Some(connect_timeout),
    };
    let queue_mode = match config.queue {
        QueueOrder::Lifo => QueueMode::Lifo,
        QueueOrder::Fifo => QueueMode::Fifo,
    };
    managed::Pool::builder(manager)
        .max_size(config.max_size)
        .timeouts(timeouts)
        .queue_mode(queue_mode)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|err| DbError::Unavailable(err.to_string()))
}

fn pool_error<E: std::fmt::Display>(err: PoolError<E>) -> DbError {
    match err {
        PoolError::Timeout(managed::TimeoutType::Wait) => DbError::Timeout(Duration::ZERO),
        PoolError::Timeout(kind) => DbError::Unavailable(format!("{kind:?} timed out")),
        PoolError::Backend(err) => DbError::Unavailable(err.to_string()),
        other => DbError::Unavailable(other.to_string()),
    }
}

/// Drops idle connections past `max_lifetime`, and those idle past
/// `idle_timeout` while more than `min_idle` remain open.
fn retire<M: managed::Manager>(pool: &managed::Pool<M>, policy: &Policy) {
    let mut open = pool.status().size;
    let removed = pool.retain(|_, metrics| {
        let aged = policy.max_lifetime.is_some_and(|max| metrics.age() > max);
        let idle = policy
            .idle_timeout
            .is_some_and(|timeout| metrics.last_used() > timeout)
            && open > policy.min_idle;
        if aged || idle {
            open -= 1;
            return false;
        }
        true
    });
    drop(removed);
}

/// Opens connections until `min_idle` are open.
async fn fill<M: managed::Manager>(pool: &managed::Pool<M>, min_idle: usize) {
    let status = pool.status();
    if status.size >= min_idle {
        return;
    }
    // Holding every idle connection forces the pool to open new ones.
    let wanted = (status.available + min_idle - status.size).min(status.max_size);
    let mut held = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        match pool.get().await {
            Ok(conn) => held.push(conn),
            Err(_) => break,
        }
    }
}

/// 20 ms, 40 ms, 80 ms… each scaled by a random factor in [0.5, 1.5), so
/// writers that collided do not collide again in step.
fn backoff(attempt: u32) -> Duration {
    let mut bytes = [0u8; 2];
    let jitter = match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u16::from_le_bytes(bytes)) / 65_536.0,
        Err(_) => 0.5,
    };
    let base = 20.0 * f64::from(1u32 << attempt.min(8));
    Duration::from_secs_f64(base * (0.5 + jitter) / 1000.0)
}

/// The database file for `sqlite://PATH`, relative to the site root; its
/// directory is created.
fn sqlite_path(root: &Path, path: &str) -> Result<PathBuf, DbError> {
    let path = root.join(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|err| DbError::Unavailable(format!("creating {}: {err}", dir.display())))?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_jittered() {
        for attempt in 0..5 {
            let wait = backoff(attempt).as_secs_f64() * 1000.0;
            let base = 20.0 * f64::from(1u32 << attempt);
            assert!(wait >= base * 0.5 && wait < base * 1.5, "{attempt}: {wait}");
        }
    }
}
