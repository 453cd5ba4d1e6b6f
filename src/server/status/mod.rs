//! The status page on the admin listener: what a user opens during an
//! incident instead of reading Prometheus text. `GET /status` is a page
//! (its script and styles served beside it, so it works under the site's
//! Content-Security-Policy and offline), and `GET /status/events` a
//! stream of Server-Sent Events: once a second, the server's own metrics
//! read back ([`crate::server::readings`]) as CPU, memory, connections,
//! admission, pool, cache and traffic over the last second, each dynamic
//! route's rate and latency, and the recent slow queries and server
//! errors. A stream ends after ten minutes and the browser reconnects, so
//! no connection is held without bound.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;
use tokio::time::Instant;

use crate::config::MetricsAccess;
use crate::http::metrics::{RouteClass, unix_ms};
use crate::http::pipeline::text;
use crate::server::metrics;
use crate::server::readings::{self, Scrape};
use crate::server::state::AppState;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("status.js");
const STYLES: &str = include_str!("status.css");

/// Samples a stream sends before it ends (the browser reconnects).
const SAMPLES_PER_STREAM: u32 = 600;
const INTERVAL: Duration = Duration::from_secs(1);

/// Whether `path` is the status page's.
pub(crate) fn is_status_path(path: &str) -> bool {
    path == "/status" || path.starts_with("/status/")
}

/// Answers the status page, its files and its event stream.
pub(crate) fn answer(req: &HttpRequest, state: &Arc<AppState>) -> (HttpResponse, RouteClass) {
    if state.metrics_access == MetricsAccess::Off {
        return (
            text(StatusCode::NOT_FOUND, "Not found\n"),
            RouteClass::NotFound,
        );
    }
    let response = match req.path() {
        "/status" | "/status/" => file(PAGE, "text/html; charset=utf-8"),
        "/status/status.js" => file(SCRIPT, "text/javascript; charset=utf-8"),
        "/status/status.css" => file(STYLES, "text/css; charset=utf-8"),
        "/status/events" => events(Arc::clone(state)),
        _ => {
            return (
                text(StatusCode::NOT_FOUND, "Not found\n"),
                RouteClass::NotFound,
            );
        }
    };
    (response, RouteClass::Status)
}

fn file(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// Where a stream is: the last reading and how many samples it sent.
struct Stream {
    state: Arc<AppState>,
    started: Instant,
    last: Option<Scrape>,
    sent: u32,
}

impl Stream {
    fn read(&self) -> Option<Scrape> {
        let text = metrics::encode(&self.state.registry).ok()?;
        Some(Scrape::parse(&text, self.started.elapsed().as_secs_f64()))
    }
}

fn events(state: Arc<AppState>) -> HttpResponse {
    let mut stream = Stream {
        state,
        started: Instant::now(),
        last: None,
        sent: 0,
    };
    stream.last = stream.read();
    // Reconnect a second after the stream ends or breaks.
    let first = futures_util::stream::once(async { Ok(Bytes::from_static(b"retry: 1000\n\n")) });
    let samples = futures_util::stream::unfold(stream, |mut stream| async move {
        if stream.sent >= SAMPLES_PER_STREAM {
            return None;
        }
        tokio::time::sleep_until(stream.started + INTERVAL * (stream.sent + 1)).await;
        let now = stream.read()?;
        let frame = match &stream.last {
            Some(before) => sample_frame(&stream.state, before, &now),
            None => Bytes::from_static(b": no earlier reading\n\n"),
        };
        stream.last = Some(now);
        stream.sent += 1;
        Some((Ok::<_, actix_web::Error>(frame), stream))
    });
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::StreamExt::chain(first, samples))
}

/// One `sample` event: the last second, the routes, the recent trouble.
fn sample_frame(state: &AppState, before: &Scrape, after: &Scrape) -> Bytes {
    let slow = state
        .dynamic
        .as_ref()
        .map(|dynamic| dynamic.recent_slow.all())
        .unwrap_or_default();
    let sample = json!({
        "at_ms": unix_ms(),
        "point": readings::point(before, after, 0.0),
        "routes": readings::route_latency(before, after),
        "jobs": readings::jobs(before, after),
        "slow_queries": slow,
        "errors": state.metrics.recent_errors(),
    });
    Bytes::from(format!("event: sample\ndata: {sample}\n\n"))
}
