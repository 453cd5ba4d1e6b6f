//! The static pipeline: one chain of small steps, in order — method,
//! path resolution, negotiation, preconditions, ranges — ending in a
//! response with the file table's precomputed headers. Cross-cutting work
//! (size limits, security headers, metrics, the access log) is done for
//! every response, this one included, by `server::concerns`.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};

use crate::http::body::{Part, PartStream};
use crate::http::conditional::{self, Outcome, Validators};
use crate::http::metrics::RouteClass;
use crate::http::negotiate::{self, Choice};
use crate::http::range::{self, RangeOutcome};
use crate::http::resolve::{self, PathRules, Resolved};
use crate::http::table::{FileKind, Resource, Table, Variant};

/// What the static pipeline is configured with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StaticRules {
    pub max_ranges: usize,
    pub paths: PathRules,
}

const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Answers a request from the file table, with the class it is counted as.
pub(crate) fn serve_static(
    req: &HttpRequest,
    table: &Table,
    rules: StaticRules,
) -> (HttpResponse, RouteClass) {
    if let Some(refusal) = refuse(req) {
        return (refusal, RouteClass::Rejected);
    }
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    match resolve::resolve(table, path, query, rules.paths) {
        Resolved::File(resource) => {
            let class = match resource.kind {
                FileKind::Asset => RouteClass::Asset,
                FileKind::Page => RouteClass::Page,
                FileKind::Other => RouteClass::File,
            };
            (serve(req, &resource, rules), class)
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

/// Answers a method no route at this path accepts.
pub(crate) fn wrong_method(req: &HttpRequest, allow: &str) -> HttpResponse {
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
    response
}

/// Methods a static server does not offer, refused before any lookup.
fn refuse(req: &HttpRequest) -> Option<HttpResponse> {
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

/// The built 404 page with status 404, or a short text when there is none.
pub(crate) fn not_found(req: &HttpRequest, table: &Table) -> HttpResponse {
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
fn serve(req: &HttpRequest, resource: &Resource, rules: StaticRules) -> HttpResponse {
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
        .map(|value| range::evaluate(value.as_bytes(), variant.content.len(), rules.max_ranges));
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
pub(crate) fn text(status: StatusCode, message: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(message)
}
