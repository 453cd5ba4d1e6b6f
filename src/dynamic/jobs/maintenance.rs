//! What `warm` and `purge` jobs act on: the server's route cache. A
//! server attaches itself ([`super::Jobs::attach`]) once it is open; a
//! process without one (`kiln jobs work`) claims no maintenance job, so
//! those wait for a server's workers.

use std::future::Future;
use std::pin::Pin;

/// A boxed future, as a trait object's method returns one.
pub(crate) type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The server's caches, as maintenance jobs see them.
pub(crate) trait Maintenance: Send + Sync {
    /// Renders `url` (a path with an optional query) into the route cache.
    fn warm<'a>(&'a self, url: &'a str) -> Boxed<'a, Result<(), String>>;
    /// Drops the entries carrying `tags` from every level and every
    /// server; returns how many went here.
    fn purge(&self, tags: Vec<String>) -> Boxed<'_, Result<usize, String>>;
}
