//! `kiln watch`: the development loop. Builds the site into its own output
//! directory (`.kiln/watch`, so `dist/` stays the production build), serves
//! it with development headers and the live-reload channel
//! ([`crate::server::live`]), and rebuilds on every change ([`changes`]).
//!
//! A rebuild reuses what the [`BuildSession`] kept: parsed JavaScript
//! modules, stylesheet bundles whose inputs did not change, pages whose
//! templates and data did not change, output files with the same bytes.
//! The new output is loaded into the running server straight away, then
//! browsers are told what to do ([`rebuild`]). A failed rebuild leaves the
//! last good output served and shows the errors in the terminal and over
//! the page. A `build.toml` or migration change restarts the server, once
//! the new configuration has been checked, on the same address.

pub(crate) mod changes;
pub(crate) mod rebuild;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::build::report::{ConsoleProgress, Silent};
use crate::build::{BuildSession, build_in};
use crate::config::{ConfigError, Override, Settings};
use crate::diagnostic::{BuildError, Diagnostic, display_path};
use crate::server::live::{Event, LiveReload};
use crate::server::{RunningServer, ServeError, ServeOptions};
use crate::site::live_reload::with_live_reload;
use crate::site::manifest::Manifest;
use changes::{Changes, Message, SiteWatcher};

/// The command line's choices.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub root: PathBuf,
    pub addr: Option<SocketAddr>,
    pub overrides: Vec<Override>,
}

/// Why `kiln watch` stopped before it could serve, or failed to stop.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// `build.toml` or a `--set` is wrong (exit code 2).
    #[error("{0}")]
    Config(ConfigError),
    /// The server could not start, or stop.
    #[error("starting the server: {0}")]
    Serve(ServeError),
    /// The file watcher could not start.
    #[error("watching: {0}")]
    Watch(notify::Error),
}

/// Everything the loop keeps between rebuilds.
struct Watching {
    options: WatchOptions,
    settings: Settings,
    session: BuildSession,
    channel: Arc<LiveReload>,
    /// `None` only while a restart is under way (or failed twice).
    server: Option<RunningServer>,
    /// The address the server listens on (a restart keeps it).
    addr: SocketAddr,
    /// The manifest of the build being served.
    manifest: Manifest,
    /// The last rebuild failed and browsers show its errors.
    failing: bool,
}

/// Builds, serves and rebuilds until Ctrl-C or SIGTERM.
pub fn run(options: WatchOptions) -> Result<(), WatchError> {
    let settings =
        Settings::load_for_watch(&options.root, &options.overrides).map_err(WatchError::Config)?;
    let session = BuildSession::persistent();
    let channel = Arc::new(LiveReload::new());
    let failing = first_build(&session, &settings, &channel);
    let addr = options.addr.unwrap_or(settings.addr());
    let server = start_server(&settings, addr, &channel).map_err(WatchError::Serve)?;
    let mut watcher = SiteWatcher::new(&settings).map_err(WatchError::Watch)?;
    spawn_signal_listener(watcher.sender());
    println!(
        "kiln watch: serving {} (building into {}); edits rebuild and update the browser. Ctrl-C stops.",
        server.base_url(),
        display_path(&settings.out_dir)
    );
    let mut watching = Watching {
        manifest: read_manifest(&settings),
        options,
        settings,
        session,
        channel,
        addr: server.addr,
        server: Some(server),
        failing,
    };
    while let Some(changes) = watcher.next_batch() {
        watching.apply(&changes);
    }
    println!("kiln watch: stopped");
    match watching.server.take() {
        Some(server) => server.stop(false).map_err(WatchError::Serve),
        None => Ok(()),
    }
}

/// The first build, with a progress bar. When it fails and there is no
/// earlier output, a placeholder page is served so the browser can show
/// the errors and reload once they are fixed. Returns whether it failed.
fn first_build(session: &BuildSession, settings: &Settings, channel: &LiveReload) -> bool {
    let progress = ConsoleProgress::new();
    let result = build_in(session, settings, &progress);
    progress.finish();
    match result {
        Ok(report) => {
            println!(
                "{} built {} outputs in {}",
                rebuild::clock(),
                report.outputs.len(),
                rebuild::milliseconds(report.duration)
            );
            false
        }
        Err(err) => {
            eprintln!("{err}");
            if !settings.out_dir.is_dir() {
                let page = with_live_reload(
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                     <title>kiln watch</title></head><body><p>The first build failed; \
                     the errors are in the terminal.</p></body></html>",
                );
                let written = std::fs::create_dir_all(&settings.out_dir)
                    .and_then(|()| std::fs::write(settings.out_dir.join("index.html"), page));
                if let Err(err) = written {
                    tracing::error!("{}: {err}", display_path(&settings.out_dir));
                }
            }
            channel.send(&Event::Problem(err.diagnostics));
            true
        }
    }
}

fn start_server(
    settings: &Settings,
    addr: SocketAddr,
    channel: &Arc<LiveReload>,
) -> Result<RunningServer, ServeError> {
    let options = ServeOptions {
        addr: Some(addr),
        live: Some(Arc::clone(channel)),
        ..ServeOptions::default()
    };
    crate::server::start(settings, options)
}

impl Watching {
    fn apply(&mut self, changes: &Changes) {
        let started = Instant::now();
        if changes.touches_config() || changes.touches_migrations() {
            if let Err(problems) = self.restart(changes) {
                self.report_failure(changes, problems, started);
            }
            return;
        }
        self.session
            .changed(changes.paths.iter().map(PathBuf::as_path));
        match build_in(&self.session, &self.settings, &Silent) {
            Ok(report) => self.served(changes, report, started),
            Err(err) => self.report_failure(changes, err, started),
        }
    }

    /// Loads the new output into the server and tells browsers.
    fn served(&mut self, changes: &Changes, report: crate::BuildReport, started: Instant) {
        let problem = match &self.server {
            Some(server) => match crate::server::reload::load(&self.settings, &server.state) {
                Ok(loaded) => loaded.views.err(),
                Err(err) => Some(Diagnostic::new(format!(
                    "loading {}: {err}",
                    display_path(&self.settings.out_dir)
                ))),
            },
            None => None,
        };
        if let Some(problem) = problem {
            self.report_failure(changes, problem.into(), started);
            return;
        }
        let manifest = read_manifest(&self.settings);
        let event = rebuild::event_for(changes, &report, &self.manifest, &manifest);
        self.manifest = manifest;
        match &event {
            Some(event) => self.channel.send(event),
            None if self.failing => self.channel.send(&Event::Ok),
            None => {}
        }
        self.failing = false;
        for warning in &report.warnings {
            eprint!("{}", warning.as_warning());
        }
        println!(
            "{}",
            rebuild::summary_line(changes, &report, event.as_ref(), started.elapsed())
        );
    }

    fn report_failure(&mut self, changes: &Changes, err: BuildError, started: Instant) {
        eprintln!("{err}");
        println!(
            "{}",
            rebuild::failure_line(changes, err.diagnostics.len(), started.elapsed())
        );
        self.channel.send(&Event::Problem(err.diagnostics));
        self.failing = true;
    }

    /// A configuration or migration change: checks the new settings (routes,
    /// templates, pending migrations, applied here) before anything stops,
    /// rebuilds from scratch, and restarts the server on its address.
    fn restart(&mut self, changes: &Changes) -> Result<(), BuildError> {
        let started = Instant::now();
        let settings = Settings::load_for_watch(&self.options.root, &self.options.overrides)
            .map_err(|err| BuildError::single(Diagnostic::new(err.to_string())))?;
        let checked = crate::server::check(&settings)
            .map_err(|err| BuildError::single(Diagnostic::new(err.to_string())))?;
        for warning in &checked.warnings {
            tracing::warn!("{warning}");
        }
        let session = BuildSession::persistent();
        let report = build_in(&session, &settings, &Silent)?;
        self.restart_server(&settings).map_err(|err| {
            BuildError::single(Diagnostic::new(format!("starting the server: {err}")))
        })?;
        self.settings = settings;
        self.session = session;
        self.manifest = read_manifest(&self.settings);
        self.failing = false;
        let event = Event::Reload {
            reason: changes.describe(),
        };
        self.channel.send(&event);
        println!(
            "{} (server restarted)",
            rebuild::summary_line(changes, &report, Some(&event), started.elapsed())
        );
        Ok(())
    }

    /// Stops the server and starts one with `settings` on the same address;
    /// when that fails, the previous settings are served again.
    fn restart_server(&mut self, settings: &Settings) -> Result<(), ServeError> {
        if let Some(server) = self.server.take() {
            let _ = server.stop(false);
        }
        match start_server(settings, self.addr, &self.channel) {
            Ok(server) => {
                self.server = Some(server);
                Ok(())
            }
            Err(err) => {
                self.server = start_server(&self.settings, self.addr, &self.channel).ok();
                Err(err)
            }
        }
    }
}

/// The manifest of the build being served (empty before the first good one).
fn read_manifest(settings: &Settings) -> Manifest {
    crate::site::manifest::read(&settings.out_dir).unwrap_or_default()
}

/// Ctrl-C and SIGTERM end the loop; the server is then stopped at once
/// (open event streams would hold a graceful stop for its whole grace
/// period). Returns once the handlers are installed, so a signal sent after
/// the "serving" line is never the default one that kills the process.
fn spawn_signal_listener(stop: std::sync::mpsc::Sender<Message>) {
    let (installed, wait_installed) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("kiln-signals".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut interrupt), Ok(mut terminate)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                let _ = installed.send(());
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            });
            let _ = stop.send(Message::Stop);
        });
    match spawned {
        Ok(_) => {
            let _ = wait_installed.recv_timeout(std::time::Duration::from_secs(5));
        }
        Err(err) => tracing::error!("cannot listen for Ctrl-C: {err}"),
    }
}
