//! The app every worker runs, assembled in one place: the dynamic scope
//! (declared routes behind the session middleware), the live-reload
//! endpoints under `kiln watch`, and the default service — the server's
//! own endpoints, then the static pipeline. Every one of them answers
//! inside [`crate::server::concerns`]: the scopes wrapped in its
//! middleware, the default service through its function.

use std::sync::Arc;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, fn_service};
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};

use crate::dynamic::admission;
use crate::dynamic::app::DynamicApp;
use crate::dynamic::routes::Selected;
use crate::dynamic::session;
use crate::http::forwarded;
use crate::http::metrics::RouteClass;
use crate::http::pipeline;
use crate::server::concerns::{self, Concerns};
use crate::server::state::AppState;
use crate::server::transport::guard::ConnectionClock;
use crate::server::{cache_control, endpoints, live, status};

/// Registers the app's services (the order is the order they are tried).
pub(crate) fn services(
    state: Arc<AppState>,
    live: Option<Arc<live::LiveReload>>,
) -> impl FnOnce(&mut ServiceConfig) {
    move |config| {
        if let Some(dynamic) = &state.dynamic {
            config.service(dynamic_scope(Arc::clone(&state), Arc::clone(dynamic)));
        }
        if let Some(channel) = live {
            config.service(live_scope(Arc::clone(&state), channel));
        }
        config.default_service(fn_service(move |request: ServiceRequest| {
            let state = Arc::clone(&state);
            async move {
                let (req, _payload) = request.into_parts();
                let response = concerns::around(&req, &state, |req| answer_static(req, &state));
                Ok::<_, actix_web::Error>(ServiceResponse::new(req, response))
            }
        }));
    }
}

/// The admin listener's app (`server.admin_addr`): `/metrics`,
/// `/healthz`, the route cache's endpoints and the status page.
pub(crate) fn admin_services(state: Arc<AppState>) -> impl FnOnce(&mut ServiceConfig) {
    move |config| {
        config.default_service(fn_service(move |request: ServiceRequest| {
            let state = Arc::clone(&state);
            async move {
                let (req, _payload) = request.into_parts();
                let response = if cache_control::is_cache_path(req.path()) {
                    let answered = cache_control::answer(&req, &state).await;
                    concerns::around_admin(&req, &state, |_| (answered, RouteClass::Cache))
                } else if status::is_status_path(req.path()) {
                    concerns::around_admin(&req, &state, |req| status::answer(req, &state))
                } else {
                    concerns::around_admin(&req, &state, |req| endpoints::answer_admin(req, &state))
                };
                Ok::<_, actix_web::Error>(ServiceResponse::new(req, response))
            }
        }));
    }
}

/// The server's own endpoints, then the file table.
fn answer_static(req: &HttpRequest, state: &AppState) -> (HttpResponse, RouteClass) {
    if let Some(answered) = endpoints::answer(req, state) {
        return answered;
    }
    pipeline::serve_static(req, &state.table.load(), state.static_rules)
}

/// Answers a read with `handled`, unless its HTTP/1 client closes the
/// connection first: then the handler is dropped, and with it its query
/// (interrupted on SQLite, cancelled on PostgreSQL), and the access log
/// records 499 as nginx does. Writes run to the end (a transaction half
/// done is not undone by the client leaving); HTTP/2 streams are stopped
/// by their reset in `transport::h2`.
async fn until_client_gone(
    req: &HttpRequest,
    handled: impl std::future::Future<Output = HttpResponse>,
) -> HttpResponse {
    let connection = req.conn_data::<std::rc::Rc<ConnectionClock>>().cloned();
    match connection {
        Some(clock) if admission::Class::of(req.method()) == admission::Class::Read => {
            tokio::select! {
                response = handled => response,
                () = clock.client_gone() => HttpResponse::new(client_closed_request()),
            }
        }
        _ => handled.await,
    }
}

/// nginx's status for a request whose client left before the answer.
fn client_closed_request() -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(499).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST)
}

/// `session.secure = "auto"` on a server that speaks plain HTTP behind
/// TLS-terminating `trusted_proxies`: the session cookie is marked
/// `Secure` on responses to visitors the proxy says came over https
/// (actix-session fixes the attribute for the whole middleware).
#[derive(Clone)]
struct SecureBehindProxy {
    enabled: bool,
    proxies: forwarded::TrustedProxies,
    cookie_name: Arc<str>,
}

impl SecureBehindProxy {
    fn of(dynamic: &DynamicApp, state: &AppState) -> SecureBehindProxy {
        let config = &dynamic.session_config;
        SecureBehindProxy {
            enabled: config.secure == crate::config::CookieSecure::Auto
                && !state.tls
                && !state.proxies.is_empty(),
            proxies: state.proxies.clone(),
            cookie_name: config.cookie_name.as_str().into(),
        }
    }

    fn applies(&self, req: &HttpRequest) -> bool {
        self.enabled && forwarded::origin(req, &self.proxies, false).https
    }
}

/// Adds `Secure` to the `Set-Cookie` of cookie `name` where it lacks it.
fn mark_secure(headers: &mut actix_web::http::header::HeaderMap, name: &str) {
    use actix_web::http::header::{HeaderValue, SET_COOKIE};
    let prefix = format!("{name}=");
    let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).cloned().collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(SET_COOKIE);
    for cookie in cookies {
        let text = cookie.to_str().unwrap_or_default();
        let lacks_secure = text.starts_with(&prefix)
            && !text
                .split(';')
                .any(|attribute| attribute.trim().eq_ignore_ascii_case("secure"));
        let cookie = if lacks_secure {
            HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(cookie)
        } else {
            cookie
        };
        headers.append(SET_COOKIE, cookie);
    }
}

/// `kiln watch`'s client script and event stream.
fn live_scope(
    state: Arc<AppState>,
    channel: Arc<live::LiveReload>,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (scope, [events, client]) = live::scope_paths();
    web::scope(scope)
        .wrap(Concerns::new(state, RouteClass::Live))
        .route(
            events,
            web::get().to(move || {
                let channel = Arc::clone(&channel);
                async move { live::events(&channel) }
            }),
        )
        .route(client, web::get().to(|| async { live::client() }))
}

/// The scope that answers dynamic routes: selected by a guard (so static
/// requests never pass through it), wrapped in the session middleware and,
/// outside it, the concerns (which so see the session middleware's errors).
fn dynamic_scope(
    state: Arc<AppState>,
    dynamic: Arc<DynamicApp>,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let guard_dynamic = Arc::clone(&dynamic);
    let handle = session::SessionHandle(dynamic.sessions.clone());
    let middleware = session::middleware(
        handle,
        &dynamic.session_key,
        &dynamic.session_config,
        dynamic.tls,
    );
    let concerns = Concerns::new(Arc::clone(&state), RouteClass::Dynamic);
    let secure_cookie = SecureBehindProxy::of(&dynamic, &state);
    web::scope("")
        .guard(actix_web::guard::fn_guard(move |ctx| {
            let head = ctx.head();
            let selected = guard_dynamic.routes.select(&head.method, head.uri.path());
            if matches!(selected, Selected::None) {
                return false;
            }
            ctx.req_data_mut().insert(selected);
            true
        }))
        .wrap(middleware)
        .wrap_fn(move |request, service| {
            let secure = secure_cookie.applies(request.request());
            let cookie_name = Arc::clone(&secure_cookie.cookie_name);
            let answered = service.call(request);
            async move {
                let mut response = answered.await?;
                if secure {
                    mark_secure(response.headers_mut(), &cookie_name);
                }
                Ok(response)
            }
        })
        .wrap(concerns)
        .default_service(fn_service(move |request: ServiceRequest| {
            let state = Arc::clone(&state);
            let dynamic = Arc::clone(&dynamic);
            async move {
                let (req, payload) = request.into_parts();
                // The guard already selected the route.
                let selected = req.extensions_mut().remove::<Selected>();
                let selected =
                    selected.unwrap_or_else(|| dynamic.routes.select(req.method(), req.path()));
                let response = match selected {
                    Selected::Route(index, values) => {
                        let route = &dynamic.routes.routes[index];
                        let not_found = || pipeline::not_found(&req, &state.table.load());
                        let handled = crate::dynamic::handle::handle(
                            &req, payload, &dynamic, route, values, not_found,
                        );
                        until_client_gone(&req, handled).await
                    }
                    Selected::WrongMethod(allow) => pipeline::wrong_method(&req, &allow),
                    Selected::None => answer_static(&req, &state).0,
                };
                Ok::<_, actix_web::Error>(ServiceResponse::new(req, response))
            }
        }))
}
