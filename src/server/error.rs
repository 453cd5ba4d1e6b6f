//! Why `kiln serve` or `kiln check` could not start or stopped: one typed
//! error for the process layer. The binary adds context with `anyhow`.

use std::io;
use std::net::SocketAddr;

use crate::dynamic::app::OpenError;
use crate::dynamic::db::DbError;
use crate::dynamic::db::migrate::MigrateError;
use crate::dynamic::response_cache::CacheError;
use crate::dynamic::session::SessionError;

/// A server or check failure. Its message names what failed (the file, the
/// route, the address) and why.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ServeError(Box<Cause>);

#[derive(Debug, thiserror::Error)]
pub(crate) enum Cause {
    /// The output directory could not be loaded into the file table.
    #[error("{0}")]
    LoadBuild(io::Error),
    #[error("{0}")]
    Tls(io::Error),
    /// The metrics token could not be read or is too weak.
    #[error("{0}")]
    MetricsToken(io::Error),
    #[error(transparent)]
    Open(OpenError),
    #[error("binding {addr}: {error}")]
    Bind { addr: SocketAddr, error: io::Error },
    #[error("{0}")]
    Migrations(MigrateError),
    #[error("checking query plans: {0}")]
    PlanCheck(DbError),
    #[error("{0}")]
    Sessions(SessionError),
    #[error("{0}")]
    Cache(CacheError),
    #[error("jobs: {0}")]
    Jobs(crate::dynamic::jobs::JobsError),
    /// Starting or running the HTTP server itself.
    #[error("{0}")]
    Server(io::Error),
    #[error("the server failed to start")]
    NotStarted,
    #[error("the server thread panicked")]
    Panicked,
}

impl From<Cause> for ServeError {
    fn from(cause: Cause) -> Self {
        ServeError(Box::new(cause))
    }
}
