//! Declarative dynamic routes (`[[route]]` in build.toml): a typed path,
//! typed query-string parameters and form fields, SQL with named bound
//! parameters, and a result shape (a template, or JSON). Compiled once at
//! start-up, so a route that names an undeclared parameter, a missing
//! template or a malformed path stops the server before it listens.
//!
//! [`params`] checks inputs, [`pattern`] matches paths, [`fill`] fills
//! redirect and tag templates, and [`plan`] warns about queries that scan
//! whole tables.

pub(crate) mod fill;
pub(crate) mod params;
pub(crate) mod pattern;
pub(crate) mod plan;

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::http::header::HeaderValue;

use crate::config::{Isolation, ParamType, RouteConfig, RouteMethod, Settings};
use crate::dynamic::db::SqlValue;
use crate::dynamic::db::sql::{self, Statement};
use crate::dynamic::response_cache::{PURGE_ALL_TAG, PURGE_ROUTE_TAG, PURGE_URL_TAG};
use crate::http::metrics::Histogram;
use params::Input;
use pattern::PathPattern;

/// One read query of a route.
pub(crate) struct Query {
    pub name: String,
    pub statement: Statement,
    pub one: bool,
    pub allow_scan: bool,
}

/// A compiled route.
pub(crate) struct Route {
    /// `GET /products/{id:int}`, for logs and metrics.
    pub label: String,
    pub method: Method,
    pub pattern: PathPattern,
    pub params: Vec<Input>,
    pub fields: Vec<Input>,
    pub queries: Vec<Query>,
    pub exec: Vec<Statement>,
    pub template: Option<String>,
    pub redirect: Option<String>,
    pub isolation: Option<Isolation>,
    pub cache_control: HeaderValue,
    /// How the route's responses are cached, if they are.
    pub cache: Option<CachePolicy>,
    /// Tags a POST route drops (`{name}` filled per request).
    pub invalidates: Vec<String>,
    /// Session changes a POST route makes.
    pub session: Option<crate::config::RouteSessionConfig>,
    /// Jobs a POST route enqueues in its write's transaction.
    pub enqueue: Vec<crate::config::RouteEnqueueConfig>,
    /// Session keys the route's SQL reads (`:session.visitor` → `visitor`).
    pub session_params: Vec<String>,
    /// The response may differ per visitor's session (its SQL or cache key
    /// reads the session, or its template is handed the session): never
    /// `public`, and `Vary: Cookie`.
    pub reads_session: bool,
    /// Time spent in the database per request.
    pub query_time: Histogram,
    /// Time to answer each request, from its selection to its response
    /// (cache hits included; the body's sending not).
    pub request_time: Histogram,
}

/// A cached route's policy.
pub(crate) struct CachePolicy {
    pub ttl: std::time::Duration,
    pub stale: std::time::Duration,
    /// Tag templates (`product:{id}`).
    pub tags: Vec<String>,
    /// Inputs the key is made of, sorted.
    pub vary: Vec<String>,
    /// Query parameters that send a request past the cache, with the value
    /// they have when not given: any other value bypasses.
    pub bypass: Vec<(String, SqlValue)>,
    /// What the route cache may keep of this route.
    pub admit: crate::dynamic::response_cache::Admit,
    /// Its template was found to change the CSRF token as it renders it:
    /// its pages are rendered for each request from then on.
    pub token_changed: std::sync::atomic::AtomicBool,
    /// How the cache answered this route's requests.
    pub answers: CacheAnswers,
}

/// A cached route's requests by how the cache answered them, for the
/// per-route hit ratio (`kiln_route_cache_answers_total`).
#[derive(Default)]
pub(crate) struct CacheAnswers {
    counts: [std::sync::atomic::AtomicU64; 3],
}

impl CacheAnswers {
    /// The answers' names, as `X-Kiln-Cache` says them.
    pub(crate) const NAMES: [&'static str; 3] = ["hit", "stale", "miss"];

    /// Counts one answer, by its name in [`Self::NAMES`].
    pub(crate) fn count(&self, answer: &str) {
        if let Some(index) = Self::NAMES.iter().position(|name| *name == answer) {
            self.counts[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Each answer's name and count.
    pub(crate) fn each(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Self::NAMES
            .iter()
            .zip(&self.counts)
            .map(|(name, count)| (*name, count.load(std::sync::atomic::Ordering::Relaxed)))
    }
}

impl CachePolicy {
    /// The cache key: `ROUTE.GENERATION.INPUTS`. `ROUTE` is the route's
    /// declaration (its SQL, template name and cache settings: see
    /// [`Admit::route`](crate::dynamic::response_cache::Admit)),
    /// `GENERATION` what it renders with (the build, its templates and
    /// data: [`crate::dynamic::views::Views::generation`]), `INPUTS` the
    /// typed values of the inputs it varies on, so `?page=01` and
    /// `?page=1` share an entry. An entry rendered for another build or
    /// another declaration is never found.
    pub(crate) fn key(
        &self,
        generation: &str,
        values: &[(String, SqlValue)],
    ) -> std::sync::Arc<str> {
        use std::fmt::Write;
        let hasher = self.digest_inputs(values, |_| true);
        let mut key = String::with_capacity(self.admit.route.len() + generation.len() + 34);
        let _ = write!(
            key,
            "{}.{generation}.{}",
            self.admit.route,
            &hasher.finalize().to_hex()[..32]
        );
        key.into()
    }

    /// The tags the cache adds to every entry of this route, besides its
    /// own `tags`, so `kiln cache purge` can drop every entry, a route's or
    /// a URL's (all its visitors' variants) through the tag machinery that
    /// reaches every level and every server.
    pub(crate) fn implicit_tags(&self, values: &[(String, SqlValue)]) -> [String; 3] {
        let url = self.digest_inputs(values, |name| !name.starts_with("session."));
        [
            PURGE_ALL_TAG.to_string(),
            format!("{PURGE_ROUTE_TAG}{}", self.admit.route),
            format!(
                "{PURGE_URL_TAG}{}.{}",
                self.admit.route,
                &url.finalize().to_hex()[..32]
            ),
        ]
    }

    /// The tag of the entries of the URL that gave `values`.
    pub(crate) fn url_tag(&self, values: &[(String, SqlValue)]) -> String {
        let [_, _, url] = self.implicit_tags(values);
        url
    }

    /// The tag of every entry of this route.
    pub(crate) fn route_tag(&self) -> String {
        format!("{PURGE_ROUTE_TAG}{}", self.admit.route)
    }

    fn digest_inputs(
        &self,
        values: &[(String, SqlValue)],
        included: impl Fn(&str) -> bool,
    ) -> blake3::Hasher {
        let mut hasher = blake3::Hasher::new();
        for name in self.vary.iter().filter(|name| included(name)) {
            let value = values
                .iter()
                .find(|(known, _)| known == name)
                .map_or(SqlValue::Null, |(_, value)| value.clone());
            hasher.update(b"\0");
            hasher.update(name.as_bytes());
            hasher.update(b"=");
            hasher.update(value.describe().as_bytes());
        }
        hasher
    }

    /// Whether a request with `values` goes past the cache: one of the
    /// `bypass` parameters was given.
    pub(crate) fn bypassed_by(&self, values: &[(String, SqlValue)]) -> bool {
        self.bypass.iter().any(|(name, absent)| {
            values
                .iter()
                .any(|(known, value)| known == name && value != absent)
        })
    }
}

/// Named input values of one request: path parameters, query parameters,
/// form fields.
pub(crate) type Values = Vec<(String, SqlValue)>;

/// What a request's method and path select: owned, so the scope's guard
/// can keep it in the request for the handler instead of matching twice.
pub(crate) enum Selected {
    /// The index in [`Routes::routes`], and the path parameters' values.
    Route(usize, Vec<(String, SqlValue)>),
    /// The path matches routes, none with this method.
    WrongMethod(String),
    None,
}

/// Every route, in declaration order (the first match wins).
pub(crate) struct Routes {
    pub routes: Vec<Route>,
}

/// A route problem, naming the route.
#[derive(Debug, thiserror::Error)]
#[error("build.toml: route[{index}] ({label}): {message}")]
pub(crate) struct RouteError {
    pub index: usize,
    pub label: String,
    pub message: String,
}

/// SQL parameters with this prefix read the visitor's session.
pub(crate) const SESSION_PREFIX: &str = "session.";

impl Routes {
    /// Compiles `[[route]]`.
    pub(crate) fn compile(settings: &Settings) -> Result<Routes, RouteError> {
        let mut routes: Vec<Route> = Vec::new();
        for (index, config) in settings.routes().iter().enumerate() {
            let label = format!("{} {}", config.method, config.path);
            let route = compile_route(config, label.clone()).map_err(|message| RouteError {
                index,
                label: label.clone(),
                message,
            })?;
            if routes
                .iter()
                .any(|known| known.method == route.method && known.pattern == route.pattern)
            {
                return Err(RouteError {
                    index,
                    label,
                    message: "another route has the same method and path".into(),
                });
            }
            routes.push(route);
        }
        let mut routes = Routes { routes };
        routes.mark_session_readers()?;
        Ok(routes)
    }

    /// Marks the routes whose responses depend on the session, and refuses
    /// a `public` cache_control on them: a shared cache (a CDN) would give
    /// one visitor's page to the next.
    fn mark_session_readers(&mut self) -> Result<(), RouteError> {
        let sessions = self.use_sessions();
        for (index, route) in self.routes.iter_mut().enumerate() {
            // An uncached page's template is handed the visitor's whole
            // session when the site has sessions; a cached one only the
            // session values its key varies on, which `session_params` holds.
            let template_sees_session = sessions
                && route.method == Method::GET
                && route.template.is_some()
                && route.cache.is_none();
            route.reads_session = !route.session_params.is_empty() || template_sees_session;
            if route.reads_session && !kept_from_shared_caches(&route.cache_control) {
                return Err(RouteError {
                    index,
                    label: route.label.clone(),
                    message: format!(
                        "cache_control {:?} lets shared caches keep one visitor's page for others, but the response depends on the session; use \"private, ...\", \"no-cache\" or \"no-store\"",
                        route.cache_control.to_str().unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Removes every route's cache policy: for an app assembled without a
    /// response cache, so "is this route cached?" has one answer.
    pub(crate) fn drop_cache_policies(&mut self) {
        for route in &mut self.routes {
            route.cache = None;
        }
    }

    /// Whether any route reads or changes the session.
    pub(crate) fn use_sessions(&self) -> bool {
        self.routes
            .iter()
            .any(|route| route.session.is_some() || !route.session_params.is_empty())
    }

    /// Templates the routes render.
    pub(crate) fn templates(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .routes
            .iter()
            .filter_map(|route| route.template.as_deref())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The route for a request. HEAD selects GET routes.
    pub(crate) fn select(&self, method: &Method, path: &str) -> Selected {
        let wanted = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let mut allowed: Vec<&str> = Vec::new();
        for (index, route) in self.routes.iter().enumerate() {
            let Some(values) = route.pattern.matches(path) else {
                continue;
            };
            if route.method == wanted {
                return Selected::Route(index, values);
            }
            allowed.push(route.method.as_str());
        }
        if allowed.is_empty() {
            return Selected::None;
        }
        if allowed.contains(&"GET") {
            allowed.push("HEAD");
        }
        allowed.sort_unstable();
        allowed.dedup();
        Selected::WrongMethod(allowed.join(", "))
    }
}

fn compile_route(config: &RouteConfig, label: String) -> Result<Route, String> {
    let pattern = PathPattern::parse(&config.path)?;
    let params = inputs(&config.params)?;
    let fields = inputs(&config.fields)?;
    let mut declared: HashMap<&str, &'static str> = pattern
        .param_types()
        .map(|(name, kind)| (name, kind.sql_type()))
        .collect();
    for input in params.iter().chain(&fields) {
        if declared
            .insert(input.name.as_str(), sql_type(input.spec.kind))
            .is_some()
        {
            return Err(format!("{:?} is declared twice", input.name));
        }
    }
    let queries = config
        .query
        .iter()
        .map(|query| {
            let statement = statement(&query.sql, &declared, &format!("query {:?}", query.name))?;
            Ok(Query {
                name: query.name.clone(),
                statement,
                one: query.one,
                allow_scan: query.allow_scan,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let exec = config
        .exec
        .iter()
        .enumerate()
        .map(|(index, sql)| statement(sql, &declared, &format!("exec[{index}]")))
        .collect::<Result<Vec<_>, String>>()?;
    // Validation checked the characters; this only builds the value.
    let cache_control = HeaderValue::from_str(&config.cache_control).map_err(|_| {
        format!(
            "cache_control {:?} is not a header value",
            config.cache_control
        )
    })?;
    let cache = match &config.cache {
        Some(cache) => Some(cache_policy(config, cache, &pattern, &queries)?),
        None => None,
    };
    let session_params = queries
        .iter()
        .map(|query| &query.statement)
        .chain(&exec)
        .flat_map(|statement| &statement.params)
        .chain(cache.iter().flat_map(|policy| &policy.vary))
        .filter_map(|name| name.strip_prefix(SESSION_PREFIX))
        .map(str::to_string)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(Route {
        cache,
        invalidates: config.invalidates.clone(),
        session: config.session.clone(),
        enqueue: config.enqueue.clone(),
        session_params,
        reads_session: false,
        label,
        method: match config.method {
            RouteMethod::Get => Method::GET,
            RouteMethod::Post => Method::POST,
        },
        pattern,
        params,
        fields,
        queries,
        exec,
        template: config.template.clone(),
        redirect: config.redirect.clone(),
        isolation: config.isolation,
        cache_control,
        query_time: Histogram::default(),
        request_time: Histogram::default(),
    })
}

/// Whether `cache_control` keeps shared caches from reusing a response
/// without asking the server: `private`, `no-store` or `no-cache`, and no
/// `public` or `s-maxage` overriding them (RFC 9111 §3, §5.2.2).
fn kept_from_shared_caches(cache_control: &HeaderValue) -> bool {
    let text = cache_control.to_str().unwrap_or_default();
    let names: Vec<&str> = text
        .split(',')
        .map(|directive| directive.split('=').next().unwrap_or_default().trim())
        .collect();
    let has = |wanted: &str| names.iter().any(|name| name.eq_ignore_ascii_case(wanted));
    (has("private") || has("no-store") || has("no-cache")) && !has("public") && !has("s-maxage")
}

/// Checks a route's cache policy: the key must cover every input the
/// queries read, and tags may only use inputs of the key.
fn cache_policy(
    config: &RouteConfig,
    cache: &crate::config::RouteCacheConfig,
    pattern: &PathPattern,
    queries: &[Query],
) -> Result<CachePolicy, String> {
    let mut vary: Vec<String> = pattern
        .param_types()
        .map(|(name, _)| name.to_string())
        .collect();
    let bypass = bypass_params(config, cache)?;
    let bypassed = |name: &str| bypass.iter().any(|(known, _)| known == name);
    match &cache.vary {
        Some(chosen) => {
            for name in chosen {
                if !config.params.contains_key(name) && !name.starts_with(SESSION_PREFIX) {
                    return Err(format!(
                        "cache.vary: {name:?} is not a query parameter of this route"
                    ));
                }
                if bypassed(name) {
                    return Err(format!(
                        "cache.vary: {name:?} is also in cache.bypass, which keeps it out of the key"
                    ));
                }
                vary.push(name.clone());
            }
        }
        None => {
            vary.extend(config.params.keys().filter(|name| !bypassed(name)).cloned());
            let read_from_session = queries
                .iter()
                .flat_map(|query| &query.statement.params)
                .filter(|name| name.starts_with(SESSION_PREFIX));
            vary.extend(read_from_session.cloned());
        }
    }
    vary.sort();
    vary.dedup();
    for query in queries {
        // A bypass parameter is at its default in every cached response.
        if let Some(name) = query
            .statement
            .params
            .iter()
            .find(|name| !vary.contains(name) && !bypassed(name))
        {
            return Err(format!(
                "cache.vary leaves out {name:?}, which query {:?} reads: every response would share one entry",
                query.name
            ));
        }
    }
    for tag in &cache.tags {
        for name in fill::placeholders(tag) {
            if !vary.iter().any(|known| known == name) {
                return Err(format!(
                    "cache.tags: {{{name}}} in {tag:?} is not an input of the key"
                ));
            }
        }
    }
    Ok(CachePolicy {
        ttl: std::time::Duration::from_secs(cache.ttl_secs),
        stale: std::time::Duration::from_secs(cache.stale_secs),
        tags: cache.tags.clone(),
        vary,
        bypass,
        admit: crate::dynamic::response_cache::Admit {
            // Everything declared about the route: a changed query or cache
            // setting renders differently from the same inputs.
            route: blake3::hash(format!("{config:?}").as_bytes()).to_hex()[..8].into(),
            max_entries: cache.max_entries,
            repeat: cache.admit == crate::config::CacheAdmit::Repeat,
        },
        token_changed: Default::default(),
        answers: Default::default(),
    })
}

/// `cache.bypass`: declared query parameters, each with the value it binds
/// to when not given.
fn bypass_params(
    config: &RouteConfig,
    cache: &crate::config::RouteCacheConfig,
) -> Result<Vec<(String, SqlValue)>, String> {
    cache
        .bypass
        .iter()
        .map(|name| {
            let spec = config.params.get(name).ok_or_else(|| {
                format!("cache.bypass: {name:?} is not a query parameter of this route")
            })?;
            let input = Input::new(name, spec)?;
            let absent = params::bind(std::slice::from_ref(&input), &Default::default())
                .ok()
                .and_then(|mut bound| bound.pop())
                .map_or(SqlValue::Null, |(_, value)| value);
            Ok((name.clone(), absent))
        })
        .collect()
}

fn inputs(
    specs: &std::collections::BTreeMap<String, crate::config::ParamConfig>,
) -> Result<Vec<Input>, String> {
    specs
        .iter()
        .map(|(name, spec)| Input::new(name, spec))
        .collect()
}

/// The SQL type an input is bound as.
fn sql_type(kind: ParamType) -> &'static str {
    match kind {
        ParamType::Int => "int8",
        ParamType::Float => "float8",
        ParamType::Str => "text",
        ParamType::Bool => "bool",
    }
}

/// Parses SQL and checks that every parameter it names is declared.
fn statement(
    text: &str,
    declared: &HashMap<&str, &'static str>,
    what: &str,
) -> Result<Statement, String> {
    let cast = |name: &str| {
        if name.starts_with(SESSION_PREFIX) {
            return Some("text");
        }
        declared.get(name).copied()
    };
    let statement = sql::parse_typed(text, &cast).map_err(|err| format!("{what}: {err}"))?;
    if let Some(unknown) = statement
        .params
        .iter()
        .find(|name| !name.starts_with(SESSION_PREFIX) && !declared.contains_key(name.as_str()))
    {
        let mut known: Vec<&str> = declared.keys().copied().collect();
        known.sort_unstable();
        return Err(format!(
            "{what}: :{unknown} is not a path parameter, query parameter or form field of this route, nor :session.KEY (declared: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    Ok(statement)
}
