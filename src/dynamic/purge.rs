//! What an operator drops from the route cache (`kiln cache purge`), and
//! the tag that stands for it: every entry carries the cache's own tags
//! for "all", its route and its URL ([`CachePolicy::implicit_tags`]), so a
//! purge travels the way a write route's invalidation does, to every level
//! and, through Redis, to every other server.

use actix_web::http::Method;

use crate::dynamic::response_cache::{PURGE_ALL_TAG, RouteCache};
use crate::dynamic::routes::{CachePolicy, Route, Routes, Selected, params};

/// One purge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Every entry.
    All,
    /// The entries carrying a tag declared in `[route.cache]` (`product:7`).
    Tag(String),
    /// Every entry of a cached route, named by its path as declared
    /// (`/catalogue/{id:int}`).
    Route(String),
    /// Every entry of one URL (`/catalogue/?page=2`), whatever the visitor.
    Url(String),
}

impl Purge {
    /// The admin endpoint's query for this purge.
    pub fn to_query(&self) -> String {
        let encode =
            |value: &str| form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
        match self {
            Purge::All => "all".into(),
            Purge::Tag(tag) => format!("tag={}", encode(tag)),
            Purge::Route(route) => format!("route={}", encode(route)),
            Purge::Url(url) => format!("url={}", encode(url)),
        }
    }

    /// The purge a query asks for: `all`, `tag=T`, `route=PATH` or
    /// `url=PATH`, exactly one.
    pub(crate) fn from_query(query: &str) -> Result<Purge, String> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        let [(name, value)] = pairs.as_slice() else {
            return Err("name exactly one of all, tag=, route=, url=".into());
        };
        match name.as_str() {
            "all" => Ok(Purge::All),
            "tag" if !value.is_empty() => Ok(Purge::Tag(value.clone())),
            "route" if !value.is_empty() => Ok(Purge::Route(value.clone())),
            "url" if value.starts_with('/') => Ok(Purge::Url(value.clone())),
            _ => Err(format!("{name}={value:?}: not a purge")),
        }
    }

    /// The tag whose entries this purge drops, or why `routes` cannot
    /// resolve it (no such cached route, a URL no cached route serves).
    pub(crate) fn tag(&self, routes: &Routes) -> Result<String, String> {
        match self {
            Purge::All => Ok(PURGE_ALL_TAG.into()),
            Purge::Tag(tag) => Ok(tag.clone()),
            Purge::Route(path) => {
                let (_, policy) = cached_routes(routes)
                    .find(|(route, _)| route.label == format!("GET {path}"))
                    .ok_or_else(|| {
                        let known: Vec<&str> = cached_routes(routes)
                            .map(|(route, _)| route.label.trim_start_matches("GET "))
                            .collect();
                        format!("no cached route {path} (cached: {})", known.join(", "))
                    })?;
                Ok(policy.route_tag())
            }
            Purge::Url(url) => {
                let (path, query) = url.split_once('?').unwrap_or((url, ""));
                let Selected::Route(index, mut values) = routes.select(&Method::GET, path) else {
                    return Err(format!("{url}: no GET route serves it"));
                };
                let route = &routes.routes[index];
                let Some(policy) = &route.cache else {
                    return Err(format!("{url}: route {} is not cached", route.label));
                };
                let bound =
                    params::bind(&route.params, &params::parse_pairs(query)).map_err(|errors| {
                        let problems: Vec<String> = errors
                            .iter()
                            .map(|(name, problem)| format!("{name} {problem}"))
                            .collect();
                        format!("{url}: {}", problems.join(", "))
                    })?;
                values.extend(bound);
                Ok(policy.url_tag(&values))
            }
        }
    }
}

fn cached_routes(routes: &Routes) -> impl Iterator<Item = (&Route, &CachePolicy)> {
    routes
        .routes
        .iter()
        .filter_map(|route| Some((route, route.cache.as_ref()?)))
}

/// Drops what `purge` names from every level of `cache` (and every other
/// server's, through Redis); returns how many entries went.
pub(crate) async fn purge(
    cache: &RouteCache,
    routes: &Routes,
    purge: &Purge,
) -> Result<usize, String> {
    let tag = purge.tag(routes)?;
    Ok(cache.invalidate(&[tag]).await)
}
