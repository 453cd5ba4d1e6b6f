//! CSRF protection for form routes. Each visitor's cookie holds a secret
//! of their own (a random nonce with its MAC, `kiln_csrf`, or
//! `__Host-kiln_csrf` over https, which no subdomain can set); pages embed
//! a token that is a MAC of that secret (`csrf_field()`), and a POST must
//! send a valid secret and the token made from it. A token copied from one
//! visitor's page is refused with any other visitor's cookie, a cookie
//! cannot be forged without the key, two CSRF cookies in one request are
//! refused, and a present `Origin` header must name this server.

use actix_web::HttpRequest;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::dynamic::secret::SecretKey;
use crate::http::forwarded::{self, TrustedProxies};

/// The cookie holding the visitor's secret over plain HTTP.
pub(crate) const COOKIE: &str = "kiln_csrf";
/// Over https: the `__Host-` prefix makes browsers refuse it from a
/// subdomain or without `Secure` and `Path=/`.
pub(crate) const HOST_COOKIE: &str = "__Host-kiln_csrf";
/// The form field holding the token.
pub(crate) const FIELD: &str = "csrf_token";
/// The header scripts may send instead of the field.
pub(crate) const HEADER: &str = "x-csrf-token";

/// Issues and checks tokens.
#[derive(Clone)]
pub(crate) struct Csrf {
    key: [u8; 32],
    tls: bool,
    proxies: TrustedProxies,
}

/// Why a POST was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    CrossOrigin,
    MissingCookie,
    DuplicateCookie,
    BadToken,
}

impl Refusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::CrossOrigin => "Forbidden: the form was posted from another origin\n",
            Refusal::MissingCookie => {
                "Forbidden: the CSRF cookie is missing; reload the form and submit it again\n"
            }
            Refusal::DuplicateCookie => {
                "Forbidden: the request carries more than one CSRF cookie; clear this site's cookies and reload the form\n"
            }
            Refusal::BadToken => {
                "Forbidden: the CSRF token is missing or incorrect; reload the form and submit it again\n"
            }
        }
    }
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csrf(..)")
    }
}

impl Csrf {
    /// `tls`: kiln's own listener is https; `proxies` may say a request
    /// was https before it reached kiln.
    pub(crate) fn new(key: &SecretKey, tls: bool, proxies: TrustedProxies) -> Csrf {
        Csrf {
            key: key.derive("csrf"),
            tls,
            proxies,
        }
    }

    /// A fresh token: `NONCE.MAC`, URL-safe base64.
    pub(crate) fn issue(&self) -> String {
        let mut nonce = [0u8; 18];
        if getrandom::fill(&mut nonce).is_err() {
            // Unreachable on Linux; a unique-enough fallback keeps forms working.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            nonce[..16].copy_from_slice(&now.to_le_bytes());
        }
        let nonce = URL_SAFE_NO_PAD.encode(nonce);
        let mac = self.mac(&nonce);
        format!("{nonce}.{mac}")
    }

    fn mac(&self, nonce: &str) -> String {
        let mac = blake3::keyed_hash(&self.key, nonce.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.as_bytes()[..16])
    }

    /// Whether `token` was issued with this key.
    pub(crate) fn is_valid(&self, token: &str) -> bool {
        let Some((nonce, mac)) = token.split_once('.') else {
            return false;
        };
        constant_time_eq(self.mac(nonce).as_bytes(), mac.as_bytes())
    }

    /// The form token for a visitor's secret: a MAC of it, so it verifies
    /// only together with that visitor's cookie.
    pub(crate) fn form_token(&self, secret: &str) -> String {
        let mac = blake3::keyed_hash(&self.key, format!("form {secret}").as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.as_bytes()[..18])
    }

    /// Whether the visitor reached the site over https.
    fn https(&self, req: &HttpRequest) -> bool {
        self.tls
            || (!self.proxies.is_empty() && forwarded::origin(req, &self.proxies, self.tls).https)
    }

    fn cookie_name(&self, req: &HttpRequest) -> &'static str {
        if self.https(req) { HOST_COOKIE } else { COOKIE }
    }

    /// The visitor's secret from their cookie, when there is exactly one
    /// and it is valid.
    pub(crate) fn cookie_token(&self, req: &HttpRequest) -> Option<String> {
        self.cookie_secret(req).ok().flatten()
    }

    /// `Err` when the request carries the cookie more than once (one of
    /// them may have been planted); `Ok(None)` when it has none or an
    /// invalid one.
    fn cookie_secret(&self, req: &HttpRequest) -> Result<Option<String>, Refusal> {
        let mut values = cookies(req, self.cookie_name(req));
        let first = values.next();
        if values.next().is_some() {
            return Err(Refusal::DuplicateCookie);
        }
        Ok(first.filter(|secret| self.is_valid(secret)))
    }

    /// Checks a POST: origin, cookie, and the submitted token.
    pub(crate) fn verify(&self, req: &HttpRequest, submitted: Option<&str>) -> Result<(), Refusal> {
        let origin = forwarded::origin(req, &self.proxies, self.tls);
        if !same_origin(req, origin.host.as_deref()) {
            return Err(Refusal::CrossOrigin);
        }
        let secret = self.cookie_secret(req)?.ok_or(Refusal::MissingCookie)?;
        let header = req
            .headers()
            .get(HEADER)
            .and_then(|value| value.to_str().ok());
        let submitted = submitted.or(header).ok_or(Refusal::BadToken)?;
        let expected = self.form_token(&secret);
        if constant_time_eq(expected.as_bytes(), submitted.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::BadToken)
        }
    }

    /// The `Set-Cookie` value carrying `token`: `Secure` when the visitor
    /// reached the site over https, directly or through a trusted proxy.
    pub(crate) fn set_cookie(&self, req: &HttpRequest, token: &str) -> String {
        let secure = self.https(req);
        Cookie::build(self.cookie_name(req), token)
            .path("/")
            .max_age(time::Duration::days(365))
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(secure)
            .finish()
            .to_string()
    }
}

/// A present `Origin` must match the host the request was sent to (`null`
/// and other sites are refused); requests without one (older browsers,
/// curl) pass on the token alone. The host is the `Host` header, or what a
/// trusted proxy forwarded: `X-Forwarded-Host` from anyone else is ignored.
fn same_origin(req: &HttpRequest, host: Option<&str>) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (origin.to_str(), host) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// Every value of cookie `name` in the request, in order.
fn cookies<'r>(req: &'r HttpRequest, name: &'r str) -> impl Iterator<Item = String> + 'r {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_string())
}

/// Equal bytes, compared in time independent of where they differ (the
/// length may show).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key() {
        let csrf = Csrf::new(&SecretKey::from_bytes([7; 32]), false, Default::default());
        let other = Csrf::new(&SecretKey::from_bytes([8; 32]), false, Default::default());
        let token = csrf.issue();
        assert!(csrf.is_valid(&token));
        assert!(!other.is_valid(&token));
        assert!(!csrf.is_valid("forged.token"));
        assert!(!csrf.is_valid(&token.replace('.', "")));
        assert_ne!(token, csrf.issue());
    }

    #[test]
    fn the_cookie_is_http_only_lax_and_secure_over_tls() {
        let key = SecretKey::from_bytes([7; 32]);
        let req = actix_web::test::TestRequest::default().to_http_request();
        let plain = Csrf::new(&key, false, TrustedProxies::default()).set_cookie(&req, "abc");
        for attribute in [
            "kiln_csrf=abc",
            "Path=/",
            "Max-Age=31536000",
            "HttpOnly",
            "SameSite=Lax",
        ] {
            assert!(plain.contains(attribute), "{plain}");
        }
        assert!(!plain.contains("Secure"), "{plain}");
        let tls = Csrf::new(&key, true, TrustedProxies::default());
        assert!(tls.set_cookie(&req, "abc").contains("; Secure"));
    }
}
