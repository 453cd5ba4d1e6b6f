//! Response header policy: content types with charsets, Cache-Control by
//! kind of file, and the security headers every response carries.

use actix_web::http::header::{self, HeaderName, HeaderValue};

use crate::config::Settings;

/// Content-hashed names never change content: cache for a year, never
/// revalidate. (No `public`: these responses carry no Authorization, so it
/// adds nothing, and REDbot warns about it.)
pub(crate) const IMMUTABLE: &str = "max-age=31536000, immutable";
/// HTML and other unhashed files: cacheable, but revalidated on every use.
pub(crate) const REVALIDATE: &str = "no-cache";

/// The Content-Type of a file, by extension, with `charset=utf-8` for text.
pub(crate) fn content_type(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    // Where mime_guess is dated or silent, the current registrations.
    let mime = match extension.as_str() {
        // The build's Atom feeds (`pages.site_url`), for feed readers.
        "xml" if name == "atom.xml" => "application/atom+xml".to_string(),
        "js" | "mjs" | "cjs" => "text/javascript".to_string(),
        "map" => "application/json".to_string(),
        "webmanifest" => "application/manifest+json".to_string(),
        "wasm" => "application/wasm".to_string(),
        "woff2" => "font/woff2".to_string(),
        "woff" => "font/woff".to_string(),
        "avif" => "image/avif".to_string(),
        "ico" => "image/x-icon".to_string(),
        _ => mime_guess::from_ext(&extension)
            .first_raw()
            .unwrap_or("application/octet-stream")
            .to_string(),
    };
    if is_text(&mime) {
        format!("{mime}; charset=utf-8")
    } else {
        mime
    }
}

fn is_text(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/json"
                | "application/manifest+json"
                | "application/xml"
                | "image/svg+xml"
                | "application/rss+xml"
                | "application/atom+xml"
        )
}

/// The Cache-Control value for an output file: under `kiln watch` always
/// revalidate (a dev build's files change under the same name when a source
/// map or page is rebuilt), else a configured rule, else immutable for
/// content-hashed outputs, else revalidate.
pub(crate) fn cache_control(settings: &Settings, path: &str, hashed: bool) -> String {
    if settings.dev {
        return REVALIDATE.to_string();
    }
    for (glob, value) in settings.cache_rules() {
        if glob.is_match(path) {
            return value.clone();
        }
    }
    if hashed { IMMUTABLE } else { REVALIDATE }.to_string()
}

/// Headers added to every response, precomputed once.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecurityHeaders {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `server.hsts` for responses to requests a trusted proxy received
    /// over https (kiln itself listening on plain HTTP).
    pub forwarded_hsts: Option<HeaderValue>,
}

impl SecurityHeaders {
    pub(crate) fn new(settings: &Settings, tls: bool) -> SecurityHeaders {
        let server = settings.server();
        let mut headers = vec![(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        )];
        let configured = [
            (header::REFERRER_POLICY, &server.referrer_policy, true),
            (
                header::CONTENT_SECURITY_POLICY,
                &server.content_security_policy,
                true,
            ),
            // HSTS over plain HTTP is ignored by browsers and misleading.
            (header::STRICT_TRANSPORT_SECURITY, &server.hsts, tls),
        ];
        for (name, value, wanted) in configured {
            if wanted
                && !value.is_empty()
                && let Ok(value) = HeaderValue::from_str(value)
            {
                headers.push((name, value));
            }
        }
        let forwarded_hsts = (!tls && !server.hsts.is_empty())
            .then(|| HeaderValue::from_str(&server.hsts).ok())
            .flatten();
        SecurityHeaders {
            headers,
            forwarded_hsts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_types_carry_a_charset() {
        assert_eq!(content_type("a/site.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.abc.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(
            content_type("site.css.map"),
            "application/json; charset=utf-8"
        );
        assert_eq!(content_type("robots.txt"), "text/plain; charset=utf-8");
        assert_eq!(
            content_type("blog/atom.xml"),
            "application/atom+xml; charset=utf-8"
        );
    }

    #[test]
    fn binary_types_have_none() {
        assert_eq!(content_type("a.png"), "image/png");
        assert_eq!(content_type("a.JPG"), "image/jpeg");
        assert_eq!(content_type("font.woff2"), "font/woff2");
        assert_eq!(content_type("archive.tar.gz"), "application/gzip");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }
}
