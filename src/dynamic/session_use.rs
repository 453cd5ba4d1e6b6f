//! How dynamic routes use the visitor's session: the `session.KEY` values
//! their SQL reads, what templates see (`session`, and `flash` shown once),
//! the changes `[route.session]` makes after a write (with the size limit
//! checked first), and re-issuing cookie-only sessions.

use actix_session::Session;
use actix_web::HttpResponse;
use actix_web::http::StatusCode;

use crate::dynamic::app::DynamicApp;
use crate::dynamic::db::{Row, SqlValue};
use crate::dynamic::page::SessionView;
use crate::dynamic::routes::Route;
use crate::dynamic::routes::Values;
use crate::dynamic::routes::fill::fill_template;
use crate::http::pipeline::text;

/// A cookie session (`session.store = "cookie"`) carries its last-use time
/// in the cookie: when the store marks it due, changing the session makes
/// the middleware re-issue the cookie with the time moved.
/// Returns whether it will.
pub(crate) fn refresh_cookie_session(session: &Session) -> bool {
    // Removing even a missing key marks the session changed: check first.
    let due = session.contains_key(crate::dynamic::session::COOKIE_TOUCH);
    if due {
        session.remove(crate::dynamic::session::COOKIE_TOUCH);
    }
    due
}

/// The session values a route's `[route.session]` sets, filled from its
/// inputs and RETURNING columns, as actix-session stores them (JSON).
pub(crate) fn session_sets(
    route: &Route,
    values: &[(String, SqlValue)],
    returned: &Row,
) -> Vec<(String, String)> {
    let Some(changes) = &route.session else {
        return Vec::new();
    };
    let mut sets: Vec<(String, String)> = changes
        .set
        .iter()
        .filter_map(|(key, template)| {
            Some((
                key.clone(),
                fill_template(template, values, returned, false).ok()?,
            ))
        })
        .collect();
    if let Some(flash) = &changes.flash
        && let Ok(message) = fill_template(flash, values, returned, false)
    {
        sets.push((FLASH.to_string(), message));
    }
    sets
}

/// Refuses (413) a form whose session changes would exceed
/// `session.max_bytes`, before anything is written.
pub(crate) fn oversized_session(
    dynamic: &DynamicApp,
    route: &Route,
    session: &Session,
    values: &[(String, SqlValue)],
) -> Option<HttpResponse> {
    let sessions = dynamic.sessions.as_ref()?;
    let mut state = session.entries().clone();
    for (key, value) in session_sets(route, values, &Row::new()) {
        state.insert(key, serde_json::to_string(&value).unwrap_or_default());
    }
    let bytes = crate::dynamic::session::record::state_bytes(&state);
    if bytes <= sessions.max_bytes {
        return None;
    }
    tracing::warn!(
        "route {}: the session would hold {bytes} bytes, over session.max_bytes = {}",
        route.label,
        sessions.max_bytes
    );
    Some(text(
        StatusCode::PAYLOAD_TOO_LARGE,
        "This form would store more in your session than the server allows\n",
    ))
}

/// Applies `[route.session]` after a successful write: sets, clears, the
/// flash message, and a new id when the route rotates it (the old id is
/// deleted from the store, so it cannot be replayed).
pub(crate) fn apply_session_changes(
    route: &Route,
    session: &Session,
    values: &[(String, SqlValue)],
    returned: &Row,
) {
    let Some(changes) = &route.session else {
        return;
    };
    for (key, value) in session_sets(route, values, returned) {
        let _ = session.insert(key, value);
    }
    for key in &changes.clear {
        session.remove(key);
    }
    if changes.rotate {
        session.renew();
    }
}

/// The session key of the flash message.
pub(crate) const FLASH: &str = "_flash";

/// `session.KEY` values for the session keys the route reads.
pub(crate) fn session_values(session: &Session, route: &Route) -> Values {
    route
        .session_params
        .iter()
        .map(|key| {
            let value = session
                .get::<String>(key)
                .ok()
                .flatten()
                .map_or(SqlValue::Null, SqlValue::Text);
            (
                format!("{}{key}", crate::dynamic::routes::SESSION_PREFIX),
                value,
            )
        })
        .collect()
}

/// What a template sees of the session; the flash message is taken (shown once).
pub(crate) fn session_view(session: &Session, take_flash: bool) -> SessionView {
    let entries = session
        .entries()
        .iter()
        .filter(|(key, _)| !key.starts_with('_'))
        .map(|(key, json)| (key.clone(), serde_json::from_str(json).unwrap_or_default()))
        .collect();
    // Removing marks the session changed (a cookie is sent): only when
    // there is a message to take.
    let flash = if take_flash && session.contains_key(FLASH) {
        session.remove_as::<String>(FLASH).and_then(Result::ok)
    } else {
        None
    };
    SessionView { entries, flash }
}
