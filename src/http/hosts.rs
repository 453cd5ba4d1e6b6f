//! The `Host` allow-list (`server.allowed_hosts`): a request for any other
//! host is answered 421 before anything else runs. It is what stops DNS
//! rebinding, where a web page points its own domain at 127.0.0.1 and so
//! reaches a development server (and its database writes) from the
//! visitor's browser. `kiln watch` turns it on with the local names.

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::http::forwarded::{self, TrustedProxies};

/// The hosts a server answers for; empty means any.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedHosts {
    /// Exact names, lowercase, without a port (`localhost`, `[::1]`).
    names: Vec<String>,
    /// Domains whose subdomains are allowed too (`.example.com`).
    domains: Vec<String>,
}

/// What `kiln watch` allows when `server.allowed_hosts` is not set.
pub(crate) const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl AllowedHosts {
    /// `entries` as configured: `name`, or `.domain` for it and its
    /// subdomains.
    pub(crate) fn new<'e>(entries: impl IntoIterator<Item = &'e str>) -> AllowedHosts {
        let mut allowed = AllowedHosts::default();
        for entry in entries {
            let entry = entry.trim().to_ascii_lowercase();
            match entry.strip_prefix('.') {
                Some(domain) => allowed.domains.push(domain.to_string()),
                None => allowed.names.push(entry),
            }
        }
        allowed
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty() && self.domains.is_empty()
    }

    /// Whether `req` names an allowed host: `Host` (or the HTTP/2
    /// authority), or, from one of the `proxies`, the host it forwarded
    /// (a proxy may rewrite `Host` to its upstream's name and pass the
    /// visitor's in `X-Forwarded-Host`, as Django's `USE_X_FORWARDED_HOST`
    /// expects).
    pub(crate) fn allows(&self, req: &HttpRequest, proxies: &TrustedProxies) -> bool {
        if self.is_empty() {
            return true;
        }
        if !proxies.is_empty() {
            let origin = forwarded::origin(req, proxies, false);
            return origin.host.is_some_and(|host| self.allows_host(&host));
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| req.uri().authority().map(|authority| authority.as_str()));
        host.is_some_and(|host| self.allows_host(host))
    }

    fn allows_host(&self, host: &str) -> bool {
        let name = without_port(host).to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        self.names.iter().any(|allowed| allowed == name)
            || self.domains.iter().any(|domain| {
                name == domain
                    || name
                        .strip_suffix(domain.as_str())
                        .is_some_and(|prefix| prefix.ends_with('.'))
            })
    }
}

/// `host:port` → `host`; `[::1]:8080` → `[::1]`.
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_domains_and_ports() {
        let allowed = AllowedHosts::new(["localhost", "[::1]", ".example.com", "127.0.0.1"]);
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "[::1]:3000",
            "127.0.0.1:8080",
            "example.com",
            "shop.example.com.",
        ] {
            assert!(allowed.allows_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "notexample.com",
            "localhost.evil.example",
            "[::2]",
        ] {
            assert!(!allowed.allows_host(host), "{host}");
        }
        assert!(
            AllowedHosts::default().is_empty(),
            "empty: every host is answered"
        );
    }
}
