//! `kiln serve`: the process around the app. [`start`] assembles the app
//! ([`app`]: the dynamic scope, the live-reload endpoints, the static
//! pipeline of [`crate::http`]) inside the cross-cutting [`concerns`]
//! (limits, security headers, metrics, access log), binds, optionally over
//! [`tls`], and runs the [`tasks`] beside the workers; [`reload`] swaps in
//! new builds; [`endpoints`] answers `/healthz` and `/metrics`; [`live`] is
//! `kiln watch`'s event stream; [`check`] is `kiln check`;
//! [`cache_control`] is `kiln cache`.

pub mod access_log;
pub(crate) mod app;
pub mod cache_control;
pub(crate) mod check;
pub(crate) mod concerns;
pub(crate) mod endpoints;
pub(crate) mod error;
pub mod live;
pub(crate) mod metrics;
pub(crate) mod readings;
pub(crate) mod reload;
pub(crate) mod state;
pub(crate) mod status;
pub(crate) mod tasks;
pub(crate) mod tls;
pub(crate) mod transport;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use arc_swap::ArcSwap;

use crate::config::{MetricsAccess, Settings};
use crate::dynamic::app::{DynamicApp, Stores};
use crate::dynamic::session;
use crate::http::forwarded::TrustedProxies;
use crate::http::headers::SecurityHeaders;
use crate::http::hosts::{AllowedHosts, LOCAL_HOSTS};
use crate::http::metrics::Metrics;
use crate::http::pipeline::StaticRules;
use crate::http::resolve::PathRules;
use crate::http::table::Table;
use access_log::AccessLog;
use state::{AppState, RequestLimits};

pub use crate::http::table::TableStats;
pub use check::{CheckReport, check};
use error::Cause;
pub use error::ServeError;

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
    /// The admin listener's address, when `server.admin_addr` is set.
    pub admin_addr: Option<SocketAddr>,
    pub tls: bool,
    pub(crate) state: Arc<AppState>,
    handle: ServerHandle,
    thread: std::thread::JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// `http://127.0.0.1:PORT` (or https).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops the server; `graceful` lets in-flight requests finish within
    /// the configured grace period.
    pub fn stop(self, graceful: bool) -> Result<(), ServeError> {
        actix_web::rt::System::new().block_on(self.handle.stop(graceful));
        self.thread.join().map_err(|_| Cause::Panicked)?
    }

    /// What the file table of the build being served holds.
    pub fn table_stats(&self) -> TableStats {
        self.state.table.load().stats
    }

    /// A handle that can stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Blocks until the server stops (on a signal, or a handle's stop).
    pub fn wait(self) -> Result<(), ServeError> {
        self.thread.join().map_err(|_| Cause::Panicked)?
    }
}

/// `server.allowed_hosts`; under `kiln watch`, when it is not set, the
/// local names and the address being served, so a page elsewhere cannot
/// reach the development server through DNS rebinding.
fn allowed_hosts(settings: &Settings, addr: Option<SocketAddr>) -> AllowedHosts {
    let configured = &settings.server().allowed_hosts;
    if !configured.is_empty() || !settings.dev {
        return AllowedHosts::new(configured.iter().map(String::as_str));
    }
    let addr = addr.unwrap_or(settings.addr());
    let own = match addr.ip() {
        ip if ip.is_unspecified() => None,
        std::net::IpAddr::V6(ip) => Some(format!("[{ip}]")),
        ip => Some(ip.to_string()),
    };
    AllowedHosts::new(LOCAL_HOSTS.iter().copied().chain(own.as_deref()))
}

/// `server.max_connections`, or, when 0, what the open-file limit allows
/// once the database, the disk cache and the files being served have
/// their descriptors. The soft limit is first raised to the hard one, as
/// nginx's `worker_rlimit_nofile` and Go's runtime do: the default soft
/// limit (1,024 on most systems) is a compatibility setting for `select`,
/// which kiln does not use.
fn max_connections(configured: usize) -> usize {
    const RESERVED: u64 = 256;
    const CEILING: u64 = 16_384;
    if configured > 0 {
        return configured;
    }
    let open_files = raise_open_file_limit();
    open_files.saturating_sub(RESERVED).clamp(64, CEILING) as usize
}

/// Raises the soft open-file limit to the hard one; returns the soft limit.
fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// Connections the admin listener (`server.admin_addr`) takes at once.
const ADMIN_CONNECTIONS: usize = 64;

/// Loads the output directory and starts serving it on a new thread.
/// With dynamic routes, the database is opened and migrated, and the route
/// queries' plans checked, before the server listens.
pub fn start(settings: &Settings, options: ServeOptions) -> Result<RunningServer, ServeError> {
    let server = settings.server();
    let table = Table::load(settings).map_err(Cause::LoadBuild)?;
    let tls_config = match settings.tls_files() {
        Some((cert, key)) => Some(tls::server_config(cert, key).map_err(Cause::Tls)?),
        None => None,
    };
    let dynamic = if settings.uses_database() {
        Some(Arc::new(
            DynamicApp::open(
                settings,
                tls_config.is_some(),
                Stores::Open,
                options.clock.clone(),
            )
            .map_err(Cause::Open)?,
        ))
    } else {
        None
    };
    if let Some(dynamic) = &dynamic
        && let Some(jobs) = &dynamic.jobs
    {
        // `warm` and `purge` jobs act on this server's caches.
        let server: Arc<dyn crate::dynamic::jobs::maintenance::Maintenance> =
            Arc::clone(dynamic) as _;
        let server = Arc::downgrade(&server);
        jobs.attach(server);
    }
    let table = Arc::new(ArcSwap::from_pointee(table));
    let http_metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState {
        registry: metrics::registry(&http_metrics, &table, dynamic.as_ref()),
        table,
        metrics: http_metrics,
        log: options
            .access_log
            .clone()
            .unwrap_or_else(|| AccessLog::stdout(server.access_log)),
        security: SecurityHeaders::new(settings, tls_config.is_some()),
        request_limits: RequestLimits {
            max_header_bytes: server.max_header_bytes,
            max_body_bytes: server.max_body_bytes,
        },
        static_rules: StaticRules {
            max_ranges: server.max_ranges,
            paths: PathRules {
                pretty_urls: server.pretty_urls,
            },
        },
        metrics_access: match server.metrics {
            // Under `kiln watch` the developer's own browser and curl read them.
            MetricsAccess::Admin if settings.dev => MetricsAccess::Loopback,
            access => access,
        },
        metrics_token: endpoints::metrics_token(
            &settings.root,
            server.metrics_token_file.as_deref(),
        )
        .map_err(Cause::MetricsToken)?,
        proxies: TrustedProxies::new(
            settings.trusted_proxies().to_vec(),
            settings.server().forwarded_header,
        ),
        allowed_hosts: allowed_hosts(settings, options.addr),
        tls: tls_config.is_some(),
        dynamic,
    });
    let addr = options.addr.unwrap_or(settings.addr());
    let listener = TcpListener::bind(addr).map_err(|error| Cause::Bind { addr, error })?;
    let addr = listener.local_addr().map_err(Cause::Server)?;
    let admin_listener = match settings.admin_addr() {
        Some(admin) => {
            Some(TcpListener::bind(admin).map_err(|error| Cause::Bind { addr: admin, error })?)
        }
        None => None,
    };
    let admin_addr = match &admin_listener {
        Some(listener) => Some(listener.local_addr().map_err(Cause::Server)?),
        None => None,
    };
    let workers = options.workers.unwrap_or(server.workers);
    // actix starts one worker per CPU it may run on when none is asked.
    state.metrics.set_workers(if workers > 0 {
        workers
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    });
    let (handle_sender, handle_receiver) = std::sync::mpsc::channel();
    let thread_state = Arc::clone(&state);
    let thread_settings = settings.clone();
    let tls = tls_config.is_some();
    let handle_signals = options.handle_signals;
    let live = options.live.clone();
    let transport = transport::Transport {
        deadlines: transport::guard::Deadlines {
            head: Duration::from_secs(server.header_timeout_secs),
            idle: Duration::from_secs(server.keep_alive_secs + server.header_timeout_secs),
            send: Duration::from_secs(server.send_timeout_secs),
            max_requests: server.max_requests_per_connection,
        },
        caps: Arc::new(transport::caps::ConnectionCaps::new(
            max_connections(server.max_connections),
            server.max_connections_per_ip,
            state.proxies.clone(),
            Arc::clone(&state.metrics),
        )),
        tls: tls_config.map(Arc::new),
        keep_alive: Duration::from_secs(server.keep_alive_secs),
        h2: transport::h2::H2Limits {
            max_concurrent_streams: server.h2_max_concurrent_streams,
            max_header_list_bytes: u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX),
            keep_alive: Duration::from_secs(server.keep_alive_secs),
            header_timeout: Duration::from_secs(server.header_timeout_secs),
            send_timeout: Duration::from_secs(server.send_timeout_secs),
        },
    };
    let grace = server.shutdown_grace_secs;
    let thread = std::thread::Builder::new()
        .name("kiln-serve".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let job_workers = match &thread_state.dynamic {
                    Some(dynamic) => match tasks::start_database(&thread_settings, dynamic).await {
                        Ok(workers) => workers,
                        Err(err) => {
                            let _ = handle_sender.send(Err(err));
                            return Ok(());
                        }
                    },
                    None => None,
                };
                let mut builder = actix_web::dev::Server::build()
                    .shutdown_timeout(grace)
                    .backlog(2048);
                if workers > 0 {
                    builder = builder.workers(workers);
                }
                if !handle_signals {
                    builder = builder.disable_signals();
                }
                let app_state = Arc::clone(&thread_state);
                let make_app = move || {
                    actix_web::App::new()
                        .configure(app::services(Arc::clone(&app_state), live.clone()))
                };
                // Caps of its own: monitoring must get in while the public
                // listener is full.
                let admin_transport = transport::Transport {
                    tls: None,
                    caps: Arc::new(transport::caps::ConnectionCaps::new(
                        ADMIN_CONNECTIONS,
                        0,
                        Default::default(),
                        Arc::clone(&thread_state.metrics),
                    )),
                    ..transport.clone()
                };
                let mut listening = transport::listen(builder, listener, transport, make_app);
                if let Some(admin_listener) = admin_listener {
                    let admin_state = Arc::clone(&thread_state);
                    let make_admin = move || {
                        actix_web::App::new()
                            .configure(app::admin_services(Arc::clone(&admin_state)))
                    };
                    listening = listening.and_then(|builder| {
                        transport::listen(builder, admin_listener, admin_transport, make_admin)
                    });
                }
                let running = match listening {
                    Ok(builder) => builder.run(),
                    Err(error) => {
                        let _ = handle_sender.send(Err(Cause::Server(error).into()));
                        return Ok(());
                    }
                };
                let _ = handle_sender.send(Ok(running.handle()));
                actix_web::rt::spawn(reload::watch(thread_settings, thread_state, handle_signals));
                let served = running.await.map_err(|error| Cause::Server(error).into());
                // The requests are done; the running jobs get the same grace.
                if let Some(workers) = job_workers {
                    workers.stop(Duration::from_secs(grace)).await;
                }
                served
            })
        })
        .map_err(Cause::Server)?;
    let handle = match handle_receiver.recv() {
        Ok(Ok(handle)) => handle,
        Ok(Err(err)) => {
            let _ = thread.join();
            return Err(err);
        }
        Err(_) => return Err(Cause::NotStarted.into()),
    };
    Ok(RunningServer {
        addr,
        admin_addr,
        tls,
        state,
        handle,
        thread,
    })
}
