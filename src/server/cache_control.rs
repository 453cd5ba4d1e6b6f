//! `kiln cache`: the route cache's statistics, purges and warming, through
//! a running server's admin listener (`server.admin_addr`: loopback, the
//! operator's own), or, when no server runs, against the disk level (and
//! Redis) directly.
//!
//! On the admin listener: `GET /cache` (statistics, JSON), `POST
//! /cache/purge?all | tag=T | route=PATH | url=URL` and `POST
//! /cache/warm?url=URL&url=…`. A purge reaches every level and, through
//! Redis, every other server, as a write route's invalidation does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use crate::config::Settings;
use crate::dynamic::app::DynamicApp;
use crate::dynamic::purge::{self, Purge};
use crate::dynamic::response_cache::RouteCache;
use crate::dynamic::routes::Routes;
use crate::server::state::AppState;

/// Whether `path` is one of the admin listener's cache endpoints.
pub(crate) fn is_cache_path(path: &str) -> bool {
    matches!(path, "/cache" | "/cache/purge" | "/cache/warm")
}

/// Answers a cache endpoint on the admin listener.
pub(crate) async fn answer(req: &HttpRequest, state: &AppState) -> HttpResponse {
    let Some((dynamic, cache)) = state
        .dynamic
        .as_deref()
        .and_then(|dynamic| Some((dynamic, dynamic.cache.as_ref()?)))
    else {
        return reply(
            StatusCode::NOT_FOUND,
            json!({ "error": "no route is cached" }),
        );
    };
    let wanted = match req.uri().path() {
        "/cache" => Method::GET,
        _ => Method::POST,
    };
    if req.method() != wanted {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({ "error": format!("{} only", wanted) }),
        );
    }
    let query = req.uri().query().unwrap_or("");
    match req.uri().path() {
        "/cache" => reply(StatusCode::OK, json!(cache.stats())),
        "/cache/purge" => {
            let purged = match Purge::from_query(query) {
                Ok(wanted) => purge::purge(cache, &dynamic.routes, &wanted).await,
                Err(problem) => Err(problem),
            };
            match purged {
                Ok(dropped) => reply(StatusCode::OK, json!({ "dropped": dropped })),
                Err(problem) => reply(StatusCode::BAD_REQUEST, json!({ "error": problem })),
            }
        }
        _ => warm(dynamic, query).await,
    }
}

async fn warm(dynamic: &DynamicApp, query: &str) -> HttpResponse {
    let urls: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == "url")
        .map(|(_, value)| value.into_owned())
        .collect();
    if urls.is_empty() {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": "name the URLs: url=/a&url=/b" }),
        );
    }
    let mut failed = Vec::new();
    for url in &urls {
        if let Err(problem) = crate::dynamic::cached::warm(dynamic, url).await {
            failed.push(problem);
        }
    }
    let warmed = urls.len() - failed.len();
    reply(
        StatusCode::OK,
        json!({ "warmed": warmed, "failed": failed }),
    )
}

fn reply(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(format!("{body}\n"))
}

/// Where `kiln cache` finds the running server: `--admin`, else
/// `server.admin_addr`.
fn admin_of(settings: &Settings, admin: Option<SocketAddr>) -> Option<SocketAddr> {
    admin.or_else(|| settings.admin_addr())
}

/// What the CLI prints, or why it failed.
pub type Outcome = Result<String, String>;

/// `kiln cache stats`: from the running server, else from the disk level.
pub fn stats(settings: &Settings, admin: Option<SocketAddr>) -> Outcome {
    if let Some(answer) = ask(admin_of(settings, admin), "GET", "/cache")? {
        return Ok(answer);
    }
    offline(settings, |cache, _| async move {
        Ok(format!("{}\n", json!(cache.stats())))
    })
}

/// `kiln cache purge`: through the running server, else against the disk
/// level and Redis.
pub fn purge(settings: &Settings, admin: Option<SocketAddr>, wanted: &Purge) -> Outcome {
    let path = format!("/cache/purge?{}", wanted.to_query());
    if let Some(answer) = ask(admin_of(settings, admin), "POST", &path)? {
        return Ok(answer);
    }
    offline(settings, |cache, routes| async move {
        let dropped = purge::purge(&cache, &routes, wanted).await?;
        // No server stays to retry what the channel did not take.
        if cache.postponed() > 0 {
            return Err(format!(
                "dropped {dropped} entries here, but the {} channel did not take the purge: \
                 other servers keep theirs (try again)",
                cache.channel_name()
            ));
        }
        Ok(format!("{}\n", json!({ "dropped": dropped })))
    })
}

/// `kiln cache warm`: renders `urls` into the running server's cache.
pub fn warm_urls(settings: &Settings, admin: Option<SocketAddr>, urls: &[String]) -> Outcome {
    let query: Vec<String> = urls
        .iter()
        .map(|url| {
            format!(
                "url={}",
                form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
            )
        })
        .collect();
    let path = format!("/cache/warm?{}", query.join("&"));
    ask(admin_of(settings, admin), "POST", &path)?.ok_or_else(|| {
        "warming renders pages with the server's database and templates: start `kiln serve` with server.admin_addr set (or pass --admin)".to_string()
    })
}

/// The admin listener's answer to one request; `None` when no server
/// listens there (or none is configured).
fn ask(admin: Option<SocketAddr>, method: &str, path: &str) -> Result<Option<String>, String> {
    let Some(admin) = admin else {
        return Ok(None);
    };
    let mut stream = match TcpStream::connect_timeout(&admin, Duration::from_secs(2)) {
        Ok(stream) => stream,
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
        Err(err) => return Err(format!("the admin listener {admin}: {err}")),
    };
    let talk = |stream: &mut TcpStream| -> std::io::Result<Vec<u8>> {
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(response)
    };
    let response = talk(&mut stream).map_err(|err| format!("the admin listener {admin}: {err}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let ok = head
        .split_whitespace()
        .nth(1)
        .is_some_and(|status| status == "200");
    if ok {
        Ok(Some(body.to_string()))
    } else {
        Err(format!("the server at {admin} answered: {}", body.trim()))
    }
}

/// Runs `work` against the site's cache levels opened here, for when no
/// server holds them.
fn offline<F, Fut>(settings: &Settings, work: F) -> Outcome
where
    F: FnOnce(RouteCache, Routes) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let routes = Routes::compile(settings).map_err(|err| err.to_string())?;
    if !routes.routes.iter().any(|route| route.cache.is_some()) {
        return Err("no route is cached ([route.cache])".into());
    }
    let key =
        crate::dynamic::secret::load(&settings.root, settings.server().secret_key_file.as_deref())
            .map_err(|err| err.to_string())?;
    let cache = RouteCache::open(
        settings.cache(),
        &settings.root,
        &key.site_identity(),
        &settings.database().url,
    )
    .map_err(|err| format!("{err} (is a server running without server.admin_addr?)"))?;
    actix_web::rt::System::new().block_on(work(cache, routes))
}

/// The `top` URLs of cached routes most requested in an access log
/// (`server.access_log` in any of its formats: common, combined or JSON
/// lines), most requested first: what `kiln cache warm --from-log` warms.
/// Only GETs answered 200 count.
pub fn most_requested(settings: &Settings, log: &str, top: usize) -> Result<Vec<String>, String> {
    let routes = Routes::compile(settings).map_err(|err| err.to_string())?;
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for target in log.lines().filter_map(successful_get) {
        *counts.entry(target).or_default() += 1;
    }
    let cached = |url: &str| {
        let path = url.split_once('?').map_or(url, |(path, _)| path);
        matches!(
            routes.select(&Method::GET, path),
            crate::dynamic::routes::Selected::Route(index, _) if routes.routes[index].cache.is_some()
        )
    };
    let mut ranked: Vec<(String, usize)> =
        counts.into_iter().filter(|(url, _)| cached(url)).collect();
    ranked.sort_by(|(a, a_count), (b, b_count)| b_count.cmp(a_count).then(a.cmp(b)));
    Ok(ranked.into_iter().take(top).map(|(url, _)| url).collect())
}

/// The target of a log line recording a GET answered 200.
fn successful_get(line: &str) -> Option<String> {
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let target = value["target"].as_str()?;
        let wanted = value["method"] == "GET" && value["status"] == 200 && target.starts_with('/');
        return wanted.then(|| target.to_string());
    }
    // `PEER - - [TIME] "GET /target HTTP/1.1" 200 BYTES …`
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let status = rest.split(' ').next()?;
    let mut parts = request.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET" && status == "200" && target.starts_with('/')).then(|| target.to_string())
}

#[cfg(test)]
mod tests {
    use super::successful_get;

    #[test]
    fn successful_gets_are_read_from_every_access_log_format() {
        let common = r#"127.0.0.1 - - [07/Dec/2026:14:00:00 +0000] "GET /catalogue/?page=2 HTTP/1.1" 200 512"#;
        assert_eq!(
            successful_get(common).as_deref(),
            Some("/catalogue/?page=2")
        );
        let combined = format!("{common} \"-\" \"curl/8\"");
        assert_eq!(
            successful_get(&combined).as_deref(),
            Some("/catalogue/?page=2")
        );
        let missing = r#"127.0.0.1 - - [07/Dec/2026:14:00:00 +0000] "GET /nope HTTP/1.1" 404 9"#;
        assert_eq!(successful_get(missing), None);
        let post =
            r#"127.0.0.1 - - [07/Dec/2026:14:00:00 +0000] "POST /guestbook/ HTTP/1.1" 200 9"#;
        assert_eq!(successful_get(post), None);
        let json = r#"{"method":"GET","target":"/catalogue/12","status":200,"bytes":1}"#;
        assert_eq!(successful_get(json).as_deref(), Some("/catalogue/12"));
        assert_eq!(successful_get("garbage"), None);
    }
}
