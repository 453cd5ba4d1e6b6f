//! The server's own endpoints: `/healthz` and `/metrics` (OpenMetrics
//! text, every subsystem's series), answered before the file table on the
//! public listener and alone on the admin listener (`server.admin_addr`).
//!
//! On the public listener `/metrics` is served, by default, only with the
//! bearer token: a reverse proxy on the same host makes every visitor look
//! like a loopback client. `/healthz` answers everywhere: it says nothing
//! but `ok`, and load balancers probe the public port.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use subtle::ConstantTimeEq;

use crate::config::MetricsAccess;
use crate::http::metrics::RouteClass;
use crate::http::pipeline::text;
use crate::server::metrics;
use crate::server::state::AppState;

/// The response for an endpoint of the server's own, if `req` asks for one.
pub(crate) fn answer(req: &HttpRequest, state: &AppState) -> Option<(HttpResponse, RouteClass)> {
    match req.uri().path() {
        "/healthz" => Some((text(StatusCode::OK, "ok\n"), RouteClass::Health)),
        "/metrics" if metrics_allowed(req, state) => Some((metrics(state), RouteClass::Metrics)),
        _ => None,
    }
}

fn metrics(state: &AppState) -> HttpResponse {
    match metrics::encode(&state.registry) {
        Ok(body) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, metrics::CONTENT_TYPE))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        // Only a collector's formatting error gets here; a partial body
        // would be misread by the scraper.
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded\n",
        ),
    }
}

/// What the admin listener answers: the two endpoints, and 404.
pub(crate) fn answer_admin(req: &HttpRequest, state: &AppState) -> (HttpResponse, RouteClass) {
    match req.uri().path() {
        "/healthz" => (text(StatusCode::OK, "ok\n"), RouteClass::Health),
        "/metrics" if state.metrics_access != MetricsAccess::Off => {
            (metrics(state), RouteClass::Metrics)
        }
        _ => (
            text(StatusCode::NOT_FOUND, "Not found\n"),
            RouteClass::NotFound,
        ),
    }
}

/// Whether `/metrics` may be read on the public listener.
fn metrics_allowed(req: &HttpRequest, state: &AppState) -> bool {
    match state.metrics_access {
        MetricsAccess::Off => false,
        MetricsAccess::Public => true,
        MetricsAccess::Loopback => local_and_direct(req) || bearer_matches(req, state),
        MetricsAccess::Admin => bearer_matches(req, state),
    }
}

/// The request came from this host and, as far as can be told, not
/// through a proxy.
fn local_and_direct(req: &HttpRequest) -> bool {
    const FORWARDING: [&str; 6] = [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "via",
    ];
    req.peer_addr()
        .is_some_and(|peer| peer.ip().to_canonical().is_loopback())
        && !FORWARDING
            .iter()
            .any(|name| req.headers().contains_key(*name))
}

/// `Authorization: Bearer <server's metrics token>`, compared in constant
/// time.
fn bearer_matches(req: &HttpRequest, state: &AppState) -> bool {
    let Some(token) = &state.metrics_token else {
        return false;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| bool::from(given.trim_ascii().ct_eq(token.as_bytes())))
}

/// Where the metrics token comes from: `KILN_METRICS_TOKEN`, else
/// `server.metrics_token_file` (which other users may not read).
pub(crate) const TOKEN_ENV: &str = "KILN_METRICS_TOKEN";

/// The metrics bearer token, if one is configured; at least 16 bytes.
pub(crate) fn metrics_token(
    root: &std::path::Path,
    file: Option<&std::path::Path>,
) -> std::io::Result<Option<String>> {
    let (source, token) = if let Ok(token) = std::env::var(TOKEN_ENV) {
        (TOKEN_ENV.to_string(), token)
    } else if let Some(file) = file {
        let path = root.join(file);
        crate::dynamic::secret::check_private(&path, "server.metrics_token_file ")?;
        let token = std::fs::read_to_string(&path).map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("server.metrics_token_file {}: {err}", path.display()),
            )
        })?;
        (
            format!("server.metrics_token_file {}", path.display()),
            token,
        )
    } else {
        return Ok(None);
    };
    let token = token.trim();
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(std::io::Error::other(format!(
            "{source}: the metrics token must be at least 16 visible ASCII characters, such as the output of `openssl rand -hex 16`"
        )));
    }
    Ok(Some(token.to_string()))
}
