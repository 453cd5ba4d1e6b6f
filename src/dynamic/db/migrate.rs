//! Migrations: ordered `.sql` files applied once each at start-up, each in
//! its own transaction, recorded with a checksum in `kiln_migrations`. A
//! migration changed after it was applied is an error, not a silent skip.
//!
//! Portable migrations sit in `migrations/`; SQL that differs per backend
//! goes in `migrations/sqlite/` and `migrations/postgres/`. The files of the
//! configured backend's folder join the portable ones, ordered by file name;
//! a backend file replaces a portable file of the same name.

use std::path::{Path, PathBuf};

use rusqlite::TransactionBehavior;

use super::{Backend, Conn, Database, DbError};
use crate::diagnostic::{Diagnostic, SourceLocation};

/// One migration file.
#[derive(Debug, Clone)]
pub(crate) struct Migration {
    pub name: String,
    pub path: PathBuf,
    pub sql: String,
    pub checksum: String,
}

/// Why migrating stopped.
#[derive(Debug)]
pub(crate) enum MigrateError {
    /// Reading the folder or reaching the database failed.
    Setup(String),
    /// A migration failed or was changed; located in its file.
    File(Diagnostic),
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::Setup(message) => f.write_str(message),
            MigrateError::File(diagnostic) => write!(f, "{diagnostic}"),
        }
    }
}

impl From<DbError> for MigrateError {
    fn from(err: DbError) -> Self {
        MigrateError::Setup(err.to_string())
    }
}

/// The migration files for `backend` under `dir`, in name order.
pub(crate) fn discover(dir: &Path, backend: Backend) -> Result<Vec<Migration>, MigrateError> {
    let mut by_name = std::collections::BTreeMap::new();
    for folder in [dir.to_path_buf(), dir.join(backend.name())] {
        for migration in read_folder(&folder)? {
            by_name.insert(migration.name.clone(), migration);
        }
    }
    Ok(by_name.into_values().collect())
}

fn read_folder(dir: &Path) -> Result<Vec<Migration>, MigrateError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(MigrateError::Setup(format!("{}: {err}", dir.display()))),
    };
    let mut migrations = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|err| MigrateError::Setup(format!("{}: {err}", dir.display())))?
            .path();
        if path.extension().is_none_or(|ext| ext != "sql") || !path.is_file() {
            continue;
        }
        let sql = std::fs::read_to_string(&path)
            .map_err(|err| MigrateError::Setup(format!("{}: {err}", path.display())))?;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let checksum = blake3::hash(sql.as_bytes()).to_hex().to_string();
        migrations.push(Migration {
            name,
            path,
            sql,
            checksum,
        });
    }
    Ok(migrations)
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS kiln_migrations (
    name TEXT PRIMARY KEY,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// Applies every pending migration; returns the names applied.
pub(crate) async fn run(database: &Database, dir: &Path) -> Result<Vec<String>, MigrateError> {
    let migrations = discover(dir, database.backend())?;
    if migrations.is_empty() {
        return Ok(Vec::new());
    }
    match database.acquire().await? {
        Conn::Sqlite(conn) => conn
            .interact(move |conn| run_sqlite(conn, &migrations))
            .await
            .map_err(|err| MigrateError::Setup(err.to_string()))?,
        Conn::Postgres(mut conn) => run_postgres(&mut conn.client, &migrations).await,
    }
}

fn run_sqlite(
    conn: &mut rusqlite::Connection,
    migrations: &[Migration],
) -> Result<Vec<String>, MigrateError> {
    let setup = |err: rusqlite::Error| MigrateError::Setup(format!("kiln_migrations: {err}"));
    conn.execute_batch(CREATE_TABLE).map_err(setup)?;
    let mut applied = Vec::new();
    for migration in migrations {
        // IMMEDIATE takes the write lock first, so two servers starting
        // together apply each migration once.
        let transaction = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(setup)?;
        let recorded: Option<String> = transaction
            .query_row(
                "SELECT checksum FROM kiln_migrations WHERE name = ?1",
                [&migration.name],
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|err| match err {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                err => Err(err),
            })
            .map_err(setup)?;
        if let Some(recorded) = recorded {
            check_unchanged(migration, &recorded)?;
            continue;
        }
        transaction
            .execute_batch(&migration.sql)
            .map_err(|err| sqlite_failure(migration, &err))?;
        transaction
            .execute(
                "INSERT INTO kiln_migrations (name, checksum, applied_at) VALUES (?1, ?2, datetime('now'))",
                [&migration.name, &migration.checksum],
            )
            .map_err(setup)?;
        transaction.commit().map_err(setup)?;
        applied.push(migration.name.clone());
    }
    Ok(applied)
}

async fn run_postgres(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
) -> Result<Vec<String>, MigrateError> {
    let setup = |err: tokio_postgres::Error| {
        MigrateError::Setup(format!(
            "kiln_migrations: {}",
            super::postgres::QueryError::from(err)
        ))
    };
    // A transaction-scoped advisory lock serialises servers starting
    // together. Migrations (and the wait for another server's) are exempt
    // from database.statement_timeout_ms, which is for route statements.
    const LOCK: &str = "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; \
                        SELECT pg_advisory_xact_lock(7105116105110)";
    let mut applied = Vec::new();
    {
        let transaction = client.transaction().await.map_err(setup)?;
        transaction.batch_execute(LOCK).await.map_err(setup)?;
        transaction
            .batch_execute(CREATE_TABLE)
            .await
            .map_err(setup)?;
        transaction.commit().await.map_err(setup)?;
    }
    for migration in migrations {
        let transaction = client.transaction().await.map_err(setup)?;
        transaction.batch_execute(LOCK).await.map_err(setup)?;
        let recorded = transaction
            .query_opt(
                "SELECT checksum FROM kiln_migrations WHERE name = $1",
                &[&migration.name],
            )
            .await
            .map_err(setup)?;
        if let Some(row) = recorded {
            check_unchanged(migration, &row.get::<_, String>(0))?;
            continue;
        }
        transaction
            .batch_execute(&migration.sql)
            .await
            .map_err(|err| postgres_failure(migration, &err))?;
        transaction
            .execute(
                "INSERT INTO kiln_migrations (name, checksum, applied_at) VALUES ($1, $2, now()::text)",
                &[&migration.name, &migration.checksum],
            )
            .await
            .map_err(setup)?;
        transaction.commit().await.map_err(setup)?;
        applied.push(migration.name.clone());
    }
    if !applied.is_empty() {
        // Fresh statistics, so the plan check sees what production will.
        // Exempt from database.statement_timeout_ms, like the migrations.
        client
            .batch_execute(
                "BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; ANALYZE; COMMIT",
            )
            .await
            .map_err(setup)?;
    }
    Ok(applied)
}

fn check_unchanged(migration: &Migration, recorded: &str) -> Result<(), MigrateError> {
    if recorded == migration.checksum {
        return Ok(());
    }
    Err(MigrateError::File(Diagnostic::new(format!(
        "{}: this migration was changed after it was applied (recorded checksum {}, now {}); \
         add a new migration instead of editing an applied one",
        migration.path.display(),
        &recorded[..recorded.len().min(12)],
        &migration.checksum[..12]
    ))))
}

fn sqlite_failure(migration: &Migration, err: &rusqlite::Error) -> MigrateError {
    let offset = match err {
        rusqlite::Error::SqlInputError { sql, offset, .. } if *offset >= 0 => migration
            .sql
            .find(sql.as_str())
            .map(|start| start + *offset as usize),
        _ => None,
    };
    located(migration, err.to_string(), offset)
}

fn postgres_failure(migration: &Migration, err: &tokio_postgres::Error) -> MigrateError {
    let Some(db) = err.as_db_error() else {
        return located(migration, err.to_string(), None);
    };
    // PostgreSQL counts characters from 1.
    let offset = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(position)) => migration
            .sql
            .char_indices()
            .nth(position.saturating_sub(1) as usize)
            .map(|(byte, _)| byte),
        _ => None,
    };
    located(
        migration,
        format!("{}: {}", db.severity(), db.message()),
        offset,
    )
}

fn located(migration: &Migration, message: String, offset: Option<usize>) -> MigrateError {
    let message = format!("migration {} failed: {message}", migration.name);
    let Some(offset) = offset else {
        return MigrateError::File(Diagnostic::new(format!(
            "{}: {message}",
            migration.path.display()
        )));
    };
    let (line, column) = crate::diagnostic::line_column(&migration.sql, offset);
    let location = SourceLocation {
        file: migration.path.clone(),
        line,
        column,
    };
    MigrateError::File(Diagnostic::at(message, location, Some(&migration.sql)))
}
