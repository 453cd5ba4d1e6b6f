//! The workers: at most `jobs.workers` jobs at once, each a task of its
//! own on the runtime that runs them (the server's background runtime,
//! never a request worker's, or `kiln jobs work`'s). The loop claims a
//! job whenever a slot is free, and looks again after `jobs.poll_ms` when
//! the queue had nothing due. Once a minute it reads the queue's depth
//! for `/metrics` and deletes succeeded and dead jobs past their
//! retention. Stopping stops the claims and waits (up to a grace period)
//! for the running jobs to end; a job still running then is given back
//! (ready at once, the interrupted attempt not counted), or, if that
//! fails, claimed again when its lease runs out.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};

use super::{Jobs, now_ms};

/// How often the retention pass runs.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// How often the queue's depth is read for `/metrics`.
const DEPTH_EVERY: Duration = Duration::from_secs(5);
/// Shortest pause after a database error before claiming again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Running workers; [`Workers::stop`] ends them.
pub(crate) struct Workers {
    jobs: Arc<Jobs>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Workers {
    /// Starts the workers on the current runtime.
    pub(crate) fn start(jobs: &Arc<Jobs>) -> Workers {
        let (stop, stopped) = watch::channel(false);
        let done = tokio::spawn(claim_loop(Arc::clone(jobs), stopped));
        Workers {
            jobs: Arc::clone(jobs),
            stop,
            done,
        }
    }

    /// Stops claiming and waits up to `grace` for the running jobs; gives
    /// back those still running then.
    pub(crate) async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.done).await.is_err() {
            self.jobs.release_running().await;
        }
    }
}

async fn claim_loop(jobs: Arc<Jobs>, mut stopped: watch::Receiver<bool>) {
    let workers = jobs.config.workers;
    let slots = Arc::new(Semaphore::new(workers));
    let poll = Duration::from_millis(jobs.config.poll_ms);
    let lease = Duration::from_secs(jobs.config.lease_secs);
    let mut housekept: Option<Instant> = None;
    let mut depth_read: Option<Instant> = None;
    while !*stopped.borrow() {
        if housekept.is_none_or(|at| at.elapsed() >= HOUSEKEEPING) {
            prune(&jobs).await;
            housekept = Some(Instant::now());
        }
        if depth_read.is_none_or(|at| at.elapsed() >= DEPTH_EVERY) {
            refresh_depth(&jobs).await;
            depth_read = Some(Instant::now());
        }
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        // Every free slot, so one claim fills them all.
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
            permits.push(permit);
        }
        let now = now_ms();
        let pause = match jobs
            .store
            .claim(
                &jobs.database,
                now,
                now + lease.as_millis() as i64,
                permits.len(),
            )
            .await
        {
            Ok(claimed) if !claimed.is_empty() => {
                let full = claimed.len() == permits.len();
                for (claimed, permit) in claimed.into_iter().zip(permits.drain(..)) {
                    let jobs = Arc::clone(&jobs);
                    tokio::spawn(async move {
                        jobs.running.fetch_add(1, Ordering::Relaxed);
                        jobs.run(claimed).await;
                        jobs.running.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                    });
                }
                if full {
                    continue;
                }
                // Fewer due than free slots: the queue is drained for now.
                poll
            }
            Ok(_) => poll,
            Err(err) => {
                tracing::warn!("jobs: claiming: {err}");
                poll.max(ERROR_PAUSE)
            }
        };
        drop(permits);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopped.changed() => break,
        }
    }
    // Every slot back: every running job has ended.
    let _ = slots.acquire_many(workers as u32).await;
}

/// Deletes the succeeded and dead jobs retention lets go.
async fn prune(jobs: &Jobs) {
    let now = now_ms();
    let done_before = now - (jobs.config.keep_secs * 1000) as i64;
    let dead_before = now - (jobs.config.dead_retention_secs * 1000) as i64;
    if let Err(err) = jobs
        .store
        .prune(&jobs.database, done_before, dead_before)
        .await
    {
        tracing::warn!("jobs: pruning: {err}");
    }
}

/// Reads the queue's depth by state and the oldest ready job's wait.
pub(crate) async fn refresh_depth(jobs: &Jobs) {
    let now = now_ms();
    match jobs.store.depth(&jobs.database, now).await {
        Ok((by_state, oldest)) => {
            *jobs
                .depth
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()) = by_state;
            jobs.oldest_ready_ms
                .store(oldest.map_or(-1, |due| now - due), Ordering::Relaxed);
        }
        Err(err) => tracing::warn!("jobs: reading the queue's depth: {err}"),
    }
}

/// `kiln jobs work`: the site's migrations, then workers alone (no
/// listener) until SIGINT or SIGTERM, then `server.shutdown_grace_secs`
/// for the running jobs.
pub async fn until_stopped(
    settings: &crate::config::Settings,
    jobs: &Arc<Jobs>,
) -> Result<(), super::JobsError> {
    let migrations = settings.root.join(&settings.database().migrations);
    crate::dynamic::db::migrate::run(&jobs.database, &migrations)
        .await
        .map_err(|err| super::JobsError::Declaration(format!("migrations: {err}")))?;
    jobs.ensure().await?;
    let workers = Workers::start(jobs);
    tracing::info!(
        "kiln jobs work: {} workers on {}",
        jobs.config.workers,
        jobs.database.backend().name()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|err| super::JobsError::Declaration(format!("signals: {err}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    let grace = Duration::from_secs(settings.server().shutdown_grace_secs);
    workers.stop(grace).await;
    Ok(())
}
