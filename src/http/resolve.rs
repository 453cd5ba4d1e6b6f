//! From request path to file: percent-decoding once, refusing anything that
//! is not a plain relative path, and the pretty-URL, trailing-slash, SPA
//! and 404 rules.
//!
//! The decoded path is only ever a key into the [`Table`]; it never touches
//! the filesystem.

use std::borrow::Cow;
use std::sync::Arc;

use crate::http::table::{Resource, Table};

/// What a request path names.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    File(Arc<Resource>),
    /// Redirect (308) to this location.
    Redirect(String),
    NotFound,
    /// Not a path kiln will look up (400).
    BadRequest,
}

/// The path rules in force.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathRules {
    pub pretty_urls: bool,
}

/// Resolves a request's raw (still percent-encoded) path and query.
pub(crate) fn resolve(table: &Table, raw_path: &str, query: &str, rules: PathRules) -> Resolved {
    let decoded = match decode(raw_path) {
        Ok(path) => path,
        Err(Refusal::BadRequest) => return Resolved::BadRequest,
        Err(Refusal::NotFound) => return Resolved::NotFound,
    };
    let key = decoded.strip_prefix('/').unwrap_or(&decoded);
    if key.is_empty() || key.ends_with('/') {
        if rules.pretty_urls
            && let Some(index) = table.get(&format!("{key}index.html"))
        {
            return Resolved::File(Arc::clone(index));
        }
        return fallback(table, key);
    }
    if let Some(resource) = table.get(key) {
        return Resolved::File(Arc::clone(resource));
    }
    if rules.pretty_urls {
        if table.contains(&format!("{key}/index.html")) {
            let mut location = format!("{raw_path}/");
            if !query.is_empty() {
                location.push('?');
                location.push_str(query);
            }
            return Resolved::Redirect(location);
        }
        if let Some(page) = table.get(&format!("{key}.html")) {
            return Resolved::File(Arc::clone(page));
        }
    }
    fallback(table, key)
}

/// The SPA fallback for paths that look like page navigations (no file
/// extension in the last segment); otherwise not found.
fn fallback(table: &Table, key: &str) -> Resolved {
    let last = key.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    match &table.spa_fallback {
        Some(page) if !last.contains('.') => Resolved::File(Arc::clone(page)),
        _ => Resolved::NotFound,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadRequest,
    NotFound,
}

/// Percent-decodes `raw` once and checks every segment: no `.`/`..`, no
/// NUL or backslash, valid UTF-8 (so overlong encodings of `.` and `/` are
/// refused), and no hidden or empty segments.
pub(crate) fn decode(raw: &str) -> Result<Cow<'_, str>, Refusal> {
    if !raw.starts_with('/') {
        return Err(Refusal::BadRequest);
    }
    let decoded = if raw.contains('%') {
        crate::site::url::decode_strict(raw).ok_or(Refusal::BadRequest)?
    } else {
        Cow::Borrowed(raw)
    };
    if decoded.contains(['\0', '\\']) {
        return Err(Refusal::BadRequest);
    }
    let inner = decoded[1..].strip_suffix('/').unwrap_or(&decoded[1..]);
    if inner.is_empty() {
        return Ok(decoded);
    }
    for segment in inner.split('/') {
        match segment {
            "." | ".." => return Err(Refusal::BadRequest),
            "" => return Err(Refusal::NotFound),
            hidden if hidden.starts_with('.') => return Err(Refusal::NotFound),
            _ => {}
        }
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass() {
        assert_eq!(decode("/css/site.abc.css").unwrap(), "/css/site.abc.css");
        assert_eq!(decode("/").unwrap(), "/");
        assert_eq!(decode("/about/").unwrap(), "/about/");
        assert_eq!(decode("/my%20photo.svg").unwrap(), "/my photo.svg");
    }

    #[test]
    fn traversal_attempts_are_refused() {
        for raw in [
            "/../etc/passwd",
            "/css/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/css/..%2f..%2fetc",
            "/..%5c..%5cetc",
            "/a\\b",
            "/a%00.css",
            "/%c0%ae%c0%ae/etc/passwd",
            "/%e0%80%ae",
            "/%zz",
            "/%2",
            "etc/passwd",
            "/./a",
        ] {
            assert_eq!(decode(raw).err(), Some(Refusal::BadRequest), "{raw}");
        }
    }

    #[test]
    fn hidden_and_empty_segments_are_not_found() {
        for raw in [
            "/.env",
            "/.kiln/hints.json",
            "/a/.git/config",
            "//etc/passwd",
            "/a//b",
            "/%2e%2e%2e",
        ] {
            assert_eq!(decode(raw).err(), Some(Refusal::NotFound), "{raw}");
        }
    }

    #[test]
    fn double_encoding_stays_literal() {
        // `%252e` decodes once to the three characters `%2e`, a plain name.
        assert_eq!(decode("/%252e%252e/x").unwrap(), "/%2e%2e/x");
    }
}
