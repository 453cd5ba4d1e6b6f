//! `kiln serve`: the production server for the output directory.
//!
//! One handler chain ([`handler`]) over a file table ([`table`]) that is
//! loaded at start-up and replaced whole when a new build is swapped in
//! ([`reload`]). Each HTTP concern has its own module: [`resolve`] (paths),
//! [`negotiate`] (encodings), [`conditional`] (validators), [`range`],
//! [`headers`] (policy), [`body`] (streaming), [`metrics`], [`access_log`],
//! [`tls`]. Declared `[[route]]`s ([`routes`]) answer before the file
//! table, over the pooled database in [`db`].

pub mod access_log;
pub mod body;
pub mod cache;
pub mod conditional;
pub mod db;
pub mod handler;
pub mod headers;
pub mod live;
pub mod metrics;
pub mod negotiate;
pub mod range;
pub mod reload;
pub mod resolve;
pub mod routes;
pub mod secret;
pub mod session;
pub mod table;
pub mod tls;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse, fn_service};
use actix_web::{App, HttpMessage, HttpServer};
use arc_swap::ArcSwap;

use crate::config::Settings;
use access_log::AccessLog;
use handler::{AppState, Limits};
use headers::SecurityHeaders;
use metrics::Metrics;
use resolve::PathRules;
use routes::Selected;
use routes::respond::Dynamic;
use table::Table;

/// Command-line choices that override `[server]`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub addr: Option<SocketAddr>,
    pub workers: Option<usize>,
    /// Handle SIGINT/SIGTERM (graceful stop) and SIGHUP (reload). Off for
    /// servers embedded in tests.
    pub handle_signals: bool,
    /// Where access log lines go; standard output when `None`.
    pub access_log: Option<AccessLog>,
    /// The clock sessions expire by (tests move it).
    pub clock: session::Clock,
    /// `kiln watch`'s live-reload channel, served at `/__kiln/events`.
    pub live: Option<Arc<live::LiveReload>>,
}

/// A server running on its own thread.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub tls: bool,
    pub state: Arc<AppState>,
    handle: ServerHandle,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl RunningServer {
    /// `http://127.0.0.1:PORT` (or https).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops the server; `graceful` lets in-flight requests finish within
    /// the configured grace period.
    pub fn stop(self, graceful: bool) -> io::Result<()> {
        actix_web::rt::System::new().block_on(self.handle.stop(graceful));
        self.thread
            .join()
            .map_err(|_| io::Error::other("server thread panicked"))?
    }

    /// A handle that can stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Blocks until the server stops (on a signal, or a handle's stop).
    pub fn wait(self) -> io::Result<()> {
        self.thread
            .join()
            .map_err(|_| io::Error::other("server thread panicked"))?
    }
}

/// Loads the output directory and starts serving it on a new thread.
/// With dynamic routes, the database is opened and migrated, and the route
/// queries' plans checked, before the server listens.
pub fn start(settings: &Settings, options: ServeOptions) -> io::Result<RunningServer> {
    let server = settings.server();
    let table = Table::load(settings)?;
    let tls_config = match &settings.server.tls {
        Some((cert, key)) => Some(tls::server_config(cert, key)?),
        None => None,
    };
    let dynamic = if settings.uses_database() {
        Some(Arc::new(prepare_dynamic(
            settings,
            tls_config.is_some(),
            true,
            options.clock.clone(),
        )?))
    } else {
        None
    };
    let state = Arc::new(AppState {
        table: ArcSwap::from_pointee(table),
        metrics: Arc::new(Metrics::default()),
        log: options
            .access_log
            .clone()
            .unwrap_or_else(|| AccessLog::stdout(server.access_log)),
        security: SecurityHeaders::new(settings, tls_config.is_some()),
        limits: Limits {
            max_header_bytes: server.max_header_bytes,
            max_body_bytes: server.max_body_bytes,
            max_ranges: server.max_ranges,
            metrics: server.metrics,
            rules: PathRules {
                pretty_urls: server.pretty_urls,
            },
        },
        dynamic,
    });
    let addr = options.addr.unwrap_or(settings.server.addr);
    let listener = TcpListener::bind(addr)
        .map_err(|err| io::Error::new(err.kind(), format!("binding {addr}: {err}")))?;
    let addr = listener.local_addr()?;
    let workers = options.workers.unwrap_or(server.workers);
    let (handle_sender, handle_receiver) = std::sync::mpsc::channel();
    let thread_state = Arc::clone(&state);
    let thread_settings = settings.clone();
    let tls = tls_config.is_some();
    let handle_signals = options.handle_signals;
    let live = options.live.clone();
    let keep_alive = Duration::from_secs(server.keep_alive_secs);
    let header_timeout = Duration::from_secs(server.header_timeout_secs);
    let grace = server.shutdown_grace_secs;
    let thread = std::thread::Builder::new()
        .name("kiln-serve".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                if let Some(dynamic) = &thread_state.dynamic
                    && let Err(err) = start_database(&thread_settings, dynamic).await
                {
                    let _ = handle_sender.send(Err(err));
                    return Ok(());
                }
                let app_state = Arc::clone(&thread_state);
                let metrics = Arc::clone(&thread_state.metrics);
                let mut http = HttpServer::new(move || {
                    let state = Arc::clone(&app_state);
                    let mut app = App::new();
                    if let Some(dynamic) = &state.dynamic {
                        app = app.service(dynamic_scope(Arc::clone(&state), Arc::clone(dynamic)));
                    }
                    if let Some(channel) = &live {
                        let channel = Arc::clone(channel);
                        app = app
                            .route(
                                live::EVENTS_PATH,
                                actix_web::web::get().to(move || {
                                    let channel = Arc::clone(&channel);
                                    async move { live::events(&channel) }
                                }),
                            )
                            .route(
                                live::CLIENT_PATH,
                                actix_web::web::get().to(|| async { live::client() }),
                            );
                    }
                    app.default_service(fn_service(move |request: ServiceRequest| {
                        let state = Arc::clone(&state);
                        async move {
                            let (req, _payload) = request.into_parts();
                            let response = handler::handle(&req, &state);
                            Ok::<_, actix_web::Error>(ServiceResponse::new(req, response))
                        }
                    }))
                })
                // The guard lives in the connection's data and counts it until it closes.
                .on_connect(move |_, data| {
                    data.insert(metrics.connection());
                })
                .keep_alive(keep_alive)
                .client_request_timeout(header_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .shutdown_timeout(grace)
                .tcp_nodelay(true)
                .backlog(2048);
                if workers > 0 {
                    http = http.workers(workers);
                }
                if !handle_signals {
                    http = http.disable_signals();
                }
                let running = match tls_config {
                    Some(config) => http.listen_rustls_0_23(listener, config)?.run(),
                    None => http.listen(listener)?.run(),
                };
                let _ = handle_sender.send(Ok(running.handle()));
                actix_web::rt::spawn(reload::watch(thread_settings, thread_state, handle_signals));
                running.await
            })
        })?;
    let handle = match handle_receiver.recv() {
        Ok(Ok(handle)) => handle,
        Ok(Err(err)) => {
            let _ = thread.join();
            return Err(err);
        }
        Err(_) => return Err(io::Error::other("the server failed to start")),
    };
    Ok(RunningServer {
        addr,
        tls,
        state,
        handle,
        thread,
    })
}

/// Compiles the routes and their templates, builds the pool (no
/// connection yet) and, with `open_cache`, opens the route cache:
/// everything about the dynamic side that can fail without talking to the
/// database.
fn prepare_dynamic(
    settings: &Settings,
    tls: bool,
    open_stores: bool,
    clock: session::Clock,
) -> io::Result<Dynamic> {
    let routes = routes::Routes::compile(settings).map_err(io::Error::other)?;
    let views = routes::views::Views::load(settings, &routes.templates())
        .map_err(|diagnostic| io::Error::other(diagnostic.to_string()))?;
    let key = secret::load(&settings.root, settings.server().secret_key_file.as_deref())?;
    let database = db::Database::open(settings.database(), &settings.root)
        .map_err(|err| io::Error::other(err.to_string()))?;
    let config = settings.database();
    let slow_query =
        (config.slow_query_ms > 0).then(|| Duration::from_millis(config.slow_query_ms));
    let cached = routes.routes.iter().any(|route| route.cache.is_some());
    let sessions = if open_stores && routes.use_sessions() {
        let sessions = session::Sessions::open(settings.session(), &settings.root, clock)
            .map_err(io::Error::other)?;
        Some(Arc::new(sessions))
    } else {
        None
    };
    // Under `kiln watch` an edited template or query shows at once: no route cache.
    let cache = if open_stores && cached && !settings.dev {
        Some(cache::RouteCache::open(settings.cache(), &settings.root).map_err(io::Error::other)?)
    } else {
        None
    };
    Ok(Dynamic {
        routes,
        database: Arc::new(database),
        views: arc_swap::ArcSwap::from_pointee(views),
        csrf: routes::csrf::Csrf::new(&key, tls),
        slow_query,
        max_body_bytes: settings.server().max_body_bytes,
        templates_dir: settings.templates_dir.clone(),
        cache,
        sessions,
        session_key: session::cookie_key(&key),
        session_config: settings.session().clone(),
        tls,
        slow_queries: Default::default(),
        live_reload: settings.dev,
    })
}

/// What `kiln check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub routes: usize,
    pub applied: Vec<String>,
    pub warnings: Vec<String>,
}

/// `kiln check`: compiles routes and their templates, applies pending
/// migrations and explains every route query, without serving.
pub fn check(settings: &Settings) -> io::Result<CheckReport> {
    if !settings.uses_database() {
        return Ok(CheckReport::default());
    }
    let dynamic = prepare_dynamic(settings, false, false, session::Clock::default())?;
    actix_web::rt::System::new().block_on(async {
        let migrations = settings.root.join(&settings.database().migrations);
        let applied = db::migrate::run(&dynamic.database, &migrations)
            .await
            .map_err(|err| io::Error::other(err.to_string()))?;
        let warnings = routes::plan::check(&dynamic.database, &dynamic.routes)
            .await
            .map_err(|err| io::Error::other(format!("checking query plans: {err}")))?;
        Ok(CheckReport {
            routes: dynamic.routes.routes.len(),
            applied,
            warnings: warnings.iter().map(ToString::to_string).collect(),
        })
    })
}

/// Migrates, checks query plans (warnings go to standard error), opens
/// `min_idle` connections and starts pool maintenance. Runs on the
/// server's runtime, which outlives every pooled connection.
async fn start_database(settings: &Settings, dynamic: &Arc<Dynamic>) -> io::Result<()> {
    let database = &dynamic.database;
    let migrations = settings.root.join(&settings.database().migrations);
    let applied = db::migrate::run(database, &migrations)
        .await
        .map_err(|err| io::Error::other(err.to_string()))?;
    if !applied.is_empty() {
        eprintln!(
            "kiln: applied {} migration(s): {}",
            applied.len(),
            applied.join(", ")
        );
    }
    if settings.database().plan_check {
        let warnings = routes::plan::check(database, &dynamic.routes)
            .await
            .map_err(|err| io::Error::other(format!("checking query plans: {err}")))?;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
    }
    database.maintain().await;
    database.spawn_maintenance();
    if let Some(sessions) = &dynamic.sessions {
        sessions.check().await.map_err(io::Error::other)?;
        spawn_session_pruner(sessions, settings.session().prune_interval_secs);
    }
    if let Some(cache) = &dynamic.cache {
        cache.check().await.map_err(io::Error::other)?;
        spawn_disk_sweeper(dynamic);
        if let Some(subscribed) = cache.listen().await {
            // Subscribed before serving, so no invalidation is missed.
            spawn_invalidation_listener(dynamic, subscribed.map_err(io::Error::other)?);
        }
        for url in &settings.cache().warm {
            if let Err(problem) = routes::cached::warm(dynamic, url).await {
                eprintln!("warning: {problem}");
            }
        }
    }
    Ok(())
}

/// How often expired entries are dropped from the disk level of the cache.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Drops expired disk entries on a schedule, off the workers, until the
/// server stops.
fn spawn_disk_sweeper(dynamic: &Arc<Dynamic>) {
    let dynamic = Arc::downgrade(dynamic);
    actix_web::rt::spawn(async move {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            interval.tick().await;
            let Some(dynamic) = dynamic.upgrade() else {
                break;
            };
            let _ = actix_web::rt::task::spawn_blocking(move || {
                if let Some(disk) = dynamic.cache.as_ref().and_then(|cache| cache.disk.as_ref()) {
                    disk.sweep();
                }
            })
            .await;
        }
    });
}

/// Applies other servers' invalidations (from Redis) to this server's
/// memory and disk levels; resubscribes when the connection drops.
fn spawn_invalidation_listener(
    dynamic: &Arc<Dynamic>,
    first: impl futures_util::Stream<Item = String> + Unpin + 'static,
) {
    use futures_util::StreamExt;
    let dynamic = Arc::downgrade(dynamic);
    actix_web::rt::spawn(async move {
        let mut tags: std::pin::Pin<Box<dyn futures_util::Stream<Item = String>>> = Box::pin(first);
        loop {
            while let Some(tag) = tags.next().await {
                let Some(dynamic) = dynamic.upgrade() else {
                    return;
                };
                if let Some(cache) = &dynamic.cache {
                    cache.invalidate_local(&tag);
                }
            }
            eprintln!("kiln: lost the Redis invalidation channel; resubscribing");
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(dynamic) = dynamic.upgrade() else {
                    return;
                };
                let Some(cache) = &dynamic.cache else {
                    return;
                };
                if let Some(Ok(stream)) = cache.listen().await {
                    tags = Box::pin(stream);
                    break;
                }
            }
        }
    });
}

/// Removes expired sessions at start-up and then on a schedule, off the
/// workers, until the server stops.
fn spawn_session_pruner(sessions: &Arc<session::Sessions>, every_secs: u64) {
    let sessions = Arc::downgrade(sessions);
    actix_web::rt::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(every_secs));
        loop {
            interval.tick().await;
            let Some(sessions) = sessions.upgrade() else {
                break;
            };
            let _ = actix_web::rt::task::spawn_blocking(move || sessions.prune()).await;
        }
    });
}

/// The scope that answers dynamic routes: selected by a guard (so static
/// requests never pass through it), wrapped in the session middleware.
fn dynamic_scope(
    state: Arc<AppState>,
    dynamic: Arc<Dynamic>,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<actix_web::body::EitherBody<actix_web::body::BoxBody>>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let guard_dynamic = Arc::clone(&dynamic);
    let handle = session::SessionHandle(dynamic.sessions.clone());
    let middleware = session::middleware(
        handle,
        &dynamic.session_key,
        &dynamic.session_config,
        dynamic.tls,
    );
    actix_web::web::scope("")
        .guard(actix_web::guard::fn_guard(move |ctx| {
            let head = ctx.head();
            let selected = guard_dynamic.routes.select(&head.method, head.uri.path());
            if matches!(selected, Selected::None) {
                return false;
            }
            ctx.req_data_mut().insert(selected);
            true
        }))
        .wrap(middleware)
        .default_service(fn_service(move |request: ServiceRequest| {
            let state = Arc::clone(&state);
            let dynamic = Arc::clone(&dynamic);
            async move {
                let (req, payload) = request.into_parts();
                // The guard already selected the route.
                let selected = req.extensions_mut().remove::<Selected>();
                let selected =
                    selected.unwrap_or_else(|| dynamic.routes.select(req.method(), req.path()));
                let response = match selected {
                    Selected::Route(index, values) => {
                        let route = &dynamic.routes.routes[index];
                        handler::handle_dynamic(&req, payload, &state, &dynamic, route, values)
                            .await
                    }
                    Selected::WrongMethod(allow) => handler::wrong_method(&req, &state, &allow),
                    Selected::None => handler::handle(&req, &state),
                };
                Ok::<_, actix_web::Error>(ServiceResponse::new(req, response))
            }
        }))
}
