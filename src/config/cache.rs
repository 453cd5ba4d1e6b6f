//! `[cache]`: the levels of the route cache.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, config_error};

/// The `[cache]` table: the levels of the route cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Level 1, in memory: most bytes kept (bodies and their compressed copies).
    pub memory_bytes: u64,
    /// Level 2, on disk (sled), persistent across restarts.
    pub disk: bool,
    /// Where level 2 lives, relative to the site root.
    pub disk_dir: PathBuf,
    /// Most bytes level 2 keeps before evicting the oldest entries.
    pub disk_bytes: u64,
    /// Level 3, Redis, shared by several servers (`redis://HOST:PORT/DB`); empty: off.
    pub redis_url: String,
    /// Prefix of every Redis key kiln writes.
    pub redis_prefix: String,
    /// URLs rendered into the cache at start-up (`/catalogue/?page=1`).
    pub warm: Vec<String>,
    /// Without Redis, on PostgreSQL: servers tell each other of
    /// invalidations with `NOTIFY` (off behind a pooler that cannot
    /// `LISTEN`, such as PgBouncer in transaction mode).
    pub postgres_notify: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_bytes: 64 * 1024 * 1024,
            disk: true,
            disk_dir: PathBuf::from(".kiln/cache"),
            disk_bytes: 256 * 1024 * 1024,
            redis_url: String::new(),
            redis_prefix: "kiln:".into(),
            warm: Vec::new(),
            postgres_notify: true,
        }
    }
}

/// Stage two for `[cache]`.
pub(super) fn validate(cache: &CacheConfig) -> Result<(), ConfigError> {
    if !(cache.redis_url.is_empty()
        || cache.redis_url.starts_with("redis://")
        || cache.redis_url.starts_with("rediss://"))
    {
        return Err(config_error(format!(
            "cache.redis_url = {:?}: expected redis://HOST:PORT/DB",
            cache.redis_url
        )));
    }
    if let Some(url) = cache.warm.iter().find(|url| !url.starts_with('/')) {
        return Err(config_error(format!(
            "cache.warm: {url:?} must be a path on this site (start with /)"
        )));
    }
    Ok(())
}
