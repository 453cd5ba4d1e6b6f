//! `kiln serve` over real TCP: every HTTP rule the server promises.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::{self, Response};
use common::server::{Captured, TestServer, noise, site_with_pages};
use common::snapshot;

const BR: (&str, &str) = ("Accept-Encoding", "br");

fn css_path(site: &common::Site) -> String {
    format!("/{}", site.output_of("css/site.css"))
}

fn original_css(site: &common::Site) -> Vec<u8> {
    site.read_dist(&site.output_of("css/site.css"))
}

fn decompress(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(bytes).unwrap(),
        other => panic!("{other}"),
    }
    out
}

#[test]
fn hashed_assets_are_immutable_with_validators_and_security_headers() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let response = http::get(server.addr, &css_path(&site), &[]);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, original_css(&site));
    assert_eq!(
        response.header("cache-control"),
        Some("max-age=31536000, immutable")
    );
    assert_eq!(
        response.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str())
    );
    assert!(response.header("etag").unwrap().starts_with('"'));
    assert!(response.has("last-modified"));
    assert_eq!(response.header("accept-ranges"), Some("bytes"));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        response.header("referrer-policy"),
        Some("strict-origin-when-cross-origin")
    );
    assert!(
        response
            .header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(
        !response.has("strict-transport-security"),
        "HSTS only over TLS"
    );
    assert!(!response.has("set-cookie"));
}

#[test]
fn html_and_unhashed_files_are_revalidated() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    for path in ["/", "/robots.txt", "/about/"] {
        let response = http::get(server.addr, path, &[]);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.header("cache-control"), Some("no-cache"), "{path}");
        assert!(
            response.has("etag") && response.has("last-modified"),
            "{path}"
        );
    }
    assert_eq!(
        http::get(server.addr, "/", &[]).header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

#[test]
fn cache_control_rules_from_config_come_first() {
    let site = site_with_pages();
    site.write(
        "build.toml",
        "[build]\nsourcemaps = true\n[[server.cache_control]]\npath = \"*.txt\"\nvalue = \"public, max-age=600\"\n",
    );
    let server = TestServer::start(&site, &[]);
    let response = http::get(server.addr, "/robots.txt", &[]);
    assert_eq!(
        response.header("cache-control"),
        Some("public, max-age=600")
    );
}

#[test]
fn precompressed_variants_are_negotiated_with_vary() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let path = css_path(&site);
    let original = original_css(&site);
    let mut etags = Vec::new();
    for (accept, expected) in [
        ("br", Some("br")),
        ("gzip, deflate", Some("gzip")),
        ("zstd", Some("zstd")),
        ("gzip, deflate, br, zstd", Some("br")),
        ("br;q=0.1, gzip;q=0.9", Some("gzip")),
        ("deflate", None),
        ("br;q=0, gzip;q=0, zstd;q=0", None),
    ] {
        let response = http::get(server.addr, &path, &[("Accept-Encoding", accept)]);
        assert_eq!(response.status, 200, "{accept}");
        assert_eq!(response.header("content-encoding"), expected, "{accept}");
        assert_eq!(response.header("vary"), Some("accept-encoding"), "{accept}");
        assert_eq!(
            response.header("content-length").unwrap(),
            response.body.len().to_string()
        );
        let body = match expected {
            Some(encoding) => decompress(encoding, &response.body),
            None => response.body.clone(),
        };
        assert_eq!(body, original, "{accept}");
        etags.push((expected, response.header("etag").unwrap().to_string()));
    }
    // Strong ETags differ per encoding.
    let br = etags.iter().find(|(e, _)| *e == Some("br")).unwrap();
    let identity = etags.iter().find(|(e, _)| e.is_none()).unwrap();
    assert_ne!(br.1, identity.1);
    // Without Accept-Encoding: identity, still with Vary.
    let plain = http::get(server.addr, &path, &[]);
    assert!(!plain.has("content-encoding"));
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
}

#[test]
fn resources_without_variants_do_not_vary_and_can_be_refused() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let png = format!("/{}", site.output_of("images/dot.png"));
    let response = http::get(server.addr, &png, &[BR]);
    assert_eq!(response.status, 200);
    assert!(!response.has("vary"));
    assert!(!response.has("content-encoding"));
    let refused = http::get(
        server.addr,
        &png,
        &[("Accept-Encoding", "br, identity;q=0")],
    );
    assert_eq!(refused.status, 406);
}

#[test]
fn if_none_match_and_if_modified_since_give_304_with_cache_headers() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let path = css_path(&site);
    let first = http::get(server.addr, &path, &[BR]);
    let etag = first.header("etag").unwrap().to_string();
    let not_modified = http::get(server.addr, &path, &[BR, ("If-None-Match", &etag)]);
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert_eq!(
        not_modified.header("cache-control"),
        first.header("cache-control")
    );
    assert_eq!(not_modified.header("vary"), Some("accept-encoding"));
    // The identity ETag does not validate the brotli variant.
    let identity_etag = http::get(server.addr, &path, &[])
        .header("etag")
        .unwrap()
        .to_string();
    assert_eq!(
        http::get(server.addr, &path, &[BR, ("If-None-Match", &identity_etag)]).status,
        200
    );
    // Weak comparison for If-None-Match, lists, and *.
    let weak = format!("W/{etag}");
    assert_eq!(
        http::get(server.addr, &path, &[BR, ("If-None-Match", &weak)]).status,
        304
    );
    let list = format!("\"nope\", {etag}");
    assert_eq!(
        http::get(server.addr, &path, &[BR, ("If-None-Match", &list)]).status,
        304
    );
    assert_eq!(
        http::get(server.addr, &path, &[("If-None-Match", "*")]).status,
        304
    );
    // If-Modified-Since with the Last-Modified date.
    let date = first.header("last-modified").unwrap().to_string();
    assert_eq!(
        http::get(server.addr, &path, &[("If-Modified-Since", &date)]).status,
        304
    );
    let old = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(
        http::get(server.addr, &path, &[("If-Modified-Since", old)]).status,
        200
    );
}

#[test]
fn if_match_and_if_unmodified_since_give_412() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let path = css_path(&site);
    let etag = http::get(server.addr, &path, &[])
        .header("etag")
        .unwrap()
        .to_string();
    assert_eq!(
        http::get(server.addr, &path, &[("If-Match", &etag)]).status,
        200
    );
    assert_eq!(
        http::get(server.addr, &path, &[("If-Match", "\"other\"")]).status,
        412
    );
    let weak = format!("W/{etag}");
    assert_eq!(
        http::get(server.addr, &path, &[("If-Match", &weak)]).status,
        412,
        "strong comparison"
    );
    let old = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(
        http::get(server.addr, &path, &[("If-Unmodified-Since", old)]).status,
        412
    );
}

#[test]
fn head_matches_get_without_a_body() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &["server.memory_file_limit=65536"]);
    for path in [css_path(&site), "/big.bin".to_string(), "/".to_string()] {
        let get = http::get(server.addr, &path, &[BR]);
        let head = http::head(server.addr, &path, &[BR]);
        assert_eq!(head.status, 200, "{path}");
        assert!(head.body.is_empty());
        for name in [
            "content-length",
            "content-type",
            "etag",
            "cache-control",
            "content-encoding",
            "vary",
        ] {
            assert_eq!(head.header(name), get.header(name), "{path}: {name}");
        }
    }
}

#[test]
fn single_and_suffix_ranges() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let path = css_path(&site);
    let original = original_css(&site);
    let len = original.len();
    let first = http::get(server.addr, &path, &[("Range", "bytes=0-9")]);
    assert_eq!(first.status, 206);
    assert_eq!(first.body, &original[..10]);
    assert_eq!(
        first.header("content-range"),
        Some(format!("bytes 0-9/{len}").as_str())
    );
    let suffix = http::get(server.addr, &path, &[("Range", "bytes=-5")]);
    assert_eq!(suffix.body, &original[len - 5..]);
    let open = http::get(server.addr, &path, &[("Range", "bytes=100-")]);
    assert_eq!(open.body, &original[100..]);
    // Ranges apply to the negotiated representation.
    let br_full = http::get(server.addr, &path, &[BR]).body;
    let br_part = http::get(server.addr, &path, &[BR, ("Range", "bytes=1-3")]);
    assert_eq!(br_part.header("content-encoding"), Some("br"));
    assert_eq!(br_part.body, &br_full[1..4]);
}

#[test]
fn multiple_ranges_are_multipart_byteranges() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let path = css_path(&site);
    let original = original_css(&site);
    let len = original.len();
    let response = http::get(server.addr, &path, &[("Range", "bytes=0-4, 10-19, -3")]);
    assert_eq!(response.status, 206);
    let content_type = response.header("content-type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    let body = response.text();
    let parts: Vec<&str> = body
        .split(&format!("--{boundary}"))
        .filter(|part| !part.trim().is_empty() && part.trim() != "--")
        .collect();
    assert_eq!(parts.len(), 3, "{body}");
    let expected = [(0, 4), (10, 19), (len - 3, len - 1)];
    for (part, (start, end)) in parts.iter().zip(expected) {
        let (head, data) = part.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("Content-Type: text/css; charset=utf-8"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Range: bytes {start}-{end}/{len}")),
            "{head}"
        );
        let data = data.strip_suffix("\r\n").unwrap_or(data);
        assert_eq!(data.as_bytes(), &original[start..=end]);
    }
    assert_eq!(
        response.header("content-length").unwrap(),
        response.body.len().to_string()
    );
}

#[test]
fn unsatisfiable_range_is_416_with_content_range() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let path = css_path(&site);
    let len = original_css(&site).len();
    let response = http::get(server.addr, &path, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(response.status, 416);
    assert_eq!(
        response.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
}

#[test]
fn abusive_ranges_get_the_whole_file() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &["server.max_ranges=4"]);
    let path = css_path(&site);
    let original = original_css(&site);
    for header in [
        "bytes=0-1,3-4,6-7,9-10,12-13",
        "bytes=0-100,50-150",
        "bytes=0-,0-,0-",
        "bytes=1-0",
        "pages=1-2",
    ] {
        let response = http::get(server.addr, &path, &[("Range", header)]);
        assert_eq!(response.status, 200, "{header}");
        assert_eq!(response.body, original, "{header}");
    }
}

#[test]
fn if_range_decides_between_part_and_whole() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let path = css_path(&site);
    let etag = http::get(server.addr, &path, &[])
        .header("etag")
        .unwrap()
        .to_string();
    let matching = http::get(
        server.addr,
        &path,
        &[("Range", "bytes=0-1"), ("If-Range", &etag)],
    );
    assert_eq!(matching.status, 206);
    let stale = http::get(
        server.addr,
        &path,
        &[("Range", "bytes=0-1"), ("If-Range", "\"old\"")],
    );
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, original_css(&site));
}

#[test]
fn large_files_stream_from_disk_with_ranges() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &["server.memory_file_limit=65536"]);
    let big = noise(3 * 1024 * 1024 + 17);
    let whole = http::get(server.addr, "/big.bin", &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body.len(), big.len());
    assert!(whole.body == big);
    let part = http::get(
        server.addr,
        "/big.bin",
        &[("Range", "bytes=1000000-1300000")],
    );
    assert_eq!(part.status, 206);
    assert!(part.body == big[1_000_000..=1_300_000]);
    let multi = http::get(
        server.addr,
        "/big.bin",
        &[("Range", "bytes=0-9,2000000-2000009")],
    );
    assert_eq!(multi.status, 206);
    assert!(
        multi
            .header("content-type")
            .unwrap()
            .starts_with("multipart/byteranges")
    );
    let stats = server.running().table_stats();
    assert!(stats.disk_variants >= 1, "{stats:?}");
}

#[test]
fn memory_budget_moves_files_to_disk() {
    let site = site_with_pages();
    let server = TestServer::start(
        &site,
        &["server.memory_budget=4096", "server.memory_file_limit=4096"],
    );
    let stats = server.running().table_stats();
    assert!(stats.memory_bytes <= 4096, "{stats:?}");
    assert!(stats.disk_variants >= 2, "{stats:?}");
    // Served the same either way.
    let response = http::get(server.addr, &css_path(&site), &[]);
    assert_eq!(response.body, original_css(&site));
}

#[test]
fn not_found_uses_the_built_404_page() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let response = http::get(server.addr, "/no/such/page", &[]);
    assert_eq!(response.status, 404);
    assert!(response.text().contains("Nothing here"));
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8")
    );

    std::fs::remove_file(site.dist().join("404.html")).unwrap();
    let server = TestServer::start(&site, &[]);
    let plain = http::get(server.addr, "/no/such/page", &[]);
    assert_eq!(plain.status, 404);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn pretty_urls_and_trailing_slash_redirects() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let home = http::get(server.addr, "/", &[]);
    assert!(home.text().contains("Home"));
    let about = http::get(server.addr, "/about/", &[]);
    assert_eq!(about.status, 200);
    assert!(about.text().contains("About us"));
    let redirect = http::get(server.addr, "/about?ref=nav", &[]);
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/about/?ref=nav"));
    let flat = http::get(server.addr, "/flat", &[]);
    assert_eq!(flat.status, 200);
    assert!(flat.text().contains("Flat"));

    let server = TestServer::start(&site, &["server.pretty_urls=false"]);
    assert_eq!(http::get(server.addr, "/about", &[]).status, 404);
    assert_eq!(http::get(server.addr, "/about/index.html", &[]).status, 200);
}

#[test]
fn spa_fallback_serves_the_app_for_navigations() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &["server.spa_fallback=\"index.html\""]);
    let route = http::get(server.addr, "/app/settings/profile", &[]);
    assert_eq!(route.status, 200);
    assert!(route.text().contains("Home"));
    assert_eq!(http::get(server.addr, "/app/missing.js", &[]).status, 404);
}

#[test]
fn traversal_attempts_never_escape_the_output_directory() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let attempts = [
        "/../outside.txt",
        "/..%2foutside.txt",
        "/%2e%2e/outside.txt",
        "/%2e%2e%2foutside.txt",
        "/%252e%252e/outside.txt",
        "/css/..%5c..%5coutside.txt",
        "/..\\outside.txt",
        "/%c0%ae%c0%ae/outside.txt",
        "/%c0%af..%c0%afoutside.txt",
        "/robots.txt%00.html",
        "//outside.txt",
        "/escape.txt",
        "/.secret",
        "/.kiln/hints.json",
        "/manifest.json",
        "/%2emanifest.json",
    ];
    for path in attempts {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = http::raw(server.addr, request.as_bytes(), false);
        assert!(
            [400, 404].contains(&response.status),
            "{path} gave {}",
            response.status
        );
        let text = response.text();
        assert!(!text.contains("outside the output directory"), "{path}");
        assert!(!text.contains("do not serve"), "{path}");
        assert!(!text.contains("\"isEntry\""), "{path}");
    }
    // A symlink that stays inside the output directory is served.
    assert_eq!(http::get(server.addr, "/robots-link.txt", &[]).status, 200);
}

#[test]
fn link_headers_carry_the_pages_resource_hints() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let css = site.output_of("css/site.css");
    let home = http::get(server.addr, "/", &[]);
    assert_eq!(
        home.header("link"),
        Some(format!("</{css}>; rel=preload; as=style, </js/app.js>; rel=modulepreload").as_str())
    );
    assert!(!http::get(server.addr, "/about/", &[]).has("link"));
}

#[test]
fn methods_other_than_get_and_head_are_refused() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let response = http::send(server.addr, method, "/", &[("Content-Length", "0")]);
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    }
    let options = http::send(server.addr, "OPTIONS", "/", &[]);
    assert_eq!(options.status, 204);
    assert_eq!(options.header("allow"), Some("GET, HEAD, OPTIONS"));
}

#[test]
fn oversized_heads_and_bodies_are_refused() {
    let site = site_with_pages();
    let server = TestServer::start(
        &site,
        &["server.max_header_bytes=2048", "server.max_body_bytes=100"],
    );
    let big = "x".repeat(4000);
    assert_eq!(http::get(server.addr, "/", &[("X-Big", &big)]).status, 431);
    let long_path = format!("/{}", "a".repeat(3000));
    assert_eq!(http::get(server.addr, &long_path, &[]).status, 431);
    assert_eq!(
        http::get(server.addr, "/", &[("Content-Length", "101")]).status,
        413
    );
    // A head beyond what the HTTP parser buffers is refused too, not a crash.
    let huge = "y".repeat(200_000);
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Huge: {huge}\r\n\r\n");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let _ = stream.write_all(request.as_bytes());
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );
    // The server still answers.
    assert_eq!(http::get(server.addr, "/", &[]).status, 200);
}

#[test]
fn slow_clients_are_disconnected_after_the_header_timeout() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &["server.header_timeout_secs=1"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(9),
        "the server closed the connection ({waited:?})"
    );
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
}

#[test]
fn health_and_metrics_endpoints() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let health = http::get(server.addr, "/healthz", &[]);
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    http::get(server.addr, &css_path(&site), &[]);
    http::get(server.addr, "/missing", &[]);
    // The server notices the earlier connections closed a moment after the
    // client has read their responses; only the /metrics one stays open.
    let mut text = String::new();
    for _ in 0..250 {
        let metrics = server.metrics();
        assert_eq!(metrics.status, 200);
        text = metrics.text();
        if text.contains("kiln_open_connections 1\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for expected in [
        "kiln_http_requests_total{class=\"asset\",status=\"200\"} 1",
        "kiln_http_requests_total{class=\"not_found\",status=\"404\"} 1",
        "kiln_http_request_duration_seconds_bucket{le=\"+Inf\",class=\"asset\"} 1",
        "kiln_http_response_body_bytes_total{class=\"asset\"} ",
        "kiln_open_connections 1",
        "kiln_static_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_io_bytes_total{direction=\"written\"} ",
        "process_disk_bytes_total{direction=\"read\"} ",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    let server = TestServer::start(&site, &["server.metrics=\"off\""]);
    assert_eq!(http::get(server.addr, "/metrics", &[]).status, 404);
    assert_eq!(server.metrics().status, 404);
    let admin = server.running().admin_addr.expect("an admin listener");
    assert_eq!(http::get(admin, "/status", &[]).status, 404);
}

/// The admin listener's status page, its files, and its event stream:
/// a `sample` a second of the server's own metrics, with each dynamic
/// route's rate, latency and (for a cached route) hit ratio.
#[test]
fn the_status_page_streams_a_sample_of_the_metrics_each_second() {
    use std::io::{BufRead, BufReader, Write};
    let site = common::Site::fixture("shop");
    site.build().expect("the shop builds");
    let server = TestServer::start(&site, &[]);
    let admin = server.running().admin_addr.expect("an admin listener");
    let page = http::get(admin, "/status", &[]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<script src=\"/status/status.js\""));
    for (path, kind) in [
        ("/status/status.js", "text/javascript"),
        ("/status/status.css", "text/css"),
    ] {
        let file = http::get(admin, path, &[]);
        assert_eq!(file.status, 200, "{path}");
        assert!(file.header("content-type").unwrap().starts_with(kind));
    }
    assert_eq!(http::get(admin, "/status/nothing", &[]).status, 404);
    let mut stream = std::net::TcpStream::connect(admin).expect("connect");
    write!(stream, "GET /status/events HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut samples = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line.expect("the stream goes on");
        if line == "retry: 1000" {
            // The stream has taken its first reading: a request of the
            // route now falls between two samples: the uncached list,
            // and an item twice (a miss, then a hit).
            for path in ["/items/", "/items/1", "/items/1"] {
                assert_eq!(http::get(server.addr, path, &[]).status, 200, "{path}");
            }
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let sample: serde_json::Value = serde_json::from_str(data).expect("a JSON sample");
            let routes = sample["routes"].as_array().unwrap().len();
            samples.push(sample);
            if routes >= 2 || samples.len() == 4 {
                break;
            }
        }
    }
    let route = |name: &str| {
        samples
            .iter()
            .flat_map(|sample| sample["routes"].as_array().unwrap().clone())
            .find(|route| route["route"] == name)
            .unwrap_or_else(|| panic!("no sample has {name}: {samples:#?}"))
    };
    assert!(route("GET /items/")["hit_ratio"].is_null());
    let cached = route("GET /items/{id:int}")["hit_ratio"].as_f64();
    assert!(
        cached.is_some_and(|ratio| (0.0..=1.0).contains(&ratio)),
        "{samples:#?}"
    );
    let sample = samples.last().unwrap();
    assert!(
        sample["point"]["rss_mb"].as_f64().unwrap() > 1.0,
        "{sample:#}"
    );
    assert!(
        sample["point"]["connections"].as_f64().unwrap() >= 1.0,
        "{sample:#}"
    );
    assert!(route("GET /items/")["per_s"].as_f64().unwrap() > 0.0);
    assert!(sample["errors"].as_array().unwrap().is_empty());
}

#[test]
fn access_log_in_combined_and_json_formats() {
    use kiln::config::AccessLogFormat;
    use kiln::server::access_log::AccessLog;
    let site = site_with_pages();
    for (format, check) in [
        (
            AccessLogFormat::Combined,
            "\"GET /robots.txt HTTP/1.1\" 200 23 \"https://ref.example/\" \"kiln-test\"",
        ),
        (AccessLogFormat::Json, "\"target\":\"/robots.txt\""),
    ] {
        let captured = Captured::default();
        let log = AccessLog::to_writer(format, Box::new(captured.clone()));
        let server = TestServer::start_with_log(&site, &[], Some(log));
        http::get(
            server.addr,
            "/robots.txt",
            &[
                ("Referer", "https://ref.example/"),
                ("User-Agent", "kiln-test"),
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let text = loop {
            let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
            if text.contains("robots.txt") || Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(text.contains(check), "{format:?}: {text}");
        assert!(
            text.starts_with("127.0.0.1 ") || text.contains("\"remote\":\"127.0.0.1\""),
            "{text}"
        );
    }
}

/// Polls `check` until it holds or five seconds pass.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_new_build_is_picked_up_without_restart_and_without_mixing() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &["server.memory_file_limit=65536"]);
    let old_css = css_path(&site);
    // Start reading a large file from the old build, slowly.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = vec![0; 1024];
    slow.read_exact(&mut first).unwrap();

    site.write("assets/css/other.css", ".other{color:teal}\n");
    site.write("assets/css/_base.css", "body{color:red}\n");
    // Keeping no earlier build, so none of the old one is left.
    site.build_with(&["build.keep_builds=0", "build.keep_for_secs=0"])
        .unwrap();
    let new_css = css_path(&site);
    assert_ne!(old_css, new_css);
    assert!(eventually(
        || http::get(server.addr, &new_css, &[]).status == 200
    ));
    assert_eq!(
        http::get(server.addr, &old_css, &[]).status,
        404,
        "the old build is gone whole"
    );
    assert_eq!(
        http::get(server.addr, "/", &[]).status,
        404,
        "pages added by hand went with it"
    );

    // The response that began before the swap completes from the old build.
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    let response = http::parse(&first, false);
    assert!(response.body == noise(3 * 1024 * 1024 + 17));
}

#[test]
fn graceful_shutdown_finishes_requests_in_flight() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &["server.memory_file_limit=65536"]);
    let addr = server.addr;
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut received = vec![0; 4096];
    slow.read_exact(&mut received).unwrap();
    let stopper = std::thread::spawn(move || server.stop(true));
    // New connections are refused once the server stops listening.
    assert!(eventually(|| TcpStream::connect(addr).is_err()));
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest).unwrap();
    received.extend_from_slice(&rest);
    let response = http::parse(&received, false);
    assert_eq!(response.status, 200);
    assert!(response.body == noise(3 * 1024 * 1024 + 17));
    stopper.join().unwrap();
}

#[test]
fn keep_alive_connections_serve_several_requests() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = b"GET /robots.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    for _ in 0..3 {
        stream.write_all(request).unwrap();
        let mut buffer = vec![0; 4096];
        let read = stream.read(&mut buffer).unwrap();
        let response = http::parse(&buffer[..read], false);
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "User-agent: *\nAllow: /\n");
    }
}

#[test]
fn the_served_tree_is_unchanged_by_serving() {
    let site = site_with_pages();
    let before = snapshot(&site.dist());
    let server = TestServer::start(&site, &[]);
    http::get(server.addr, "/", &[BR]);
    drop(server);
    assert_eq!(snapshot(&site.dist()), before);
}

/// The 2 KB response reads the same with and without keep-alive pipelining.
#[test]
fn responses_parse_identically_through_the_raw_client() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &[]);
    let a: Response = http::get(server.addr, "/robots.txt", &[]);
    let b: Response = http::get(server.addr, "/robots.txt", &[]);
    assert_eq!(a.body, b.body);
    assert_eq!(a.header("etag"), b.header("etag"));
}
