//! The dynamic application's state: compiled routes, the pool, route
//! templates, CSRF, sessions and the response cache, opened once when the
//! server is assembled and shared by every worker.
//!
//! Whether a route is cached is decided here, once: a route whose cache
//! could not be opened (`kiln watch` and `kiln check` open none) has its
//! cache policy removed, so no request can reach the cached path without a
//! cache.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Settings;
use crate::diagnostic::Diagnostic;
use crate::dynamic::admission::{Admission, AdmissionLimits};
use crate::dynamic::csrf::Csrf;
use crate::dynamic::db::{Database, DbError};
use crate::dynamic::response_cache::{CacheError, RouteCache};
use crate::dynamic::routes::{Route, RouteError, Routes};
use crate::dynamic::session::SessionError;
use crate::dynamic::views::Views;
use crate::dynamic::{secret, session};
use crate::http::forwarded::TrustedProxies;
use crate::http::metrics::{Exposition, label_value};

/// Which stores [`DynamicApp::open`] opens: a server opens them, `kiln
/// check` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stores {
    Open,
    Closed,
}

/// Everything dynamic routes need, shared by all workers.
pub(crate) struct DynamicApp {
    pub routes: Routes,
    pub database: Arc<Database>,
    /// The declared background jobs, when there are some.
    pub jobs: Option<Arc<crate::dynamic::jobs::Jobs>>,
    /// Replaced when a new build is loaded.
    pub views: ArcSwap<Views>,
    pub csrf: Csrf,
    pub slow_query: Option<Duration>,
    pub(crate) body_limits: crate::http::request_body::BodyLimits,
    pub templates_dir: PathBuf,
    /// The route cache, when a route is cached.
    pub cache: Option<RouteCache>,
    /// The session store, when a route uses sessions.
    pub sessions: Option<Arc<crate::dynamic::session::Sessions>>,
    /// Signs the session cookie.
    pub session_key: actix_web::cookie::Key,
    pub session_config: crate::config::SessionConfig,
    /// Serving TLS (the session cookie is then `Secure` under `secure = "auto"`).
    pub tls: bool,
    /// Route database calls slower than `slow_query`.
    pub slow_queries: std::sync::atomic::AtomicU64,
    /// The last of them, for the status page.
    pub recent_slow: crate::http::metrics::Recent<SlowQuery>,
    /// Under `kiln watch`: rendered pages load the live-reload client.
    pub live_reload: bool,
    /// `server.debug_headers`: cached responses say how they were served.
    pub debug_headers: bool,
    /// Places for database work, and the per-client write rate.
    pub admission: Admission,
    /// Whom to believe about the client's address (the write rate's key).
    pub proxies: TrustedProxies,
}

impl DynamicApp {
    /// The pool, session, route cache and per-route query series.
    pub(crate) fn encode_metrics(&self, out: &mut Exposition<'_>) -> fmt::Result {
        self.database.encode_metrics(out)?;
        self.admission.encode_metrics(out)?;
        if let Some(sessions) = &self.sessions {
            sessions.encode_metrics(out)?;
        }
        if let Some(cache) = &self.cache {
            cache.encode_metrics(out)?;
        }
        if let Some(jobs) = &self.jobs {
            jobs.encode_metrics(out)?;
        }
        out.histograms(
            "kiln_route_query_duration_seconds",
            "Database time per request of each dynamic route.",
            self.routes
                .routes
                .iter()
                .filter(|route| route.query_time.count() > 0)
                .map(|route| ([("route", label_value(&route.label))], &route.query_time)),
        )?;
        out.histograms(
            "kiln_route_request_duration_seconds",
            "Time to answer each request of each dynamic route (cache hits included).",
            self.routes
                .routes
                .iter()
                .filter(|route| route.request_time.count() > 0)
                .map(|route| ([("route", label_value(&route.label))], &route.request_time)),
        )?;
        out.counters(
            "kiln_route_cache_answers",
            "Requests of each cached route by how the route cache answered: hit (fresh), stale (served while refreshed) or miss (rendered).",
            self.routes.routes.iter().flat_map(|route| {
                let label = label_value(&route.label);
                route.cache.iter().flat_map(move |policy| {
                    let label = label.clone();
                    policy
                        .answers
                        .each()
                        .map(move |(answer, count)| ([("route", label.clone()), ("answer", answer.into())], count))
                })
            }),
        )?;
        out.counter(
            "kiln_slow_queries",
            "Route database calls slower than database.slow_query_ms.",
            self.slow_queries.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Records a route's database time, logging it when slow.
    pub(crate) fn observe(&self, route: &Route, what: &str, elapsed: Duration) {
        route.query_time.observe(elapsed);
        if self
            .slow_query
            .is_some_and(|threshold| elapsed >= threshold)
        {
            self.slow_queries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.recent_slow.keep(SlowQuery {
                at_ms: crate::http::metrics::unix_ms(),
                route: route.label.clone(),
                what: what.to_string(),
                ms: elapsed.as_secs_f64() * 1000.0,
            });
            tracing::warn!(
                "slow query: route {} ({what}) took {:.1} ms",
                route.label,
                elapsed.as_secs_f64() * 1000.0
            );
        }
    }
}

/// A slow route database call, as the status page lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct SlowQuery {
    /// Unix time, milliseconds.
    pub at_ms: u64,
    pub route: String,
    pub what: String,
    pub ms: f64,
}

/// Why the dynamic app could not be opened; each message names the route,
/// template, file or store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("{0}")]
    Routes(RouteError),
    #[error("{0}")]
    Templates(Diagnostic),
    #[error("{0}")]
    Secret(std::io::Error),
    #[error("{0}")]
    Database(DbError),
    #[error("{0}")]
    Sessions(SessionError),
    #[error("{0}")]
    Cache(CacheError),
    #[error("{0}")]
    Jobs(crate::dynamic::jobs::JobsError),
}

impl DynamicApp {
    /// Compiles the routes and their templates, builds the pool (no
    /// connection yet) and, with [`Stores::Open`], opens the session store
    /// and the response cache: everything about the dynamic side that can
    /// fail without talking to the database.
    pub(crate) fn open(
        settings: &Settings,
        tls: bool,
        stores: Stores,
        clock: session::Clock,
    ) -> Result<DynamicApp, OpenError> {
        let mut routes = Routes::compile(settings).map_err(OpenError::Routes)?;
        let views = Views::load(settings, &routes.templates()).map_err(OpenError::Templates)?;
        let key = secret::load(&settings.root, settings.server().secret_key_file.as_deref())
            .map_err(OpenError::Secret)?;
        let database = Arc::new(
            Database::open(settings.database(), &settings.root).map_err(OpenError::Database)?,
        );
        let jobs = crate::dynamic::jobs::Jobs::open(settings, &database)
            .map_err(OpenError::Jobs)?
            .map(Arc::new);
        if let Some(jobs) = &jobs {
            for route in &routes.routes {
                jobs.check_enqueues(route).map_err(OpenError::Jobs)?;
            }
        }
        let config = settings.database();
        let slow_query =
            (config.slow_query_ms > 0).then(|| Duration::from_millis(config.slow_query_ms));
        let open = stores == Stores::Open;
        let sessions = if open && routes.use_sessions() {
            let sessions = session::Sessions::open(
                settings.session(),
                &settings.root,
                clock,
                &key.site_identity(),
            )
            .map_err(OpenError::Sessions)?;
            Some(Arc::new(sessions))
        } else {
            None
        };
        let cached = routes.routes.iter().any(|route| route.cache.is_some());
        // Under `kiln watch` an edited template or query shows at once: no
        // response cache, and so no route keeps a cache policy.
        let cache = if open && cached && !settings.dev {
            Some(
                RouteCache::open(
                    settings.cache(),
                    &settings.root,
                    &key.site_identity(),
                    &config.url,
                )
                .map_err(OpenError::Cache)?,
            )
        } else {
            routes.drop_cache_policies();
            None
        };
        let proxies = TrustedProxies::new(
            settings.trusted_proxies().to_vec(),
            settings.server().forwarded_header,
        );
        Ok(DynamicApp {
            routes,
            database,
            jobs,
            views: ArcSwap::from_pointee(views),
            csrf: Csrf::new(&key, tls, proxies.clone()),
            admission: Admission::new(AdmissionLimits::of(settings)),
            proxies,
            slow_query,
            body_limits: crate::http::request_body::BodyLimits {
                max_bytes: settings.server().max_body_bytes,
                grace: Duration::from_secs(settings.server().body_timeout_secs),
                min_rate: settings.server().min_body_rate,
            },
            templates_dir: settings.templates_dir.clone(),
            cache,
            sessions,
            session_key: session::cookie_key(&key),
            session_config: settings.session().clone(),
            tls,
            slow_queries: Default::default(),
            recent_slow: Default::default(),
            live_reload: settings.dev,
            debug_headers: settings.server().debug_headers,
        })
    }
}
