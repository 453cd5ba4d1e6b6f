//! `[[route]]`: declarative SQL routes. Stage one is serde; stage two
//! ([`validate`]) checks ranges and shapes that serde cannot. Compiling a
//! route (its path pattern, SQL parameters and cache key) happens in
//! `dynamic::routes`, which reports against the same keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::server::check_header_value;
use super::{ConfigError, Isolation, config_error};

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
    /// Jobs a POST route enqueues in its write's transaction
    /// (`[route.enqueue]`, or `[[route.enqueue]]` for several).
    #[serde(default, deserialize_with = "one_or_many")]
    pub enqueue: Vec<RouteEnqueueConfig>,
}

/// `[route.enqueue]`: a job queued by a POST route, committed with its
/// write or not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEnqueueConfig {
    /// The `[[job]]`'s name.
    pub job: String,
    /// The payload: each key a template (`"{id}"`, `"Note {id} by
    /// {author}"`) filled from the route's inputs and RETURNING columns
    /// (a lone `"{name}"` keeps the value's type), or a TOML number,
    /// boolean or string without braces, kept as it is.
    #[serde(default)]
    pub payload: BTreeMap<String, toml::Value>,
}

/// A table or an array of tables.
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
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
    /// Query parameters the key varies on (default: all of them but
    /// `bypass`; path parameters always). Every parameter the SQL reads
    /// must be listed.
    pub vary: Option<Vec<String>>,
    /// Query parameters (free text, such as a search box) that send a
    /// request past the cache when given a value other than their default.
    #[serde(default)]
    pub bypass: Vec<String>,
    /// Most entries of this route kept at once; beyond it new responses
    /// are served but not stored until some leave. `0`: no limit.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    /// When an entry reaches the disk and Redis levels.
    #[serde(default)]
    pub admit: CacheAdmit,
}

fn default_max_entries() -> usize {
    1000
}

/// `[route.cache] admit`: when a response goes below the memory level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheAdmit {
    /// On its second use: a key requested once (a one-off search, a
    /// crawler's walk) never costs a disk or Redis write.
    #[default]
    Repeat,
    /// As soon as it is rendered.
    Always,
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// Stage two for `[[route]]`: shapes that depend on the method.
pub(super) fn validate(routes: &[RouteConfig]) -> Result<(), ConfigError> {
    for (index, route) in routes.iter().enumerate() {
        let key = format!("route[{index}] ({} {})", route.method, route.path);
        // Control characters belong to the cache's own tags.
        let declared = route
            .invalidates
            .iter()
            .chain(route.cache.iter().flat_map(|cache| &cache.tags));
        if let Some(tag) = declared
            .into_iter()
            .find(|tag| tag.chars().any(char::is_control))
        {
            return Err(config_error(format!(
                "{key}: tag {tag:?} holds a control character"
            )));
        }
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
        validate_paths(&key, route)?;
        check_header_value(&format!("{key}: cache_control"), &route.cache_control)?;
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

/// Paths the server answers itself; a route may not take them.
pub(crate) const RESERVED_PATHS: [&str; 2] = ["/healthz", "/metrics"];

/// The route's own path, its template and its redirect target.
fn validate_paths(key: &str, route: &RouteConfig) -> Result<(), ConfigError> {
    if RESERVED_PATHS.contains(&route.path.as_str()) {
        return Err(config_error(format!(
            "{key}: {} is answered by the server itself",
            route.path
        )));
    }
    if let Some(template) = &route.template
        && (template.starts_with('/') || template.split('/').any(|part| part == ".."))
    {
        return Err(config_error(format!(
            "{key}: template {template:?} must be a path under templates/"
        )));
    }
    if let Some(redirect) = &route.redirect
        && !redirect.starts_with('/')
    {
        return Err(config_error(format!(
            "{key}: redirect {redirect:?} must be a path on this site (start with /)"
        )));
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
