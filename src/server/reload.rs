//! Picking up a new build without a restart. `kiln build` swaps a new
//! output directory into place, so the directory's inode changes; the
//! server polls for that (and reloads on SIGHUP), loads the new table off
//! the workers, and replaces the old one in a single atomic store. A request
//! sees one build from start to end: it holds the table it began with.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::diagnostic::Diagnostic;
use crate::dynamic::app::DynamicApp;
use crate::dynamic::response_cache::Retirement;
use crate::http::table::{Table, TableStats, directory_identity};
use crate::server::state::AppState;

/// How often the output directory is checked for a new build.
const POLL: Duration = Duration::from_millis(250);

/// Runs until the server's runtime stops.
pub(crate) async fn watch(settings: Settings, state: Arc<AppState>, signals: bool) {
    let mut interval = tokio::time::interval(POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hangup = if signals {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    } else {
        None
    };
    let mut failed_identity = None;
    loop {
        let forced = tokio::select! {
            _ = interval.tick() => false,
            Some(()) = next_signal(&mut hangup) => true,
        };
        // A missing directory is a build mid-swap (or a removed one): keep serving.
        let Ok(on_disk) = directory_identity(&settings.out_dir) else {
            continue;
        };
        let unchanged = on_disk == state.table.load().identity || Some(on_disk) == failed_identity;
        if unchanged && !forced {
            continue;
        }
        let load_settings = settings.clone();
        let load_state = Arc::clone(&state);
        match actix_web::rt::task::spawn_blocking(move || load(&load_settings, &load_state)).await {
            Ok(Ok(loaded)) => {
                failed_identity = None;
                if let Err(problem) = loaded.views {
                    tracing::warn!("keeping the previous route templates: {problem}");
                }
                tracing::info!(
                    "serving the new build ({} files, {} in memory)",
                    loaded.stats.resources,
                    crate::site::units::human_size(loaded.stats.memory_bytes)
                );
            }
            Ok(Err(err)) => {
                tracing::error!("keeping the previous build; loading the new one failed: {err}");
                failed_identity = Some(on_disk);
            }
            Err(_) => failed_identity = Some(on_disk),
        }
    }
}

/// What loading a new build did.
pub(crate) struct Loaded {
    pub stats: TableStats,
    /// The route templates recompiled, or why the previous ones were kept.
    pub views: Result<(), Diagnostic>,
}

/// Loads the output directory as it is now and swaps it in, with the route
/// templates recompiled against it. Blocking; `kiln watch` calls it right
/// after each build instead of waiting for the poll.
pub(crate) fn load(settings: &Settings, state: &AppState) -> std::io::Result<Loaded> {
    let table = Table::load(settings)?;
    let stats = table.stats;
    state.table.store(Arc::new(table));
    state.metrics.reloaded();
    Ok(Loaded {
        stats,
        views: reload_views(settings, state),
    })
}

async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Route templates resolve asset URLs through the manifest: recompile them
/// against the new build (keeping the old ones when that fails), and drop
/// the route cache's entries rendered with the previous ones.
fn reload_views(settings: &Settings, state: &AppState) -> Result<(), Diagnostic> {
    let Some(dynamic) = &state.dynamic else {
        return Ok(());
    };
    // A staged build leaves the served pages as they were, and so the
    // route templates: those on disk may be the next build's already.
    if crate::site::builds::read(&settings.out_dir).is_some_and(|record| record.staged) {
        return Ok(());
    }
    let views = crate::dynamic::views::Views::load(settings, &dynamic.routes.templates())?;
    let generation = Arc::clone(&views.generation);
    dynamic.views.store(Arc::new(views));
    if let Some(cache) = &dynamic.cache {
        spawn_retirement(dynamic, cache.start_retiring(generation));
    }
    Ok(())
}

/// Entries dropped per step of a retirement, and the pause between steps:
/// a large disk level is walked over seconds, never in one go.
const RETIRE_BATCH: usize = 256;
const RETIRE_PAUSE: Duration = Duration::from_millis(5);

/// Drops the previous builds' cache entries on a thread of its own, a
/// batch at a time; stops early when a newer build was loaded meanwhile
/// (its own retirement takes over).
fn spawn_retirement(dynamic: &Arc<DynamicApp>, mut retirement: Retirement) {
    let dynamic = Arc::downgrade(dynamic);
    let spawned = std::thread::Builder::new()
        .name("kiln-retire".into())
        .spawn(move || {
            let mut retired = 0;
            loop {
                let Some(dynamic) = dynamic.upgrade() else {
                    return;
                };
                let Some(cache) = &dynamic.cache else {
                    return;
                };
                if dynamic.views.load().generation != retirement.current {
                    return;
                }
                let (dropped, done) = cache.retire_step(&mut retirement, RETIRE_BATCH);
                retired += dropped;
                if done {
                    break;
                }
                drop(dynamic);
                std::thread::sleep(RETIRE_PAUSE);
            }
            if retired > 0 {
                tracing::info!("dropped {retired} route cache entries of the previous build");
            }
        });
    if let Err(err) = spawned {
        tracing::warn!("could not start retiring the previous build's cache entries: {err}");
    }
}
