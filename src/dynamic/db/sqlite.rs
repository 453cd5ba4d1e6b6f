//! The SQLite backend: a deadpool manager over rusqlite connections (WAL,
//! busy timeout, a prepared-statement cache), and the blocking work each
//! request does. Every call runs on tokio's blocking pool, never on the
//! async workers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::value::{Row, SqlValue};

/// How connections are opened and checked.
#[derive(Debug)]
pub struct Manager {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    pub statement_cache: usize,
    pub pre_ping: bool,
    pub max_lifetime: Option<Duration>,
    next_id: AtomicU64,
}

impl Manager {
    pub fn new(
        path: PathBuf,
        busy_timeout: Duration,
        statement_cache: usize,
        pre_ping: bool,
        max_lifetime: Option<Duration>,
    ) -> Manager {
        Manager {
            path,
            busy_timeout,
            statement_cache,
            pre_ping,
            max_lifetime,
            next_id: AtomicU64::new(1),
        }
    }
}

/// A pooled connection, numbered in order of creation. Its calls run on
/// the blocking pool; dropping it closes the connection on the spot, so a
/// pool can be dropped outside any runtime.
pub struct Conn {
    pub id: u64,
    inner: Arc<Mutex<Connection>>,
    /// Stops the statement running on this connection, from any thread.
    interrupt: Arc<rusqlite::InterruptHandle>,
    /// Set when the call on this connection must stop: its progress handler
    /// reads it (an interrupt alone misses a call between statements).
    stop: Arc<AtomicBool>,
}

/// A blocking call that did not return.
#[derive(Debug, thiserror::Error)]
pub enum InteractError {
    #[error("a query panicked on this connection")]
    Panicked,
    #[error("the blocking pool shut down")]
    Cancelled,
}

impl Conn {
    /// Runs `call` with the connection on tokio's blocking pool.
    pub async fn interact<R, F>(&self, call: F) -> Result<R, InteractError>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = inner.lock().map_err(|_| InteractError::Panicked)?;
            Ok(call(&mut conn))
        });
        match task.await {
            Ok(result) => result,
            Err(err) if err.is_panic() => Err(InteractError::Panicked),
            Err(_) => Err(InteractError::Cancelled),
        }
    }

    /// Runs `call` like [`Conn::interact`], but interrupts its statements
    /// once `limit` passes (the call then returns SQLite's interrupt
    /// error) or when the caller stops waiting (the request was dropped).
    ///
    /// `sqlite3_interrupt` alone is not enough: it is a no-op when it lands
    /// between two statements of the call (or before the blocking pool has
    /// started it), and the rest would then run unbounded. A progress
    /// handler checks the deadline and the stop flag every
    /// [`PROGRESS_OPS`] virtual machine steps of every statement.
    pub async fn interact_within<R, F>(
        &self,
        limit: Option<Duration>,
        call: F,
    ) -> Result<R, InteractError>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.stop.store(false, Ordering::Relaxed);
        let guard = InterruptOnDrop(Some((Arc::clone(&self.interrupt), Arc::clone(&self.stop))));
        let deadline = limit.map(|limit| std::time::Instant::now() + limit);
        let stop = Arc::clone(&self.stop);
        let running = self.interact(move |conn| {
            let handler = move || {
                stop.load(Ordering::Relaxed)
                    || deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline)
            };
            // Fails only on a connection used from a thread not its own.
            let _ = conn.progress_handler(PROGRESS_OPS, Some(handler));
            let result = call(conn);
            let _ = conn.progress_handler(0, None::<fn() -> bool>);
            result
        });
        tokio::pin!(running);
        let result = match limit {
            Some(limit) => match tokio::time::timeout(limit, &mut running).await {
                Ok(result) => result,
                Err(_) => {
                    self.stop.store(true, Ordering::Relaxed);
                    self.interrupt.interrupt();
                    // The statement stops at its next step; wait for it,
                    // so the connection goes back to the pool idle.
                    running.await
                }
            },
            None => running.await,
        };
        guard.disarm();
        result
    }

    fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }
}

/// Virtual machine steps between two checks of a call's deadline: a few
/// microseconds of work, so a timed-out statement stops within a
/// millisecond while the check costs nothing measurable.
const PROGRESS_OPS: std::os::raw::c_int = 1000;

/// Stops the connection's call when dropped armed: the request waiting
/// for it was dropped.
struct InterruptOnDrop(Option<(Arc<rusqlite::InterruptHandle>, Arc<AtomicBool>)>);

impl InterruptOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some((handle, stop)) = self.0.take() {
            stop.store(true, Ordering::Relaxed);
            handle.interrupt();
        }
    }
}

/// Whether `err` is SQLite's answer to an interrupted statement.
pub(crate) fn is_interrupted(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::OperationInterrupted
    )
}

/// Why a connection could not be opened or reused.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Blocking(#[from] InteractError),
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = ConnError;

    async fn create(&self) -> Result<Conn, ConnError> {
        let path = self.path.clone();
        let busy_timeout = self.busy_timeout;
        let cache = self.statement_cache;
        let opened = tokio::task::spawn_blocking(move || open(&path, busy_timeout, cache))
            .await
            .map_err(|_| InteractError::Cancelled)??;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(Conn {
            id,
            interrupt: Arc::new(opened.get_interrupt_handle()),
            stop: Arc::new(AtomicBool::new(false)),
            inner: Arc::new(Mutex::new(opened)),
        })
    }

    async fn recycle(&self, conn: &mut Conn, metrics: &Metrics) -> RecycleResult<ConnError> {
        if self.max_lifetime.is_some_and(|max| metrics.age() > max) {
            return Err(RecycleError::message("older than max_lifetime"));
        }
        if conn.is_poisoned() {
            return Err(RecycleError::message("a query panicked on this connection"));
        }
        if self.pre_ping {
            conn.interact(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
                .await
                .map_err(ConnError::from)?
                .map_err(ConnError::from)?;
        }
        Ok(())
    }
}

/// Opens a connection the way every pooled one is set up.
pub(crate) fn open(
    path: &std::path::Path,
    busy_timeout: Duration,
    statement_cache: usize,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    // WAL lets readers proceed while one writer writes; NORMAL sync is
    // durable across application crashes and is SQLite's advice for WAL.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(statement_cache);
    Ok(conn)
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Int(value) => ToSqlOutput::Borrowed(ValueRef::Integer(*value)),
            SqlValue::Float(value) => ToSqlOutput::Borrowed(ValueRef::Real(*value)),
            SqlValue::Text(value) => ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes())),
            SqlValue::Bool(value) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*value))),
        })
    }
}

/// Runs one read statement and collects its rows.
pub(crate) fn query(conn: &Connection, sql: &str, args: &[SqlValue]) -> rusqlite::Result<Vec<Row>> {
    let mut statement = conn.prepare_cached(sql)?;
    let names: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut rows = statement.query(rusqlite::params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Row::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            values.insert(name.clone(), value_of(row.get_ref(index)?));
        }
        out.push(values);
    }
    Ok(out)
}

fn value_of(value: ValueRef<'_>) -> SqlValue {
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(value) => SqlValue::Int(value),
        ValueRef::Real(value) => SqlValue::Float(value),
        ValueRef::Text(text) => SqlValue::Text(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(bytes) => SqlValue::Text(format!("<{} bytes>", bytes.len())),
    }
}

/// Runs write statements in one `BEGIN IMMEDIATE` transaction (the write
/// lock is taken up front, so a busy database fails before any work
/// rather than at commit). Returns the first row each statement produced
/// (`RETURNING`), merged.
pub(crate) fn write(
    conn: &mut Connection,
    statements: &[(String, Vec<SqlValue>)],
    followup: Option<&super::Followup>,
) -> rusqlite::Result<Row> {
    let transaction = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut returned = Row::new();
    for (sql, args) in statements {
        for row in query(&transaction, sql, args)?.into_iter().take(1) {
            returned.extend(row);
        }
    }
    if let Some(followup) = followup {
        let statements = followup(&returned).map_err(|reason| {
            rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(reason)))
        })?;
        for (sql, args) in statements {
            query(&transaction, &sql, &args)?;
        }
    }
    transaction.commit()?;
    Ok(returned)
}

/// Runs each group of statements in its own savepoint of one `BEGIN
/// IMMEDIATE` transaction: a group that fails is rolled back to its
/// savepoint and reported, the others commit together, with `then`'s
/// statements (given the indices of the groups that succeeded). Another
/// writer holding the lock fails the whole, to be retried.
pub(crate) fn write_each(
    conn: &mut Connection,
    groups: &[Vec<(String, Vec<SqlValue>)>],
    then: &super::ThenStatements,
) -> rusqlite::Result<Vec<Option<String>>> {
    let mut transaction = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(groups.len());
    for group in groups {
        let savepoint = transaction.savepoint()?;
        let run = group
            .iter()
            .try_for_each(|(sql, args)| query(&savepoint, sql, args).map(|_| ()));
        match run {
            Ok(()) => {
                savepoint.commit()?;
                outcomes.push(None);
            }
            Err(err) if is_busy(&err) => return Err(err),
            // Dropped, the savepoint rolls back.
            Err(err) => outcomes.push(Some(err.to_string())),
        }
    }
    for (sql, args) in then(&super::succeeded(&outcomes)) {
        query(&transaction, &sql, &args)?;
    }
    transaction.commit()?;
    Ok(outcomes)
}

/// Whether another writer held the lock (worth retrying).
pub(crate) fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Tables a statement reads by scanning every row, from
/// `EXPLAIN QUERY PLAN` (`SCAN products`, but not `SCAN products USING
/// INDEX …` or scans of subqueries and constant rows).
pub(crate) fn scanned_tables(
    conn: &Connection,
    sql: &str,
    args: &[SqlValue],
) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let mut rows = statement.query(rusqlite::params_from_iter(args))?;
    let mut details = Vec::new();
    while let Some(row) = rows.next()? {
        details.push(row.get::<_, String>(3)?);
    }
    if stops_early(sql, &details) {
        return Ok(Vec::new());
    }
    let known = table_names(conn)?;
    let mut tables = Vec::new();
    for name in details.iter().filter_map(|detail| full_scan(detail)) {
        // The plan names a table by its alias; a name that is neither a
        // table nor an alias of one is a CTE, which has no index to use.
        let Some(table) = resolve_table(sql, &name, &known) else {
            continue;
        };
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    Ok(tables)
}

fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement =
        conn.prepare_cached("SELECT name FROM sqlite_schema WHERE type = 'table'")?;
    let names = statement.query_map([], |row| row.get::<_, String>(0))?;
    names.collect()
}

/// The table behind `name`: itself, or the table it aliases in `sql`
/// (`FROM products p`, `JOIN products AS s`).
fn resolve_table(sql: &str, name: &str, tables: &[String]) -> Option<String> {
    let is_table = |word: &str| tables.iter().any(|table| table.eq_ignore_ascii_case(word));
    if is_table(name) {
        return Some(name.to_string());
    }
    let words: Vec<&str> = sql
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .collect();
    words.iter().enumerate().find_map(|(index, word)| {
        if !word.eq_ignore_ascii_case(name) || index == 0 {
            return None;
        }
        let before = words[index - 1];
        let table = if before.eq_ignore_ascii_case("AS") && index >= 2 {
            words[index - 2]
        } else {
            before
        };
        is_table(table).then(|| table.to_string())
    })
}

/// A scan in table or index order that a LIMIT cuts short, with nothing to
/// filter or sort (`ORDER BY id DESC LIMIT 20`), reads only the rows it
/// returns; SQLite's plan still says `SCAN`.
fn stops_early(sql: &str, details: &[String]) -> bool {
    let upper = sql.to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    words.contains(&"LIMIT")
        && !words.contains(&"WHERE")
        && !words.contains(&"JOIN")
        && !details.iter().any(|detail| detail.contains("TEMP B-TREE"))
}

fn full_scan(detail: &str) -> Option<String> {
    let rest = detail.strip_prefix("SCAN ")?;
    if rest.contains(" USING ") || rest.starts_with('(') || rest.starts_with("CONSTANT") {
        return None;
    }
    let table = rest.split_whitespace().next()?;
    Some(table.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_full_scans_from_plan_details() {
        assert_eq!(full_scan("SCAN products").as_deref(), Some("products"));
        assert_eq!(full_scan("SCAN p"), Some("p".into()));
        assert_eq!(full_scan("SCAN products USING INDEX by_name"), None);
        assert_eq!(full_scan("SCAN products USING COVERING INDEX x"), None);
        assert_eq!(
            full_scan("SEARCH products USING INTEGER PRIMARY KEY (rowid=?)"),
            None
        );
        assert_eq!(full_scan("SCAN (subquery-1)"), None);
        assert_eq!(full_scan("SCAN CONSTANT ROW"), None);
    }

    #[test]
    fn a_limit_in_index_order_is_not_a_full_scan() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
            .unwrap();
        let scans = |sql: &str| scanned_tables(&conn, sql, &[]).unwrap();
        assert!(scans("SELECT * FROM t ORDER BY id DESC LIMIT 20").is_empty());
        assert_eq!(scans("SELECT * FROM t ORDER BY name LIMIT 20"), ["t"]);
        assert_eq!(scans("SELECT * FROM t WHERE name = 'x'"), ["t"]);
        assert!(scans("SELECT * FROM t WHERE id = 3").is_empty());
        assert_eq!(scans("SELECT * FROM t AS x WHERE x.name = 'a'"), ["t"]);
        assert!(
            scans("WITH RECURSIVE c (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT count(*) FROM c")
                .is_empty()
        );
    }

    /// The statement timeout fired while the call was between statements
    /// (here: before its first): `sqlite3_interrupt` was a no-op, and the
    /// long statement after it ran to its end.
    #[test]
    fn a_timeout_between_statements_still_stops_the_next_one() {
        let opened = Connection::open_in_memory().unwrap();
        let conn = Conn {
            id: 1,
            interrupt: Arc::new(opened.get_interrupt_handle()),
            stop: Arc::new(AtomicBool::new(false)),
            inner: Arc::new(Mutex::new(opened)),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(conn.interact_within(
            Some(Duration::from_millis(50)),
            |conn| {
                std::thread::sleep(Duration::from_millis(200));
                conn.query_row(
                    "WITH RECURSIVE c (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) SELECT count(*) FROM c",
                    [],
                    |row| row.get::<_, i64>(0),
                )
            },
        ));
        let err = result.unwrap().expect_err("the statement was stopped");
        assert!(is_interrupted(&err), "{err}");
    }
}
