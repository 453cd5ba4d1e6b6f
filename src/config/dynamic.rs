//! The dynamic side of `build.toml`: `[database]` (connection and pool) and
//! `[[route]]` (declarative SQL routes). Stage one is serde; stage two
//! ([`validate_database`], [`validate_routes`]) checks ranges and shapes that
//! serde cannot. Compiling routes (path patterns, SQL parameters) happens in
//! `serve::routes`, which reports against the same keys.

use std::collections::BTreeMap;
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

/// What a route answers: pages and JSON, or forms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RouteMethod {
    #[default]
    Get,
    Post,
}

impl RouteMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteMethod::Get => "GET",
            RouteMethod::Post => "POST",
        }
    }
}

impl std::fmt::Display for RouteMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[route]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `GET` (pages and JSON) or `POST` (forms).
    #[serde(default)]
    pub method: RouteMethod,
    /// `/products/{id:int}`: literal segments and typed parameters
    /// (`int`, `str`, `slug`).
    pub path: String,
    /// Typed query-string parameters.
    #[serde(default)]
    pub params: BTreeMap<String, ParamConfig>,
    /// Typed form fields (POST).
    #[serde(default)]
    pub fields: BTreeMap<String, ParamConfig>,
    /// Read queries; their results are the template's variables.
    #[serde(default)]
    pub query: Vec<QueryConfig>,
    /// Write statements (POST), run in order in one transaction.
    #[serde(default)]
    pub exec: Vec<String>,
    /// Template rendered with the query results; without one, the route
    /// answers JSON.
    pub template: Option<String>,
    /// Where a successful POST redirects (303); may use `{param}`.
    pub redirect: Option<String>,
    /// Overrides `database.isolation` for this route's transaction.
    pub isolation: Option<Isolation>,
    /// `Cache-Control` of the route's responses.
    #[serde(default = "default_route_cache_control")]
    pub cache_control: String,
    /// Keep rendered responses in the route cache (GET routes).
    pub cache: Option<RouteCacheConfig>,
    /// Cache tags a POST route drops when it succeeds (`{name}` filled from
    /// its inputs and RETURNING columns).
    #[serde(default)]
    pub invalidates: Vec<String>,
    /// What a POST route does to the visitor's session when it succeeds.
    pub session: Option<RouteSessionConfig>,
}

/// `[route.session]`: session changes a POST route makes after its write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSessionConfig {
    /// Session key → value template (`visitor = "{name}"`).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Session keys removed.
    #[serde(default)]
    pub clear: Vec<String>,
    /// Give the session a new id (after a login-like change); the old id
    /// stops working.
    #[serde(default)]
    pub rotate: bool,
    /// A message shown once, on the next page that renders `flash`.
    pub flash: Option<String>,
}

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
pub(super) fn validate_session(session: &SessionConfig) -> Result<(), ConfigError> {
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

/// `[route.cache]`: how long a rendered response is kept, and under which key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheConfig {
    /// Seconds a response is served from the cache without touching the database.
    pub ttl_secs: u64,
    /// Seconds after that during which the stale response is still served
    /// while one request refreshes it in the background.
    #[serde(default)]
    pub stale_secs: u64,
    /// Tags write routes invalidate by (`{name}` filled from the inputs).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Query parameters the key varies on (default: all of them; path
    /// parameters always). Every parameter the SQL reads must be listed.
    pub vary: Option<Vec<String>>,
}

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
        }
    }
}

fn default_route_cache_control() -> String {
    "no-cache".into()
}

/// One `[[route.query]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// The template variable (and JSON key) holding the result.
    pub name: String,
    /// SQL with named parameters (`:id`); values are always bound, never spliced.
    pub sql: String,
    /// The first row instead of a list; no row answers 404.
    #[serde(default)]
    pub one: bool,
    /// Acknowledge a full-table scan (silences the plan check).
    #[serde(default)]
    pub allow_scan: bool,
}

/// A typed input: a query-string parameter or a form field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamConfig {
    #[serde(rename = "type", default)]
    pub kind: ParamType,
    /// Used when the input is absent (or empty); a parameter without one is
    /// optional (NULL) unless `required`.
    pub default: Option<toml::Value>,
    #[serde(default)]
    pub required: bool,
    /// Bounds for `int` and `float`.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Length bounds for `str`, in characters.
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// The only accepted values.
    #[serde(default)]
    pub one_of: Vec<String>,
}

/// Input types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Int,
    Float,
    #[default]
    Str,
    Bool,
}

/// Stage two for `[database]`.
pub(super) fn validate_database(database: &DatabaseConfig) -> Result<(), ConfigError> {
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

/// Stage two for `[cache]`.
pub(super) fn validate_cache(cache: &CacheConfig) -> Result<(), ConfigError> {
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

/// Stage two for `[[route]]`: shapes that depend on the method.
pub(super) fn validate_routes(routes: &[RouteConfig]) -> Result<(), ConfigError> {
    for (index, route) in routes.iter().enumerate() {
        let key = format!("route[{index}] ({} {})", route.method, route.path);
        match route.method {
            RouteMethod::Get => {
                if !route.exec.is_empty()
                    || !route.fields.is_empty()
                    || route.redirect.is_some()
                    || !route.invalidates.is_empty()
                    || route.session.is_some()
                {
                    return Err(config_error(format!(
                        "{key}: exec, fields, redirect, invalidates and session belong to POST routes"
                    )));
                }
                if let Some(cache) = &route.cache
                    && cache.ttl_secs == 0
                {
                    return Err(config_error(format!(
                        "{key}: cache.ttl_secs must be above 0 (omit [route.cache] to not cache)"
                    )));
                }
                if route.query.is_empty() {
                    return Err(config_error(format!(
                        "{key}: a GET route needs at least one [[route.query]]"
                    )));
                }
            }
            RouteMethod::Post => {
                if route.cache.is_some() {
                    return Err(config_error(format!(
                        "{key}: POST responses are not cached; list the tags it changes in invalidates"
                    )));
                }
                if let Some(session) = &route.session
                    && let Some(name) = session
                        .set
                        .keys()
                        .chain(&session.clear)
                        .find(|name| !is_identifier(name))
                {
                    return Err(config_error(format!(
                        "{key}: session key {name:?} must be an identifier"
                    )));
                }
                if route.exec.is_empty() && route.session.is_none() {
                    return Err(config_error(format!(
                        "{key}: a POST route needs statements in exec, or session changes"
                    )));
                }
                if route.redirect.is_none() {
                    return Err(config_error(format!(
                        "{key}: a POST route needs redirect (post/redirect/get)"
                    )));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for query in &route.query {
            if !is_identifier(&query.name) {
                return Err(config_error(format!(
                    "{key}: query name {:?} must be an identifier",
                    query.name
                )));
            }
            if !names.insert(query.name.as_str()) {
                return Err(config_error(format!(
                    "{key}: two queries are named {:?}",
                    query.name
                )));
            }
        }
        for (name, param) in route.params.iter().chain(&route.fields) {
            validate_param(&key, name, param)?;
        }
    }
    Ok(())
}

fn validate_param(key: &str, name: &str, param: &ParamConfig) -> Result<(), ConfigError> {
    if !is_identifier(name) {
        return Err(config_error(format!(
            "{key}: parameter {name:?} must be an identifier"
        )));
    }
    let numeric = matches!(param.kind, ParamType::Int | ParamType::Float);
    if !numeric && (param.min.is_some() || param.max.is_some()) {
        return Err(config_error(format!(
            "{key}: {name}: min and max apply to int and float"
        )));
    }
    if param.kind != ParamType::Str && (param.min_length.is_some() || param.max_length.is_some()) {
        return Err(config_error(format!(
            "{key}: {name}: min_length and max_length apply to str"
        )));
    }
    if let (Some(min), Some(max)) = (param.min, param.max)
        && min > max
    {
        return Err(config_error(format!("{key}: {name}: min exceeds max")));
    }
    Ok(())
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
