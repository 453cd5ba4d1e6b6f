//! The request handler: one chain of small steps, in order — reserved
//! endpoints, limits, method, path resolution, negotiation, preconditions,
//! ranges — ending in a response with precomputed headers. Every response
//! gets the security headers, is counted in the metrics and, when enabled,
//! written to the access log.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use arc_swap::ArcSwap;

use crate::config::MetricsAccess;
use crate::serve::access_log::{AccessLog, LogEntry};
use crate::serve::body::{Part, PartStream};
use crate::serve::conditional::{self, Outcome, Validators};
use crate::serve::headers::SecurityHeaders;
use crate::serve::metrics::{Metrics, RouteClass};
use crate::serve::negotiate::{self, Choice};
use crate::serve::range::{self, RangeOutcome};
use crate::serve::resolve::{self, PathRules, Resolved};
use crate::serve::routes::Route;
use crate::serve::routes::respond::{self as dynamic_route, Dynamic};
use crate::serve::table::{FileKind, Resource, Table, Variant};

/// Limits and switches the handler applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub max_ranges: usize,
    pub metrics: MetricsAccess,
    pub rules: PathRules,
}

/// Everything the handler reads, shared by all workers.
pub struct AppState {
    /// The current build; replaced whole when a new one is loaded, so each
    /// request sees exactly one build.
    pub table: ArcSwap<Table>,
    pub metrics: Arc<Metrics>,
    pub log: AccessLog,
    pub security: SecurityHeaders,
    pub limits: Limits,
    /// Declared routes and their database, when the site has any.
    pub dynamic: Option<Arc<Dynamic>>,
}

const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Handles one request for a static file (or a reserved endpoint).
pub fn handle(req: &HttpRequest, state: &AppState) -> HttpResponse {
    let started = Instant::now();
    let table = state.table.load();
    let (response, class) = respond(req, state, &table);
    finish(req, state, response, class, started)
}

/// Handles one request for a dynamic route.
pub async fn handle_dynamic(
    req: &HttpRequest,
    payload: actix_web::dev::Payload,
    state: &AppState,
    dynamic: &Arc<Dynamic>,
    route: &Route,
    path_values: Vec<(String, crate::serve::db::SqlValue)>,
) -> HttpResponse {
    let started = Instant::now();
    let response = match oversized(req, state.limits) {
        Some(refusal) => refusal,
        None => {
            let not_found = || not_found(req, &state.table.load());
            dynamic_route::respond(req, payload, dynamic, route, path_values, not_found).await
        }
    };
    finish(req, state, response, RouteClass::Dynamic, started)
}

/// Answers a method no route at this path accepts.
pub fn wrong_method(req: &HttpRequest, state: &AppState, allow: &str) -> HttpResponse {
    let started = Instant::now();
    let mut response = if req.method() == Method::OPTIONS {
        HttpResponse::NoContent()
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .finish()
    } else {
        text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n")
    };
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    finish(req, state, response, RouteClass::Dynamic, started)
}

/// Security headers, metrics and the access log, for every response.
fn finish(
    req: &HttpRequest,
    state: &AppState,
    mut response: HttpResponse,
    class: RouteClass,
    started: Instant,
) -> HttpResponse {
    // File responses carry them precomputed; everything else gets them here.
    let headers = response.headers_mut();
    if !headers.contains_key(header::X_CONTENT_TYPE_OPTIONS) {
        for (name, value) in &state.security.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    let body_bytes = match (req.method() == Method::HEAD, response.body().size()) {
        (false, actix_web::body::BodySize::Sized(len)) => len,
        _ => 0,
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics.observe(class, status, elapsed, body_bytes);
    if state.log.enabled() {
        log(req, &state.log, status, body_bytes, elapsed);
    }
    response
}

fn respond(req: &HttpRequest, state: &AppState, table: &Table) -> (HttpResponse, RouteClass) {
    let path = req.uri().path();
    match path {
        "/healthz" => return (text(StatusCode::OK, "ok\n"), RouteClass::Health),
        "/metrics" if metrics_allowed(req, state.limits.metrics) => {
            let mut body = state.metrics.render(&table.stats);
            if let Some(dynamic) = &state.dynamic {
                dynamic.render_metrics(&mut body);
            }
            let response = HttpResponse::Ok()
                .insert_header((
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                ))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(body);
            return (response, RouteClass::Metrics);
        }
        _ => {}
    }
    if let Some(refusal) = refuse(req, state.limits) {
        return (refusal, RouteClass::Rejected);
    }
    let query = req.uri().query().unwrap_or("");
    match resolve::resolve(table, path, query, state.limits.rules) {
        Resolved::File(resource) => {
            let class = match resource.kind {
                FileKind::Asset => RouteClass::Asset,
                FileKind::Page => RouteClass::Page,
                FileKind::Other => RouteClass::File,
            };
            (serve(req, &resource, state.limits), class)
        }
        Resolved::Redirect(location) => {
            let response = HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, location))
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .finish();
            (response, RouteClass::Redirect)
        }
        Resolved::NotFound => (not_found(req, table), RouteClass::NotFound),
        Resolved::BadRequest => (
            text(StatusCode::BAD_REQUEST, "Bad request path\n"),
            RouteClass::Rejected,
        ),
    }
}

/// Requests refused before any lookup: oversized heads or bodies, and
/// methods a static server does not offer.
fn refuse(req: &HttpRequest, limits: Limits) -> Option<HttpResponse> {
    if let Some(refusal) = oversized(req, limits) {
        return Some(refusal);
    }
    match *req.method() {
        Method::GET | Method::HEAD => None,
        Method::OPTIONS => Some(
            HttpResponse::NoContent()
                .insert_header((header::ALLOW, ALLOW))
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .finish(),
        ),
        _ => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            Some(response)
        }
    }
}

/// Heads or declared bodies over the limits.
fn oversized(req: &HttpRequest, limits: Limits) -> Option<HttpResponse> {
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
        let mut response = text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request header fields too large\n",
        );
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Some(response);
    }
    let declared_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_body.is_some_and(|len| len > limits.max_body_bytes) {
        let mut response = text(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large\n");
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Some(response);
    }
    None
}

fn metrics_allowed(req: &HttpRequest, access: MetricsAccess) -> bool {
    match access {
        MetricsAccess::Off => false,
        MetricsAccess::Public => true,
        MetricsAccess::Loopback => req
            .peer_addr()
            .is_some_and(|peer| peer.ip().to_canonical().is_loopback()),
    }
}

/// The built 404 page with status 404, or a short text when there is none.
fn not_found(req: &HttpRequest, table: &Table) -> HttpResponse {
    let Some(page) = &table.not_found else {
        return text(StatusCode::NOT_FOUND, "Not found\n");
    };
    let Choice::Variant(index) = choose(req, page) else {
        return text(StatusCode::NOT_FOUND, "Not found\n");
    };
    let variant = &page.variants[index];
    let mut response = full(StatusCode::NOT_FOUND, variant, req.method() == Method::HEAD);
    // The page is the body of an error, not the representation of the
    // requested URL: no validators or ranges for it (a conditional or ranged
    // request for a missing URL still gets the whole 404).
    let headers = response.headers_mut();
    for name in [header::ETAG, header::LAST_MODIFIED, header::ACCEPT_RANGES] {
        headers.remove(name);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn choose(req: &HttpRequest, resource: &Resource) -> Choice {
    let accept = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .map(HeaderValue::as_bytes);
    negotiate::choose(accept, &resource.codings)
}

/// Serves a resource: negotiation, preconditions, ranges.
fn serve(req: &HttpRequest, resource: &Resource, limits: Limits) -> HttpResponse {
    let Choice::Variant(index) = choose(req, resource) else {
        let mut response = text(
            StatusCode::NOT_ACCEPTABLE,
            "None of the available content codings is acceptable\n",
        );
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        return response;
    };
    let variant = &resource.variants[index];
    let head = req.method() == Method::HEAD;
    let validators = Validators {
        etag: variant.etag.to_str().unwrap_or(""),
        last_modified: Some(resource.last_modified),
    };
    let honour_range = match conditional::evaluate(req.headers(), true, validators) {
        Outcome::NotModified => {
            return with_headers(
                StatusCode::NOT_MODIFIED,
                &variant.not_modified_headers,
                BoxBody::new(()),
            );
        }
        Outcome::PreconditionFailed => {
            return with_headers(
                StatusCode::PRECONDITION_FAILED,
                &variant.headers,
                BoxBody::new(()),
            );
        }
        Outcome::Proceed { honour_range } => honour_range,
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .filter(|_| honour_range)
        .map(|value| range::evaluate(value.as_bytes(), variant.content.len(), limits.max_ranges));
    match range {
        None | Some(RangeOutcome::Full) => full(StatusCode::OK, variant, head),
        Some(RangeOutcome::Partial(ranges)) => partial(resource, variant, ranges, head),
        Some(RangeOutcome::Unsatisfiable) => {
            let mut response = with_headers(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &variant.headers,
                BoxBody::new(()),
            );
            let content_range = format!("bytes */{}", variant.content.len());
            insert_text(&mut response, header::CONTENT_RANGE, &content_range);
            response
        }
    }
}

/// A response with a variant's precomputed headers.
fn with_headers(status: StatusCode, headers: &HeaderMap, body: BoxBody) -> HttpResponse {
    let mut response = HttpResponse::with_body(status, body);
    // Cloning the finished map costs less than inserting header by header.
    *response.headers_mut() = headers.clone();
    response
}

fn insert_text(response: &mut HttpResponse, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// The whole variant.
fn full(status: StatusCode, variant: &Variant, head: bool) -> HttpResponse {
    let len = variant.content.len();
    with_headers(
        status,
        &variant.headers,
        body(vec![Part::slice(&variant.content, 0..len)], head),
    )
}

/// A body over `parts`; for HEAD, the same length with nothing to read.
fn body(parts: Vec<Part>, head: bool) -> BoxBody {
    if head {
        let len = parts.iter().map(Part::len).sum();
        return actix_web::body::SizedStream::new(len, PartStream::empty()).boxed();
    }
    match parts.as_slice() {
        [Part::Bytes(bytes)] => BoxBody::new(bytes.clone()),
        _ => PartStream::body(parts).boxed(),
    }
}

/// 206 with one range, or `multipart/byteranges` with several.
fn partial(
    resource: &Resource,
    variant: &Variant,
    ranges: Vec<std::ops::Range<u64>>,
    head: bool,
) -> HttpResponse {
    let total = variant.content.len();
    if let [range] = ranges.as_slice() {
        let parts = vec![Part::slice(&variant.content, range.clone())];
        let mut response = with_headers(
            StatusCode::PARTIAL_CONTENT,
            &variant.headers,
            body(parts, head),
        );
        let content_range = format!("bytes {}-{}/{total}", range.start, range.end - 1);
        insert_text(&mut response, header::CONTENT_RANGE, &content_range);
        return response;
    }
    // Each part carries its own Content-Type and Content-Range.
    let boundary = format!(
        "kiln-{}",
        variant.etag.to_str().unwrap_or("").trim_matches('"')
    );
    let content_type = resource
        .content_type
        .to_str()
        .unwrap_or("application/octet-stream");
    let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
    for (index, range) in ranges.iter().enumerate() {
        let separator = format!(
            "{}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{total}\r\n\r\n",
            if index == 0 { "" } else { "\r\n" },
            range.start,
            range.end - 1
        );
        parts.push(Part::Bytes(separator.into()));
        parts.push(Part::slice(&variant.content, range.clone()));
    }
    parts.push(Part::Bytes(format!("\r\n--{boundary}--\r\n").into()));
    let mut response = with_headers(
        StatusCode::PARTIAL_CONTENT,
        &variant.headers,
        body(parts, head),
    );
    let multipart = format!("multipart/byteranges; boundary={boundary}");
    insert_text(&mut response, header::CONTENT_TYPE, &multipart);
    response
}

/// A short plain-text response that no cache keeps.
pub fn text(status: StatusCode, message: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(message)
}

fn log(
    req: &HttpRequest,
    log: &AccessLog,
    status: u16,
    body_bytes: u64,
    elapsed: std::time::Duration,
) {
    let header_text = |name| {
        req.headers()
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let version = match req.version() {
        actix_web::http::Version::HTTP_10 => "HTTP/1.0",
        actix_web::http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    log.record(&LogEntry {
        peer: req.peer_addr().map(|addr| addr.ip().to_canonical()),
        time: SystemTime::now(),
        method: req.method().as_str(),
        target,
        version,
        status,
        body_bytes,
        referer: header_text(header::REFERER),
        user_agent: header_text(header::USER_AGENT),
        duration: elapsed,
    });
}
