//! The HTTP side of a dynamic response: entity tag, preconditions,
//! content coding (a precompressed copy when the cache has one, else
//! compressed on the fly), caching headers, HEAD.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use crate::config::Encoding;
use crate::dynamic::app::DynamicApp;
use crate::dynamic::db::DbError;
use crate::dynamic::page::{Rendered, json_bytes};
use crate::dynamic::response_cache::entry::body_tag;
use crate::dynamic::routes::Route;
use crate::dynamic::routes::params::FieldErrors;
use crate::dynamic::views::CsrfSlot;
use crate::http::conditional::{self, Outcome, Validators};
use crate::http::negotiate::{self, Choice};
use crate::http::pipeline::text;
use crate::site::codec::compress_fast;

/// A body, the compressed copies already made of it, and its entity tag.
pub(crate) struct Body {
    pub identity: Bytes,
    pub br: Option<Bytes>,
    pub gzip: Option<Bytes>,
    pub tag: String,
}

impl Body {
    pub(crate) fn plain(bytes: Vec<u8>) -> Body {
        Body {
            tag: body_tag(&bytes),
            identity: Bytes::from(bytes),
            br: None,
            gzip: None,
        }
    }
}

/// How a response may be cached by browsers and proxies.
pub(crate) enum Privacy {
    /// The route's `cache_control`.
    Shared,
    /// The body is the visitor's own (their CSRF token, their flash
    /// message): `private, no-cache` and `Vary: Cookie`, with the CSRF
    /// cookie to set when the token was issued now.
    Private(Option<String>),
}

/// Bodies below this are sent as they are: compressing them saves less
/// than the headers it adds.
pub(crate) const COMPRESS_MIN_BYTES: usize = 512;

/// The finished response; `extra` headers (`Age`, `X-Kiln-Cache`) are added as given.
pub(crate) fn finish(
    req: &HttpRequest,
    route: &Route,
    status: StatusCode,
    body: Body,
    content_type: &str,
    privacy: Privacy,
    extra: &[(&'static str, String)],
) -> HttpResponse {
    let tag = &body.tag;
    let encoding = choose_encoding(req, &body);
    let etag = match encoding {
        Some(encoding) => format!("\"{tag}-{}\"", encoding.token()),
        None => format!("\"{tag}\""),
    };
    let mut builder = HttpResponse::build(status);
    builder.insert_header((header::CONTENT_TYPE, content_type));
    match &privacy {
        Privacy::Private(cookie) => {
            builder.insert_header((header::VARY, "Accept-Encoding, Cookie"));
            builder.insert_header((header::CACHE_CONTROL, "private, no-cache"));
            if let Some(cookie) = cookie {
                builder.insert_header((header::SET_COOKIE, cookie.as_str()));
            }
        }
        Privacy::Shared => {
            let vary = if route.reads_session {
                "Accept-Encoding, Cookie"
            } else {
                "Accept-Encoding"
            };
            builder.insert_header((header::VARY, vary));
            builder.insert_header((header::CACHE_CONTROL, route.cache_control.clone()));
        }
    }
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            builder.insert_header((*name, value));
        }
    }
    if status == StatusCode::OK {
        builder.insert_header((header::ETAG, etag.as_str()));
        let validators = Validators {
            etag: &etag,
            last_modified: None,
        };
        let safe = req.method() == Method::GET || req.method() == Method::HEAD;
        match conditional::evaluate(req.headers(), safe, validators) {
            Outcome::NotModified => return builder.status(StatusCode::NOT_MODIFIED).finish(),
            Outcome::PreconditionFailed => {
                return builder.status(StatusCode::PRECONDITION_FAILED).finish();
            }
            Outcome::Proceed { .. } => {}
        }
    }
    let bytes = match encoding {
        Some(encoding) => {
            builder.insert_header((header::CONTENT_ENCODING, encoding.token()));
            let ready = match encoding {
                Encoding::Brotli => body.br,
                Encoding::Gzip => body.gzip,
                Encoding::Zstd => None,
            };
            ready.unwrap_or_else(|| Bytes::from(compress_fast(encoding, &body.identity)))
        }
        None => body.identity,
    };
    if req.method() == Method::HEAD {
        let len = bytes.len() as u64;
        let empty = futures_util::stream::empty::<Result<Bytes, actix_web::Error>>();
        return builder.body(actix_web::body::SizedStream::new(len, empty));
    }
    builder.body(bytes)
}

/// The coding to send, by the client's preference, for bodies worth
/// compressing. Brotli only when a copy is ready (the cache makes one per
/// entry): on the fly, brotli at any useful level costs ~10x what gzip does
/// for a 2 KB page (1.7k vs 16k req/s measured), for a few percent of size.
fn choose_encoding(req: &HttpRequest, body: &Body) -> Option<Encoding> {
    if body.identity.len() < COMPRESS_MIN_BYTES {
        return None;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .map(HeaderValue::as_bytes);
    let with_brotli = [Some(Encoding::Brotli), Some(Encoding::Gzip), None];
    let without = [Some(Encoding::Gzip), None];
    let available: &[Option<Encoding>] = if body.br.is_some() {
        &with_brotli
    } else {
        &without
    };
    match negotiate::choose(accept, available) {
        Choice::Variant(index) => available[index],
        Choice::NotAcceptable => None,
    }
}

/// Sends a freshly rendered (uncached) page; `visitors_own` makes it private.
pub(crate) fn send(
    req: &HttpRequest,
    app: &DynamicApp,
    route: &Route,
    rendered: Rendered,
    slot: &CsrfSlot,
    visitors_own: bool,
) -> HttpResponse {
    let privacy = match privacy(req, app, slot) {
        Privacy::Shared if visitors_own => Privacy::Private(None),
        privacy => privacy,
    };
    let links = link_header(&rendered.links);
    let body = Body::plain(rendered.body);
    finish(
        req,
        route,
        rendered.status,
        body,
        rendered.content_type,
        privacy,
        links.as_slice(),
    )
}

/// The `Link` header of a page's preload hints, if it has any.
pub(crate) fn link_header(links: &[String]) -> Option<(&'static str, String)> {
    (!links.is_empty()).then(|| ("link", links.join(", ")))
}

/// Whether the rendered page carries the visitor's CSRF token.
pub(crate) fn privacy(req: &HttpRequest, app: &DynamicApp, slot: &CsrfSlot) -> Privacy {
    if slot.used() {
        Privacy::Private(slot.issued().map(|token| app.csrf.set_cookie(req, token)))
    } else {
        Privacy::Shared
    }
}

pub(crate) fn bad_query(errors: &FieldErrors) -> HttpResponse {
    let mut message = String::from("Bad request:\n");
    for (name, problem) in errors {
        message.push_str(&format!("  {name} {problem}\n"));
    }
    HttpResponse::BadRequest()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(message)
}

pub(crate) fn internal_error() -> HttpResponse {
    text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n")
}

pub(crate) fn database_failure(route: &Route, err: &DbError) -> HttpResponse {
    tracing::error!("route {}: {err}", route.label);
    if err.is_temporary() {
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The database is busy; try again in a moment\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n")
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(json_bytes(value))
}
