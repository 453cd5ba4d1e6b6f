//! The cross-cutting HTTP concerns, defined in one place and applied to
//! every response — static files, dynamic routes, the live-reload
//! endpoints, and errors raised inside the app (a session store that
//! fails, say) — in this order:
//!
//! 0. the connection's clock learns a request has begun (its head
//!    deadline is over) and, when the response is out, that it has been
//!    answered; the last request a connection may carry is told to close it;
//! 1. size limits: heads over `max_header_bytes` (431) and declared bodies
//!    over `max_body_bytes` (413) are refused before anything else runs;
//! 2. the request is answered, and counted under a [`RouteClass`];
//! 3. the security headers are added where the response lacks them (file
//!    responses carry them precomputed);
//! 4. the response is counted in the metrics;
//! 5. and written to the access log.
//!
//! The static pipeline, the hot path, goes through [`around`], a plain
//! function call; the dynamic scope and the live-reload endpoints are
//! wrapped in [`Concerns`], a middleware, which also sees the errors the
//! session middleware raises. A middleware around the whole app measured
//! 4% more instructions per static request (a boxed future and a class
//! carried in the response's extensions; BENCHMARKS.md), so the hot path
//! calls the same chain directly.
//!
//! Responses the HTTP/1 dispatcher writes on its own, before a request
//! reaches the app (a malformed request line, a head over actix's 32 KiB
//! buffer, the first request's header timeout), cannot pass through here:
//! actix-http has no hook for them.

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;

use crate::http::forwarded;
use crate::http::metrics::RouteClass;
use crate::http::pipeline::text;
use crate::server::access_log::{AccessLog, LogEntry};
use crate::server::state::{AppState, RequestLimits};
use crate::server::transport::guard::ConnectionClock;

/// Answers `req` with `answer` inside the concerns: the static pipeline's
/// path, with no middleware in the way.
pub(crate) fn around(
    req: &HttpRequest,
    state: &AppState,
    answer: impl FnOnce(&HttpRequest) -> (HttpResponse, RouteClass),
) -> HttpResponse {
    answer_within(req, state, refused, answer)
}

/// [`around`] for the admin listener: no host check (a scraper names the
/// address), the rest as on the public listener.
pub(crate) fn around_admin(
    req: &HttpRequest,
    state: &AppState,
    answer: impl FnOnce(&HttpRequest) -> (HttpResponse, RouteClass),
) -> HttpResponse {
    answer_within(
        req,
        state,
        |req, state| oversized(req, state.request_limits),
        answer,
    )
}

/// The chain as a function: the connection is told, `refuse` may answer
/// first, then `answer` does, and the response is finished.
fn answer_within(
    req: &HttpRequest,
    state: &AppState,
    refuse: impl FnOnce(&HttpRequest, &AppState) -> Option<HttpResponse>,
    answer: impl FnOnce(&HttpRequest) -> (HttpResponse, RouteClass),
) -> HttpResponse {
    let started_at = Instant::now();
    let clock = clock_of(req);
    let last = started(clock);
    let (response, class) = match refuse(req, state) {
        Some(refusal) => (refusal, RouteClass::Rejected),
        None => answer(req),
    };
    let response = finish(req, state, response, class, started_at, None);
    answered(clock, last, response)
}

/// Tells the request's connection (one of [`crate::server::transport`]'s;
/// in unit tests there is none) that a request began; returns whether it
/// is the last the connection may carry.
fn started(clock: Option<&ConnectionClock>) -> bool {
    clock.is_some_and(ConnectionClock::request_started)
}

/// Tells the connection the request has been answered; the last request's
/// response closes it.
fn answered(clock: Option<&ConnectionClock>, last: bool, response: HttpResponse) -> HttpResponse {
    if let Some(clock) = clock {
        clock.request_answered();
    }
    if last { closing(response) } else { response }
}

fn clock_of(req: &HttpRequest) -> Option<&ConnectionClock> {
    req.conn_data::<Rc<ConnectionClock>>().map(|clock| &**clock)
}

/// The middleware: the concerns around a scope whose responses are all
/// counted as `class`.
pub(crate) struct Concerns {
    state: Arc<AppState>,
    class: RouteClass,
}

impl Concerns {
    pub(crate) fn new(state: Arc<AppState>, class: RouteClass) -> Concerns {
        Concerns { state, class }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Concerns
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = ConcernsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ConcernsService {
            service: Rc::new(service),
            state: Arc::clone(&self.state),
            class: self.class,
        }))
    }
}

pub(crate) struct ConcernsService<S> {
    service: Rc<S>,
    state: Arc<AppState>,
    class: RouteClass,
}

impl<S, B> Service<ServiceRequest> for ConcernsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let started_at = Instant::now();
        let state = Arc::clone(&self.state);
        let clock = request.conn_data::<Rc<ConnectionClock>>().cloned();
        let last = started(clock.as_deref());
        if let Some(refusal) = refused(request.request(), &state) {
            let (req, _payload) = request.into_parts();
            let response = finish(
                &req,
                &state,
                refusal,
                RouteClass::Rejected,
                started_at,
                None,
            );
            let response = answered(clock.as_deref(), last, response);
            return Box::pin(ready(Ok(ServiceResponse::new(req, response))));
        }
        // The request cannot be kept (actix's router needs it unshared), so
        // what the log needs if a middleware fails is copied; cheaply, as
        // header values and the URI are reference-counted.
        let summary = state
            .log
            .enabled()
            .then(|| Summary::of(request.request(), &state));
        let service = Rc::clone(&self.service);
        let class = self.class;
        Box::pin(async move {
            match service.call(request).await {
                Ok(response) => {
                    let (req, response) = response.map_into_boxed_body().into_parts();
                    let response = finish(&req, &state, response, class, started_at, summary);
                    Ok(ServiceResponse::new(
                        req,
                        answered(clock.as_deref(), last, response),
                    ))
                }
                Err(error) => {
                    if let Some(clock) = &clock {
                        clock.request_answered();
                    }
                    Err(failed(&state, summary, error, class, started_at))
                }
            }
        })
    }
}

/// Security headers, metrics and the access log.
fn finish(
    req: &HttpRequest,
    state: &AppState,
    mut response: HttpResponse,
    class: RouteClass,
    started: Instant,
    summary: Option<Summary>,
) -> HttpResponse {
    add_security_headers(state, response.headers_mut());
    if let Some(hsts) = &state.security.forwarded_hsts
        && !state.proxies.is_empty()
        && forwarded::origin(req, &state.proxies, state.tls).https
    {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    let body_bytes = match (req.method() == Method::HEAD, response.body().size()) {
        (false, BodySize::Sized(len)) => len,
        _ => 0,
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics.observe(class, status, elapsed, body_bytes);
    if status >= 500 {
        state
            .metrics
            .server_error(req.method().as_str(), req.path(), status);
    }
    if state.log.enabled() {
        // The middleware copied the summary already, for its error path.
        let summary = summary.unwrap_or_else(|| Summary::of(req, state));
        log(&state.log, &summary, status, body_bytes, elapsed);
    }
    response
}

/// File responses carry the security headers precomputed; everything else
/// gets them here.
fn add_security_headers(state: &AppState, headers: &mut HeaderMap) {
    if !headers.contains_key(header::X_CONTENT_TYPE_OPTIONS) {
        for (name, value) in &state.security.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// A middleware inside the app failed (the session store, say): the error
/// is counted and logged here, and its response, which actix-http makes
/// from it after this returns, gets the security headers.
fn failed(
    state: &AppState,
    summary: Option<Summary>,
    error: actix_web::Error,
    class: RouteClass,
    started: Instant,
) -> actix_web::Error {
    let error = WithSecurityHeaders {
        inner: error,
        headers: state.security.headers.clone(),
    };
    let response = error.error_response();
    let body_bytes = match response.body().size() {
        BodySize::Sized(len) => len,
        _ => 0,
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics.observe(class, status, elapsed, body_bytes);
    if let Some(summary) = summary {
        log(&state.log, &summary, status, body_bytes, elapsed);
    }
    actix_web::Error::from(error)
}

/// An error whose response carries the security headers.
#[derive(Debug)]
struct WithSecurityHeaders {
    inner: actix_web::Error,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl std::fmt::Display for WithSecurityHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl ResponseError for WithSecurityHeaders {
    fn status_code(&self) -> StatusCode {
        self.inner.as_response_error().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.inner.error_response();
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

/// What the access log records of a request.
struct Summary {
    method: Method,
    uri: actix_web::http::Uri,
    version: actix_web::http::Version,
    peer: Option<std::net::IpAddr>,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

impl Summary {
    fn of(req: &HttpRequest, state: &AppState) -> Summary {
        let header = |name| req.headers().get(name).cloned();
        // The client behind a trusted proxy; the peer otherwise.
        let peer = if state.proxies.is_empty() {
            req.peer_addr().map(|addr| addr.ip().to_canonical())
        } else {
            forwarded::origin(req, &state.proxies, state.tls).client
        };
        Summary {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            peer,
            referer: header(header::REFERER),
            user_agent: header(header::USER_AGENT),
        }
    }
}

/// Requests refused before anything answers them: for a host the server
/// does not serve (421), or with a head or declared body over the limits.
fn refused(req: &HttpRequest, state: &AppState) -> Option<HttpResponse> {
    // Health probes (a load balancer, Kubernetes) name the address, not
    // the site; `/healthz` says nothing a host check protects.
    if req.path() != "/healthz" && !state.allowed_hosts.allows(req, &state.proxies) {
        return Some(text(
            StatusCode::MISDIRECTED_REQUEST,
            "Misdirected request: this server does not answer for that host (server.allowed_hosts)\n",
        ));
    }
    oversized(req, state.request_limits)
}

/// Heads or declared bodies over the limits.
fn oversized(req: &HttpRequest, limits: RequestLimits) -> Option<HttpResponse> {
    let target_bytes = req
        .uri()
        .path_and_query()
        .map_or(1, |target| target.as_str().len());
    let head_bytes = target_bytes
        + req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head_bytes > limits.max_header_bytes {
        return Some(closing(text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request header fields too large\n",
        )));
    }
    let declared_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_body.is_some_and(|len| len > limits.max_body_bytes) {
        return Some(closing(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request body too large\n",
        )));
    }
    None
}

/// A refusal after which the connection is closed: the client may still be
/// sending what was refused.
fn closing(mut response: HttpResponse) -> HttpResponse {
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    response
}

fn header_text(value: &Option<HeaderValue>) -> Option<&str> {
    value.as_ref().and_then(|value| value.to_str().ok())
}

fn log(
    log: &AccessLog,
    summary: &Summary,
    status: u16,
    body_bytes: u64,
    elapsed: std::time::Duration,
) {
    let target = summary
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let version = match summary.version {
        actix_web::http::Version::HTTP_10 => "HTTP/1.0",
        actix_web::http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    log.record(&LogEntry {
        peer: summary.peer,
        time: SystemTime::now(),
        method: summary.method.as_str(),
        target,
        version,
        status,
        body_bytes,
        referer: header_text(&summary.referer),
        user_agent: header_text(&summary.user_agent),
        duration: elapsed,
    });
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use actix_web::{App, test, web};

    use super::*;
    use crate::config::{AccessLogFormat, MetricsAccess};
    use crate::http::headers::SecurityHeaders;
    use crate::http::metrics::Metrics;
    use crate::http::pipeline::StaticRules;
    use crate::http::resolve::PathRules;
    use crate::server::access_log::AccessLog;

    /// Log lines, captured.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn state(log: AccessLog) -> Arc<AppState> {
        Arc::new(AppState {
            table: Default::default(),
            metrics: Arc::new(Metrics::default()),
            registry: Default::default(),
            log,
            security: SecurityHeaders {
                headers: vec![(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                )],
                forwarded_hsts: None,
            },
            request_limits: RequestLimits {
                max_header_bytes: 1024,
                max_body_bytes: 10,
            },
            static_rules: StaticRules {
                max_ranges: 1,
                paths: PathRules { pretty_urls: true },
            },
            metrics_access: MetricsAccess::Public,
            metrics_token: None,
            proxies: Default::default(),
            allowed_hosts: Default::default(),
            tls: false,
            dynamic: None,
        })
    }

    #[test]
    fn errors_raised_inside_the_app_get_headers_metrics_and_a_log_line() {
        let captured = Captured::default();
        let log = AccessLog::to_writer(AccessLogFormat::Common, Box::new(captured.clone()));
        let state = state(log);
        actix_web::rt::System::new().block_on(async {
            let failing_handler = || async {
                Err::<HttpResponse, _>(actix_web::error::ErrorInternalServerError("boom"))
            };
            // A middleware that fails, as the session middleware does when
            // its store is down.
            let failing_middleware = |_, _: &_| {
                std::future::ready(Err::<ServiceResponse<BoxBody>, _>(
                    actix_web::error::ErrorServiceUnavailable("store down"),
                ))
            };
            let app = test::init_service(
                App::new()
                    .wrap(Concerns::new(Arc::clone(&state), RouteClass::Dynamic))
                    .route("/boom", web::get().to(failing_handler))
                    .service(
                        web::scope("/store")
                            .wrap_fn(failing_middleware)
                            .route("", web::get().to(HttpResponse::Ok)),
                    ),
            )
            .await;
            let request = test::TestRequest::get().uri("/boom").to_request();
            let response = test::call_service(&app, request).await;
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(
                response.headers().get(header::X_CONTENT_TYPE_OPTIONS),
                Some(&HeaderValue::from_static("nosniff"))
            );

            let oversized = test::TestRequest::post()
                .uri("/boom")
                .insert_header((header::CONTENT_LENGTH, "11"))
                .to_request();
            let response = test::call_service(&app, oversized).await;
            assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
            assert!(
                response
                    .headers()
                    .contains_key(header::X_CONTENT_TYPE_OPTIONS)
            );

            let request = test::TestRequest::get().uri("/store").to_request();
            let error = test::try_call_service(&app, request)
                .await
                .expect_err("the middleware's error comes out of the app");
            let response = error.error_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                response
                    .headers()
                    .contains_key(header::X_CONTENT_TYPE_OPTIONS)
            );
        });
        let registry = crate::server::metrics::registry(&state.metrics, &state.table, None);
        let metrics = crate::server::metrics::encode(&registry).expect("encodes");
        for counted in [
            "kiln_http_requests_total{class=\"dynamic\",status=\"500\"} 1",
            "kiln_http_requests_total{class=\"rejected\",status=\"413\"} 1",
            "kiln_http_requests_total{class=\"dynamic\",status=\"503\"} 1",
        ] {
            assert!(metrics.contains(counted), "{counted} in {metrics}");
        }
        // The log is written by its own thread.
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let logged = || String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        while Instant::now() < deadline && logged().lines().count() < 3 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let lines = logged();
        assert!(lines.contains("\"GET /boom HTTP/1.1\" 500"), "{lines}");
        assert!(lines.contains("\"POST /boom HTTP/1.1\" 413"), "{lines}");
        assert!(lines.contains("\"GET /store HTTP/1.1\" 503"), "{lines}");
    }
}
