//! Requests `http` jobs send: webhooks, search indexers, mail APIs.
//!
//! HTTP/1.1 over TCP or TLS (the system's CAs), one request at a time on
//! keep-alive connections pooled per origin, so a backlog of webhooks to
//! one partner reuses a few connections rather than opening one each. A
//! pooled connection the peer closed while idle fails on its first use;
//! the request is then sent once more on a new connection, as browsers
//! and curl do. Requests to one host are paced to `rate_per_host` a
//! second (a reservation per request: no bursts beyond the rate).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::http1::Http1;
use super::tls::{Tls, Trust};
use super::{Answer, ClientError, Stream};
use crate::config::LoadProtocol;

/// Idle connections kept per origin.
const IDLE_PER_ORIGIN: usize = 16;

/// A request to send.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub url: String,
    /// Header lines beyond those kiln writes (`Host`, `Content-Length`,
    /// `Content-Type` when the body is JSON, `User-Agent`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Where a request goes: a connection can carry requests to one origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

/// A URL read into its origin and request target.
fn parse(url: &str) -> Result<(Origin, String), ClientError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ClientError::Url(format!("{url:?} is not a URL")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(ClientError::Url(format!(
                "{url:?}: give http:// or https://"
            )));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| ClientError::Url(format!("{url:?} names no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let target = uri
        .path_and_query()
        .map_or("/".to_string(), |path| path.as_str().to_string());
    Ok((Origin { https, host, port }, target))
}

/// The outbound client: pooled connections and per-host pacing.
pub(crate) struct Outbound {
    idle: Mutex<HashMap<Origin, Vec<Http1>>>,
    /// The next moment a request to each host may start.
    next_slot: Mutex<HashMap<String, Instant>>,
    /// Requests per second per host; 0: no limit.
    rate_per_host: f64,
}

impl Outbound {
    pub(crate) fn new(rate_per_host: f64) -> Outbound {
        Outbound {
            idle: Mutex::new(HashMap::new()),
            next_slot: Mutex::new(HashMap::new()),
            rate_per_host,
        }
    }

    /// Sends `request` and reads the response (headers kept, at most
    /// 64 KiB of body).
    pub(crate) async fn send(&self, request: &Request) -> Result<Answer, ClientError> {
        let (origin, target) = parse(&request.url)?;
        self.pace(&origin.host).await;
        let bytes = encode(request, &origin, &target);
        if let Some(mut pooled) = self.take_idle(&origin) {
            match pooled
                .exchange(&bytes, request.method == "HEAD", true)
                .await
            {
                Ok(answer) => {
                    self.put_back(origin, pooled, &answer);
                    return Ok(answer);
                }
                // Closed while idle: once more on a new connection.
                Err(ClientError::Closed | ClientError::Io(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let mut fresh = Http1::new(connect(&origin).await?);
        let answer = fresh
            .exchange(&bytes, request.method == "HEAD", true)
            .await?;
        self.put_back(origin, fresh, &answer);
        Ok(answer)
    }

    /// Waits for this host's next free slot and reserves the one after.
    async fn pace(&self, host: &str) {
        if self.rate_per_host <= 0.0 {
            return;
        }
        let interval = Duration::from_secs_f64(1.0 / self.rate_per_host);
        let start = {
            let mut slots = self
                .next_slot
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let now = Instant::now();
            let slot = slots
                .get(host)
                .copied()
                .filter(|at| *at > now)
                .unwrap_or(now);
            slots.insert(host.to_string(), slot + interval);
            slot
        };
        tokio::time::sleep_until(start.into()).await;
    }

    fn take_idle(&self, origin: &Origin) -> Option<Http1> {
        self.idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get_mut(origin)?
            .pop()
    }

    fn put_back(&self, origin: Origin, connection: Http1, answer: &Answer) {
        if answer.closes {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let pool = idle.entry(origin).or_default();
        if pool.len() < IDLE_PER_ORIGIN {
            pool.push(connection);
        }
    }
}

/// The request's bytes.
fn encode(request: &Request, origin: &Origin, target: &str) -> Vec<u8> {
    let default_port = if origin.https { 443 } else { 80 };
    let host = if origin.host.contains(':') {
        format!("[{}]", origin.host)
    } else {
        origin.host.clone()
    };
    let mut head = format!("{} {target} HTTP/1.1\r\nHost: {host}", request.method);
    if origin.port != default_port {
        head.push_str(&format!(":{}", origin.port));
    }
    head.push_str(&format!(
        "\r\nUser-Agent: kiln/{}\r\nContent-Length: {}\r\n",
        env!("CARGO_PKG_VERSION"),
        request.body.len()
    ));
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&request.body);
    bytes
}

async fn connect(origin: &Origin) -> Result<Stream, ClientError> {
    let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
        .await
        .map_err(ClientError::Connect)?;
    let _ = tcp.set_nodelay(true);
    if !origin.https {
        return Ok(Stream::Plain(tcp));
    }
    let tls = Tls::new(
        &origin.host,
        Trust::Verified { ca_file: None },
        LoadProtocol::Http1,
    )
    .map_err(ClientError::Tls)?;
    Ok(Stream::Tls(Box::new(tls.connect(tcp).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_origin_and_target() {
        let (origin, target) = parse("https://hooks.example.com/a/b?x=1").expect("a url");
        assert_eq!(
            origin,
            Origin {
                https: true,
                host: "hooks.example.com".into(),
                port: 443
            }
        );
        assert_eq!(target, "/a/b?x=1");
        let (origin, target) = parse("http://127.0.0.1:8080").expect("a url");
        assert_eq!((origin.port, target.as_str()), (8080, "/"));
        assert!(parse("ftp://example.com/").is_err());
    }

    #[test]
    fn requests_name_a_non_default_port_in_host() {
        let request = Request {
            method: "POST".into(),
            url: "http://127.0.0.1:9000/hook".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        };
        let (origin, target) = parse(&request.url).expect("a url");
        let text = String::from_utf8(encode(&request, &origin, &target)).expect("utf-8");
        assert!(text.starts_with("POST /hook HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"));
        assert!(text.contains("Content-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"));
    }
}
