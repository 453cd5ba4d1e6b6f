//! GET routes with a `[route.cache]` policy: the rendered response comes
//! from the route cache, keyed by the route and the typed inputs it varies
//! on. A miss renders once for every request waiting on the key; a stale
//! entry is served while one background task renders its replacement.
//! Pages with a CSRF field are cached with a placeholder where the token
//! goes, filled per visitor when served. Start-up warming renders the
//! configured URLs into the cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use crate::config::Encoding;
use crate::dynamic::app::DynamicApp;
use crate::dynamic::db::Row;
use crate::dynamic::page::SessionView;
use crate::dynamic::produce::{Failure, Target, produce};
use crate::dynamic::response::{Body, COMPRESS_MIN_BYTES, Privacy, finish};
use crate::dynamic::response_cache::entry::{
    Entry, Freshness, body_tag, csrf_placeholder, cut_placeholders, now_ms,
    placeholder_transformed, splice_token,
};
use crate::dynamic::response_cache::{RouteCache, generation_of};
use crate::dynamic::routes::Values;
use crate::dynamic::routes::fill::fill_template;
use crate::dynamic::routes::params;
use crate::dynamic::routes::{CachePolicy, Route, Selected};
use crate::dynamic::views::CsrfSlot;
use crate::site::codec::compress_fast;

/// Answers a cached GET route.
pub(crate) async fn respond(
    req: &HttpRequest,
    dynamic: &Arc<DynamicApp>,
    cache: &RouteCache,
    route: &Route,
    policy: &CachePolicy,
    values: &Values,
) -> Result<HttpResponse, Failure> {
    if policy.token_changed.load(Ordering::Relaxed) {
        return Err(Failure::Uncacheable);
    }
    let key = policy.key(&dynamic.views.load().generation, values);
    let view = SessionView::of_values(values);
    let target = Target::of(req, &view);
    let filled_here = AtomicBool::new(false);
    let result = cache
        .get_or_fill(&key, &policy.admit, || async {
            filled_here.store(true, Ordering::Relaxed);
            make_entry(dynamic, route, policy, values, target, &key).await
        })
        .await;
    let entry = result?;
    let state = if filled_here.load(Ordering::Relaxed) {
        "miss"
    } else if entry.freshness(now_ms()) == Freshness::Stale {
        cache.metrics.stale_served();
        if cache.begin_refresh(&key) {
            refresh_in_background(dynamic, route, values.clone(), key, target);
        }
        "stale"
    } else {
        "hit"
    };
    policy.answers.count(state);
    Ok(serve(req, dynamic, route, &entry, state))
}

/// Renders the cache entry for `key`, made of `values`.
pub(crate) async fn make_entry(
    dynamic: &DynamicApp,
    route: &Route,
    policy: &CachePolicy,
    values: &Values,
    target: Target<'_>,
    key: &str,
) -> Result<Entry, Failure> {
    let placeholder = csrf_placeholder();
    let slot = CsrfSlot::placeholder(&dynamic.csrf, placeholder);
    let rendered = produce(dynamic, route, values, target, &slot).await?;
    // A new build was loaded while this page rendered: it may link to
    // either build, so it is not stored under the generation it was asked
    // for (the request renders again, with the new build).
    if generation_of(key) != Some(&*dynamic.views.load().generation) {
        return Err(Failure::Uncacheable);
    }
    let csrf = slot.used();
    let (body, csrf_at) = if csrf {
        cut_placeholders(&rendered.body, placeholder)
    } else {
        (rendered.body, Vec::new())
    };
    if csrf && (csrf_at.is_empty() || placeholder_transformed(&body, placeholder)) {
        if !policy.token_changed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "route {}: its template changes csrf_token() as it renders it (a filter?), so the cache cannot give each visitor their own token; its pages are rendered for each request. Render the token as it is (csrf_field(), or {{{{ csrf_token() }}}}) to cache them.",
                route.label
            );
        }
        return Err(Failure::Uncacheable);
    }
    let tags = policy
        .tags
        .iter()
        .filter_map(|tag| fill_template(tag, values, &Row::new(), false).ok())
        .chain(policy.implicit_tags(values))
        .collect();
    let body = Bytes::from(body);
    // Compressed once here rather than on every hit; a CSRF page differs
    // per visitor, so it is compressed when served.
    let (br, gzip) = if !csrf && body.len() >= COMPRESS_MIN_BYTES {
        (
            Some(Bytes::from(compress_fast(Encoding::Brotli, &body))),
            Some(Bytes::from(compress_fast(Encoding::Gzip, &body))),
        )
    } else {
        (None, None)
    };
    let now = now_ms();
    let fresh_until_ms = now + policy.ttl.as_millis() as u64;
    Ok(Entry {
        tag: body_tag(&body),
        status: rendered.status.as_u16(),
        content_type: rendered.content_type.to_string(),
        created_ms: now,
        fresh_until_ms,
        stale_until_ms: fresh_until_ms + policy.stale.as_millis() as u64,
        tags,
        csrf,
        csrf_at,
        body,
        br,
        gzip,
        links: rendered.links,
        // Set by the cache when it stores the entry.
        epoch: 0,
    })
}

/// Sends an entry; with `server.debug_headers`, `Age` and `X-Kiln-Cache`
/// (`hit`, `miss`, `stale`) say how.
fn serve(
    req: &HttpRequest,
    dynamic: &DynamicApp,
    route: &Route,
    entry: &Entry,
    state: &str,
) -> HttpResponse {
    let age = (now_ms().saturating_sub(entry.created_ms) / 1000).to_string();
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    if dynamic.debug_headers {
        extra.push(("age", age));
        extra.push(("x-kiln-cache", state.to_string()));
    }
    extra.extend(crate::dynamic::response::link_header(&entry.links));
    let extra = extra.as_slice();
    let status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    if entry.csrf {
        let (secret, cookie) = match dynamic.csrf.cookie_token(req) {
            Some(secret) => (secret, None),
            None => {
                let secret = dynamic.csrf.issue();
                let cookie = dynamic.csrf.set_cookie(req, &secret);
                (secret, Some(cookie))
            }
        };
        let token = dynamic.csrf.form_token(&secret);
        let body = Body::plain(splice_token(&entry.body, &entry.csrf_at, &token));
        return finish(
            req,
            route,
            status,
            body,
            &entry.content_type,
            Privacy::Private(cookie),
            extra,
        );
    }
    let body = Body {
        identity: entry.body.clone(),
        br: entry.br.clone(),
        gzip: entry.gzip.clone(),
        tag: entry.tag.clone(),
    };
    finish(
        req,
        route,
        status,
        body,
        &entry.content_type,
        Privacy::Shared,
        extra,
    )
}

/// Renders a stale entry's replacement off the request path.
fn refresh_in_background(
    dynamic: &Arc<DynamicApp>,
    route: &Route,
    values: Values,
    key: Arc<str>,
    target: Target<'_>,
) {
    let Some(index) = dynamic
        .routes
        .routes
        .iter()
        .position(|known| std::ptr::eq(known, route))
    else {
        return;
    };
    let dynamic = Arc::clone(dynamic);
    let (path, query) = (target.path.to_string(), target.query.to_string());
    actix_web::rt::spawn(async move {
        let route = &dynamic.routes.routes[index];
        if let (Some(cache), Some(policy)) = (&dynamic.cache, &route.cache) {
            let view = SessionView::of_values(&values);
            let target = Target {
                path: &path,
                query: &query,
                session: &view,
            };
            let refreshed = cache
                .fill(&key, &policy.admit, || {
                    make_entry(&dynamic, route, policy, &values, target, &key)
                })
                .await;
            if refreshed.is_err() {
                tracing::error!(
                    "route {}: refreshing a stale cache entry failed",
                    route.label
                );
            }
            cache.end_refresh(&key);
        }
    });
}

/// Renders `url` (a path with an optional query) into the cache.
pub(crate) async fn warm(dynamic: &DynamicApp, url: &str) -> Result<(), String> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let Selected::Route(index, mut values) = dynamic.routes.select(&Method::GET, path) else {
        return Err(format!("cache.warm: {url}: no GET route matches"));
    };
    let route = &dynamic.routes.routes[index];
    let (Some(cache), Some(policy)) = (&dynamic.cache, &route.cache) else {
        return Err(format!(
            "cache.warm: {url}: route {} has no [route.cache]",
            route.label
        ));
    };
    let params = params::bind(&route.params, &params::parse_pairs(query)).map_err(|errors| {
        let problems: Vec<String> = errors
            .iter()
            .map(|(name, problem)| format!("{name} {problem}"))
            .collect();
        format!("cache.warm: {url}: {}", problems.join(", "))
    })?;
    values.extend(params);
    let key = policy.key(&dynamic.views.load().generation, &values);
    let view = SessionView::of_values(&values);
    let target = Target {
        path,
        query,
        session: &view,
    };
    match cache
        .fill(&key, &policy.admit.always(), || {
            make_entry(dynamic, route, policy, &values, target, &key)
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(Failure::NotFound) => Err(format!("cache.warm: {url}: not found")),
        Err(Failure::Uncacheable) => Err(format!(
            "cache.warm: {url}: the page cannot be cached (its template changes csrf_token(), or a new build was loaded as it rendered)"
        )),
        Err(Failure::Response(response)) => {
            Err(format!("cache.warm: {url}: answered {}", response.status()))
        }
    }
}
