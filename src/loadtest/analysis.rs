//! What limited a run, with its evidence, and what the site needs to
//! serve more. The rules are checked from the most specific resource to
//! the most general: connections waited for the database pool, requests
//! were shed at admission, the machine's CPU was spent, the generator's
//! connections were all busy while the server idled, or nothing was
//! saturated. The CPU cost per request gives the scaling estimate.

use serde::Serialize;

use super::observe::Resources;
use super::record::Recorder;

/// The resource a run ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Limit {
    /// Requests waited for a database connection.
    Pool,
    /// Dynamic requests were shed (503) at admission.
    Admission,
    /// The machine's (or the server's workers') CPU was spent.
    Cpu,
    /// Requests waited on the server while its CPU and pool idled: slow
    /// queries, a slow upstream, or too few connections in the generator.
    Waiting,
    /// Nothing was saturated.
    None,
    /// The server's metrics could not be read.
    Unknown,
}

/// The analysis of one run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Analysis {
    pub limit: Limit,
    /// One sentence: the limit and its main evidence.
    pub headline: String,
    /// The readings behind it.
    pub evidence: Vec<String>,
    /// Server CPU milliseconds per request answered.
    pub cpu_ms_per_request: Option<f64>,
    /// What serving more would take.
    pub scaling: Option<String>,
}

/// What the analysis knows about the machine and the goal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    /// Cores of this machine.
    pub cores: usize,
    /// The server's worker threads, when configured below the cores.
    pub workers: Option<usize>,
    /// The server runs on this machine (its CPU competes with the
    /// generator's).
    pub same_machine: bool,
    pub connections: usize,
    /// `loadtest.goal_rate`.
    pub goal_rate: Option<f64>,
}

/// Share of the CPU available above which a run is CPU-bound. Below
/// 100%: the kernel's work for loopback traffic (softirq) is charged to
/// no process, so a saturated server reads 75-90% of its cores.
const SATURATED: f64 = 0.75;

/// Analyses one run.
pub(crate) fn analyse(recorder: &Recorder, resources: &Resources, context: &Context) -> Analysis {
    let seconds = recorder.elapsed.as_secs_f64().max(1e-3);
    let requests = recorder.total.requests();
    let throughput = requests as f64 / seconds;
    let p99 = recorder.total.ms_at(0.99);
    if resources.points.is_empty() {
        return Analysis {
            limit: Limit::Unknown,
            headline: format!(
                "resources unknown: {} (set server.admin_addr on the server, or pass --metrics)",
                resources
                    .error
                    .as_deref()
                    .unwrap_or("no reading of the server's metrics")
            ),
            evidence: client_evidence(recorder, context),
            cpu_ms_per_request: None,
            scaling: None,
        };
    }
    let server_cores = resources.cpu_seconds / seconds;
    let generator_cores = resources.generator_cpu_seconds / seconds;
    let capacity = capacity(context, resources);
    let machine_busy = (server_cores + generator_cores) / context.cores.max(1) as f64;
    let busy = if context.same_machine {
        machine_busy
    } else {
        0.0
    }
    .max(server_cores / capacity);
    let served = if resources.served > 0.0 {
        resources.served
    } else {
        requests as f64
    };
    let cpu_ms_per_request = (served > 0.0).then(|| resources.cpu_seconds * 1000.0 / served);
    let mut evidence = vec![cpu_line(
        server_cores,
        generator_cores,
        capacity,
        context,
        throughput,
    )];
    evidence.extend(server_evidence(resources));
    evidence.extend(client_evidence(recorder, context));
    let (limit, headline) = if pool_bound(resources) {
        (Limit::Pool, pool_headline(resources, throughput))
    } else if resources.shed > 0.0 {
        (
            Limit::Admission,
            format!(
                "admission-bound: {:.0} dynamic requests shed (503) with up to {:.0} in flight and {:.0} queued (server.max_in_flight, server.queue_timeout_ms)",
                resources.shed,
                resources.max(|point| point.server.in_flight),
                resources.max(|point| point.server.queued),
            ),
        )
    } else if busy >= SATURATED {
        (
            Limit::Cpu,
            format!(
                "CPU-bound: the server used {server_cores:.2} of the {capacity} cores it can use and the machine was {:.0}% busy (the generator included) at {throughput:.0} req/s; pool waiters stay 0{}",
                machine_busy * 100.0,
                hit_ratio_clause(resources),
            ),
        )
    } else if (recorder.late_sends + recorder.unsent) as f64 > requests as f64 * 0.01 {
        (
            Limit::Waiting,
            format!(
                "waiting-bound: all {} connections were busy when {} requests fell due (p99 {:.1} ms), while the server used {:.0}% of the CPU and no request waited for the pool: the time goes to something the server waits on (a slow query, an upstream), or more connections are needed",
                context.connections,
                recorder.late_sends + recorder.unsent,
                p99,
                busy * 100.0
            ),
        )
    } else {
        (
            Limit::None,
            format!(
                "not saturated: {:.0}% of the CPU available at {:.0} req/s, no pool waiters, nothing shed",
                busy * 100.0,
                throughput
            ),
        )
    };
    Analysis {
        limit,
        headline,
        evidence,
        cpu_ms_per_request,
        scaling: cpu_ms_per_request.map(|cost| scaling(cost, limit, context, resources)),
    }
}

/// Cores the server can use: as it reports them (the fewer of its
/// workers and the CPUs it may run on), else its configured workers when
/// fewer than this machine's cores.
fn capacity(context: &Context, resources: &Resources) -> f64 {
    if let Some(cores) = resources.server_cores.filter(|cores| *cores >= 1.0) {
        return cores;
    }
    let cores = context.cores.max(1);
    context
        .workers
        .map_or(cores, |workers| workers.clamp(1, cores)) as f64
}

fn cpu_line(
    server: f64,
    generator: f64,
    capacity: f64,
    context: &Context,
    throughput: f64,
) -> String {
    format!(
        "CPU: the server {server:.2} cores of the {capacity} it can use, the generator {generator:.2}; this machine has {} cores; at {throughput:.0} req/s",
        context.cores
    )
}

fn server_evidence(resources: &Resources) -> Vec<String> {
    let mut lines = vec![format!(
        "memory: RSS up to {:.0} MB; open files up to {:.0}; connections up to {:.0}",
        resources.max(|point| point.server.rss_mb),
        resources.max(|point| point.server.open_fds),
        resources.max(|point| point.server.connections),
    )];
    let pool_max = resources.max(|point| point.server.pool_max);
    if pool_max > 0.0 {
        lines.push(format!(
            "database pool: up to {:.0} of {:.0} connections in use, up to {:.0} waiters, mean acquire wait up to {:.1} ms, {:.0} acquire timeouts",
            resources.max(|point| point.server.pool_in_use),
            pool_max,
            resources.max(|point| point.server.pool_waiters),
            resources.max(|point| point.server.acquire_wait_ms),
            resources.acquire_timeouts,
        ));
    }
    if let Some((route, share)) = top_route(resources) {
        lines.push(format!(
            "query time: {route} {:.0}% of {:.2} s",
            share * 100.0,
            resources.query_seconds.values().sum::<f64>()
        ));
    }
    if let Some(ratio) = resources.hit_ratio() {
        let levels: Vec<String> = resources
            .cache_levels
            .iter()
            .map(|(level, counts)| format!("{level} {:.0} hits", counts.hits))
            .collect();
        lines.push(format!(
            "route cache: hit ratio {:.1}% ({})",
            ratio * 100.0,
            levels.join(", ")
        ));
    }
    lines.push(format!(
        "sent: up to {:.1} MB/s of bodies",
        resources.max(|point| point.server.bytes_per_s) / 1e6
    ));
    lines
}

fn client_evidence(recorder: &Recorder, context: &Context) -> Vec<String> {
    let mut lines = Vec::new();
    if recorder.late_sends > 0 || recorder.unsent > 0 {
        lines.push(format!(
            "generator: {} requests went out late (all {} connections busy), {} never went out",
            recorder.late_sends, context.connections, recorder.unsent
        ));
    }
    lines
}

/// The route with the largest share of database time.
fn top_route(resources: &Resources) -> Option<(&str, f64)> {
    let total: f64 = resources.query_seconds.values().sum();
    if total <= 0.0 {
        return None;
    }
    resources
        .query_seconds
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(route, seconds)| (route.as_str(), seconds / total))
}

/// Requests waited for a database connection: in the pool's queue, or
/// at admission (whose places default to the pool's size) while every
/// connection was in use.
fn pool_bound(resources: &Resources) -> bool {
    let pool_max = resources.max(|point| point.server.pool_max);
    let pool_full = pool_max > 0.0 && resources.max(|point| point.server.pool_in_use) >= pool_max;
    let queued = resources.max(|point| point.server.queued) > 0.0 || resources.shed > 0.0;
    resources.max(|point| point.server.pool_waiters) > 0.0
        || resources.acquire_timeouts > 0.0
        || (pool_full && queued)
}

fn pool_headline(resources: &Resources, throughput: f64) -> String {
    let first_wait = resources
        .points
        .iter()
        .find(|point| point.server.pool_waiters > 0.0 || point.server.queued > 0.0)
        .map(|point| format!(" from {:.0} req/s", point.server.served_per_s))
        .unwrap_or_default();
    let route = top_route(resources)
        .map(|(route, share)| format!("; {route} took {:.0}% of query time", share * 100.0))
        .unwrap_or_default();
    format!(
        "pool-bound: all {:.0} database connections in use, up to {:.0} requests waiting for one and {:.0} queued at admission{first_wait}, {:.0} shed ({throughput:.0} req/s answered){route}",
        resources.max(|point| point.server.pool_max),
        resources.max(|point| point.server.pool_waiters),
        resources.max(|point| point.server.queued),
        resources.shed,
    )
}

fn hit_ratio_clause(resources: &Resources) -> String {
    resources
        .hit_ratio()
        .map(|ratio| format!("; route cache hit ratio {:.0}%", ratio * 100.0))
        .unwrap_or_default()
}

/// Cores and instances for the goal rate, at the measured CPU per
/// request.
fn scaling(cost_ms: f64, limit: Limit, context: &Context, resources: &Resources) -> String {
    let per_core = 1000.0 / cost_ms.max(1e-6);
    let capacity = capacity(context, resources);
    let mut text = format!(
        "{cost_ms:.3} ms of server CPU per request: one core serves about {per_core:.0} req/s, {capacity:.0} about {:.0}",
        per_core * capacity
    );
    if let Some(goal) = context.goal_rate {
        let cores = goal / per_core;
        let instances = (cores / capacity).ceil().max(1.0);
        text.push_str(&format!(
            "; {goal:.0} req/s (loadtest.goal_rate) needs {cores:.1} cores: {instances:.0} instance(s) of {capacity:.0}"
        ));
    }
    if limit == Limit::Pool {
        text.push_str(&format!(
            "; first the pool: database.max_size (up to {:.0} in use) or caching the busiest route",
            resources.max(|point| point.server.pool_in_use)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::loadtest::observe::Point;
    use crate::loadtest::record::Outcome;

    fn recorder(requests: u64, seconds: u64) -> Recorder {
        let mut recorder = Recorder::new();
        for index in 0..requests {
            recorder.record(
                "page",
                Duration::from_millis(index * 1000 * seconds / requests.max(1)),
                Duration::from_millis(2),
                Outcome::Ok,
                100,
            );
        }
        recorder.elapsed = Duration::from_secs(seconds);
        recorder
    }

    fn context() -> Context {
        Context {
            cores: 2,
            workers: None,
            same_machine: true,
            connections: 32,
            goal_rate: Some(10_000.0),
        }
    }

    fn resources(cpu_seconds: f64, waiters: f64) -> Resources {
        Resources {
            points: vec![Point {
                server: crate::server::readings::Point {
                    at: 1.0,
                    cpu_cores: cpu_seconds,
                    pool_max: 4.0,
                    pool_waiters: waiters,
                    served_per_s: 1000.0,
                    ..Default::default()
                },
                generator_cores: 0.2,
            }],
            cpu_seconds,
            generator_cpu_seconds: 0.2,
            served: 1000.0,
            ..Resources::default()
        }
    }

    #[test]
    fn a_spent_cpu_is_named_with_its_share_and_the_cores_for_the_goal() {
        let analysis = analyse(&recorder(1000, 1), &resources(1.6, 0.0), &context());
        assert_eq!(analysis.limit, Limit::Cpu, "{analysis:?}");
        assert!(
            analysis.headline.starts_with(
                "CPU-bound: the server used 1.60 of the 2 cores it can use and the machine was 90% busy"
            ),
            "{analysis:?}"
        );
        // 1.6 ms per request: 625 req/s per core; 10,000 req/s: 16 cores.
        let scaling = analysis.scaling.unwrap();
        assert!(
            scaling.contains("needs 16.0 cores: 8 instance(s) of 2"),
            "{scaling}"
        );
    }

    #[test]
    fn waiters_make_a_run_pool_bound_before_anything_else() {
        let analysis = analyse(&recorder(1000, 1), &resources(1.6, 3.0), &context());
        assert_eq!(analysis.limit, Limit::Pool);
        assert!(
            analysis
                .headline
                .contains("up to 3 requests waiting for one"),
            "{analysis:?}"
        );
    }

    #[test]
    fn an_idle_server_is_not_saturated_and_no_metrics_is_unknown() {
        let analysis = analyse(&recorder(1000, 1), &resources(0.2, 0.0), &context());
        assert_eq!(analysis.limit, Limit::None, "{analysis:?}");
        let unknown = analyse(&recorder(10, 1), &Resources::default(), &context());
        assert_eq!(unknown.limit, Limit::Unknown);
    }
}
