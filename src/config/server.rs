//! `[server]`: how `kiln serve` serves the output directory. Stage two
//! parses the address, compiles the cache-control rules and resolves the
//! TLS files.

use std::path::{Path, PathBuf};

use globset::Glob;
use serde::{Deserialize, Serialize};

use super::{ConfigError, config_error};

/// The `[server]` table: how `kiln serve` serves the output directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (`--addr` overrides it).
    pub addr: String,
    /// Worker threads; 0 means one per CPU core (`--workers` overrides it).
    pub workers: usize,
    /// Bytes of file contents (all encodings) kept in memory.
    pub memory_budget: u64,
    /// Files larger than this are streamed from disk instead of kept in memory.
    pub memory_file_limit: u64,
    /// Serve `/about/` from `about/index.html` and `/about` from `about.html`,
    /// and redirect `/about` to `/about/` when `about/index.html` exists.
    pub pretty_urls: bool,
    /// A file (relative to the output directory) served with status 200 for
    /// unknown paths that look like page navigations. Empty: off.
    pub spa_fallback: String,
    /// The page served with status 404 (relative to the output directory).
    pub not_found_page: String,
    /// Cache-Control by path glob; the first match wins, before the defaults.
    pub cache_control: Vec<CacheRule>,
    /// Content-Security-Policy sent with every response; empty: none.
    pub content_security_policy: String,
    /// Referrer-Policy sent with every response; empty: none.
    pub referrer_policy: String,
    /// Strict-Transport-Security, sent only over TLS; empty: none.
    pub hsts: String,
    /// PEM certificate chain; with `tls_key`, serve HTTPS (HTTP/2 by ALPN).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest request head (request line and headers) accepted, in bytes.
    pub max_header_bytes: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Seconds a client may take to send its request head (against slowloris).
    pub header_timeout_secs: u64,
    /// Seconds an idle keep-alive connection stays open.
    pub keep_alive_secs: u64,
    /// Seconds a client may leave a response unread before its connection
    /// is closed (against slow readers).
    pub send_timeout_secs: u64,
    /// Seconds any request body may take; past them, it must have arrived
    /// at `min_body_rate` on average or the request gets 408.
    pub body_timeout_secs: u64,
    /// Bytes per second a request body must average once
    /// `body_timeout_secs` have passed (against slow uploads).
    pub min_body_rate: u64,
    /// Connections open at once; 0 sizes it from the open-file limit.
    pub max_connections: usize,
    /// Connections open at once from one client address (trusted proxies
    /// exempt); 0: no limit.
    pub max_connections_per_ip: usize,
    /// Requests served on one kept-alive connection before it is closed.
    pub max_requests_per_connection: u64,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// Dynamic GET/HEAD requests handled at once; 0: twice
    /// `database.max_size`.
    pub dynamic_in_flight: usize,
    /// Dynamic writes (POST and the rest) handled at once; 0:
    /// `database.max_size`.
    pub write_in_flight: usize,
    /// Requests of each class that may wait for a place; 0: four times
    /// the dynamic reads' places.
    pub admission_queue: usize,
    /// How long a request may wait for a place before it gets 503.
    pub admission_wait_ms: u64,
    /// Writes one client address may make a minute; 0: no limit.
    pub write_rate_per_minute: u32,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// More ranges than this in one request get the whole file (status 200).
    pub max_ranges: usize,
    /// Access log on standard output.
    pub access_log: AccessLogFormat,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// A second listener that answers only `/metrics` and `/healthz`
    /// (`127.0.0.1:9808`, say); none when unset.
    pub admin_addr: Option<String>,
    /// A file holding the bearer token that opens `/metrics` on the public
    /// listener (relative to the site root). `KILN_METRICS_TOKEN`
    /// overrides it.
    pub metrics_token_file: Option<PathBuf>,
    /// Send `X-Kiln-Cache` (hit, miss, stale) and `Age` on responses from
    /// the route cache. Off by default: they tell a visitor how the server
    /// caches, which only its operator needs to know.
    pub debug_headers: bool,
    /// A file holding the key that signs CSRF tokens and session cookies
    /// (32 bytes or more; relative to the site root). `KILN_SECRET_KEY`
    /// overrides it; without either, a key is generated on first start.
    pub secret_key_file: Option<PathBuf>,
    /// Proxies (addresses or CIDR ranges) whose `Forwarded` and
    /// `X-Forwarded-*` headers are believed; from anyone else they are
    /// ignored.
    pub trusted_proxies: Vec<String>,
    /// The header family the trusted proxies write; the other is ignored,
    /// since a proxy passes a client's own copy of it through.
    pub forwarded_header: ForwardedHeader,
    /// Hosts the server answers for (`example.com`, `.example.com` for it
    /// and its subdomains); others get 421. Empty: any host, except under
    /// `kiln watch`, which allows only local names.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:8080".into(),
            workers: 0,
            memory_budget: 256 * 1024 * 1024,
            memory_file_limit: 4 * 1024 * 1024,
            pretty_urls: true,
            spa_fallback: String::new(),
            not_found_page: "404.html".into(),
            cache_control: Vec::new(),
            content_security_policy: "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'self'".into(),
            referrer_policy: "strict-origin-when-cross-origin".into(),
            hsts: "max-age=63072000; includeSubDomains".into(),
            tls_cert: None,
            tls_key: None,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            header_timeout_secs: 5,
            keep_alive_secs: 15,
            send_timeout_secs: 30,
            body_timeout_secs: 10,
            min_body_rate: 1024,
            max_connections: 0,
            max_connections_per_ip: 256,
            max_requests_per_connection: 1000,
            h2_max_concurrent_streams: 128,
            dynamic_in_flight: 0,
            write_in_flight: 0,
            admission_queue: 0,
            admission_wait_ms: 1000,
            write_rate_per_minute: 0,
            shutdown_grace_secs: 30,
            max_ranges: 16,
            access_log: AccessLogFormat::Off,
            metrics: MetricsAccess::Admin,
            admin_addr: None,
            metrics_token_file: None,
            debug_headers: false,
            secret_key_file: None,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// One `[[server.cache_control]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRule {
    /// A glob over the output path (`downloads/**`, `*.pdf`).
    pub path: String,
    /// The Cache-Control value for matching files.
    pub value: String,
}

/// Access log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    Off,
    /// NCSA Common Log Format.
    Common,
    /// Common plus referrer and user agent, as nginx and Apache write it.
    Combined,
    /// One JSON object per line.
    Json,
}

/// Which forwarding headers the trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, `-Proto`, `-Host` (nginx, HAProxy, AWS ALB, Caddy).
    #[default]
    #[serde(rename = "x-forwarded")]
    XForwarded,
    /// `Forwarded` (RFC 7239).
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Not served at all.
    Off,
    /// On the admin listener (`server.admin_addr`), or on the public one
    /// with the bearer token. Under `kiln watch`, also to local clients.
    Admin,
    /// As `admin`, and to clients connecting from a loopback address with
    /// no forwarding headers. A reverse proxy on the same host that adds
    /// none passes this check: prefer `admin`.
    Loopback,
    /// Anyone who can reach the server.
    Public,
}

/// `[server]` values that needed parsing, resolved once.
#[derive(Debug, Clone)]
pub(super) struct ServerSettings {
    pub(super) addr: std::net::SocketAddr,
    /// `[[server.cache_control]]` compiled, in order.
    pub(super) cache_rules: Vec<(globset::GlobMatcher, String)>,
    /// Absolute certificate and key paths when TLS is configured.
    pub(super) tls: Option<(PathBuf, PathBuf)>,
    /// `server.trusted_proxies`, parsed.
    pub(super) trusted_proxies: Vec<ipnet::IpNet>,
    /// `server.admin_addr`, parsed.
    pub(super) admin_addr: Option<std::net::SocketAddr>,
}

/// Stage two for `[server]`.
pub(super) fn validate(server: &ServerConfig, root: &Path) -> Result<ServerSettings, ConfigError> {
    let addr = parse_addr("server.addr", &server.addr)?;
    let mut cache_rules = Vec::new();
    for rule in &server.cache_control {
        let glob = Glob::new(&rule.path)
            .map_err(|err| config_error(format!("server.cache_control: {err}")))?
            .compile_matcher();
        check_header_value("server.cache_control", &rule.value)?;
        cache_rules.push((glob, rule.value.clone()));
    }
    check_header_value(
        "server.content_security_policy",
        &server.content_security_policy,
    )?;
    check_header_value("server.referrer_policy", &server.referrer_policy)?;
    check_header_value("server.hsts", &server.hsts)?;
    let tls = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => Some((root.join(cert), root.join(key))),
        (None, None) => None,
        _ => {
            return Err(config_error(
                "server.tls_cert and server.tls_key must be set together",
            ));
        }
    };
    if server.memory_file_limit > server.memory_budget {
        return Err(config_error(format!(
            "server.memory_file_limit ({}) is larger than server.memory_budget ({})",
            server.memory_file_limit, server.memory_budget
        )));
    }
    for (key, value) in [
        ("server.header_timeout_secs", server.header_timeout_secs),
        ("server.keep_alive_secs", server.keep_alive_secs),
        ("server.send_timeout_secs", server.send_timeout_secs),
        ("server.body_timeout_secs", server.body_timeout_secs),
        (
            "server.max_requests_per_connection",
            server.max_requests_per_connection,
        ),
        (
            "server.h2_max_concurrent_streams",
            u64::from(server.h2_max_concurrent_streams),
        ),
    ] {
        if value == 0 {
            return Err(config_error(format!("{key} must be at least 1")));
        }
    }
    if server.max_header_bytes < 1024 {
        return Err(config_error(
            "server.max_header_bytes must be at least 1024",
        ));
    }
    for (key, path) in [
        ("server.spa_fallback", &server.spa_fallback),
        ("server.not_found_page", &server.not_found_page),
    ] {
        if path.starts_with('/') || path.split('/').any(|part| part == "..") {
            return Err(config_error(format!(
                "{key} = {path:?}: expected a path relative to the output directory"
            )));
        }
    }
    for host in &server.allowed_hosts {
        let host = host.trim();
        let unbracketed_ipv6 = !host.starts_with('[') && host.matches(':').count() > 1;
        // `[::1]:8080`, `[::1` or `example.com:8080`.
        let with_port = match host.strip_prefix('[') {
            Some(rest) => !rest.ends_with(']'),
            None => host.contains(':') && !unbracketed_ipv6,
        };
        if host.is_empty()
            || host == "."
            || host.contains(['/', ' ', '@', '*'])
            || unbracketed_ipv6
            || with_port
        {
            return Err(config_error(format!(
                "server.allowed_hosts: {host:?} is not a host name such as example.com, .example.com for a domain and its subdomains, or [::1] (no port, no wildcard)"
            )));
        }
    }
    let trusted_proxies = server
        .trusted_proxies
        .iter()
        .map(|text| parse_net(text))
        .collect::<Result<_, _>>()?;
    let admin_addr = match &server.admin_addr {
        Some(text) => {
            let admin = parse_addr("server.admin_addr", text)?;
            if admin == addr && admin.port() != 0 {
                return Err(config_error(format!(
                    "server.admin_addr = {text:?} is server.addr: the admin listener needs an address of its own"
                )));
            }
            Some(admin)
        }
        None => None,
    };
    Ok(ServerSettings {
        addr,
        cache_rules,
        tls,
        trusted_proxies,
        admin_addr,
    })
}

/// Parses `HOST:PORT` (`localhost:8080`, `[::1]:80`, `0.0.0.0:8080`).
pub fn parse_addr(key: &str, text: &str) -> Result<std::net::SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            config_error(format!(
                "{key} = {text:?}: expected HOST:PORT, such as 127.0.0.1:8080"
            ))
        })
}

pub(super) fn check_header_value(key: &str, value: &str) -> Result<(), ConfigError> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        Ok(())
    } else {
        Err(config_error(format!(
            "{key}: header values may only contain visible ASCII characters and spaces"
        )))
    }
}

/// `192.0.2.7`, `10.0.0.0/8`, `2001:db8::/32`.
fn parse_net(text: &str) -> Result<ipnet::IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            config_error(format!(
                "server.trusted_proxies: {text:?} is not an address or a CIDR range such as 10.0.0.0/8"
            ))
        })
}
