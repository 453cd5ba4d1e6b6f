//! Admission control: how many dynamic requests work on the database at
//! once, how many may wait, and how often one client may write.
//!
//! Each class of database work (reads: a GET's queries and render; writes:
//! a form's transaction) has a number of places (`server.dynamic_in_flight`,
//! `server.write_in_flight`) and a short queue in front of them
//! (`server.admission_queue` requests, each waiting at most
//! `server.admission_wait_ms`). A request that finds the queue full, or
//! waits out its time in it, is answered 503 with `Retry-After` at once:
//! under overload the server sheds what it cannot answer soon, instead of
//! letting every request wait for the pool and time out together.
//!
//! A place is held only around the work it guards: a cache hit, a request
//! waiting for another's fill of the same entry, or a form body still
//! arriving takes none. Static files never wait for anything (each is
//! answered within its worker's turn) and keep being served while dynamic
//! routes shed load.
//!
//! `server.write_rate_per_minute` limits each client address (the one
//! behind trusted proxies) to that many writes a minute, a token bucket
//! per address. A hand-written map, not governor: it is touched only by
//! writes, and governor's keyed store brings dashmap and quanta for that.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::http::{Method, StatusCode, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Settings;
use crate::http::metrics::Exposition;
use crate::http::pipeline::text;

/// The classes of dynamic request that queue separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Read,
    Write,
}

impl Class {
    const ALL: [Class; 2] = [Class::Read, Class::Write];

    pub(crate) fn of(method: &Method) -> Class {
        if method == Method::GET || method == Method::HEAD {
            Class::Read
        } else {
            Class::Write
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Read => "dynamic",
            Class::Write => "write",
        }
    }
}

/// The limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdmissionLimits {
    pub(crate) read_in_flight: usize,
    pub(crate) write_in_flight: usize,
    pub(crate) queue: usize,
    pub(crate) wait: Duration,
    /// 0: no per-client limit.
    pub(crate) writes_per_minute: u32,
}

impl AdmissionLimits {
    /// `[server]`'s limits, the automatic ones sized from the database
    /// pool: reads may take each connection twice over (a read's place also
    /// covers its render), writes once.
    pub(crate) fn of(settings: &Settings) -> AdmissionLimits {
        let server = settings.server();
        let pool = settings.database().max_size.max(1);
        let or = |configured: usize, automatic: usize| {
            if configured > 0 {
                configured
            } else {
                automatic
            }
        };
        let read_in_flight = or(server.dynamic_in_flight, 2 * pool);
        let write_in_flight = or(server.write_in_flight, pool);
        AdmissionLimits {
            read_in_flight,
            write_in_flight,
            // A burst waits its turn rather than being refused.
            queue: or(server.admission_queue, 4 * read_in_flight),
            wait: Duration::from_millis(server.admission_wait_ms),
            writes_per_minute: server.write_rate_per_minute,
        }
    }
}

/// Places and queues for each class, shared by every worker.
pub(crate) struct Admission {
    gates: [Gate; 2],
    writes: Option<WriteRate>,
}

struct Gate {
    places: Arc<Semaphore>,
    capacity: usize,
    queued: AtomicUsize,
    max_queued: usize,
    wait: Duration,
    shed: AtomicU64,
}

/// A place, held while the database work it guards runs.
pub(crate) struct Admitted {
    _place: OwnedSemaphorePermit,
}

impl Admission {
    pub(crate) fn new(limits: AdmissionLimits) -> Admission {
        let gate = |capacity: usize| Gate {
            places: Arc::new(Semaphore::new(capacity)),
            capacity,
            queued: AtomicUsize::new(0),
            max_queued: limits.queue,
            wait: limits.wait,
            shed: AtomicU64::new(0),
        };
        Admission {
            gates: [gate(limits.read_in_flight), gate(limits.write_in_flight)],
            writes: (limits.writes_per_minute > 0)
                .then(|| WriteRate::new(limits.writes_per_minute)),
        }
    }

    /// Takes one of `client`'s writes for this minute; over the rate, the
    /// 429 that answers the write instead. Called before any of its work.
    pub(crate) fn refuse_write(&self, client: Option<IpAddr>) -> Option<HttpResponse> {
        match (&self.writes, client) {
            (Some(writes), Some(client)) if !writes.take(client, Instant::now()) => {
                Some(too_many_writes())
            }
            _ => None,
        }
    }

    /// A place for database work of `class`, or the 503 that answers the
    /// request instead.
    pub(crate) async fn admit(&self, class: Class) -> Result<Admitted, HttpResponse> {
        let gate = &self.gates[class as usize];
        if let Ok(place) = Arc::clone(&gate.places).try_acquire_owned() {
            return Ok(Admitted { _place: place });
        }
        if gate.queued.fetch_add(1, Ordering::AcqRel) >= gate.max_queued {
            gate.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(gate.shed());
        }
        let waited =
            tokio::time::timeout(gate.wait, Arc::clone(&gate.places).acquire_owned()).await;
        gate.queued.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(place)) => Ok(Admitted { _place: place }),
            _ => Err(gate.shed()),
        }
    }
}

impl Gate {
    fn shed(&self) -> HttpResponse {
        self.shed.fetch_add(1, Ordering::Relaxed);
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is busy; retry in a moment.\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        response
    }
}

fn too_many_writes() -> HttpResponse {
    let mut response = text(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many submissions from your address; retry in a minute.\n",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
    response
}

/// A token bucket per client address: `per_minute` tokens, refilled
/// continuously.
struct WriteRate {
    per_minute: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Buckets kept before full ones are dropped.
const MAX_BUCKETS: usize = 100_000;

impl WriteRate {
    fn new(per_minute: u32) -> WriteRate {
        WriteRate {
            per_minute: f64::from(per_minute),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client`; false if it has none left.
    fn take(&self, client: IpAddr, now: Instant) -> bool {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            // A full bucket holds nothing a fresh one would not.
            let per_minute = self.per_minute;
            buckets.retain(|_, bucket| refilled(*bucket, now, per_minute) < per_minute);
        }
        let bucket = buckets.entry(client).or_insert((self.per_minute, now));
        let tokens = refilled(*bucket, now, self.per_minute);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return false;
        }
        *bucket = (tokens - 1.0, now);
        true
    }
}

fn refilled((tokens, at): (f64, Instant), now: Instant, per_minute: f64) -> f64 {
    let minutes = now.saturating_duration_since(at).as_secs_f64() / 60.0;
    (tokens + minutes * per_minute).min(per_minute)
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission").finish_non_exhaustive()
    }
}

impl Admission {
    /// Places in use, requests queued and shed, by class.
    pub(crate) fn encode_metrics(&self, out: &mut Exposition<'_>) -> fmt::Result {
        let by_class = |value: &dyn Fn(&Gate) -> u64| {
            Class::ALL
                .iter()
                .map(|class| {
                    (
                        [("class", class.name())],
                        value(&self.gates[*class as usize]),
                    )
                })
                .collect::<Vec<_>>()
        };
        out.gauges(
            "kiln_requests_in_flight",
            "Dynamic requests holding a place for their database work, by class.",
            by_class(&|gate| (gate.capacity - gate.places.available_permits()) as u64),
        )?;
        out.gauges(
            "kiln_requests_queued",
            "Dynamic requests waiting for a place, by class.",
            by_class(&|gate| gate.queued.load(Ordering::Relaxed) as u64),
        )?;
        out.counters(
            "kiln_requests_shed",
            "Dynamic requests answered 503 because no place came free in time, by class.",
            by_class(&|gate| gate.shed.load(Ordering::Relaxed)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_writes_per_minute_and_they_come_back_with_time() {
        let rate = WriteRate::new(2);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let now = Instant::now();
        assert!(rate.take(client, now));
        assert!(rate.take(client, now));
        assert!(!rate.take(client, now));
        assert!(rate.take(other, now));
        assert!(rate.take(client, now + Duration::from_secs(30)));
        assert!(!rate.take(client, now + Duration::from_secs(31)));
    }

    #[test]
    fn beyond_its_places_and_queue_a_class_sheds_at_once() {
        let admission = Admission::new(AdmissionLimits {
            read_in_flight: 1,
            write_in_flight: 1,
            queue: 0,
            wait: Duration::from_millis(10),
            writes_per_minute: 0,
        });
        actix_web::rt::System::new().block_on(async {
            let held = admission.admit(Class::Read).await.ok().unwrap();
            let shed = admission.admit(Class::Read).await.err().unwrap();
            assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(shed.headers().get(header::RETRY_AFTER).unwrap(), "1");
            // Writes have places of their own.
            assert!(admission.admit(Class::Write).await.is_ok());
            drop(held);
            assert!(admission.admit(Class::Read).await.is_ok());
        });
    }
}
