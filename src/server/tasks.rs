//! What runs beside the workers: migrations and plan checks before
//! listening, then pool maintenance, the session pruner, the disk-cache
//! sweep, the invalidation listener (Redis or PostgreSQL) and cache warming, each on the
//! server's runtime until the server stops.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::dynamic::app::DynamicApp;
use crate::dynamic::jobs::work::Workers;
use crate::dynamic::response_cache::TagStream;
use crate::dynamic::{cached, db, routes, session};
use crate::server::error::{Cause, ServeError};

/// Migrates, checks query plans (warnings go to standard error), opens
/// `min_idle` connections, starts pool maintenance and, when jobs are
/// declared and `jobs.enabled`, the job workers (returned, to be stopped
/// with the server). Runs on the server's runtime, which outlives every
/// pooled connection.
pub(crate) async fn start_database(
    settings: &Settings,
    dynamic: &Arc<DynamicApp>,
) -> Result<Option<Workers>, ServeError> {
    let database = &dynamic.database;
    let migrations = settings.root.join(&settings.database().migrations);
    let applied = db::migrate::run(database, &migrations)
        .await
        .map_err(Cause::Migrations)?;
    if !applied.is_empty() {
        tracing::info!(
            "applied {} migration(s): {}",
            applied.len(),
            applied.join(", ")
        );
    }
    if settings.database().plan_check {
        let warnings = routes::plan::check(database, &dynamic.routes)
            .await
            .map_err(Cause::PlanCheck)?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
    }
    database.maintain().await;
    database.spawn_maintenance();
    if let Some(jobs) = &dynamic.jobs {
        jobs.ensure().await.map_err(Cause::Jobs)?;
    }
    if let Some(sessions) = &dynamic.sessions {
        sessions.check().await.map_err(Cause::Sessions)?;
        spawn_session_pruner(sessions, settings.session().prune_interval_secs);
    }
    if let Some(cache) = &dynamic.cache {
        cache.check().await.map_err(Cause::Cache)?;
        spawn_disk_sweeper(dynamic);
        spawn_invalidation_retries(dynamic);
        if let Some(subscribed) = cache.listen().await {
            // Subscribed before serving, so no invalidation is missed.
            spawn_invalidation_listener(dynamic, subscribed.map_err(Cause::Cache)?);
        }
        for url in &settings.cache().warm {
            if let Err(problem) = cached::warm(dynamic, url).await {
                tracing::warn!("{problem}");
            }
        }
    }
    // Last: nothing after this can fail and leave them running.
    Ok(dynamic
        .jobs
        .as_ref()
        .filter(|_| settings.jobs().enabled)
        .map(Workers::start))
}

/// How often expired entries are dropped from the disk level of the cache.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Drops expired disk entries, and those another build rendered (kept
/// from before a restart), on a schedule, off the workers, until the
/// server stops.
fn spawn_disk_sweeper(dynamic: &Arc<DynamicApp>) {
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
                    disk.sweep(&dynamic.views.load().generation);
                }
            })
            .await;
        }
    });
}

/// The first pause before listening again after the channel dropped, and
/// the longest, between which it doubles: a restart of Redis takes tens
/// of milliseconds, and invalidations stay unheard until it is back.
const LISTEN_AGAIN_FIRST: Duration = Duration::from_millis(25);
const LISTEN_AGAIN_MAX: Duration = Duration::from_secs(2);

/// Applies other servers' invalidations (from Redis or PostgreSQL) to
/// this server's memory and disk levels; listens again when the channel's
/// connection drops.
fn spawn_invalidation_listener(dynamic: &Arc<DynamicApp>, first: TagStream) {
    use futures_util::StreamExt;
    let dynamic = Arc::downgrade(dynamic);
    actix_web::rt::spawn(async move {
        let mut tags = first;
        loop {
            while let Some(tag) = tags.next().await {
                let Some(dynamic) = dynamic.upgrade() else {
                    return;
                };
                if let Some(cache) = &dynamic.cache {
                    cache.heard(&tag);
                }
            }
            let Some(channel) = dynamic
                .upgrade()
                .and_then(|d| d.cache.as_ref().map(|c| c.channel_name()))
            else {
                return;
            };
            tracing::warn!("lost the {channel} invalidation channel; listening again");
            let mut pause = LISTEN_AGAIN_FIRST;
            loop {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LISTEN_AGAIN_MAX);
                let Some(dynamic) = dynamic.upgrade() else {
                    return;
                };
                let Some(cache) = &dynamic.cache else {
                    return;
                };
                if let Some(Ok(stream)) = cache.listen().await {
                    tags = stream;
                    let dropped = cache.resubscribed();
                    tracing::info!(
                        "listening to {channel} invalidations again; dropped this server's {dropped} entries, as some may have been missed"
                    );
                    break;
                }
            }
        }
    });
}

/// How often invalidations the channel did not acknowledge are tried again.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// Retries the cache's postponed invalidations until the server stops.
fn spawn_invalidation_retries(dynamic: &Arc<DynamicApp>) {
    let dynamic = Arc::downgrade(dynamic);
    actix_web::rt::spawn(async move {
        let mut interval = tokio::time::interval(RETRY_INTERVAL);
        loop {
            interval.tick().await;
            let Some(dynamic) = dynamic.upgrade() else {
                return;
            };
            if let Some(cache) = &dynamic.cache {
                cache.retry_invalidations().await;
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
