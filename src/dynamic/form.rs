//! Answering a form (a POST route): check the content type, size and CSRF
//! token, bind the fields (422 with every field error when they are
//! invalid: the template re-rendered, or JSON), run the write statements in
//! one retried transaction, drop the cache tags the route invalidates,
//! apply its session changes, and redirect (303, post/redirect/get).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use actix_session::SessionExt;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use crate::dynamic::admission::Class;
use crate::dynamic::app::DynamicApp;
use crate::dynamic::csrf;
use crate::dynamic::db::Row;
use crate::dynamic::page::{Page, TemplateFailed, render, shape};
use crate::dynamic::produce::{args, read};
use crate::dynamic::response::{bad_query, database_failure, internal_error, json, send};
use crate::dynamic::routes::fill::fill_template;
use crate::dynamic::routes::params::{self, FieldErrors};
use crate::dynamic::routes::{Route, Values};
use crate::dynamic::session_use::{
    apply_session_changes, oversized_session, session_values, session_view,
};
use crate::dynamic::views::CsrfSlot;
use crate::http::pipeline::text;

pub(crate) async fn post(
    req: &HttpRequest,
    payload: Payload,
    app: &Arc<DynamicApp>,
    route: &Route,
    mut values: Values,
) -> HttpResponse {
    // The client behind trusted proxies, for the per-client write rate:
    // checked before the body is read or anything else is done.
    let client = crate::http::forwarded::origin(req, &app.proxies, app.tls).client;
    if let Some(refusal) = app.admission.refuse_write(client) {
        return refusal;
    }
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
    let body = match crate::http::request_body::read(payload, app.body_limits).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let pairs = params::parse_pairs(&String::from_utf8_lossy(&body));
    if let Err(refusal) = app
        .csrf
        .verify(req, pairs.get(csrf::FIELD).map(String::as_str))
    {
        return text(StatusCode::FORBIDDEN, refusal.message());
    }
    match params::bind(&route.params, &params::parse_pairs(req.query_string())) {
        Ok(params) => values.extend(params),
        Err(errors) => return bad_query(&errors),
    }
    let session = req.get_session();
    values.extend(session_values(&session, route));
    match params::bind(&route.fields, &pairs) {
        Ok(fields) => values.extend(fields),
        Err(errors) => return invalid_form(req, app, route, values, errors, pairs).await,
    }
    if let Some(refusal) = oversized_session(app, route, &session, &values) {
        return refusal;
    }
    let backend = app.database.backend();
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
        let _place = match app.admission.admit(Class::Write).await {
            Ok(place) => place,
            Err(refusal) => return refusal,
        };
        let started = Instant::now();
        // Jobs the route enqueues commit with its write or not at all.
        let followup = app
            .jobs
            .as_ref()
            .and_then(|jobs| jobs.followup(route, &values));
        let written = app
            .database
            .write_then(statements, route.isolation, followup)
            .await;
        app.observe(route, "exec", started.elapsed());
        match written {
            Ok(row) => {
                if let Some(jobs) = &app.jobs {
                    jobs.enqueued_by(route);
                }
                row
            }
            Err(err) => return database_failure(route, &err),
        }
    };
    if let Some(cache) = &app.cache {
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
            tracing::error!(
                "route {}: redirect {template:?} names {{{name}}}, which is neither an input nor a RETURNING column",
                route.label
            );
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error\n")
        }
    }
}

/// Re-renders the form with its errors (422), or lists them as JSON.
async fn invalid_form(
    req: &HttpRequest,
    app: &DynamicApp,
    route: &Route,
    values: Values,
    errors: FieldErrors,
    submitted: BTreeMap<String, String>,
) -> HttpResponse {
    if route.template.is_none() {
        let body = serde_json::json!({ "errors": errors });
        return json(StatusCode::UNPROCESSABLE_ENTITY, &body);
    }
    let _place = match app.admission.admit(Class::Read).await {
        Ok(place) => place,
        Err(refusal) => return refusal,
    };
    let results = match read(app, route, &values).await {
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
    let slot = CsrfSlot::new(&app.csrf, app.csrf.cookie_token(req));
    match render(app, route, page, &slot) {
        Ok(rendered) => send(req, app, route, rendered, &slot, false),
        Err(TemplateFailed) => internal_error(),
    }
}
