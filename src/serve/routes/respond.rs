//! Answering a dynamic route. GET: bind the typed inputs, run the route's
//! queries on one pooled connection, render the template (or JSON), and
//! send it with an entity tag, conditional-request handling and on-the-fly
//! compression. POST: check the form's content type, size and CSRF token,
//! bind the fields (422 with every field error when they are invalid), run
//! the write statements in one retried transaction, and redirect (303).
//!
//! Database failures never hang or crash a worker: no connection in time
//! or a database that stayed busy is a 503 with `Retry-After`; a failing
//! statement is a 500 logged with its route.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_session::SessionExt;
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use arc_swap::ArcSwap;
use futures_util::StreamExt;

use super::csrf::{self, Csrf};
use super::params::{self, FieldErrors};
use super::render::{Page, Rendered, SessionView, TemplateFailed, json_bytes, render, shape};
use super::reply::{Body, Privacy, finish};
use super::session_use::{
    FLASH, apply_session_changes, oversized_session, refresh_cookie_session, session_values,
    session_view,
};
use super::views::{CsrfSlot, Views};
use super::{Route, Routes};
use crate::serve::cache::RouteCache;
use crate::serve::db::{Database, DbError, Row, SqlValue};
use crate::serve::handler::text;
use crate::serve::metrics::family;

/// Everything dynamic routes need, shared by all workers.
pub struct Dynamic {
    pub routes: Routes,
    pub database: Arc<Database>,
    /// Replaced when a new build is loaded.
    pub views: ArcSwap<Views>,
    pub csrf: Csrf,
    pub slow_query: Option<Duration>,
    pub max_body_bytes: u64,
    pub templates_dir: PathBuf,
    /// The route cache, when a route is cached.
    pub cache: Option<RouteCache>,
    /// The session store, when a route uses sessions.
    pub sessions: Option<Arc<crate::serve::session::Sessions>>,
    /// Signs the session cookie.
    pub session_key: actix_web::cookie::Key,
    pub session_config: crate::config::SessionConfig,
    /// Serving TLS (the session cookie is then `Secure` under `secure = "auto"`).
    pub tls: bool,
    /// Route database calls slower than `slow_query`.
    pub slow_queries: std::sync::atomic::AtomicU64,
    /// Under `kiln watch`: rendered pages load the live-reload client.
    pub live_reload: bool,
}

impl Dynamic {
    /// Appends pool and per-route query series to a `/metrics` body.
    pub fn render_metrics(&self, out: &mut String) {
        self.database.render_metrics(out);
        if let Some(sessions) = &self.sessions {
            sessions.render_metrics(out);
        }
        if let Some(cache) = &self.cache {
            cache.render_metrics(out);
        }
        let name = "kiln_route_query_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "Database time per request of each dynamic route.",
        );
        for route in &self.routes.routes {
            if route.query_time.count() > 0 {
                let label = route.label.replace('\\', "\\\\").replace('"', "\\\"");
                route
                    .query_time
                    .render(out, name, &format!("route=\"{label}\""));
            }
        }
        let name = "kiln_slow_queries_total";
        family(
            out,
            name,
            "counter",
            "Route database calls slower than database.slow_query_ms.",
        );
        let count = self.slow_queries.load(std::sync::atomic::Ordering::Relaxed);
        out.push_str(&format!("{name} {count}\n"));
    }

    /// Records a route's database time, logging it when slow.
    pub fn observe(&self, route: &Route, what: &str, elapsed: Duration) {
        route.query_time.observe(elapsed);
        if self
            .slow_query
            .is_some_and(|threshold| elapsed >= threshold)
        {
            self.slow_queries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            eprintln!(
                "kiln: slow query: route {} ({what}) took {:.1} ms",
                route.label,
                elapsed.as_secs_f64() * 1000.0
            );
        }
    }
}

/// Named input values of one request: path parameters, query parameters,
/// form fields.
pub type Values = Vec<(String, SqlValue)>;

/// Answers a request selected for `route`. `not_found` renders the site's
/// 404 page.
pub async fn respond(
    req: &HttpRequest,
    payload: Payload,
    dynamic: &Arc<Dynamic>,
    route: &Route,
    path_values: Values,
    not_found: impl FnOnce() -> HttpResponse,
) -> HttpResponse {
    if route.method == Method::POST {
        return post(req, payload, dynamic, route, path_values).await;
    }
    let mut values = path_values;
    match params::bind(&route.params, &params::parse_pairs(req.query_string())) {
        Ok(params) => values.extend(params),
        Err(errors) => return invalid_query(&errors),
    }
    let session = req.get_session();
    let reissued = refresh_cookie_session(&session);
    values.extend(session_values(&session, route));
    // A pending flash message is for this visitor only: such a page is
    // rendered for them, never from or into the cache.
    let flash_pending = route.template.is_some() && session.contains_key(FLASH);
    // A response that sets the session cookie is the visitor's own: it
    // neither comes from nor goes into the shared cache, and is private.
    let visitors_own = flash_pending || reissued;
    if route.cache.is_some() && !visitors_own {
        return super::cached::respond(req, dynamic, route, values, not_found).await;
    }
    let view = session_view(&session, route.template.is_some());
    let slot = CsrfSlot::new(&dynamic.csrf, dynamic.csrf.cookie_token(req));
    let target = Target::of(req, &view);
    match produce(dynamic, route, &values, target, &slot).await {
        // Taking the flash changed the session, so that response sets its
        // cookie: it is the visitor's own, never a shared one.
        Ok(rendered) => send(req, dynamic, route, rendered, &slot, visitors_own),
        Err(Failure::NotFound) => not_found(),
        Err(Failure::Response(response)) => response,
    }
}

/// The path and query string a page is rendered for, and the session it sees.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub path: &'a str,
    pub query: &'a str,
    pub session: &'a SessionView,
}

impl<'a> Target<'a> {
    pub fn of(req: &'a HttpRequest, session: &'a SessionView) -> Target<'a> {
        Target {
            path: req.path(),
            query: req.query_string(),
            session,
        }
    }
}

/// Why a GET produced no page.
pub enum Failure {
    /// A `one` query found no row.
    NotFound,
    /// A database or template failure, already answered.
    Response(HttpResponse),
}

/// Runs a GET route's queries and renders the page.
pub async fn produce(
    dynamic: &Dynamic,
    route: &Route,
    values: &Values,
    target: Target<'_>,
    slot: &Arc<CsrfSlot>,
) -> Result<Rendered, Failure> {
    let results = read(dynamic, route, values)
        .await
        .map_err(|err| Failure::Response(database_failure(route, &err)))?;
    let data = shape(route, results).ok_or(Failure::NotFound)?;
    let page = Page {
        status: StatusCode::OK,
        data,
        values,
        errors: None,
        form: None,
        path: target.path,
        query: target.query,
        session: target.session,
    };
    render(dynamic, route, page, slot).map_err(|TemplateFailed| Failure::Response(internal_error()))
}

/// Sends a freshly rendered (uncached) page; `visitors_own` makes it private.
fn send(
    req: &HttpRequest,
    dynamic: &Dynamic,
    route: &Route,
    rendered: Rendered,
    slot: &CsrfSlot,
    visitors_own: bool,
) -> HttpResponse {
    let privacy = match privacy(dynamic, slot) {
        Privacy::Shared if visitors_own => Privacy::Private(None),
        privacy => privacy,
    };
    let body = Body::plain(rendered.body);
    finish(
        req,
        route,
        rendered.status,
        body,
        rendered.content_type,
        privacy,
        &[],
    )
}

/// Whether the rendered page carries the visitor's CSRF token.
pub fn privacy(dynamic: &Dynamic, slot: &CsrfSlot) -> Privacy {
    if slot.used() {
        Privacy::Private(slot.issued().map(|token| dynamic.csrf.set_cookie(token)))
    } else {
        Privacy::Shared
    }
}

async fn post(
    req: &HttpRequest,
    payload: Payload,
    dynamic: &Arc<Dynamic>,
    route: &Route,
    mut values: Values,
) -> HttpResponse {
    let form_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| {
            value
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the form as application/x-www-form-urlencoded\n",
        );
    }
    let body = match read_body(payload, dynamic.max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let pairs = params::parse_pairs(&String::from_utf8_lossy(&body));
    if let Err(refusal) = dynamic
        .csrf
        .verify(req, pairs.get(csrf::FIELD).map(String::as_str))
    {
        return text(StatusCode::FORBIDDEN, refusal.message());
    }
    match params::bind(&route.params, &params::parse_pairs(req.query_string())) {
        Ok(params) => values.extend(params),
        Err(errors) => return invalid_query(&errors),
    }
    let session = req.get_session();
    values.extend(session_values(&session, route));
    match params::bind(&route.fields, &pairs) {
        Ok(fields) => values.extend(fields),
        Err(errors) => return invalid_form(req, dynamic, route, values, errors, pairs).await,
    }
    if let Some(refusal) = oversized_session(dynamic, route, &session, &values) {
        return refusal;
    }
    let backend = dynamic.database.backend();
    let statements = route
        .exec
        .iter()
        .map(|statement| {
            (
                statement.text(backend).to_string(),
                args(&statement.params, &values),
            )
        })
        .collect();
    let returned = if route.exec.is_empty() {
        Row::new()
    } else {
        let started = Instant::now();
        let written = dynamic.database.write(statements, route.isolation).await;
        dynamic.observe(route, "exec", started.elapsed());
        match written {
            Ok(row) => row,
            Err(err) => return database_failure(route, &err),
        }
    };
    if let Some(cache) = &dynamic.cache {
        let tags: Vec<String> = route
            .invalidates
            .iter()
            .filter_map(|tag| fill_template(tag, &values, &returned, false).ok())
            .collect();
        cache.invalidate(&tags).await;
    }
    apply_session_changes(route, &session, &values, &returned);
    let Some(template) = &route.redirect else {
        return text(StatusCode::NO_CONTENT, "");
    };
    match fill_template(template, &values, &returned, true) {
        Ok(location) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Err(name) => {
            eprintln!(
                "kiln: route {}: redirect {template:?} names {{{name}}}, which is neither an input nor a RETURNING column",
                route.label
            );
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n")
        }
    }
}

/// Re-renders the form with its errors (422), or lists them as JSON.
async fn invalid_form(
    req: &HttpRequest,
    dynamic: &Dynamic,
    route: &Route,
    values: Values,
    errors: FieldErrors,
    submitted: BTreeMap<String, String>,
) -> HttpResponse {
    if route.template.is_none() {
        let body = serde_json::json!({ "errors": errors });
        return json(StatusCode::UNPROCESSABLE_ENTITY, &body);
    }
    let results = match read(dynamic, route, &values).await {
        Ok(results) => results,
        Err(err) => return database_failure(route, &err),
    };
    let data = shape(route, results).unwrap_or_default();
    let mut form = submitted;
    form.remove(csrf::FIELD);
    let view = session_view(&req.get_session(), false);
    let page = Page {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        data,
        values: &values,
        errors: Some(&errors),
        form: Some(&form),
        path: req.path(),
        query: req.query_string(),
        session: &view,
    };
    let slot = CsrfSlot::new(&dynamic.csrf, dynamic.csrf.cookie_token(req));
    match render(dynamic, route, page, &slot) {
        Ok(rendered) => send(req, dynamic, route, rendered, &slot, false),
        Err(TemplateFailed) => internal_error(),
    }
}

/// Runs the route's read queries on one connection.
async fn read(dynamic: &Dynamic, route: &Route, values: &Values) -> Result<Vec<Vec<Row>>, DbError> {
    if route.queries.is_empty() {
        return Ok(Vec::new());
    }
    let backend = dynamic.database.backend();
    let statements = route
        .queries
        .iter()
        .map(|query| {
            let statement = &query.statement;
            (
                statement.text(backend).to_string(),
                args(&statement.params, values),
            )
        })
        .collect();
    let started = Instant::now();
    let results = dynamic.database.read(statements).await;
    dynamic.observe(route, "queries", started.elapsed());
    results
}

/// Binds a statement's parameters, in placeholder order.
fn args(params: &[String], values: &Values) -> Vec<SqlValue> {
    params
        .iter()
        .map(|name| {
            values
                .iter()
                .find(|(known, _)| known == name)
                .map_or(SqlValue::Null, |(_, value)| value.clone())
        })
        .collect()
}

/// Reads a form body up to `limit` bytes.
async fn read_body(mut payload: Payload, limit: u64) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            text(
                StatusCode::BAD_REQUEST,
                "The request body could not be read\n",
            )
        })?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large\n",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `template` (a redirect or a cache tag) with each `{name}` replaced by an
/// input or a RETURNING column (percent-encoded for a URL); the error names
/// the placeholder it could not fill.
pub fn fill_template(
    template: &str,
    values: &[(String, SqlValue)],
    returned: &Row,
    url: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|at| open + at)
            .ok_or_else(|| rest[open..].to_string())?;
        let name = &rest[open + 1..close];
        let value = returned
            .get(name)
            .or_else(|| {
                values
                    .iter()
                    .find(|(known, _)| known == name)
                    .map(|(_, value)| value)
            })
            .ok_or_else(|| name.to_string())?;
        let text = match value {
            SqlValue::Text(text) => text.clone(),
            other => other.describe(),
        };
        if url {
            out.push_str(&crate::build::assets::percent_encode_path(&text).replace('/', "%2F"));
        } else {
            out.push_str(&text);
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn invalid_query(errors: &FieldErrors) -> HttpResponse {
    let mut message = String::from("Bad request:\n");
    for (name, problem) in errors {
        message.push_str(&format!("  {name} {problem}\n"));
    }
    HttpResponse::BadRequest()
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(message)
}

fn internal_error() -> HttpResponse {
    text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n")
}

fn database_failure(route: &Route, err: &DbError) -> HttpResponse {
    eprintln!("kiln: route {}: {err}", route.label);
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

fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(json_bytes(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_fill_inputs_and_returning_columns() {
        let values = vec![("slug".to_string(), SqlValue::Text("a b/c".into()))];
        let mut returned = Row::new();
        returned.insert("id".into(), SqlValue::Int(42));
        assert_eq!(
            fill_template("/p/{id}/{slug}?ok=1", &values, &returned, true).unwrap(),
            "/p/42/a%20b%2Fc?ok=1"
        );
        assert_eq!(
            fill_template("/p/{nope}", &values, &returned, true).unwrap_err(),
            "nope"
        );
        assert_eq!(
            fill_template("item:{slug}", &values, &returned, false).unwrap(),
            "item:a b/c"
        );
    }
}
