//! Scheduled jobs: each `[[job]]` with a `schedule` is enqueued at its
//! cron ticks. Every instance sharing the database runs this loop; the
//! tick's row in `kiln_job_ticks` (inserted by whichever instance comes
//! first, in the transaction that enqueues the run) makes it one run per
//! tick across them all. Ticks missed while no instance ran are not made
//! up: the next run is the next tick, as cron and Oban's cron plugin do.

use std::sync::Arc;
use std::time::Duration;

use super::{Jobs, now_ms};
use crate::dynamic::db::SqlValue;

/// Longest sleep between looks at the clock (it may be set back or on).
const LONGEST_SLEEP: Duration = Duration::from_secs(60);

pub(super) async fn run(jobs: Arc<Jobs>) {
    let now = now_ms();
    let mut next: Vec<(&str, Option<i64>)> = jobs
        .jobs
        .iter()
        .filter_map(|(name, job)| Some((name.as_str(), job.schedule.as_ref()?.next_after(now))))
        .collect();
    loop {
        let Some(soonest) = next.iter().filter_map(|(_, tick)| *tick).min() else {
            return;
        };
        let wait = Duration::from_millis((soonest - now_ms()).max(0) as u64);
        tokio::time::sleep(wait.min(LONGEST_SLEEP)).await;
        let now = now_ms();
        for (name, tick) in &mut next {
            let Some(due) = *tick else { continue };
            if due > now {
                continue;
            }
            take(&jobs, name, due).await;
            let schedule = jobs.jobs.get(*name).and_then(|job| job.schedule.as_ref());
            *tick = schedule.and_then(|schedule| schedule.next_after(due.max(now)));
        }
    }
}

/// Enqueues tick `tick` of `name` unless another instance did.
async fn take(jobs: &Jobs, name: &str, tick: i64) {
    let Some(job) = jobs.jobs.get(name) else {
        return;
    };
    let payload: serde_json::Map<String, serde_json::Value> = job
        .config
        .payload
        .iter()
        .map(|(key, value)| (key.clone(), serde_json::to_value(value).unwrap_or_default()))
        .collect();
    let text = serde_json::Value::Object(payload).to_string();
    let statements = jobs
        .store
        .tick_statements(&job.config, text, tick, &jobs.token);
    match jobs.database.write(statements, None).await {
        Ok(row) if matches!(row.get("id"), Some(SqlValue::Int(_))) => {
            jobs.events.add(name, "enqueued", 1);
            jobs.wake.notify_one();
        }
        // Another instance took the tick.
        Ok(_) => {}
        Err(err) => tracing::warn!("job {name}: enqueueing its scheduled run: {err}"),
    }
}
