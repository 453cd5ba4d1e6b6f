//! Answering a request selected for a dynamic route: a POST goes to the
//! form ([`crate::dynamic::form`]); a GET binds its inputs and the
//! visitor's session values, then is answered from the response cache
//! ([`crate::dynamic::cached`]) when its route has a cache policy and the
//! page is not the visitor's own, or rendered afresh.

use std::sync::Arc;

use actix_session::SessionExt;
use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};

use crate::dynamic::app::DynamicApp;
use crate::dynamic::produce::{Failure, Target, produce};
use crate::dynamic::response::{bad_query, send};
use crate::dynamic::routes::{Route, Values, params};
use crate::dynamic::session_use::{FLASH, refresh_cookie_session, session_values, session_view};
use crate::dynamic::views::CsrfSlot;
use crate::dynamic::{cached, form};

/// Answers a request selected for `route`, timing it for the route's
/// latency histogram. `not_found` renders the site's 404 page.
pub(crate) async fn handle(
    req: &HttpRequest,
    payload: Payload,
    app: &Arc<DynamicApp>,
    route: &Route,
    path_values: Values,
    not_found: impl FnOnce() -> HttpResponse,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let response = answer(req, payload, app, route, path_values, not_found).await;
    route.request_time.observe(started.elapsed());
    response
}

async fn answer(
    req: &HttpRequest,
    payload: Payload,
    app: &Arc<DynamicApp>,
    route: &Route,
    path_values: Values,
    not_found: impl FnOnce() -> HttpResponse,
) -> HttpResponse {
    if route.method == Method::POST {
        return form::post(req, payload, app, route, path_values).await;
    }
    let mut values = path_values;
    match params::bind(&route.params, &params::parse_pairs(req.query_string())) {
        Ok(params) => values.extend(params),
        Err(errors) => return bad_query(&errors),
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
    if let (Some(cache), Some(policy)) = (&app.cache, &route.cache)
        && !visitors_own
    {
        // Free text (a search) is rendered for its request alone.
        if policy.bypassed_by(&values) {
            cache.metrics.bypassed();
        } else {
            match cached::respond(req, app, cache, route, policy, &values).await {
                Ok(response) | Err(Failure::Response(response)) => return response,
                Err(Failure::NotFound) => return not_found(),
                Err(Failure::Uncacheable) => {}
            }
        }
    }
    let view = session_view(&session, route.template.is_some());
    let slot = CsrfSlot::new(&app.csrf, app.csrf.cookie_token(req));
    let target = Target::of(req, &view);
    match produce(app, route, &values, target, &slot).await {
        // Taking the flash changed the session, so that response sets its
        // cookie: it is the visitor's own, never a shared one.
        Ok(rendered) => send(req, app, route, rendered, &slot, visitors_own),
        Err(Failure::Response(response)) => response,
        // Only a fill for the cache says Uncacheable.
        Err(Failure::NotFound | Failure::Uncacheable) => not_found(),
    }
}
