//! The server's own endpoints: `/healthz` and `/metrics` (OpenMetrics
//! text, every subsystem's series), answered before the file table.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use crate::config::MetricsAccess;
use crate::http::metrics::RouteClass;
use crate::http::pipeline::text;
use crate::server::metrics;
use crate::server::state::AppState;

/// The response for an endpoint of the server's own, if `req` asks for one.
pub(crate) fn answer(req: &HttpRequest, state: &AppState) -> Option<(HttpResponse, RouteClass)> {
    match req.uri().path() {
        "/healthz" => Some((text(StatusCode::OK, "ok\n"), RouteClass::Health)),
        "/metrics" if metrics_allowed(req, state.metrics_access) => {
            Some((metrics(state), RouteClass::Metrics))
        }
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

fn metrics_allowed(req: &HttpRequest, access: MetricsAccess) -> bool {
    match access {
        MetricsAccess::Off => false,
        MetricsAccess::Public => true,
        MetricsAccess::Loopback => req
            .peer_addr()
            .is_some_and(|peer| peer.ip().to_canonical().is_loopback()),
    }
}
