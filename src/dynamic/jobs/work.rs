//! The workers: at most `jobs.workers` deliveries at once, each a task of
//! its own on the runtime that runs them (the server's background
//! runtime, never a request worker's, or `kiln jobs work`'s).
//!
//! The claim loop fills free slots group by group ([`Group`]): jobs that
//! share no limit are claimed together; a job with a `concurrency`, a
//! queue with one, and each batched job are claimed on their own so each
//! limit holds. It claims again as soon as a slot frees and the last
//! claim was full, when an enqueue wakes it (in this process, or any on
//! PostgreSQL through `LISTEN kiln_jobs`), or after `jobs.poll_ms`.
//!
//! Beside it run the rescue (once a second, the jobs whose lease ran out
//! made ready again, and the claim loop woken for them), the heartbeat (the running jobs' leases extended every
//! third of a lease, so a job may run longer than its lease and still
//! be this process's), the scheduler (each `schedule`'s ticks enqueued,
//! once across instances) and, once a minute, the retention pass. Stopping
//! stops the claims and waits (up to a grace period) for the running
//! deliveries; a job still running then is given back (ready at once, the
//! interrupted attempt not counted), or, if that fails, claimed again when
//! its lease runs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::declared::Job;
use super::store::ClaimStatement;
use super::{Jobs, now_ms};
use crate::config::JobKind;

/// How often the retention pass runs.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// How often the queue's depth is read for `/metrics`.
const DEPTH_EVERY: Duration = Duration::from_secs(5);
/// How often jobs whose lease ran out are made ready again.
const RESCUE_EVERY: Duration = Duration::from_secs(1);
/// Shortest pause after a database error before claiming again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Jobs claimed together, under the limits they share.
pub(crate) struct Group {
    statement: ClaimStatement,
    /// The job's own `concurrency`, for a group of one capped job.
    job_limit: Option<(String, usize)>,
    /// The queue's `concurrency`, when its queue has one.
    queue_limit: Option<(String, usize)>,
    /// A batched job's size and longest wait.
    batch: Option<(String, usize, i64)>,
    /// Jobs one delivery may carry when the group's jobs are unbatched
    /// `sql` ones under no limit: run in one transaction, a savepoint
    /// each (`jobs.commit_group`); else 1.
    gather: usize,
    /// The highest priority among the group's jobs: groups are claimed
    /// in that order.
    priority: i32,
}

/// The groups the declared jobs are claimed in.
fn groups(jobs: &Jobs) -> Vec<Group> {
    let queue_limit = |queue: &str| {
        jobs.config
            .queues
            .get(queue)
            .map(|limit| (queue.to_string(), limit.concurrency))
    };
    // Maintenance jobs only where a server's caches are attached.
    let attached = jobs.maintained().is_some();
    let mut declared: Vec<&Job> = jobs
        .jobs
        .values()
        .filter(|job| attached || !job.plan.is_maintenance())
        .collect();
    declared.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    let mut groups: Vec<Group> = Vec::new();
    // Shared by the remaining jobs of one queue (None: queues with no
    // limit) and kind (sql or not).
    type Shared<'j> = ((Option<String>, bool), Vec<&'j Job>);
    let mut shared: Vec<Shared> = Vec::new();
    for job in declared {
        let config = &job.config;
        if config.concurrency.is_some() || config.batch.is_some() {
            groups.push(Group {
                statement: jobs
                    .store
                    .claim_statement(std::slice::from_ref(&config.name)),
                job_limit: config.concurrency.map(|limit| (config.name.clone(), limit)),
                queue_limit: queue_limit(&config.queue),
                batch: config
                    .batch
                    .as_ref()
                    .map(|batch| (config.name.clone(), batch.size, batch.max_wait_ms as i64)),
                gather: 1,
                priority: config.priority,
            });
            continue;
        }
        // Claimed apart from other kinds: a claim for a gathered delivery
        // takes many jobs per free slot.
        let key = (
            queue_limit(&config.queue).map(|(queue, _)| queue),
            config.kind == JobKind::Sql,
        );
        match shared.iter_mut().find(|(shared_key, _)| *shared_key == key) {
            Some((_, members)) => members.push(job),
            None => shared.push((key, vec![job])),
        }
    }
    for ((queue, sql), members) in shared {
        let names: Vec<String> = members.iter().map(|job| job.config.name.clone()).collect();
        groups.push(Group {
            statement: jobs.store.claim_statement(&names),
            job_limit: None,
            gather: if sql && queue.is_none() {
                jobs.config.commit_group
            } else {
                1
            },
            queue_limit: queue.as_deref().and_then(queue_limit),
            batch: None,
            priority: members
                .iter()
                .map(|job| job.config.priority)
                .max()
                .unwrap_or(0),
        });
    }
    groups.sort_by_key(|group| std::cmp::Reverse(group.priority));
    groups
}

/// Running workers; [`Workers::stop`] ends them.
pub(crate) struct Workers {
    jobs: Arc<Jobs>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
    /// The heartbeat, scheduler and listener: ended at stop.
    helpers: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Starts the workers on the current runtime.
    pub(crate) fn start(jobs: &Arc<Jobs>) -> Workers {
        let (stop, stopped) = watch::channel(false);
        let done = tokio::spawn(claim_loop(Arc::clone(jobs), stopped));
        let mut helpers = vec![
            tokio::spawn(heartbeat(Arc::clone(jobs))),
            tokio::spawn(rescue(Arc::clone(jobs))),
        ];
        if jobs.jobs.values().any(|job| job.schedule.is_some()) {
            helpers.push(tokio::spawn(super::schedule::run(Arc::clone(jobs))));
        }
        if let Some(listener) = listen(jobs) {
            helpers.push(listener);
        }
        Workers {
            jobs: Arc::clone(jobs),
            stop,
            done,
            helpers,
        }
    }

    /// Stops claiming and waits up to `grace` for the running jobs; gives
    /// back those still running then.
    pub(crate) async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        for helper in &self.helpers {
            helper.abort();
        }
        if tokio::time::timeout(grace, self.done).await.is_err() {
            self.jobs.release_running().await;
        }
    }
}

/// On PostgreSQL, a connection that listens for enqueues anywhere and
/// wakes the claim loop.
fn listen(jobs: &Arc<Jobs>) -> Option<tokio::task::JoinHandle<()>> {
    let notifications = jobs.database.listen("kiln_jobs")?;
    let jobs = Arc::clone(jobs);
    Some(tokio::spawn(async move {
        let mut notifications = notifications;
        while notifications.recv().await.is_some() {
            jobs.wake.notify_one();
        }
    }))
}

/// Extends the leases of the jobs running here every third of a lease.
async fn heartbeat(jobs: Arc<Jobs>) {
    let lease_ms = (jobs.config.lease_secs * 1000) as i64;
    let every = Duration::from_millis((lease_ms / 3).max(1) as u64);
    loop {
        tokio::time::sleep(every).await;
        let ids: Vec<i64> = jobs.claimed_ids().iter().copied().collect();
        if let Err(err) = jobs
            .store
            .extend(&jobs.database, &ids, now_ms() + lease_ms)
            .await
        {
            tracing::warn!("jobs: extending {} lease(s): {err}", ids.len());
        }
    }
}

/// Makes the jobs whose lease ran out ready again, once a second, and
/// wakes the claim loop when there were some.
async fn rescue(jobs: Arc<Jobs>) {
    loop {
        match jobs.store.rescue(&jobs.database, now_ms()).await {
            Ok(true) => jobs.wake.notify_one(),
            Ok(false) => {}
            Err(err) => tracing::warn!("jobs: rescuing jobs whose lease ran out: {err}"),
        }
        tokio::time::sleep(RESCUE_EVERY).await;
    }
}

/// Free slots of a limit.
fn room(running: Option<&AtomicUsize>, limit: usize) -> usize {
    limit.saturating_sub(running.map_or(0, |count| count.load(Ordering::Relaxed)))
}

async fn claim_loop(jobs: Arc<Jobs>, mut stopped: watch::Receiver<bool>) {
    let workers = jobs.config.workers;
    let slots = Arc::new(Semaphore::new(workers));
    let poll = Duration::from_millis(jobs.config.poll_ms);
    let groups = groups(&jobs);
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
        // Every free slot, so one pass fills them all.
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
            permits.push(permit);
        }
        let pause = match claim_pass(&jobs, &groups, &mut permits).await {
            Ok(Pass { full: true, .. }) => {
                drop(permits);
                continue;
            }
            Ok(Pass { wake_at, .. }) => {
                // Fewer due than free slots: the queue is drained for now
                // (a waiting batch says when it is due).
                wake_at.map_or(poll, |at| {
                    Duration::from_millis((at - now_ms()).max(1) as u64).min(poll)
                })
            }
            Err(err) => {
                tracing::warn!("jobs: claiming: {err}");
                poll.max(ERROR_PAUSE)
            }
        };
        drop(permits);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = jobs.wake.notified() => {}
            _ = stopped.changed() => break,
        }
    }
    // Every slot back: every running delivery has ended.
    let _ = slots.acquire_many(workers as u32).await;
}

/// What one pass over the groups found.
struct Pass {
    /// Some group filled all it was allowed: claim again at once.
    full: bool,
    /// When a waiting batch falls due.
    wake_at: Option<i64>,
}

/// Claims for each group in turn while slots are free, and starts a
/// delivery per claimed job (per batch for batched jobs).
async fn claim_pass(
    jobs: &Arc<Jobs>,
    groups: &[Group],
    permits: &mut Vec<OwnedSemaphorePermit>,
) -> Result<Pass, crate::dynamic::db::DbError> {
    let lease = (jobs.config.lease_secs * 1000) as i64;
    let mut pass = Pass {
        full: false,
        wake_at: None,
    };
    for group in groups {
        if permits.is_empty() {
            pass.full = true;
            break;
        }
        let mut limit = permits.len();
        if let Some((job, cap)) = &group.job_limit {
            limit = limit.min(room(jobs.running_by_job.get(job), *cap));
        }
        if let Some((queue, cap)) = &group.queue_limit {
            limit = limit.min(room(jobs.running_by_queue.get(queue), *cap));
        }
        if limit == 0 {
            continue;
        }
        let now = now_ms();
        let per_delivery = match &group.batch {
            Some((job, size, max_wait)) => {
                let (due, oldest) = jobs
                    .store
                    .batch_due(&jobs.database, job, *size, now)
                    .await?;
                let waited_out = oldest.is_some_and(|oldest| now - oldest >= *max_wait);
                if due == 0 {
                    continue;
                }
                if (due as usize) < *size && !waited_out {
                    let at = oldest.unwrap_or(now) + max_wait;
                    pass.wake_at = Some(pass.wake_at.map_or(at, |other: i64| other.min(at)));
                    continue;
                }
                *size
            }
            None => group.gather,
        };
        // A batched or gathering group claims a delivery's worth per free
        // slot it may use.
        let wanted = limit * per_delivery;
        let claimed = jobs
            .store
            .claim(&jobs.database, &group.statement, now, now + lease, wanted)
            .await?;
        if claimed.len() == wanted {
            pass.full = true;
        }
        let mut claimed = claimed.into_iter().peekable();
        while claimed.peek().is_some() {
            let Some(permit) = permits.pop() else { break };
            let delivery: Vec<_> = claimed.by_ref().take(per_delivery).collect();
            start_delivery(jobs, delivery, permit);
        }
    }
    Ok(pass)
}

/// Runs one delivery on a task of its own, counted against its limits
/// before this returns (the next claim pass must see it).
fn start_delivery(
    jobs: &Arc<Jobs>,
    delivery: Vec<super::store::Claimed>,
    permit: OwnedSemaphorePermit,
) {
    let Some(job) = delivery
        .first()
        .and_then(|claimed| jobs.jobs.get(&claimed.job))
    else {
        return;
    };
    let counted = Counted::new(jobs, job, delivery.len());
    tokio::spawn(async move {
        let jobs = &counted.jobs;
        if let Some(job) = jobs.jobs.get(&counted.name) {
            jobs.run(job, delivery).await;
        }
        drop(counted);
        drop(permit);
    });
}

/// A running delivery, counted while it lives: against its job's and
/// queue's limits (deliveries) and in `running` (jobs).
struct Counted {
    jobs: Arc<Jobs>,
    name: String,
    queue: String,
    carried: usize,
}

impl Counted {
    fn new(jobs: &Arc<Jobs>, job: &Job, carried: usize) -> Counted {
        let counted = Counted {
            jobs: Arc::clone(jobs),
            name: job.config.name.clone(),
            queue: job.config.queue.clone(),
            carried,
        };
        for limit in counted.limits() {
            limit.fetch_add(1, Ordering::Relaxed);
        }
        jobs.running.fetch_add(carried, Ordering::Relaxed);
        counted
    }

    fn limits(&self) -> impl Iterator<Item = &AtomicUsize> {
        [
            self.jobs.running_by_job.get(&self.name),
            self.jobs.running_by_queue.get(&self.queue),
        ]
        .into_iter()
        .flatten()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        for limit in self.limits() {
            limit.fetch_sub(1, Ordering::Relaxed);
        }
        self.jobs.running.fetch_sub(self.carried, Ordering::Relaxed);
    }
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
