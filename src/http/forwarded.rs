//! Who sent a request, and how: the client's address, the scheme and the
//! host it asked for. They come from the connection itself, or, only when
//! the peer is one of `server.trusted_proxies`, from `Forwarded` (RFC 7239)
//! or `X-Forwarded-For` / `-Proto` / `-Host`. A client that is not a
//! trusted proxy cannot change what kiln believes by sending those headers.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderMap};
use ipnet::IpNet;

use crate::config::ForwardedHeader;

/// The configured proxies (`server.trusted_proxies`) and the header family
/// they write (`server.forwarded_header`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    pub(crate) fn new(nets: Vec<IpNet>, header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies { nets, header }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

/// Where a request came from, as far as it can be believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestOrigin {
    /// The client's address (`None` when a trusted proxy forwarded one that
    /// is not an address, such as `unknown` or an obfuscated name).
    pub client: Option<IpAddr>,
    /// The client used https.
    pub https: bool,
    /// The host the client asked for.
    pub host: Option<String>,
}

/// The origin of `req`; `tls` says whether kiln's own listener is https.
pub(crate) fn origin(req: &HttpRequest, proxies: &TrustedProxies, tls: bool) -> RequestOrigin {
    let peer = req.peer_addr().map(|addr| addr.ip().to_canonical());
    let own_host = req
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| req.uri().authority().map(|authority| authority.as_str()))
        .map(str::to_string);
    let direct = RequestOrigin {
        client: peer,
        https: tls,
        host: own_host,
    };
    match peer {
        Some(peer) if proxies.trusts(peer) => forwarded_origin(req.headers(), proxies, direct),
        _ => direct,
    }
}

/// What the trusted proxies say, falling back to `direct` for what they
/// leave out.
fn forwarded_origin(
    headers: &HeaderMap,
    proxies: &TrustedProxies,
    direct: RequestOrigin,
) -> RequestOrigin {
    // Only the family the proxies write: they pass a client's own copy of
    // the other one through, unchanged.
    if proxies.header == ForwardedHeader::Forwarded {
        return from_forwarded(&forwarded_elements(headers), proxies, direct);
    }
    let hops: Vec<Hop> = list(headers, "x-forwarded-for").map(Hop::parse).collect();
    let client = match client_index(&hops, proxies) {
        Some(index) => hops[index].address(),
        None => direct.client,
    };
    RequestOrigin {
        client,
        // The proxy nearest kiln wrote the last value.
        https: list(headers, "x-forwarded-proto")
            .last()
            .map_or(direct.https, |proto| proto.eq_ignore_ascii_case("https")),
        host: list(headers, "x-forwarded-host")
            .last()
            .map(str::to_string)
            .or(direct.host),
    }
}

/// One hop of a forwarding chain: an address, or something else
/// (`unknown`, `_hidden`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hop {
    Address(IpAddr),
    Opaque,
}

impl Hop {
    /// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`, `"[2001:db8::1]"`.
    fn parse(text: &str) -> Hop {
        let text = text.trim().trim_matches('"');
        let host = match text.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None if text.matches(':').count() == 1 => text.split(':').next().unwrap_or_default(),
            None => text,
        };
        host.parse()
            .map_or(Hop::Opaque, |ip: IpAddr| Hop::Address(ip.to_canonical()))
    }

    fn address(&self) -> Option<IpAddr> {
        match self {
            Hop::Address(ip) => Some(*ip),
            Hop::Opaque => None,
        }
    }
}

/// Where the client is in a chain of hops: walking back from kiln, the
/// first hop that is not a trusted proxy (or the first hop when all are).
fn client_index(hops: &[Hop], proxies: &TrustedProxies) -> Option<usize> {
    let untrusted = hops
        .iter()
        .rposition(|hop| !matches!(hop, Hop::Address(ip) if proxies.trusts(*ip)));
    untrusted.or(if hops.is_empty() { None } else { Some(0) })
}

/// One `Forwarded` element's parameters.
#[derive(Debug, Default)]
struct Element {
    hop: Option<Hop>,
    proto: Option<String>,
    host: Option<String>,
}

fn from_forwarded(
    elements: &[Element],
    proxies: &TrustedProxies,
    direct: RequestOrigin,
) -> RequestOrigin {
    let hops: Vec<Hop> = elements
        .iter()
        .map(|element| element.hop.clone().unwrap_or(Hop::Opaque))
        .collect();
    let Some(index) = client_index(&hops, proxies) else {
        return direct;
    };
    // The element naming the client was written by the proxy that took the
    // client's connection: its proto and host describe that connection.
    let element = &elements[index];
    RequestOrigin {
        client: hops[index].address(),
        https: element
            .proto
            .as_deref()
            .map_or(direct.https, |proto| proto.eq_ignore_ascii_case("https")),
        host: element.host.clone().or(direct.host),
    }
}

/// Every element of every `Forwarded` field line, in order.
fn forwarded_elements(headers: &HeaderMap) -> Vec<Element> {
    list(headers, "forwarded")
        .map(|text| {
            let mut element = Element::default();
            for pair in text.split(';') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match name.trim().to_ascii_lowercase().as_str() {
                    "for" => element.hop = Some(Hop::parse(value)),
                    "proto" => element.proto = Some(value.to_string()),
                    "host" => element.host = Some(value.to_string()),
                    _ => {}
                }
            }
            element
        })
        .collect()
}

/// The comma-separated items of every field line of `name`, in order.
/// (Quoted commas do not occur in the values read here.)
fn list<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> impl DoubleEndedIterator<Item = &'h str> {
    headers
        .get_all(name)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            nets.iter().map(|net| net.parse().unwrap()).collect(),
            ForwardedHeader::XForwarded,
        )
    }

    fn request(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut request = TestRequest::default()
            .peer_addr(peer.parse().unwrap())
            .insert_header(("host", "kiln.internal:8080"));
        for (name, value) in headers {
            request = request.append_header((*name, *value));
        }
        request.to_http_request()
    }

    #[test]
    fn an_untrusted_peer_cannot_forward_anything() {
        let req = request(
            "203.0.113.9:5000",
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
                (
                    "forwarded",
                    "for=198.51.100.2;host=evil.example;proto=https",
                ),
            ],
        );
        let origin = origin(&req, &proxies(&["10.0.0.0/8"]), false);
        assert_eq!(origin.client, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(origin.host.as_deref(), Some("kiln.internal:8080"));
        assert!(!origin.https);
    }

    #[test]
    fn a_trusted_proxy_names_the_client_scheme_and_host() {
        let req = request(
            "10.0.0.5:5000",
            &[
                // A spoofed first hop, then the real client, then a second proxy.
                ("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.9"),
                ("x-forwarded-host", "shop.example"),
                ("x-forwarded-proto", "https"),
            ],
        );
        let origin = origin(&req, &proxies(&["10.0.0.0/8"]), false);
        assert_eq!(origin.client, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(origin.host.as_deref(), Some("shop.example"));
        assert!(origin.https);
    }

    #[test]
    fn forwarded_elements_follow_rfc_7239() {
        let req = request(
            "[::ffff:10.0.0.5]:5000",
            &[
                ("forwarded", "for=1.2.3.4;proto=http"),
                (
                    "forwarded",
                    "for=\"[2001:db8::17]:4711\";proto=https;host=shop.example, for=10.0.0.9",
                ),
            ],
        );
        let forwarded = TrustedProxies::new(
            vec!["10.0.0.0/8".parse().unwrap()],
            ForwardedHeader::Forwarded,
        );
        let origin = origin(&req, &forwarded, false);
        assert_eq!(origin.client, Some("2001:db8::17".parse().unwrap()));
        assert_eq!(origin.host.as_deref(), Some("shop.example"));
        assert!(origin.https);
        let hidden = request("10.0.0.5:1", &[("forwarded", "for=_hidden;proto=https")]);
        let origin = super::origin(&hidden, &forwarded, false);
        assert_eq!(origin.client, None);
        assert!(origin.https);
    }

    /// Regression: behind nginx (which writes X-Forwarded-For), a client's
    /// own `Forwarded` header was believed.
    #[test]
    fn a_clients_own_header_of_the_other_family_is_ignored() {
        let req = request(
            "10.0.0.5:5000",
            &[
                ("forwarded", "for=10.0.0.1;proto=https;host=evil.example"),
                ("x-forwarded-for", "198.51.100.7"),
            ],
        );
        let origin = origin(&req, &proxies(&["10.0.0.0/8"]), false);
        assert_eq!(origin.client, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(origin.host.as_deref(), Some("kiln.internal:8080"));
        assert!(!origin.https);
    }

    #[test]
    fn without_proxies_the_connection_decides() {
        let req = request("127.0.0.1:5000", &[("x-forwarded-proto", "https")]);
        let origin = origin(&req, &TrustedProxies::default(), true);
        assert_eq!(origin.client, Some("127.0.0.1".parse().unwrap()));
        assert!(origin.https, "kiln's own TLS");
    }
}
