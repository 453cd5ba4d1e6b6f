//! Turning query results into a body: the template with its context
//! (results by query name, `params`, `request`, `page`, `data`, and for a
//! re-rendered form `errors` and `form`), or JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use minijinja::value::Value;

use crate::dynamic::app::DynamicApp;
use crate::dynamic::db::{Row, SqlValue};
use crate::dynamic::routes::Route;
use crate::dynamic::routes::params::FieldErrors;
use crate::dynamic::views::{CsrfSlot, csrf_variable};

/// Query results by name: a list of rows, or one row for `one` queries.
/// `None` when a `one` query found nothing (404).
pub(crate) fn shape(
    route: &Route,
    results: Vec<Vec<Row>>,
) -> Option<BTreeMap<String, serde_json::Value>> {
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

/// What a page is rendered from.
pub(crate) struct Page<'a> {
    pub status: StatusCode,
    pub data: BTreeMap<String, serde_json::Value>,
    pub values: &'a [(String, SqlValue)],
    pub errors: Option<&'a FieldErrors>,
    pub form: Option<&'a BTreeMap<String, String>>,
    /// The request's path and query string.
    pub path: &'a str,
    pub query: &'a str,
    pub session: &'a SessionView,
}

/// What a template sees of the visitor's session.
#[derive(Debug, Default)]
pub(crate) struct SessionView {
    /// Its values (internal ones, starting with `_`, left out).
    pub entries: serde_json::Map<String, serde_json::Value>,
    /// A message set by the previous form, shown once.
    pub flash: Option<String>,
}

impl SessionView {
    /// Only the session values among `values` (`session.KEY`): what a
    /// cached page may show, since its key varies on exactly those.
    pub(crate) fn of_values(values: &[(String, SqlValue)]) -> SessionView {
        let entries = values
            .iter()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix(crate::dynamic::routes::SESSION_PREFIX)?;
                Some((
                    key.to_string(),
                    serde_json::to_value(value).unwrap_or_default(),
                ))
            })
            .collect();
        SessionView {
            entries,
            flash: None,
        }
    }
}

/// A rendered body, before headers.
pub(crate) struct Rendered {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// `Link` header values: the page's preload hints.
    pub links: Vec<String>,
}

/// A template failed to render (already logged with its file and line).
#[derive(Debug)]
pub(crate) struct TemplateFailed;

/// Renders `page` with the route's template (printing `slot`'s token where
/// the template asks for one), or as JSON. A template error is logged with
/// its file and line; the caller answers 500.
pub(crate) fn render(
    dynamic: &DynamicApp,
    route: &Route,
    page: Page<'_>,
    slot: &Arc<CsrfSlot>,
) -> Result<Rendered, TemplateFailed> {
    let Some(template) = &route.template else {
        let body = serde_json::to_value(&page.data).unwrap_or_default();
        return Ok(Rendered {
            status: page.status,
            body: json_bytes(&body),
            content_type: "application/json",
            links: Vec::new(),
        });
    };
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
        Value::from_serialize(serde_json::json!({ "path": page.path, "query": page.query })),
    );
    // `page.output` places relative URLs (base_url = "./") as for a page
    // at this path.
    context.insert(
        "page".into(),
        Value::from_serialize(serde_json::json!({
            "url": page.path,
            "output": page.path.trim_start_matches('/'),
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
    context.insert(
        "session".into(),
        Value::from_serialize(&page.session.entries),
    );
    context.insert("flash".into(), Value::from_serialize(&page.session.flash));
    let (name, value) = csrf_variable(slot);
    context.insert(name.into(), value);
    let views = dynamic.views.load();
    context.insert("data".into(), views.data.clone());
    match views.render(template, Value::from(context)) {
        Ok(html) => {
            let (html, links) = views.post_process(html, page.path);
            Ok(Rendered {
                status: page.status,
                body: if dynamic.live_reload {
                    crate::site::live_reload::with_live_reload(&html).into_bytes()
                } else {
                    html.into_bytes()
                },
                content_type: "text/html; charset=utf-8",
                links,
            })
        }
        Err(err) => {
            let diagnostic = crate::site::templates::template_diagnostic(
                &dynamic.templates_dir,
                template,
                template,
                &err,
            );
            tracing::error!("route {}: {diagnostic}", route.label);
            Err(TemplateFailed)
        }
    }
}

pub(crate) fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
