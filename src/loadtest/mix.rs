//! The traffic a site's visitors make, read from what the site is: its
//! built pages (`index.html` files and other `.html` pages), the hashed
//! files its manifest names (styles, scripts, images and their
//! variants), its GET routes with their parameters filled
//! ([`super::params`]), and the URLs
//! `[[loadtest.url]]` adds. Each class gets its weight from
//! `[loadtest.weights]`, shared evenly by its URLs (a `[[loadtest.url]]`
//! by its own weight). Requests carry what a browser sends
//! (`Accept-Encoding: br, gzip`), and a share of them revalidate with the
//! validator a first visit received.

use std::path::Path;

use crate::config::{LoadtestConfig, RouteMethod, Settings};
use crate::site::url::percent_encode_path;

use super::params::{LeftOut, RouteUrls};
use super::run::Target;

/// A URL before its weight and request are settled.
struct Candidate {
    class: &'static str,
    path: String,
    /// Its share of its class's weight.
    weight: f64,
}

/// The targets of `settings`' site for a server reached as `host`, and
/// the GET routes left out (a text parameter with no values given); an
/// error when a `[[loadtest.route]]` names no route or its query fails.
pub(crate) fn of_site(
    settings: &Settings,
    host: &str,
) -> Result<(Vec<Target>, Vec<LeftOut>), String> {
    let config = settings.loadtest();
    let (routes, mut left_out) = super::params::route_urls(settings)?;
    let mut candidates = Vec::new();
    candidates.extend(spread(
        "page",
        pages(&settings.out_dir),
        config.weights.pages,
    ));
    candidates.extend(spread(
        "asset",
        assets(&settings.out_dir),
        config.weights.assets,
    ));
    candidates.extend(route_candidates(routes, config.weights.routes));
    candidates.extend(urls(config));
    let targets = candidates
        .into_iter()
        .filter(|candidate| candidate.weight > 0.0)
        .map(|candidate| Target {
            class: candidate.class,
            request: get(&candidate.path, host, None),
            conditional: None,
            expects_error: false,
            weight: candidate.weight,
            path: candidate.path,
            form: None,
        })
        .collect::<Vec<_>>();
    let mut targets = targets;
    if config.weights.forms > 0.0 {
        let (forms, refused) = super::forms::of_site(settings, host)?;
        left_out.extend(refused);
        targets.extend(forms.into_iter().map(|(form, share)| Target {
            class: "form",
            path: format!("POST {} (form on {})", form.action, form.page),
            request: Vec::new(),
            conditional: None,
            expects_error: false,
            weight: config.weights.forms * share,
            form: Some(form),
        }));
    }
    Ok((targets, left_out))
}

/// The routes sharing the class's `weight` by their own weights, each
/// shared evenly by its URLs.
fn route_candidates(routes: Vec<RouteUrls>, weight: f64) -> Vec<Candidate> {
    let total: f64 = routes.iter().map(|route| route.weight).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    routes
        .into_iter()
        .flat_map(|route| {
            let each = weight * route.weight / total / route.urls.len().max(1) as f64;
            route.urls.into_iter().map(move |path| Candidate {
                class: "route",
                path,
                weight: each,
            })
        })
        .collect()
}

/// Requests that must fail, for the `errors` scenario: `share` of all
/// requests beside `targets`, divided evenly between the kinds. Each is
/// refused by a different path of the server: a head that does not parse
/// (400), a head over `server.max_header_bytes` (431), a body declared
/// over `server.max_body_bytes` (413, refused before it is sent), a form
/// POST without its CSRF token (403, when the site has a POST route) and
/// a URL the site does not have (404).
pub(crate) fn probes(
    settings: &Settings,
    host: &str,
    targets: &[Target],
    share: f64,
) -> Vec<Target> {
    let server = settings.server();
    let padding = "x".repeat(server.max_header_bytes + 1024);
    let mut kinds: Vec<(&'static str, String, Vec<u8>)> = vec![
        (
            "malformed",
            "/".to_string(),
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nthis line has no colon\r\n\r\n").into_bytes(),
        ),
        (
            "oversized",
            "/ (a large header)".to_string(),
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Padding: {padding}\r\n\r\n").into_bytes(),
        ),
        (
            "oversized",
            "/ (a large body)".to_string(),
            format!(
                "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                server.max_body_bytes.saturating_add(1)
            )
            .into_bytes(),
        ),
        (
            "not_found",
            "/kiln-loadtest/not-found".to_string(),
            get("/kiln-loadtest/not-found", host, None),
        ),
    ];
    if let Some(route) = settings
        .routes()
        .iter()
        .find(|route| route.method == RouteMethod::Post && !route.path.contains('{'))
    {
        let path = percent_encode_path(&route.path);
        kinds.push((
            "unauthorised",
            path.clone(),
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kiln-loadtest\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\nx=1"
            )
            .into_bytes(),
        ));
    }
    let others: f64 = targets.iter().map(|target| target.weight).sum();
    let total = if share >= 1.0 || others <= 0.0 {
        1.0
    } else {
        others * share / (1.0 - share)
    };
    let each = total / kinds.len() as f64;
    kinds
        .into_iter()
        .map(|(class, path, request)| Target {
            class,
            path,
            request,
            conditional: None,
            expects_error: true,
            weight: each,
            form: None,
        })
        .collect()
}

/// `paths` of one class sharing the class's `weight` evenly.
fn spread(class: &'static str, paths: Vec<String>, weight: f64) -> Vec<Candidate> {
    let each = weight / paths.len().max(1) as f64;
    paths
        .into_iter()
        .map(|path| Candidate {
            class,
            path,
            weight: each,
        })
        .collect()
}

/// The built pages' URLs: `/` for `index.html`, `/about/` for
/// `about/index.html`, `/404.html` left out (nobody asks for it).
fn pages(out_dir: &Path) -> Vec<String> {
    let mut urls: Vec<String> = walkdir::WalkDir::new(out_dir)
        .into_iter()
        .filter_entry(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .filter_map(|entry| {
            let relative = entry.path().strip_prefix(out_dir).ok()?;
            let path = relative.to_str()?.replace('\\', "/");
            if !path.ends_with(".html") || path == "404.html" {
                return None;
            }
            let url = match path.strip_suffix("index.html") {
                Some(directory) => format!("/{directory}"),
                None => format!("/{path}"),
            };
            Some(percent_encode_path(&url))
        })
        .collect();
    urls.sort();
    urls
}

/// The files the manifest names, and their image variants.
fn assets(out_dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read(out_dir.join(crate::site::manifest::MANIFEST_FILE)) else {
        return Vec::new();
    };
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let mut files: Vec<String> = Vec::new();
    for chunk in manifest
        .as_object()
        .into_iter()
        .flat_map(|map| map.values())
    {
        files.extend(chunk["file"].as_str().map(str::to_string));
        for variant in chunk["variants"].as_array().into_iter().flatten() {
            files.extend(variant["file"].as_str().map(str::to_string));
        }
    }
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|file| percent_encode_path(&format!("/{file}")))
        .collect()
}

fn urls(config: &LoadtestConfig) -> Vec<Candidate> {
    let total: f64 = config.url.iter().map(|url| url.weight).sum();
    config
        .url
        .iter()
        .map(|url| Candidate {
            class: "url",
            path: url.path.clone(),
            weight: if total > 0.0 {
                config.weights.urls * url.weight / total
            } else {
                0.0
            },
        })
        .collect()
}

/// A GET of `path` as a browser sends it; with `etag`, revalidating.
pub(crate) fn get(path: &str, host: &str, etag: Option<&str>) -> Vec<u8> {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kiln-loadtest\r\n\
         Accept: */*\r\nAccept-Encoding: br, gzip\r\n"
    );
    if let Some(etag) = etag {
        request.push_str(&format!("If-None-Match: {etag}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}
