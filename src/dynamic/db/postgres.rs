//! The PostgreSQL backend: a deadpool manager over tokio-postgres clients
//! with a bounded per-connection statement cache, values bound by the
//! parameter type the server inferred, and rows decoded by column type.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use indexmap::IndexMap;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, IsolationLevel, NoTls, Statement};

use super::value::{Row, SqlValue, date_from_days, rfc3339_from_micros};
use crate::config::Isolation;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// Tables with fewer rows are not reported by the plan check.
pub(crate) const SMALL_TABLE_ROWS: f64 = 1000.0;

/// How connections are opened and checked.
#[derive(Debug)]
pub struct Manager {
    pub config: tokio_postgres::Config,
    pub statement_cache: usize,
    pub pre_ping: bool,
    pub max_lifetime: Option<Duration>,
    /// `database.statement_timeout_ms`, set on each new connection.
    pub statement_timeout_ms: u64,
    next_id: AtomicU64,
}

impl Manager {
    pub fn new(
        config: tokio_postgres::Config,
        statement_cache: usize,
        pre_ping: bool,
        max_lifetime: Option<Duration>,
        statement_timeout_ms: u64,
    ) -> Manager {
        Manager {
            config,
            statement_cache,
            pre_ping,
            max_lifetime,
            statement_timeout_ms,
            next_id: AtomicU64::new(1),
        }
    }
}

/// A pooled client with its prepared statements, most recently used last.
pub struct Conn {
    pub id: u64,
    pub client: Client,
    statements: IndexMap<String, Statement>,
    capacity: usize,
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Conn, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        // The connection task ends when the client is dropped or the
        // server goes away; the client then reports itself closed.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        if self.statement_timeout_ms > 0 {
            // Set once the session is open (not as a startup parameter,
            // which connection poolers such as PgBouncer refuse), so
            // PostgreSQL itself stops a statement or a lock wait that runs
            // too long.
            let ms = self.statement_timeout_ms;
            client
                .batch_execute(&format!(
                    "SET statement_timeout = {ms}; SET lock_timeout = {ms}"
                ))
                .await?;
        }
        Ok(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            client,
            statements: IndexMap::new(),
            capacity: self.statement_cache,
        })
    }

    async fn recycle(
        &self,
        conn: &mut Conn,
        metrics: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        if conn.client.is_closed() {
            return Err(RecycleError::message("the connection is closed"));
        }
        if self.max_lifetime.is_some_and(|max| metrics.age() > max) {
            return Err(RecycleError::message("older than max_lifetime"));
        }
        if self.pre_ping {
            conn.client.simple_query("").await?;
        }
        Ok(())
    }
}

impl Conn {
    /// The prepared statement for `sql`, from the cache when it is there.
    pub async fn prepare(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.shift_remove(sql) {
            self.statements.insert(sql.to_string(), statement.clone());
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await?;
        if self.capacity > 0 {
            if self.statements.len() >= self.capacity {
                self.statements.shift_remove_index(0);
            }
            self.statements.insert(sql.to_string(), statement.clone());
        }
        Ok(statement)
    }

    /// Runs one read statement.
    pub async fn query(&mut self, sql: &str, args: &[SqlValue]) -> Result<Vec<Row>, QueryError> {
        let statement = self.prepare(sql).await?;
        let rows = self.client.query(&statement, &params(args)).await?;
        rows.iter().map(decode).collect()
    }

    /// Runs write statements in one transaction; returns the first row
    /// each produced (`RETURNING`), merged.
    pub async fn write(
        &mut self,
        statements: &[(String, Vec<SqlValue>)],
        isolation: Isolation,
        followup: Option<&super::Followup>,
    ) -> Result<Row, QueryError> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, _) in statements {
            prepared.push(self.prepare(sql).await?);
        }
        let transaction = self.begin(isolation).await?;
        let mut returned = Row::new();
        for (statement, (_, args)) in prepared.iter().zip(statements) {
            let rows = transaction.query(statement, &params(args)).await?;
            if let Some(row) = rows.first() {
                returned.extend(decode(row)?);
            }
        }
        if let Some(followup) = followup {
            for (sql, args) in followup(&returned).map_err(QueryError::Decode)? {
                transaction.execute(sql.as_str(), &params(&args)).await?;
            }
        }
        transaction.commit().await?;
        Ok(returned)
    }

    /// A transaction at `isolation`.
    async fn begin(
        &mut self,
        isolation: Isolation,
    ) -> Result<tokio_postgres::Transaction<'_>, tokio_postgres::Error> {
        self.client
            .build_transaction()
            .isolation_level(match isolation {
                Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
                Isolation::RepeatableRead => IsolationLevel::RepeatableRead,
                Isolation::Serializable => IsolationLevel::Serializable,
            })
            .start()
            .await
    }

    /// Each group of statements in its own savepoint of one transaction
    /// (see `sqlite::write_each`).
    pub async fn write_each(
        &mut self,
        groups: &[Vec<(String, Vec<SqlValue>)>],
        isolation: Isolation,
        then: &super::ThenStatements,
    ) -> Result<Vec<Option<String>>, QueryError> {
        let mut prepared = Vec::with_capacity(groups.len());
        for group in groups {
            let mut statements = Vec::with_capacity(group.len());
            for (sql, _) in group {
                statements.push(self.prepare(sql).await?);
            }
            prepared.push(statements);
        }
        let mut transaction = self.begin(isolation).await?;
        let mut outcomes = Vec::with_capacity(groups.len());
        for (statements, group) in prepared.iter().zip(groups) {
            let savepoint = transaction.savepoint("kiln_group").await?;
            let mut failed = None;
            for (statement, (_, args)) in statements.iter().zip(group) {
                if let Err(err) = savepoint.query(statement, &params(args)).await {
                    failed = Some(err);
                    break;
                }
            }
            match failed {
                None => {
                    savepoint.commit().await?;
                    outcomes.push(None);
                }
                Some(err) => {
                    savepoint.rollback().await?;
                    outcomes.push(Some(QueryError::from(err).to_string()));
                }
            }
        }
        for (sql, args) in then(&super::succeeded(&outcomes)) {
            transaction.execute(sql.as_str(), &params(&args)).await?;
        }
        transaction.commit().await?;
        Ok(outcomes)
    }

    /// Relations a statement reads with a sequential scan, from
    /// `EXPLAIN (FORMAT JSON)`.
    pub async fn scanned_tables(
        &mut self,
        sql: &str,
        args: &[SqlValue],
    ) -> Result<Vec<String>, QueryError> {
        let statement = self
            .client
            .prepare(&format!("EXPLAIN (FORMAT JSON) {sql}"))
            .await?;
        let rows = self.client.query(&statement, &params(args)).await?;
        let mut tables = Vec::new();
        for row in &rows {
            let plan: String = row.try_get::<_, String>(0).or_else(|_| {
                // Older servers type the column json; read it as text.
                row.try_get::<_, serde_json::Value>(0)
                    .map(|value| value.to_string())
            })?;
            let plan: serde_json::Value = serde_json::from_str(&plan)
                .map_err(|err| QueryError::Decode(format!("EXPLAIN output: {err}")))?;
            collect_seq_scans(&plan, &mut tables);
        }
        // The planner rightly reads small tables whole whatever their
        // indexes; only a scan of a table this size says one is missing.
        let mut large = Vec::with_capacity(tables.len());
        for table in tables {
            let rows = self
                .client
                .query_opt(
                    "SELECT reltuples::float8 FROM pg_class WHERE oid = to_regclass($1)",
                    &[&table],
                )
                .await?
                .map_or(0.0, |row| row.get::<_, f64>(0));
            if rows >= SMALL_TABLE_ROWS {
                large.push(table);
            }
        }
        Ok(large)
    }
}

fn collect_seq_scans(node: &serde_json::Value, tables: &mut Vec<String>) {
    match node {
        serde_json::Value::Array(items) => {
            for item in items {
                collect_seq_scans(item, tables);
            }
        }
        serde_json::Value::Object(fields) => {
            if fields.get("Node Type").and_then(|v| v.as_str()) == Some("Seq Scan")
                && let Some(relation) = fields.get("Relation Name").and_then(|v| v.as_str())
                && !tables.iter().any(|known| known == relation)
            {
                tables.push(relation.to_string());
            }
            for value in fields.values() {
                collect_seq_scans(value, tables);
            }
        }
        _ => {}
    }
}

/// `LISTEN channel` on a connection of its own: a message on the
/// returned channel for each notification. The connection is opened
/// again (after a pause) whenever it is lost; the task ends when the
/// receiver is dropped.
pub(crate) fn listen(
    config: tokio_postgres::Config,
    channel: &str,
) -> tokio::sync::mpsc::Receiver<()> {
    let (tell, told) = tokio::sync::mpsc::channel(1);
    let command = format!("LISTEN {channel}");
    tokio::spawn(async move {
        while !tell.is_closed() {
            match config.connect(NoTls).await {
                Ok((client, mut connection)) => {
                    let relay = tell.clone();
                    let messages = tokio::spawn(async move {
                        let mut messages =
                            futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        use futures_util::StreamExt;
                        loop {
                            tokio::select! {
                                message = messages.next() => match message {
                                    Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                                        // Full: a wake-up is pending already.
                                        let _ = relay.try_send(());
                                    }
                                    Some(Ok(_)) => {}
                                    Some(Err(_)) | None => break,
                                },
                                // Nobody listens any more: the connection
                                // closes as it is dropped.
                                _ = relay.closed() => break,
                            }
                        }
                    });
                    if let Err(err) = client.batch_execute(&command).await {
                        tracing::warn!("jobs: {command}: {err}");
                    } else {
                        // Jobs enqueued while the connection was down.
                        let _ = tell.try_send(());
                    }
                    let _ = messages.await;
                    drop(client);
                }
                Err(err) => tracing::warn!("jobs: connecting to listen for enqueues: {err}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    told
}

fn params(args: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|arg| arg as &(dyn ToSql + Sync)).collect()
}

/// What went wrong running a statement.
#[derive(Debug)]
pub enum QueryError {
    Postgres(tokio_postgres::Error),
    Decode(String),
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(err: tokio_postgres::Error) -> Self {
        QueryError::Postgres(err)
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Postgres(err) => match err.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.severity(), db.message()),
                None => write!(f, "{err}"),
            },
            QueryError::Decode(message) => f.write_str(message),
        }
    }
}

impl QueryError {
    /// A serialization failure or deadlock: the transaction may succeed if
    /// run again.
    pub fn is_retryable(&self) -> bool {
        let QueryError::Postgres(err) = self else {
            return false;
        };
        matches!(
            err.code(),
            Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
        )
    }

    /// The server cancelled the statement: `statement_timeout`,
    /// `lock_timeout`, or a cancel request.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, QueryError::Postgres(err) if err.code().is_some_and(|code| {
            *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE
        }))
    }

    /// The connection itself failed (closed, reset): not the query's fault.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, QueryError::Postgres(err) if err.is_closed())
    }
}

/// Binds by the type PostgreSQL inferred for the placeholder, so `:id`
/// fits an `integer`, `bigint` or `text` column alike.
impl ToSql for SqlValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self, ty) {
            (SqlValue::Null, _) => Ok(IsNull::Yes),
            (SqlValue::Int(value), &Type::INT2) => i16::try_from(*value)?.to_sql(ty, out),
            (SqlValue::Int(value), &Type::INT4) => i32::try_from(*value)?.to_sql(ty, out),
            (SqlValue::Int(value), &Type::INT8) => value.to_sql(ty, out),
            (SqlValue::Int(value), &Type::FLOAT4) => (*value as f32).to_sql(ty, out),
            (SqlValue::Int(value), &Type::FLOAT8) => (*value as f64).to_sql(ty, out),
            (SqlValue::Float(value), &Type::FLOAT4) => (*value as f32).to_sql(ty, out),
            (SqlValue::Float(value), &Type::FLOAT8) => value.to_sql(ty, out),
            (SqlValue::Bool(value), &Type::BOOL) => value.to_sql(ty, out),
            (SqlValue::Int(value), _) if is_text(ty) => value.to_string().to_sql(ty, out),
            (SqlValue::Float(value), _) if is_text(ty) => value.to_string().to_sql(ty, out),
            (SqlValue::Bool(value), _) if is_text(ty) => value.to_string().to_sql(ty, out),
            (SqlValue::Text(value), _) if is_text(ty) => value.as_str().to_sql(ty, out),
            (value, ty) => Err(format!(
                "cannot bind {} to a parameter of type {ty}; cast the parameter in SQL (:name::{ty})",
                value.describe()
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn is_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    )
}

fn decode(row: &tokio_postgres::Row) -> Result<Row, QueryError> {
    let mut values = Row::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let value = decode_value(row, index, column.type_())
            .map_err(|err| QueryError::Decode(format!("column {:?}: {err}", column.name())))?;
        values.insert(column.name().to_string(), value);
    }
    Ok(values)
}

fn decode_value(row: &tokio_postgres::Row, index: usize, ty: &Type) -> Result<SqlValue, BoxError> {
    fn map<T>(value: Option<T>, into: impl FnOnce(T) -> SqlValue) -> SqlValue {
        value.map_or(SqlValue::Null, into)
    }
    Ok(match *ty {
        Type::BOOL => map(row.try_get::<_, Option<bool>>(index)?, SqlValue::Bool),
        Type::INT2 => map(row.try_get::<_, Option<i16>>(index)?, |v| {
            SqlValue::Int(v.into())
        }),
        Type::INT4 => map(row.try_get::<_, Option<i32>>(index)?, |v| {
            SqlValue::Int(v.into())
        }),
        Type::INT8 => map(row.try_get::<_, Option<i64>>(index)?, SqlValue::Int),
        Type::OID => map(row.try_get::<_, Option<u32>>(index)?, |v| {
            SqlValue::Int(v.into())
        }),
        Type::FLOAT4 => map(row.try_get::<_, Option<f32>>(index)?, |v| {
            SqlValue::Float(v.into())
        }),
        Type::FLOAT8 => map(row.try_get::<_, Option<f64>>(index)?, SqlValue::Float),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            map(row.try_get::<_, Option<SystemTime>>(index)?, |time| {
                SqlValue::Text(rfc3339_from_micros(micros_since_epoch(time)))
            })
        }
        Type::DATE => map(row.try_get::<_, Option<PgDate>>(index)?, |PgDate(days)| {
            SqlValue::Text(date_from_days(days))
        }),
        Type::JSON | Type::JSONB => map(
            row.try_get::<_, Option<serde_json::Value>>(index)?,
            |value| SqlValue::Text(value.to_string()),
        ),
        ref ty if is_text(ty) => map(row.try_get::<_, Option<String>>(index)?, SqlValue::Text),
        ref ty => {
            return Err(format!(
                "type {ty} is not supported; cast it in the query (column::text, column::float8)"
            )
            .into());
        }
    })
}

fn micros_since_epoch(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_micros() as i64,
        Err(before) => -(before.duration().as_micros() as i64),
    }
}

/// A `date`, as days since 1970-01-01 (PostgreSQL sends days since 2000-01-01).
struct PgDate(i64);

impl<'a> tokio_postgres::types::FromSql<'a> for PgDate {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let bytes: [u8; 4] = raw.try_into()?;
        const DAYS_FROM_1970_TO_2000: i64 = 10_957;
        Ok(PgDate(
            i64::from(i32::from_be_bytes(bytes)) + DAYS_FROM_1970_TO_2000,
        ))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sequential_scans_in_a_json_plan() {
        let plan = serde_json::json!([{"Plan": {"Node Type": "Limit", "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "products"},
            {"Node Type": "Index Scan", "Relation Name": "reviews"}
        ]}}]);
        let mut tables = Vec::new();
        collect_seq_scans(&plan, &mut tables);
        assert_eq!(tables, ["products"]);
    }
}
