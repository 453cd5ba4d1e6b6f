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

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use minijinja::value::Value;

use super::csrf::{self, Csrf};
use super::params::{self, FieldErrors};
use super::views::{CsrfSlot, Views, csrf_variable};
use super::{Route, Routes};
use crate::build::compress::compress_fast;
use crate::config::Encoding;
use crate::serve::conditional::{self, Outcome, Validators};
use crate::serve::db::{Database, DbError, Row, SqlValue};
use crate::serve::handler::text;
use crate::serve::metrics::family;
use crate::serve::negotiate::{self, Choice};

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
    slow_queries: std::sync::atomic::AtomicU64,
}

impl Dynamic {
    pub fn new(
        routes: Routes,
        database: Arc<Database>,
        views: Views,
        csrf: Csrf,
        slow_query: Option<Duration>,
        max_body_bytes: u64,
        templates_dir: PathBuf,
    ) -> Dynamic {
        Dynamic {
            routes,
            database,
            views: ArcSwap::from_pointee(views),
            csrf,
            slow_query,
            max_body_bytes,
            templates_dir,
            slow_queries: Default::default(),
        }
    }

    /// Appends pool and per-route query series to a `/metrics` body.
    pub fn render_metrics(&self, out: &mut String) {
        self.database.render_metrics(out);
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
    fn observe(&self, route: &Route, what: &str, elapsed: Duration) {
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
type Values = Vec<(String, SqlValue)>;

/// Answers a request selected for `route`. `not_found` renders the site's
/// 404 page.
pub async fn respond(
    req: &HttpRequest,
    payload: Payload,
    dynamic: &Dynamic,
    route: &Route,
    path_values: Values,
    not_found: impl FnOnce() -> HttpResponse,
) -> HttpResponse {
    if route.method == Method::POST {
        post(req, payload, dynamic, route, path_values).await
    } else {
        get(req, dynamic, route, path_values, not_found).await
    }
}

async fn get(
    req: &HttpRequest,
    dynamic: &Dynamic,
    route: &Route,
    mut values: Values,
    not_found: impl FnOnce() -> HttpResponse,
) -> HttpResponse {
    let pairs = params::parse_pairs(req.query_string());
    match params::bind(&route.params, &pairs) {
        Ok(params) => values.extend(params),
        Err(errors) => return invalid_query(&errors),
    }
    let results = match read(dynamic, route, &values).await {
        Ok(results) => results,
        Err(err) => return database_failure(route, &err),
    };
    let Some(data) = shape(route, results) else {
        return not_found();
    };
    let page = Page {
        status: StatusCode::OK,
        data,
        values: &values,
        errors: None,
        form: None,
    };
    render(req, dynamic, route, page)
}

async fn post(
    req: &HttpRequest,
    payload: Payload,
    dynamic: &Dynamic,
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
    match params::bind(&route.fields, &pairs) {
        Ok(fields) => values.extend(fields),
        Err(errors) => return invalid_form(req, dynamic, route, values, errors, pairs).await,
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
    let started = Instant::now();
    let written = dynamic.database.write(statements, route.isolation).await;
    dynamic.observe(route, "exec", started.elapsed());
    let returned = match written {
        Ok(row) => row,
        Err(err) => return database_failure(route, &err),
    };
    let Some(template) = &route.redirect else {
        return text(StatusCode::NO_CONTENT, "");
    };
    match redirect_location(template, &values, &returned) {
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
    let page = Page {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        data,
        values: &values,
        errors: Some(&errors),
        form: Some(&form),
    };
    render(req, dynamic, route, page)
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

/// Query results by name: a list of rows, or one row for `one` queries.
/// `None` when a `one` query found nothing (404).
fn shape(route: &Route, results: Vec<Vec<Row>>) -> Option<BTreeMap<String, serde_json::Value>> {
    let mut data = BTreeMap::new();
    for (query, rows) in route.queries.iter().zip(results) {
        let value = if query.one {
            serde_json::to_value(rows.into_iter().next()?)
        } else {
            serde_json::to_value(rows)
        };
        data.insert(query.name.clone(), value.unwrap_or_default());
    }
    Some(data)
}

/// What a rendered response is made of.
struct Page<'a> {
    status: StatusCode,
    data: BTreeMap<String, serde_json::Value>,
    values: &'a Values,
    errors: Option<&'a FieldErrors>,
    form: Option<&'a BTreeMap<String, String>>,
}

fn render(req: &HttpRequest, dynamic: &Dynamic, route: &Route, page: Page<'_>) -> HttpResponse {
    let Some(template) = &route.template else {
        let body = serde_json::to_value(&page.data).unwrap_or_default();
        return finish(
            req,
            route,
            page.status,
            json_bytes(&body),
            "application/json",
            None,
        );
    };
    let slot = CsrfSlot::new(&dynamic.csrf, dynamic.csrf.cookie_token(req));
    let path = req.path();
    let params: BTreeMap<&str, &SqlValue> = page
        .values
        .iter()
        .map(|(name, value)| (name.as_str(), value))
        .collect();
    let mut context: BTreeMap<String, Value> = page
        .data
        .into_iter()
        .map(|(name, value)| (name, Value::from_serialize(value)))
        .collect();
    context.insert("params".into(), Value::from_serialize(&params));
    context.insert(
        "request".into(),
        Value::from_serialize(serde_json::json!({ "path": path, "query": req.query_string() })),
    );
    // `page.output` places relative URLs (base_url = "./") as for a page
    // at this path.
    context.insert(
        "page".into(),
        Value::from_serialize(serde_json::json!({
            "url": path,
            "output": path.trim_start_matches('/'),
        })),
    );
    context.insert(
        "errors".into(),
        Value::from_serialize(page.errors.cloned().unwrap_or_default()),
    );
    context.insert(
        "form".into(),
        Value::from_serialize(page.form.cloned().unwrap_or_default()),
    );
    let (name, value) = csrf_variable(&slot);
    context.insert(name.into(), value);
    let views = dynamic.views.load();
    context.insert("data".into(), views.data.clone());
    match views.render(template, Value::from(context)) {
        Ok(html) => {
            let csrf = slot
                .used()
                .then(|| slot.issued().map(|token| dynamic.csrf.set_cookie(token)));
            finish(
                req,
                route,
                page.status,
                html.into_bytes(),
                "text/html; charset=utf-8",
                csrf,
            )
        }
        Err(err) => {
            let diagnostic = crate::build::pages::template_diagnostic(
                &dynamic.templates_dir,
                template,
                template,
                &err,
            );
            eprintln!("kiln: route {}: {diagnostic}", route.label);
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n")
        }
    }
}

/// Adds the entity tag, answers preconditions, compresses, and sets the
/// route's caching headers. `csrf` is `Some` when the body carries a CSRF
/// token (with the cookie to set when it was issued now): such a response
/// is private to its visitor.
fn finish(
    req: &HttpRequest,
    route: &Route,
    status: StatusCode,
    body: Vec<u8>,
    content_type: &'static str,
    csrf: Option<Option<String>>,
) -> HttpResponse {
    let digest = blake3::hash(&body);
    let tag = &digest.to_hex()[..20];
    let encoding = choose_encoding(req, body.len());
    let etag = match encoding {
        Some(encoding) => format!("\"{tag}-{}\"", encoding.token()),
        None => format!("\"{tag}\""),
    };
    let mut builder = HttpResponse::build(status);
    builder.insert_header((header::CONTENT_TYPE, content_type));
    builder.insert_header((
        header::VARY,
        if csrf.is_some() {
            "Accept-Encoding, Cookie"
        } else {
            "Accept-Encoding"
        },
    ));
    match &csrf {
        Some(cookie) => {
            builder.insert_header((header::CACHE_CONTROL, "private, no-cache"));
            if let Some(cookie) = cookie {
                builder.insert_header((header::SET_COOKIE, cookie.as_str()));
            }
        }
        None => {
            builder.insert_header((header::CACHE_CONTROL, route.cache_control.clone()));
        }
    }
    if status == StatusCode::OK {
        builder.insert_header((header::ETAG, etag.as_str()));
        let validators = Validators {
            etag: &etag,
            last_modified: None,
        };
        match conditional::evaluate(
            req.headers(),
            req.method() == Method::GET || req.method() == Method::HEAD,
            validators,
        ) {
            Outcome::NotModified => return builder.status(StatusCode::NOT_MODIFIED).finish(),
            Outcome::PreconditionFailed => {
                return builder.status(StatusCode::PRECONDITION_FAILED).finish();
            }
            Outcome::Proceed { .. } => {}
        }
    }
    let body = match encoding {
        Some(encoding) => {
            builder.insert_header((header::CONTENT_ENCODING, encoding.token()));
            compress_fast(encoding, &body)
        }
        None => body,
    };
    if req.method() == Method::HEAD {
        let len = body.len() as u64;
        return builder.body(actix_web::body::SizedStream::new(
            len,
            futures_util::stream::empty::<Result<bytes::Bytes, actix_web::Error>>(),
        ));
    }
    builder.body(body)
}

/// Bodies below this are sent as they are: compressing them saves less
/// than the headers it adds.
const COMPRESS_MIN_BYTES: usize = 512;

fn choose_encoding(req: &HttpRequest, len: usize) -> Option<Encoding> {
    if len < COMPRESS_MIN_BYTES {
        return None;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .map(HeaderValue::as_bytes);
    let available = [Some(Encoding::Brotli), Some(Encoding::Gzip), None];
    match negotiate::choose(accept, &available) {
        Choice::Variant(index) => available[index],
        Choice::NotAcceptable => None,
    }
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

/// `redirect` with each `{name}` replaced by an input or a RETURNING
/// column, percent-encoded; the error names the placeholder it could not fill.
fn redirect_location(template: &str, values: &Values, returned: &Row) -> Result<String, String> {
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
        out.push_str(&crate::build::assets::percent_encode_path(&text).replace('/', "%2F"));
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

fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
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
            redirect_location("/p/{id}/{slug}?ok=1", &values, &returned).unwrap(),
            "/p/42/a%20b%2Fc?ok=1"
        );
        assert_eq!(
            redirect_location("/p/{nope}", &values, &returned).unwrap_err(),
            "nope"
        );
    }
}
