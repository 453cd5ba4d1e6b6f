//! Picking up a new build without a restart. `kiln build` swaps a new
//! output directory into place, so the directory's inode changes; the
//! server polls for that (and reloads on SIGHUP), loads the new table off
//! the workers, and replaces the old one in a single atomic store. A request
//! sees one build from start to end: it holds the table it began with.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::serve::handler::AppState;
use crate::serve::table::{Table, directory_identity};

/// How often the output directory is checked for a new build.
const POLL: Duration = Duration::from_millis(250);

/// Runs until the server's runtime stops.
pub async fn watch(settings: Settings, state: Arc<AppState>, signals: bool) {
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
        match actix_web::rt::task::spawn_blocking(move || Table::load(&load_settings)).await {
            Ok(Ok(table)) => {
                let stats = table.stats;
                state.table.store(Arc::new(table));
                state.metrics.reloaded();
                reload_views(&settings, &state);
                failed_identity = None;
                eprintln!(
                    "kiln: serving the new build ({} files, {} in memory)",
                    stats.resources,
                    crate::build::report::human_size(stats.memory_bytes)
                );
            }
            Ok(Err(err)) => {
                eprintln!("kiln: keeping the previous build; loading the new one failed: {err}");
                failed_identity = Some(on_disk);
            }
            Err(_) => failed_identity = Some(on_disk),
        }
    }
}

async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Route templates resolve asset URLs through the manifest: recompile them
/// against the new build (keeping the old ones when that fails).
fn reload_views(settings: &Settings, state: &AppState) {
    let Some(dynamic) = &state.dynamic else {
        return;
    };
    match crate::serve::routes::views::Views::load(settings, &dynamic.routes.templates()) {
        Ok(views) => dynamic.views.store(Arc::new(views)),
        Err(diagnostic) => eprintln!("kiln: keeping the previous route templates: {diagnostic}"),
    }
}
