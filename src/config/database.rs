//! `[database]`: the connection and the pool.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, config_error};

/// The `[database]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (relative to the site root) or `postgres://…`.
    pub url: String,
    /// Most connections open at once.
    pub max_size: usize,
    /// Connections kept open even when idle.
    pub min_idle: usize,
    /// Which idle connection is handed out next.
    pub queue: QueueOrder,
    /// Check a connection with a round trip before handing it out.
    pub pre_ping: bool,
    /// Replace connections older than this (0: never).
    pub max_lifetime_secs: u64,
    /// Close connections idle for longer than this, down to `min_idle` (0: never).
    pub idle_timeout_secs: u64,
    /// Longest wait for a connection; longer is answered 503 with Retry-After.
    pub acquire_timeout_ms: u64,
    /// Longest wait for a new connection to open.
    pub connect_timeout_ms: u64,
    /// Prepared statements kept per connection.
    pub statement_cache: usize,
    /// SQLite: how long a statement waits for a lock before SQLITE_BUSY.
    /// Longest a route's statement may run before it is cancelled and the
    /// request answered 503 (PostgreSQL `statement_timeout` and
    /// `lock_timeout`; SQLite interrupts it). 0: no limit.
    pub statement_timeout_ms: u64,
    pub busy_timeout_ms: u64,
    /// Queries slower than this are logged (0: none).
    pub slow_query_ms: u64,
    /// How many times a write transaction is retried after a serialization
    /// failure, deadlock or SQLITE_BUSY before the route answers 503.
    pub retries: u32,
    /// PostgreSQL: the isolation level of write transactions.
    pub isolation: Isolation,
    /// Directory of ordered `.sql` migrations, relative to the site root.
    pub migrations: PathBuf,
    /// Warn at start-up about route queries that scan a whole table.
    pub plan_check: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/site.db".into(),
            max_size: 8,
            min_idle: 1,
            queue: QueueOrder::Lifo,
            pre_ping: true,
            max_lifetime_secs: 30 * 60,
            idle_timeout_secs: 10 * 60,
            acquire_timeout_ms: 2_000,
            connect_timeout_ms: 5_000,
            statement_cache: 64,
            busy_timeout_ms: 1_000,
            statement_timeout_ms: 5_000,
            slow_query_ms: 200,
            retries: 3,
            isolation: Isolation::ReadCommitted,
            migrations: PathBuf::from("migrations"),
            plan_check: true,
        }
    }
}

/// Order in which idle connections are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueOrder {
    /// Most recently returned first: hot connections stay warm, idle ones age out.
    Lifo,
    /// Oldest returned first: load spreads over every connection.
    Fifo,
}

/// PostgreSQL transaction isolation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

/// Stage two for `[database]`.
pub(super) fn validate(database: &DatabaseConfig) -> Result<(), ConfigError> {
    if !(database.url.starts_with("sqlite://")
        || database.url.starts_with("postgres://")
        || database.url.starts_with("postgresql://"))
    {
        return Err(config_error(format!(
            "database.url = {:?}: expected sqlite://PATH or postgres://…",
            database.url
        )));
    }
    if database.url == "sqlite://" {
        return Err(config_error("database.url: sqlite:// needs a file path"));
    }
    if database.max_size == 0 || database.max_size > 1024 {
        return Err(config_error(format!(
            "database.max_size = {}: must be between 1 and 1024",
            database.max_size
        )));
    }
    if database.min_idle > database.max_size {
        return Err(config_error(format!(
            "database.min_idle = {}: must not exceed database.max_size = {}",
            database.min_idle, database.max_size
        )));
    }
    if database.acquire_timeout_ms == 0 || database.connect_timeout_ms == 0 {
        return Err(config_error(
            "database.acquire_timeout_ms and database.connect_timeout_ms must be above 0",
        ));
    }
    if database.retries > 20 {
        return Err(config_error(format!(
            "database.retries = {}: at most 20",
            database.retries
        )));
    }
    Ok(())
}
