//! Server-side sessions for dynamic routes, through actix-session: the
//! cookie carries only a random id (signed with the server's key), and the
//! values live in sled (one server, the default) or Redis (shared by
//! several). Idle and absolute expiry are enforced here on every load, not
//! left to the cookie; sled sessions are pruned on a schedule, Redis ones
//! expire by TTL. Only dynamic routes are wrapped by the middleware, so a
//! static request never touches the store.

pub(crate) mod record;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::{SessionConfig, SessionStoreKind};
use crate::dynamic::redis::{CallError, RedisConnection, StartError};
use crate::http::metrics::{Exposition, Histogram};
use record::{Lifetime, Record, State, state_bytes};

/// Unix milliseconds now; tests pass a clock they can move.
#[derive(Clone)]
pub struct Clock(pub Arc<dyn Fn() -> u64 + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", (self.0)())
    }
}

impl Default for Clock {
    /// The real clock.
    fn default() -> Self {
        Clock(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as u64)
        }))
    }
}

/// Session counters for `/metrics`.
#[derive(Default)]
pub struct SessionMetrics {
    created: AtomicU64,
    expired: AtomicU64,
    pruned: AtomicU64,
    /// Every load, save, update, touch and delete.
    pub operations: AtomicU64,
    latency: Histogram,
}

enum Backend {
    Sled {
        tree: sled::Tree,
        _db: sled::Db,
    },
    Redis(Box<RedisConnection>),
    /// The "id" is the record itself, encrypted by the middleware.
    Cookie,
}

/// Set in a loaded cookie session whose last-use time should move: the
/// route removes it, which re-issues the cookie with the time updated.
pub const COOKIE_TOUCH: &str = "_kiln.touch";

/// Cookies larger than this are refused by browsers.
const COOKIE_LIMIT: usize = 4000;

/// The session store.
pub struct Sessions {
    backend: Backend,
    lifetime: Lifetime,
    compress_above: usize,
    pub max_bytes: usize,
    clock: Clock,
    pub metrics: SessionMetrics,
}

/// Longest a Redis call may take.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// Expired sessions removed per pruning step.
const PRUNE_BATCH: usize = 500;

impl Sessions {
    /// Opens the configured store (`root` resolves the sled directory).
    /// `site` (the site identity) follows `session.redis_prefix` in Redis keys.
    pub(crate) fn open(
        config: &SessionConfig,
        root: &std::path::Path,
        clock: Clock,
        site: &str,
    ) -> Result<Sessions, SessionError> {
        let backend = match config.store {
            SessionStoreKind::Sled => {
                let dir = root.join(&config.dir);
                let failed = |error| SessionError::Dir {
                    dir: dir.clone(),
                    error,
                };
                let sled_config = sled::Config::new().path(&dir).flush_every_ms(Some(200));
                let db = crate::dynamic::response_cache::disk::open_sled(&sled_config)
                    .map_err(failed)?;
                let tree = db.open_tree("sessions").map_err(failed)?;
                Backend::Sled { tree, _db: db }
            }
            SessionStoreKind::Cookie => Backend::Cookie,
            SessionStoreKind::Redis => Backend::Redis(Box::new(
                RedisConnection::new(
                    "session.redis_url",
                    &config.redis_url,
                    &format!("{}{site}:", config.redis_prefix),
                    REDIS_TIMEOUT,
                )
                .map_err(SessionError::Start)?,
            )),
        };
        Ok(Sessions {
            backend,
            lifetime: Lifetime {
                idle_ms: config.idle_timeout_secs.saturating_mul(1000),
                max_ms: config.max_lifetime_secs.saturating_mul(1000),
            },
            compress_above: config.compress_above,
            max_bytes: config.max_bytes,
            clock,
            metrics: SessionMetrics::default(),
        })
    }

    fn now(&self) -> u64 {
        (self.clock.0)()
    }

    /// Whether the values travel in the cookie.
    pub fn in_cookie(&self) -> bool {
        matches!(self.backend, Backend::Cookie)
    }

    /// Reaches Redis, so a wrong URL stops start-up.
    pub(crate) async fn check(&self) -> Result<(), SessionError> {
        match &self.backend {
            Backend::Sled { .. } | Backend::Cookie => Ok(()),
            Backend::Redis(redis) => redis.ping().await.map_err(SessionError::Start),
        }
    }

    /// The live session `id`; an expired one is deleted and is `None`.
    pub(crate) async fn load(&self, id: &str) -> Result<Option<Record>, SessionError> {
        let Some(mut record) = self.read(id).await? else {
            return Ok(None);
        };
        let now = self.now();
        if self.lifetime.expired(&record, now) {
            self.metrics.expired.fetch_add(1, Ordering::Relaxed);
            self.remove(id).await?;
            return Ok(None);
        }
        if self.lifetime.needs_touch(&record, now) {
            if self.in_cookie() {
                record.state.insert(COOKIE_TOUCH.into(), "true".into());
            } else {
                record.seen_ms = now;
                self.write(id, &record).await?;
            }
        }
        Ok(Some(record))
    }

    /// Stores a new session; returns its id.
    pub(crate) async fn create(&self, state: State) -> Result<String, SessionError> {
        self.check_size(&state)?;
        let now = self.now();
        let record = Record {
            created_ms: now,
            seen_ms: now,
            state,
        };
        let id = if self.in_cookie() {
            cookie_value(&record)?
        } else {
            let id = new_id()?;
            self.write(&id, &record).await?;
            id
        };
        self.metrics.created.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Replaces a session's values (keeping its creation time); a session
    /// that expired meanwhile becomes a new one, under a new id.
    pub(crate) async fn replace(&self, id: &str, state: State) -> Result<String, SessionError> {
        self.check_size(&state)?;
        let Some(existing) = self.load(id).await? else {
            return self.create(state).await;
        };
        let mut state = state;
        state.remove(COOKIE_TOUCH);
        let record = Record {
            created_ms: existing.created_ms,
            seen_ms: self.now(),
            state,
        };
        if self.in_cookie() {
            return cookie_value(&record);
        }
        self.write(id, &record).await?;
        Ok(id.to_string())
    }

    fn check_size(&self, state: &State) -> Result<(), SessionError> {
        let bytes = state_bytes(state);
        if bytes > self.max_bytes {
            return Err(SessionError::TooLarge {
                bytes,
                max: self.max_bytes,
            });
        }
        Ok(())
    }

    async fn read(&self, id: &str) -> Result<Option<Record>, SessionError> {
        let started = Instant::now();
        let bytes = match &self.backend {
            Backend::Cookie => return Ok(cookie_record(id)),
            Backend::Sled { tree, .. } => tree
                .get(id)
                .map_err(SessionError::Sled)?
                .map(|bytes| bytes.to_vec()),
            Backend::Redis(redis) => {
                let key = redis.key(id);
                redis
                    .call(|mut connection| async move {
                        redis::cmd("GET")
                            .arg(key)
                            .query_async::<Option<Vec<u8>>>(&mut connection)
                            .await
                    })
                    .await
                    .map_err(SessionError::Redis)?
            }
        };
        self.observe(started);
        Ok(bytes.as_deref().and_then(Record::decode))
    }

    async fn write(&self, id: &str, record: &Record) -> Result<(), SessionError> {
        let started = Instant::now();
        let bytes = record.encode(self.compress_above);
        match &self.backend {
            Backend::Cookie => return Ok(()),
            Backend::Sled { tree, .. } => {
                // One insert (a crash leaves the old value or the new one),
                // made durable before the response that depends on it.
                let tree = tree.clone();
                let id = id.to_string();
                tokio::task::spawn_blocking(move || {
                    tree.insert(id, bytes)?;
                    tree.flush().map(|_| ())
                })
                .await
                .map_err(SessionError::Blocking)?
                .map_err(SessionError::Sled)?;
            }
            Backend::Redis(redis) => {
                let ttl = self.lifetime.remaining_ms(record, self.now()).max(1);
                let key = redis.key(id);
                redis
                    .call(|mut connection| async move {
                        redis::cmd("SET")
                            .arg(key)
                            .arg(bytes)
                            .arg("PX")
                            .arg(ttl)
                            .query_async::<()>(&mut connection)
                            .await
                    })
                    .await
                    .map_err(SessionError::Redis)?;
            }
        }
        self.observe(started);
        Ok(())
    }

    /// Deletes session `id`.
    pub(crate) async fn remove(&self, id: &str) -> Result<(), SessionError> {
        let started = Instant::now();
        match &self.backend {
            // Nothing stored: the middleware removes the cookie.
            Backend::Cookie => return Ok(()),
            Backend::Sled { tree, .. } => {
                tree.remove(id).map_err(SessionError::Sled)?;
            }
            Backend::Redis(redis) => {
                let key = redis.key(id);
                redis
                    .call(|mut connection| async move {
                        redis::cmd("DEL")
                            .arg(key)
                            .query_async::<()>(&mut connection)
                            .await
                    })
                    .await
                    .map_err(SessionError::Redis)?;
            }
        }
        self.observe(started);
        Ok(())
    }

    fn observe(&self, started: Instant) {
        self.metrics.operations.fetch_add(1, Ordering::Relaxed);
        self.metrics.latency.observe(started.elapsed());
    }

    /// Removes expired sled sessions, a batch at a time; returns how many.
    /// (Redis sessions expire by their TTL.)
    pub fn prune(&self) -> usize {
        let Backend::Sled { tree, .. } = &self.backend else {
            return 0;
        };
        let now = self.now();
        let mut removed = 0;
        let mut after: Option<sled::IVec> = None;
        loop {
            let range = match &after {
                Some(last) => tree.range::<&[u8], _>((
                    std::ops::Bound::Excluded(last.as_ref()),
                    std::ops::Bound::Unbounded,
                )),
                None => tree.iter(),
            };
            let batch: Vec<(sled::IVec, sled::IVec)> =
                range.filter_map(Result::ok).take(PRUNE_BATCH).collect();
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = Some(last.clone());
            for (key, value) in &batch {
                let expired =
                    Record::decode(value).is_none_or(|record| self.lifetime.expired(&record, now));
                // Only if it still holds the expired value read above: a
                // session written meanwhile stays.
                if expired
                    && matches!(
                        tree.compare_and_swap(key, Some(value), None::<&[u8]>),
                        Ok(Ok(()))
                    )
                {
                    removed += 1;
                }
            }
            if batch.len() < PRUNE_BATCH {
                break;
            }
        }
        self.metrics
            .pruned
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Sessions stored (sled), live or not yet pruned.
    pub fn stored(&self) -> Option<usize> {
        match &self.backend {
            Backend::Sled { tree, .. } => Some(tree.len()),
            Backend::Redis(_) | Backend::Cookie => None,
        }
    }

    /// Writes pending changes to disk (sled).
    pub fn flush(&self) {
        if let Backend::Sled { tree, .. } = &self.backend {
            let _ = tree.flush();
        }
    }

    /// The session store's series.
    pub(crate) fn encode_metrics(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        if let Some(stored) = self.stored() {
            out.gauge(
                "kiln_sessions_stored",
                "Sessions in the store (expired ones until pruned).",
                stored,
            )?;
        }
        for (name, help, counter) in [
            (
                "kiln_sessions_created",
                "Sessions created.",
                &self.metrics.created,
            ),
            (
                "kiln_sessions_expired",
                "Sessions found expired (idle or too old) when used.",
                &self.metrics.expired,
            ),
            (
                "kiln_sessions_pruned",
                "Expired sessions removed by the pruner.",
                &self.metrics.pruned,
            ),
            (
                "kiln_session_store_operations",
                "Reads, writes and deletes of the session store.",
                &self.metrics.operations,
            ),
        ] {
            out.counter(name, help, counter.load(Ordering::Relaxed))?;
        }
        out.histogram(
            "kiln_session_store_seconds",
            "Time of each session store operation.",
            &self.metrics.latency,
        )
    }
}

/// Why a session could not be opened, read, stored or removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("session.dir {}: {error}", dir.display())]
    Dir {
        dir: std::path::PathBuf,
        error: sled::Error,
    },
    #[error("{0}")]
    Start(StartError),
    #[error("session store: {0}")]
    Sled(sled::Error),
    #[error("session store: {0}")]
    Redis(CallError),
    #[error("session store: {0}")]
    Blocking(tokio::task::JoinError),
    #[error("the session would hold {bytes} bytes, over session.max_bytes = {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("the session would be a {0}-byte cookie, over the {COOKIE_LIMIT} bytes browsers keep")]
    CookieTooLarge(usize),
    #[error("no randomness for a session id: {0}")]
    Randomness(getrandom::Error),
    #[error("sessions are not enabled")]
    Disabled,
}

/// A cookie session's value: the record as JSON (the middleware encrypts it).
fn cookie_value(record: &Record) -> Result<String, SessionError> {
    let value =
        serde_json::json!({ "c": record.created_ms, "s": record.seen_ms, "v": record.state });
    let text = value.to_string();
    if text.len() > COOKIE_LIMIT {
        return Err(SessionError::CookieTooLarge(text.len()));
    }
    Ok(text)
}

pub(crate) fn cookie_record(value: &str) -> Option<Record> {
    let json: serde_json::Value = serde_json::from_str(value).ok()?;
    Some(Record {
        created_ms: json.get("c")?.as_u64()?,
        seen_ms: json.get("s")?.as_u64()?,
        state: serde_json::from_value(json.get("v")?.clone()).ok()?,
    })
}

/// 256 random bits, URL-safe.
fn new_id() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(SessionError::Randomness)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// actix-session's view of the store; one per worker, all sharing it.
/// Empty when no route uses sessions (the middleware is then disabled and
/// never calls it).
#[derive(Clone)]
pub struct SessionHandle(pub Option<Arc<Sessions>>);

impl SessionHandle {
    fn sessions(&self) -> Result<&Sessions, SessionError> {
        self.0.as_deref().ok_or(SessionError::Disabled)
    }
}

/// The middleware for dynamic routes: an opaque id in a signed cookie with
/// the configured name and attributes (HttpOnly, SameSite, Secure per
/// `session.secure`, Path=/). Disabled when `handle` is empty.
pub fn middleware(
    handle: SessionHandle,
    key: &actix_web::cookie::Key,
    config: &SessionConfig,
    tls: bool,
) -> actix_web::middleware::Condition<actix_session::SessionMiddleware<SessionHandle>> {
    use actix_session::config::{CookieContentSecurity, PersistentSession, TtlExtensionPolicy};
    use actix_web::cookie::SameSite;
    let enabled = handle.0.is_some();
    let secure = match config.secure {
        crate::config::CookieSecure::Auto => tls,
        crate::config::CookieSecure::Always => true,
        crate::config::CookieSecure::Never => false,
    };
    let same_site = match config.same_site {
        crate::config::SameSitePolicy::Lax => SameSite::Lax,
        crate::config::SameSitePolicy::Strict => SameSite::Strict,
        crate::config::SameSitePolicy::None => SameSite::None,
    };
    let lifetime = PersistentSession::default()
        .session_ttl(CookieDuration::seconds(
            config.max_lifetime_secs.min(i64::MAX as u64) as i64,
        ))
        .session_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges);
    let middleware = actix_session::SessionMiddleware::builder(handle, key.clone())
        .cookie_name(config.cookie_name.clone())
        .cookie_secure(secure)
        .cookie_same_site(same_site)
        .cookie_http_only(true)
        .cookie_path("/".into())
        .cookie_content_security(if config.store == SessionStoreKind::Cookie {
            // The values themselves travel: encrypted and authenticated.
            CookieContentSecurity::Private
        } else {
            CookieContentSecurity::Signed
        })
        .session_lifecycle(lifetime)
        .build();
    actix_web::middleware::Condition::new(enabled, middleware)
}

/// The cookie-signing key, derived from the server's secret.
pub fn cookie_key(secret: &crate::dynamic::secret::SecretKey) -> actix_web::cookie::Key {
    let mut bytes = [0u8; 64];
    let first = secret.derive("session cookie 1");
    let second = secret.derive("session cookie 2");
    bytes[..32].copy_from_slice(&first);
    bytes[32..].copy_from_slice(&second);
    actix_web::cookie::Key::from(&bytes)
}

fn key_of(id: String) -> Result<SessionKey, anyhow::Error> {
    SessionKey::try_from(id).map_err(anyhow::Error::new)
}

impl SessionStore for SessionHandle {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let sessions = self
            .sessions()
            .map_err(|err| LoadError::Other(anyhow::Error::new(err)))?;
        let record = sessions
            .load(key.as_ref())
            .await
            .map_err(|err| LoadError::Other(anyhow::Error::new(err)))?;
        Ok(record.map(|record| record.state))
    }

    async fn save(&self, state: State, _: &CookieDuration) -> Result<SessionKey, SaveError> {
        let sessions = self
            .sessions()
            .map_err(|err| SaveError::Other(anyhow::Error::new(err)))?;
        let id = sessions
            .create(state)
            .await
            .map_err(|err| SaveError::Other(anyhow::Error::new(err)))?;
        key_of(id).map_err(SaveError::Other)
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        _: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let sessions = self
            .sessions()
            .map_err(|err| UpdateError::Other(anyhow::Error::new(err)))?;
        let id = sessions
            .replace(key.as_ref(), state)
            .await
            .map_err(|err| UpdateError::Other(anyhow::Error::new(err)))?;
        key_of(id).map_err(UpdateError::Other)
    }

    async fn update_ttl(&self, key: &SessionKey, _: &CookieDuration) -> Result<(), anyhow::Error> {
        // Loading marks the session used (idle expiry is enforced on load).
        let sessions = self.sessions().map_err(anyhow::Error::new)?;
        sessions
            .load(key.as_ref())
            .await
            .map(|_| ())
            .map_err(anyhow::Error::new)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let sessions = self.sessions().map_err(anyhow::Error::new)?;
        sessions
            .remove(key.as_ref())
            .await
            .map_err(anyhow::Error::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn store(dir: &std::path::Path, now: &Arc<AtomicU64>) -> Sessions {
        let config = SessionConfig {
            idle_timeout_secs: 10,
            max_lifetime_secs: 100,
            ..SessionConfig::default()
        };
        let now = Arc::clone(now);
        let clock = Clock(Arc::new(move || now.load(Ordering::Relaxed)));
        Sessions::open(&config, dir, clock, "test").unwrap()
    }

    #[test]
    fn pruning_removes_exactly_the_expired_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(1_000_000));
        let sessions = store(dir.path(), &now);
        actix_web::rt::System::new().block_on(async {
            let mut old = Vec::new();
            for _ in 0..1_200 {
                old.push(sessions.create(State::new()).await.unwrap());
            }
            now.fetch_add(5_000, Ordering::Relaxed);
            let mut young = Vec::new();
            for _ in 0..300 {
                young.push(sessions.create(State::new()).await.unwrap());
            }
            now.fetch_add(6_000, Ordering::Relaxed); // old: idle 11 s; young: 6 s
            assert_eq!(sessions.prune(), 1_200);
            assert_eq!(sessions.stored(), Some(300));
            for id in &young {
                assert!(sessions.load(id).await.unwrap().is_some());
            }
            assert!(sessions.load(&old[0]).await.unwrap().is_none());
        });
    }

    #[test]
    fn sessions_over_the_size_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(0));
        let sessions = store(dir.path(), &now);
        let big: State = [("blob".to_string(), format!("{:?}", "x".repeat(20_000)))].into();
        actix_web::rt::System::new().block_on(async {
            let err = sessions.create(big).await.unwrap_err();
            assert!(
                err.to_string().contains("over session.max_bytes = 16384"),
                "{err}"
            );
        });
    }
}
