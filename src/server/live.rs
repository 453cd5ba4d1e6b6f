//! The live-reload channel of `kiln watch`. Pages load a small client
//! (`/__kiln/live.js`, injected only in watch mode) that listens to
//! Server-Sent Events at `/__kiln/events`:
//!
//! - `hello` on every (re)connection, with the server's instance id and the
//!   number of reloading events sent so far: a client that reconnects to a
//!   restarted server, or that missed an event while disconnected, reloads;
//! - `css`: stylesheets to swap in place (old URL → new URL), no reload;
//! - `reload`: anything else changed;
//! - `problem`: the last rebuild failed; the client shows an overlay with
//!   each error's file:line:column and code frame (a client connecting
//!   later gets it too);
//! - `ok`: the failure is fixed; the overlay goes away.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::diagnostic::{Diagnostic, display_path};

/// Where the client listens.
pub use crate::site::live_reload::EVENTS_PATH;
/// The client script; the build injects a tag loading it into every page.
pub use crate::site::live_reload::LIVE_RELOAD_CLIENT as CLIENT_PATH;
use crate::site::live_reload::SCOPE;

/// The scope the endpoints are served under, and the event stream's and
/// the client's paths within it.
pub(crate) fn scope_paths() -> (&'static str, [&'static str; 2]) {
    let within = |path: &'static str| path.strip_prefix(SCOPE).unwrap_or(path);
    (SCOPE, [within(EVENTS_PATH), within(CLIENT_PATH)])
}

const CLIENT: &str = include_str!("live.js");
/// A comment line every so often keeps proxies and idle timers from
/// closing a quiet stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// What the browser is told after a rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Only stylesheets changed: swap them in place.
    Css(Vec<CssSwap>),
    /// Something else changed: reload the page.
    Reload { reason: String },
    /// The rebuild failed: show these problems over the page.
    Problem(Vec<Diagnostic>),
    /// The last failure is fixed.
    Ok,
}

/// One stylesheet to replace: output paths (`css/site.4KQ2.css`), which end
/// every URL a page links them by, whatever `base_url` is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CssSwap {
    pub old: String,
    pub new: String,
    /// The new file's Subresource Integrity value ("" when pages have none).
    pub integrity: String,
}

/// A build problem as the overlay shows it.
#[derive(Debug, Serialize)]
struct Problem {
    message: String,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    frame: Option<String>,
}

impl From<&Diagnostic> for Problem {
    fn from(diagnostic: &Diagnostic) -> Problem {
        let location = diagnostic.location.as_ref();
        Problem {
            message: diagnostic.message.clone(),
            file: location.map(|at| display_path(&at.file)),
            line: location.map(|at| at.line),
            column: location.map(|at| at.column),
            frame: diagnostic.frame.clone(),
        }
    }
}

/// The channel's state, shared by the watcher (which sends) and every
/// connected client.
pub struct LiveReload {
    sender: broadcast::Sender<Arc<str>>,
    instance: String,
    state: Mutex<ChannelState>,
}

#[derive(Default)]
struct ChannelState {
    /// Reloading events (`css`, `reload`) sent so far.
    generation: u64,
    /// The `problem` frame of an unfixed failure, for clients that connect later.
    problem: Option<Arc<str>>,
}

impl std::fmt::Debug for LiveReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveReload")
            .field("instance", &self.instance)
            .field("clients", &self.clients())
            .finish()
    }
}

impl Default for LiveReload {
    fn default() -> Self {
        LiveReload::new()
    }
}

impl LiveReload {
    pub fn new() -> LiveReload {
        let mut bytes = [0u8; 8];
        // An instance id that cannot be guessed is not needed; one that
        // differs between runs is. The time is a fallback.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos())
                .unwrap_or(0);
            bytes = (nanos as u64).to_le_bytes();
        }
        LiveReload {
            sender: broadcast::channel(64).0,
            instance: bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
            state: Mutex::default(),
        }
    }

    /// Sends `event` to every connected client.
    pub fn send(&self, event: &Event) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let frame: Arc<str> = match event {
            Event::Css(swaps) => {
                state.generation += 1;
                frame(
                    "css",
                    &serde_json::json!({ "generation": state.generation, "swaps": swaps }),
                )
            }
            Event::Reload { reason } => {
                state.generation += 1;
                frame(
                    "reload",
                    &serde_json::json!({ "generation": state.generation, "reason": reason }),
                )
            }
            Event::Problem(diagnostics) => {
                let problems: Vec<Problem> = diagnostics.iter().map(Problem::from).collect();
                frame("problem", &serde_json::json!({ "problems": problems }))
            }
            Event::Ok => frame("ok", &serde_json::json!({})),
        }
        .into();
        match event {
            Event::Problem(_) => state.problem = Some(Arc::clone(&frame)),
            _ => state.problem = None,
        }
        // No receiver is not an error: no browser is open.
        let _ = self.sender.send(frame);
    }

    /// How many clients are connected.
    pub fn clients(&self) -> usize {
        self.sender.receiver_count()
    }

    /// The frames a new client starts with, and its subscription.
    fn subscribe(&self) -> (String, broadcast::Receiver<Arc<str>>) {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let receiver = self.sender.subscribe();
        let mut start = String::from("retry: 500\n\n");
        start.push_str(&frame(
            "hello",
            &serde_json::json!({ "instance": self.instance, "generation": state.generation }),
        ));
        if let Some(problem) = &state.problem {
            start.push_str(problem);
        }
        (start, receiver)
    }
}

fn frame(event: &str, data: &serde_json::Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// `GET /__kiln/events`: the event stream.
pub fn events(channel: &LiveReload) -> HttpResponse {
    let (start, receiver) = channel.subscribe();
    let first = futures_util::stream::once(async move { Ok(Bytes::from(start)) });
    let rest = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let bytes = match tokio::time::timeout(HEARTBEAT, receiver.recv()).await {
            Err(_) => Bytes::from_static(b": heartbeat\n\n"),
            Ok(Ok(frame)) => Bytes::copy_from_slice(frame.as_bytes()),
            // Too slow to keep up: whatever it missed, a reload covers.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => Bytes::from(frame(
                "reload",
                &serde_json::json!({ "reason": "missed events" }),
            )),
            Ok(Err(broadcast::error::RecvError::Closed)) => return None,
        };
        Some((Ok::<_, actix_web::Error>(bytes), receiver))
    });
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::StreamExt::chain(first, rest))
}

/// `GET /__kiln/live.js`: the client.
pub fn client() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(CLIENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceLocation;

    #[test]
    fn a_late_client_sees_the_unfixed_problem_and_the_generation() {
        let channel = LiveReload::new();
        channel.send(&Event::Reload { reason: "x".into() });
        let location = SourceLocation {
            file: "assets/css/site.css".into(),
            line: 3,
            column: 7,
        };
        channel.send(&Event::Problem(vec![Diagnostic::at(
            "unexpected token",
            location,
            Some("a{}\nb{}\nc { color: }\n"),
        )]));
        let (start, _) = channel.subscribe();
        assert!(start.contains("\"generation\":1"), "{start}");
        assert!(start.contains("event: problem"), "{start}");
        assert!(start.contains("\"line\":3"), "{start}");
        channel.send(&Event::Ok);
        let (start, _) = channel.subscribe();
        assert!(!start.contains("problem"), "{start}");
    }
}
