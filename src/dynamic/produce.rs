//! Producing a GET route's page: its read queries on one pooled
//! connection, shaped by query name, rendered with its template (or as
//! JSON). Database failures never hang or crash a worker: no connection in
//! time, or a database that stayed busy, is a 503 with `Retry-After`; a
//! failing statement is a 500 logged with its route.

use std::sync::Arc;
use std::time::Instant;

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::http::StatusCode;

use crate::dynamic::admission::Class;
use crate::dynamic::app::DynamicApp;
use crate::dynamic::db::{DbError, Row, SqlValue};
use crate::dynamic::page::{Page, Rendered, SessionView, TemplateFailed, render, shape};
use crate::dynamic::response::{database_failure, internal_error};
use crate::dynamic::routes::{Route, Values};
use crate::dynamic::views::CsrfSlot;

/// The path and query string a page is rendered for, and the session it sees.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub path: &'a str,
    pub query: &'a str,
    pub session: &'a SessionView,
}

impl<'a> Target<'a> {
    pub(crate) fn of(req: &'a HttpRequest, session: &'a SessionView) -> Target<'a> {
        Target {
            path: req.path(),
            query: req.query_string(),
            session,
        }
    }
}

/// Why a GET produced no page.
pub(crate) enum Failure {
    /// A `one` query found no row.
    NotFound,
    /// A database or template failure, already answered.
    Response(HttpResponse),
    /// The page cannot be cached: its template changed the CSRF token as
    /// it rendered it (a filter), so the cache cannot put each visitor's
    /// token in its place, or a new build was loaded while it rendered. It
    /// is rendered for the request instead.
    Uncacheable,
}

/// Runs a GET route's queries and renders the page.
pub(crate) async fn produce(
    app: &DynamicApp,
    route: &Route,
    values: &Values,
    target: Target<'_>,
    slot: &Arc<CsrfSlot>,
) -> Result<Rendered, Failure> {
    let _place = app
        .admission
        .admit(Class::Read)
        .await
        .map_err(Failure::Response)?;
    let results = read(app, route, values)
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
    render(app, route, page, slot).map_err(|TemplateFailed| Failure::Response(internal_error()))
}

/// Runs the route's read queries on one connection.
pub(crate) async fn read(
    app: &DynamicApp,
    route: &Route,
    values: &Values,
) -> Result<Vec<Vec<Row>>, DbError> {
    if route.queries.is_empty() {
        return Ok(Vec::new());
    }
    let backend = app.database.backend();
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
    let results = app.database.read(statements).await;
    app.observe(route, "queries", started.elapsed());
    results
}

/// Binds a statement's parameters, in placeholder order.
pub(crate) fn args(params: &[String], values: &Values) -> Vec<SqlValue> {
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
