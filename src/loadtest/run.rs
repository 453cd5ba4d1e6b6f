//! The open-model generator. Requests are due on a schedule
//! ([`super::schedule`]), spread over a fixed set of keep-alive connections
//! as wrk2 spreads them: connection `i` of `n` sends every `n`-th request,
//! at `1/n` of the rate, starting `i/n` of an interval late. A connection
//! still waiting for an answer when its next request is due sends that
//! request as soon as it can, and the request's latency still counts from
//! when it was due: a stalled server is charged for every request it
//! delayed. A request whose lane was free when it was due counts from when
//! it went out (the timer wakes within a millisecond, and that is the
//! generator's delay, not the server's). Everything runs on one thread (a current-thread runtime), so
//! the generator's cost is one core, as wrk's `-t1`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::forms::{self, Ended, Form};
use super::record::{Outcome, Recorder};
use super::schedule::{Arrivals, Shape};
use crate::client::{Answer, Connection, Dialer, Endpoint};

/// One URL of the traffic mix, its request prepared once.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// What kind of URL it is, for the report (`page`, `asset`, `route`…).
    pub class: &'static str,
    /// The path and query, for messages.
    pub path: String,
    /// The request as written on the wire.
    pub request: Vec<u8>,
    /// The same request revalidating what an earlier visit received.
    pub conditional: Option<Vec<u8>>,
    /// 4xx answers are what this URL is for (the `errors` scenario).
    pub expects_error: bool,
    pub weight: f64,
    /// A form flow instead of one request.
    pub form: Option<Form>,
}

/// The traffic mix: targets picked by weight.
pub(crate) struct Mix {
    pub targets: Vec<Target>,
    /// Running sums of the weights, for picking by a uniform draw.
    cumulative: Vec<f64>,
    /// Share of requests for a URL with a validator that revalidate it
    /// (a repeat visit), answered 304.
    pub revalidate: f64,
}

impl Mix {
    pub(crate) fn new(targets: Vec<Target>, revalidate: f64) -> Mix {
        let mut sum = 0.0;
        let cumulative = targets
            .iter()
            .map(|target| {
                sum += target.weight.max(0.0);
                sum
            })
            .collect();
        Mix {
            targets,
            cumulative,
            revalidate,
        }
    }

    fn pick(&self, rng: &mut Rng) -> Option<&Target> {
        let total = *self.cumulative.last()?;
        let draw = rng.unit() * total;
        let index = self.cumulative.partition_point(|&sum| sum <= draw);
        self.targets.get(index.min(self.targets.len() - 1))
    }
}

/// A small, fast generator for picking targets (xorshift64*): the mix
/// needs uniform draws, not secrecy.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How one run goes.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    pub shape: Shape,
    pub length: Duration,
    pub connections: usize,
    /// Requests each connection carries at once (HTTP/2 streams).
    pub streams: usize,
    /// A request unanswered this long counts as a timeout.
    pub timeout: Duration,
}

/// Runs `mix` against `endpoint` at `pace`, on this thread; returns what it
/// measured.
pub(crate) fn run(
    endpoint: &Arc<Endpoint>,
    mix: &Rc<Mix>,
    pace: &Pace,
) -> std::io::Result<Recorder> {
    let lanes = pace.connections.max(1) * pace.streams.max(1);
    on_this_thread(|start, recorder| {
        dialers(endpoint, lanes, pace.streams)
            .into_iter()
            .enumerate()
            .map(|(index, dialer)| {
                let lane = Lane {
                    dialer,
                    mix: Rc::clone(mix),
                    length: pace.length,
                    arrivals: Arrivals::with_phase(
                        pace.shape.scaled(1.0 / lanes as f64),
                        pace.length,
                        index as f64 / lanes as f64,
                    ),
                    rng: Rng::seeded(index as u64 + 1),
                    timeout: pace.timeout,
                };
                lane.drive(start, Rc::clone(&recorder))
            })
            .collect()
    })
}

/// Runs the tasks `spawn` makes, all on this thread (a current-thread
/// runtime: the generator's cost is one core), recording into one
/// recorder; returns it once every task has ended.
fn on_this_thread<F, Task>(spawn: F) -> std::io::Result<Recorder>
where
    F: FnOnce(Instant, Rc<RefCell<Recorder>>) -> Vec<Task>,
    Task: std::future::Future<Output = ()> + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let recorder = Rc::new(RefCell::new(Recorder::new()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let start = Instant::now();
        let tasks: Vec<_> = spawn(start, Rc::clone(&recorder))
            .into_iter()
            .map(tokio::task::spawn_local)
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        recorder.borrow_mut().elapsed = start.elapsed();
    });
    drop(local);
    Ok(Rc::try_unwrap(recorder)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| shared.replace(Recorder::new())))
}

/// How a closed-model run goes.
#[derive(Debug, Clone)]
pub(crate) struct Users {
    /// How many users are active over the run (a [`Shape`] of users, not
    /// of requests per second).
    pub curve: Shape,
    /// Users sharing one connection (HTTP/2 streams).
    pub streams: usize,
    /// Mean pause between an answer and the user's next request.
    pub think: Duration,
    pub length: Duration,
    pub timeout: Duration,
}

/// Runs `mix` against `endpoint` with `users` virtual users, each on its
/// own keep-alive connection (or HTTP/2 stream), waiting for each answer and thinking before
/// the next request (Locust's and k6's virtual users). Latency counts
/// from each send: a closed model under-reports a stalled server, which
/// the report says.
pub(crate) fn run_closed(
    endpoint: &Arc<Endpoint>,
    mix: &Rc<Mix>,
    users: &Users,
) -> std::io::Result<Recorder> {
    let count = (users.curve.peak().ceil() as usize).max(1);
    on_this_thread(|start, recorder| {
        dialers(endpoint, count, users.streams)
            .into_iter()
            .enumerate()
            .map(|(index, dialer)| {
                let user = User {
                    index,
                    count,
                    dialer,
                    mix: Rc::clone(mix),
                    users: users.clone(),
                };
                user.live(start, Rc::clone(&recorder))
            })
            .collect()
    })
}

/// How often a user outside the curve's count looks again.
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// One virtual user of the closed model.
struct User {
    index: usize,
    count: usize,
    dialer: Dialer,
    mix: Rc<Mix>,
    users: Users,
}

impl User {
    async fn live(self, start: Instant, recorder: Rc<RefCell<Recorder>>) {
        let users = &self.users;
        let mut rng = Rng::seeded(self.index as u64 + 1);
        let mut connection: Option<Connection> = None;
        // Users start spread over one think time, not together.
        let think = users.think.as_secs_f64();
        let stagger = think * self.index as f64 / self.count as f64;
        tokio::time::sleep(Duration::from_secs_f64(stagger)).await;
        while start.elapsed() < users.length {
            // User `i` is active while the curve counts more than `i`
            // users: a ramp starts and stops users in order.
            if self.index as f64 >= users.curve.rate_at(start.elapsed()).round() {
                connection = None;
                tokio::time::sleep(IDLE_CHECK).await;
                continue;
            }
            let Some(target) = self.mix.pick(&mut rng) else {
                return;
            };
            let sent = Instant::now();
            let (outcome, bytes) = send(
                &mut connection,
                &self.dialer,
                &self.mix,
                target,
                &mut rng,
                users.timeout,
            )
            .await;
            recorder.borrow_mut().record(
                target.class,
                sent - start,
                sent.elapsed(),
                outcome,
                bytes,
            );
            let pause = think * (0.5 + rng.unit());
            tokio::time::sleep(Duration::from_secs_f64(pause)).await;
        }
    }
}

/// One request of `target` (revalidating by the mix's share), with its
/// outcome and body bytes; the connection is dropped when it cannot be
/// used again.
async fn send(
    connection: &mut Option<Connection>,
    dialer: &Dialer,
    mix: &Mix,
    target: &Target,
    rng: &mut Rng,
    timeout: Duration,
) -> (Outcome, u64) {
    if let Some(form) = &target.form {
        return flow(connection, dialer, form, timeout).await;
    }
    let request = match &target.conditional {
        Some(conditional) if rng.unit() < mix.revalidate => conditional,
        _ => &target.request,
    };
    match tokio::time::timeout(timeout, dialer.exchange(connection, request, false)).await {
        Ok(Ok(answer)) => {
            // A refused request may leave the connection closed without
            // saying so (a head that did not parse is not answered with
            // `Connection: close` by every server): start the next one
            // fresh, as a browser would after such an error.
            if answer.closes || target.expects_error {
                *connection = None;
            }
            (classify(&answer, target.expects_error), answer.body_bytes)
        }
        Ok(Err(_)) => {
            *connection = None;
            (Outcome::Transport, 0)
        }
        Err(_) => {
            *connection = None;
            (Outcome::Timeout, 0)
        }
    }
}

/// One form flow, timed as one request.
async fn flow(
    connection: &mut Option<Connection>,
    dialer: &Dialer,
    form: &Form,
    timeout: Duration,
) -> (Outcome, u64) {
    match tokio::time::timeout(timeout, forms::post(connection, dialer, form)).await {
        Ok(Ok(Ended::Answered { status, bytes })) => (classify_status(status, false), bytes),
        Ok(Ok(Ended::NoToken)) => (Outcome::BrokenFlow, 0),
        Ok(Err(_)) => {
            *connection = None;
            (Outcome::Transport, 0)
        }
        Err(_) => {
            *connection = None;
            (Outcome::Timeout, 0)
        }
    }
}

/// One connection's share of a run.
struct Lane {
    dialer: Dialer,
    mix: Rc<Mix>,
    length: Duration,
    arrivals: Arrivals,
    rng: Rng,
    timeout: Duration,
}

/// How long past its due time a send counts as late.
const LATE: Duration = Duration::from_millis(1);

impl Lane {
    async fn drive(mut self, start: Instant, recorder: Rc<RefCell<Recorder>>) {
        let mix = Rc::clone(&self.mix);
        let mut connection: Option<Connection> = None;
        // When this lane's previous exchange ended.
        let mut free_at = start;
        while let Some(due) = self.arrivals.next() {
            if Instant::now() >= start + self.length {
                // Past the end: what is still due was never sent (an
                // overloaded server, or a generator at its limit).
                recorder.borrow_mut().unsent += 1 + self.arrivals.by_ref().count() as u64;
                break;
            }
            let intended = start + due;
            let now = Instant::now();
            if now < intended {
                tokio::time::sleep_until(intended).await;
            } else if now - intended > LATE {
                recorder.borrow_mut().late_sends += 1;
            }
            // A request the server held up (its lane was still busy when
            // it was due) is charged from when it was due; one the lane was
            // free for is charged from when it went out, so the timer's
            // millisecond grain and the generator's own delays are not
            // counted as the server's.
            let origin = if free_at > intended {
                intended
            } else {
                Instant::now()
            };
            let Some(target) = mix.pick(&mut self.rng) else {
                return;
            };
            let (outcome, bytes) = send(
                &mut connection,
                &self.dialer,
                &mix,
                target,
                &mut self.rng,
                self.timeout,
            )
            .await;
            free_at = Instant::now();
            let latency = free_at - origin;
            recorder
                .borrow_mut()
                .record(target.class, due, latency, outcome, bytes);
        }
    }
}

/// One dialer per lane; `streams` consecutive lanes share one, so over
/// HTTP/2 they share a connection.
fn dialers(endpoint: &Arc<Endpoint>, lanes: usize, streams: usize) -> Vec<Dialer> {
    let streams = streams.max(1);
    let mut dialers: Vec<Dialer> = Vec::with_capacity(lanes);
    for index in 0..lanes {
        let dialer = match dialers.last() {
            Some(previous) if index % streams != 0 => previous.clone(),
            _ => Dialer::new(endpoint),
        };
        dialers.push(dialer);
    }
    dialers
}

fn classify(answer: &Answer, expects_error: bool) -> Outcome {
    classify_status(answer.status, expects_error)
}

fn classify_status(status: u16, expects_error: bool) -> Outcome {
    match status {
        200..=399 => Outcome::Ok,
        400..=499 if expects_error => Outcome::ExpectedError,
        400..=499 => Outcome::ClientError,
        _ => Outcome::ServerError,
    }
}
