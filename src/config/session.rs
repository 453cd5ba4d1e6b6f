//! `[session]`: server-side sessions for dynamic routes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, config_error};

/// The `[session]` table: server-side sessions for dynamic routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Where sessions live: `"sled"` (on disk, one server), `"redis"`
    /// (shared) or `"cookie"` (in the cookie itself, encrypted).
    pub store: SessionStoreKind,
    pub cookie_name: String,
    /// `Secure` on the cookie: `"auto"` (when serving TLS), `"always"`, `"never"`.
    pub secure: CookieSecure,
    pub same_site: SameSitePolicy,
    /// A session unused this long is gone.
    pub idle_timeout_secs: u64,
    /// A session this old is gone, however active.
    pub max_lifetime_secs: u64,
    /// Largest session (its values, serialized); a route that would store
    /// more is refused.
    pub max_bytes: usize,
    /// Sessions larger than this are stored zstd-compressed.
    pub compress_above: usize,
    /// The sled store's directory, relative to the site root.
    pub dir: PathBuf,
    /// The Redis store (`store = "redis"`).
    pub redis_url: String,
    pub redis_prefix: String,
    /// How often expired sessions are removed from the sled store.
    pub prune_interval_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            store: SessionStoreKind::Sled,
            cookie_name: "kiln_session".into(),
            secure: CookieSecure::Auto,
            same_site: SameSitePolicy::Lax,
            idle_timeout_secs: 7 * 24 * 3600,
            max_lifetime_secs: 30 * 24 * 3600,
            max_bytes: 16 * 1024,
            compress_above: 1024,
            dir: PathBuf::from(".kiln/sessions"),
            redis_url: String::new(),
            redis_prefix: "kiln-session:".into(),
            prune_interval_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStoreKind {
    Sled,
    Redis,
    /// No store: the values travel in the cookie, encrypted and authenticated.
    Cookie,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CookieSecure {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSitePolicy {
    Lax,
    Strict,
    None,
}

/// Stage two for `[session]`.
pub(super) fn validate(session: &SessionConfig) -> Result<(), ConfigError> {
    if session.store == SessionStoreKind::Redis && !session.redis_url.starts_with("redis") {
        return Err(config_error(
            "session.store = \"redis\" needs session.redis_url = \"redis://HOST:PORT/DB\"",
        ));
    }
    if session.cookie_name.is_empty()
        || !session
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(config_error(format!(
            "session.cookie_name = {:?}: letters, digits, _ and - only",
            session.cookie_name
        )));
    }
    if session.idle_timeout_secs == 0 || session.max_lifetime_secs == 0 {
        return Err(config_error(
            "session.idle_timeout_secs and session.max_lifetime_secs must be above 0",
        ));
    }
    if session.same_site == SameSitePolicy::None && session.secure == CookieSecure::Never {
        return Err(config_error(
            "session.same_site = \"none\" needs a Secure cookie; browsers drop it otherwise",
        ));
    }
    if session.prune_interval_secs == 0 {
        return Err(config_error("session.prune_interval_secs must be above 0"));
    }
    Ok(())
}
