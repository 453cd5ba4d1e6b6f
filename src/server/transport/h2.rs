//! HTTP/2, served by the h2 crate with kiln's limits.
//!
//! actix-http builds its HTTP/2 connections with h2's defaults and no way
//! to change them: no cap on concurrent streams, and header lists of up
//! to 16 MiB decoded before kiln's 16 KiB check could refuse them. Here
//! the connection is built with `server.h2_max_concurrent_streams` and a
//! header list limit of `server.max_header_bytes`, and each stream is
//! handed to the same app as HTTP/1 requests. h2 itself refuses a flood
//! of streams reset before they were accepted (CVE-2023-44487) with
//! `GOAWAY ENHANCE_YOUR_CALM`.
//!
//! What actix-http's own dispatcher did is kept (the response head
//! prepared the same way); what it did not do is added: a stream the
//! client resets stops its handler (and so cancels its query), a stream
//! whose flow-control window stays shut for `server.send_timeout_secs` is
//! reset, and a connection with no stream in flight for
//! `server.keep_alive_secs` is sent `GOAWAY` and closed
//! `server.header_timeout_secs` later if it has not ended by then (a
//! client holding a header block open, or never answering the `GOAWAY`'s
//! `PING`, cannot keep it).

use std::cell::Cell;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::header::{self, HeaderName, HeaderValue};
use actix_http::{Method, Payload, Request, Response, ResponseHead, StatusCode};
use actix_server::GracefulShutdownSignal;
use actix_service::Service;
use bytes::Bytes;
use h2::server::{Builder, SendResponse};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;

/// `[server]`'s bounds on an HTTP/2 connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct H2Limits {
    pub(crate) max_concurrent_streams: u32,
    pub(crate) max_header_list_bytes: u32,
    pub(crate) keep_alive: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) send_timeout: Duration,
}

/// How long the client has to send its connection preface and settings.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest DATA frame payload sent at once.
const CHUNK: usize = 16 * 1024;

/// Streams in flight on one connection, and a wake-up when one ends.
#[derive(Default)]
struct InFlight {
    streams: Cell<usize>,
    ended: Notify,
}

/// Counts a stream from acceptance to its response's last frame.
struct StreamGuard(Rc<InFlight>);

impl StreamGuard {
    fn new(in_flight: &Rc<InFlight>) -> StreamGuard {
        in_flight.streams.set(in_flight.streams.get() + 1);
        StreamGuard(Rc::clone(in_flight))
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.set(self.0.streams.get() - 1);
        self.0.ended.notify_one();
    }
}

/// Serves one HTTP/2 connection until it closes.
pub(crate) async fn serve<T, S>(
    io: T,
    peer: Option<SocketAddr>,
    app: Rc<S>,
    limits: H2Limits,
    shutdown: GracefulShutdownSignal,
) where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request> + 'static,
    S::Response: Into<Response<BoxBody>>,
    S::Error: Into<Response<BoxBody>>,
{
    let mut builder = Builder::new();
    builder
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_bytes);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, builder.handshake::<_, Bytes>(io));
    let Ok(Ok(mut connection)) = handshake.await else {
        return;
    };
    let in_flight = Rc::new(InFlight::default());
    let mut idle_since = Instant::now();
    let mut shutting_down = false;
    let mut stopping = pin!(shutdown.notified());
    loop {
        let quiet = in_flight.streams.get() == 0;
        let idle = quiet && !shutting_down;
        // An idle connection told to go that is still here: drop it.
        let closing = quiet && shutting_down;
        let close_at = idle_since + limits.keep_alive + limits.header_timeout;
        tokio::select! {
            accepted = poll_fn(|cx| connection.poll_accept(cx)) => match accepted {
                Some(Ok((request, respond))) => {
                    let guard = StreamGuard::new(&in_flight);
                    let app = Rc::clone(&app);
                    actix_web::rt::spawn(async move {
                        answer(request, respond, peer, &*app, limits.send_timeout).await;
                        drop(guard);
                    });
                }
                // A protocol error, a GOAWAY, or the end of the connection.
                Some(Err(_)) | None => break,
            },
            () = in_flight.ended.notified() => {
                if in_flight.streams.get() == 0 {
                    idle_since = Instant::now();
                }
            }
            () = tokio::time::sleep_until(idle_since + limits.keep_alive), if idle => {
                shutting_down = true;
                connection.graceful_shutdown();
            }
            () = tokio::time::sleep_until(close_at), if closing => break,
            () = &mut stopping, if !shutting_down => {
                shutting_down = true;
                connection.graceful_shutdown();
            }
        }
    }
}

/// Answers one stream with the app; stops early if the client resets it.
async fn answer<S>(
    request: ::http::Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: Option<SocketAddr>,
    app: &S,
    send_timeout: Duration,
) where
    S: Service<Request>,
    S::Response: Into<Response<BoxBody>>,
    S::Error: Into<Response<BoxBody>>,
{
    let (parts, body) = request.into_parts();
    let head_request = parts.method == Method::HEAD;
    let mut req = Request::with_payload(Payload::from(body));
    let head = req.head_mut();
    head.uri = parts.uri;
    head.method = parts.method;
    head.version = parts.version;
    head.headers = parts.headers.into();
    head.peer_addr = peer;
    let called = app.call(req);
    // A reset stream drops the handler, and with it any query it awaits.
    let response: Response<BoxBody> = tokio::select! {
        answered = called => match answered {
            Ok(response) => response.into(),
            Err(error) => error.into(),
        },
        _ = poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    let _ = send(response, respond, head_request, send_timeout).await;
}

/// Why a response could not be sent in full; the stream is over either way.
enum SendFailed {
    Stream,
    Body,
}

impl From<h2::Error> for SendFailed {
    fn from(_: h2::Error) -> SendFailed {
        SendFailed::Stream
    }
}

async fn send(
    response: Response<BoxBody>,
    mut respond: SendResponse<Bytes>,
    head_request: bool,
    send_timeout: Duration,
) -> Result<(), SendFailed> {
    let (response, body) = response.into_parts();
    let mut size = body.size();
    let head = prepare_response(response.head(), &mut size);
    let end_of_stream = size.is_eof() || head_request;
    let mut stream = respond.send_response(head, end_of_stream)?;
    if end_of_stream {
        return Ok(());
    }
    let mut body = pin!(body);
    while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let mut chunk = chunk.map_err(|_| SendFailed::Body)?;
        while !chunk.is_empty() {
            stream.reserve_capacity(chunk.len().min(CHUNK));
            // A window the client never opens is a slow read.
            let capacity =
                tokio::time::timeout(send_timeout, poll_fn(|cx| stream.poll_capacity(cx))).await;
            match capacity {
                Ok(Some(Ok(capacity))) => {
                    let part = chunk.split_to(capacity.min(chunk.len()));
                    stream.send_data(part, false)?;
                }
                Ok(Some(Err(error))) => return Err(error.into()),
                Ok(None) => return Ok(()),
                Err(_) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    return Err(SendFailed::Stream);
                }
            }
        }
    }
    stream.send_data(Bytes::new(), true)?;
    Ok(())
}

/// The HTTP/2 response head for actix's: status, `Content-Length` from
/// the body's size, the headers without HTTP/1's connection-specific
/// ones (RFC 9113 §8.2.2), and `Date`. As actix-http's dispatcher does it.
fn prepare_response(head: &ResponseHead, size: &mut BodySize) -> ::http::Response<()> {
    let mut skip_length = *size != BodySize::Stream;
    let mut response = ::http::Response::new(());
    *response.status_mut() = head.status;
    *response.version_mut() = ::http::Version::HTTP_2;
    match head.status {
        StatusCode::NO_CONTENT | StatusCode::CONTINUE | StatusCode::PROCESSING => {
            *size = BodySize::None;
        }
        StatusCode::SWITCHING_PROTOCOLS => {
            skip_length = true;
            *size = BodySize::Stream;
        }
        _ => {}
    }
    let headers = response.headers_mut();
    if let BodySize::Sized(length) = size {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(*length));
    }
    let mut has_date = false;
    for (name, value) in head.headers.iter() {
        match *name {
            header::CONNECTION | header::TRANSFER_ENCODING | header::UPGRADE => continue,
            header::CONTENT_LENGTH if skip_length => continue,
            header::DATE => has_date = true,
            _ if is_connection_specific(name) => continue,
            _ => {}
        }
        headers.append(name.clone(), value.clone());
    }
    if !has_date {
        headers.insert(header::DATE, date());
    }
    response
}

fn is_connection_specific(name: &HeaderName) -> bool {
    name == "keep-alive" || name == "proxy-connection"
}

/// `Date`, formatted once a second per worker.
fn date() -> HeaderValue {
    thread_local! {
        static CACHED: Cell<Option<(u64, HeaderValue)>> = const { Cell::new(None) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with(|cached| {
        let value = match cached.take() {
            Some((at, value)) if at == second => value,
            _ => {
                let text = header::HttpDate::from(now).to_string();
                HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
            }
        };
        cached.set(Some((second, value.clone())));
        value
    })
}
