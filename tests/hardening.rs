//! Hostile input and careless configuration (issue #15): each test is named
//! after what was tried, and checks it is refused or contained by default.
//! The fixture is `tests/fixtures/shop`, built in a temp dir per test.

mod common;

use common::Site;
use common::http;
use common::server::{Captured, TestServer, assert_slow_queries_are_cancelled, quiet_options};

fn shop() -> Site {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    site
}

/// A route that reads the session, marked `public`: a CDN would keep one
/// visitor's page and serve it to the next.
#[test]
fn a_session_reading_route_marked_public_is_refused_at_start() {
    let site = shop();
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    // `max-age` alone lets a shared cache store the page too (RFC 9111).
    for cache_control in ["public, max-age=600", "max-age=300"] {
        site.write(
            "build.toml",
            format!(
                "{config}\n[[route]]\npath = \"/mine\"\ncache_control = \"{cache_control}\"\n\n[[route.query]]\nname = \"me\"\nsql = \"SELECT :session.name AS name\"\n"
            ),
        );
        let err = kiln::server::start(&site.settings(&[]), quiet_options())
            .err()
            .expect("refused");
        let message = err.to_string();
        assert!(message.contains("GET /mine"), "{message}");
        assert!(message.contains("depends on the session"), "{message}");
    }
}

/// Responses that depend on the session say so to every cache on the way.
#[test]
fn pages_that_read_the_session_vary_on_cookie() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    // SQL that reads `:session.name`.
    let whoami = http::get(server.addr, "/whoami", &[]);
    assert_eq!(whoami.status, 200);
    assert_eq!(whoami.header("vary"), Some("Accept-Encoding, Cookie"));
    // A template rendered without a cache is handed the session.
    let list = http::get(server.addr, "/items/", &[]);
    assert_eq!(list.status, 200);
    assert_eq!(list.header("vary"), Some("Accept-Encoding, Cookie"));
    // A cached page that does not vary on the session is the same for all.
    let item = http::get(server.addr, "/items/3", &[]);
    assert_eq!(item.status, 200);
    assert_eq!(item.header("vary"), Some("Accept-Encoding"));
}

/// `X-Kiln-Cache` and `Age` told any visitor how the server caches.
#[test]
fn cache_debug_headers_are_sent_only_when_configured() {
    let site = shop();
    let server = TestServer::start(&site, &["server.debug_headers=false"]);
    for _ in 0..2 {
        let response = http::get(server.addr, "/items/3", &[]);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-kiln-cache"), None);
        assert_eq!(response.header("age"), None);
    }
    drop(server);
    let server = TestServer::start(&site, &["server.debug_headers=true"]);
    let response = http::get(server.addr, "/items/3", &[]);
    assert!(response.header("x-kiln-cache").is_some());
}

/// `assets/` holding a symbolic link to a file outside the site published
/// that file.
#[test]
fn an_assets_symlink_pointing_outside_the_site_is_refused() {
    let site = Site::fixture("shop");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("passwd"), "root:x:0:0\n").unwrap();
    std::fs::create_dir_all(site.path("assets/files")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("passwd"),
        site.path("assets/files/passwd"),
    )
    .unwrap();
    let err = site.build().expect_err("the build refuses the link");
    let message = err.to_string();
    assert!(message.contains("assets/files/passwd"), "{message}");
    assert!(message.contains("outside the site root"), "{message}");
    assert!(!site.dist().join("files").exists(), "nothing published");

    // Inside the site, but its secrets: refused too.
    std::fs::remove_file(site.path("assets/files/passwd")).unwrap();
    site.write(".kiln/secret.key", [7u8; 32]);
    for (link, target) in [
        ("key", ".kiln/secret.key"),
        ("config", "build.toml"),
        ("all", "."),
    ] {
        let path = site.path(&format!("assets/files/{link}"));
        std::os::unix::fs::symlink(site.path(target), &path).unwrap();
        let err = site.build().expect_err("the build refuses the link");
        assert!(
            err.to_string().contains("does not publish"),
            "{target}: {err}"
        );
        std::fs::remove_file(path).unwrap();
    }
    // A link that stays inside the site, to a file of its own, is fine.
    site.write("shared/notice.txt", "inside\n");
    std::os::unix::fs::symlink(
        site.path("shared/notice.txt"),
        site.path("assets/files/notice.txt"),
    )
    .unwrap();
    site.build().expect("a link inside the site builds");
}

/// A visitor's note holding the cache's CSRF placeholder text printed
/// every later visitor's token inside that note.
#[test]
fn a_message_holding_the_csrf_placeholder_text_does_not_receive_tokens() {
    use common::forms::{csrf, post};
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let form = http::get(server.addr, "/notes/", &[]);
    let (cookie, token) = csrf(&form);
    // The fixed placeholder of earlier versions, and the prefix of today's.
    let planted = "kiln-csrf-placeholder-6f0e1c2b9a kiln-csrf-";
    let posted = post(
        server.addr,
        "/notes/",
        &[("Cookie", &cookie)],
        &[("csrf_token", &token), ("author", "Eve"), ("body", planted)],
    );
    assert_eq!(posted.status, 303, "{}", posted.text());
    for _ in 0..2 {
        // A new visitor each time: a miss, then a hit from the cache.
        let page = http::get(server.addr, "/notes/", &[]);
        let (_, visitors_token) = csrf(&page);
        let text = page.text();
        assert!(text.contains(planted), "{text}");
        assert_eq!(
            text.matches(visitors_token.as_str()).count(),
            1,
            "the token appears in the form only: {text}"
        );
    }
}

/// `Origin: https://evil.example` with `X-Forwarded-Host: evil.example`
/// from a client (no proxy configured) passed the origin check.
#[test]
fn a_forwarded_host_from_an_untrusted_client_does_not_pass_the_origin_check() {
    use common::forms::{csrf, post};
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let (cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    let refused = post(
        server.addr,
        "/notes/",
        &[
            ("Cookie", &cookie),
            ("Origin", "https://evil.example"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "host=evil.example;proto=https"),
        ],
        &[("csrf_token", &token), ("author", "Eve"), ("body", "hello")],
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
}

/// Behind a configured proxy, its forwarded client, scheme and host are
/// believed: the log names the client, the CSRF cookie is `Secure` and
/// HSTS is sent when the visitor used https, and the origin check compares
/// with the host the visitor asked for.
#[test]
fn a_trusted_proxys_forwarded_headers_are_believed() {
    use common::forms::{csrf, post};
    use kiln::config::AccessLogFormat;
    use kiln::server::access_log::AccessLog;
    let site = shop();
    let captured = Captured::default();
    let log = AccessLog::to_writer(AccessLogFormat::Combined, Box::new(captured.clone()));
    let server = TestServer::start_with_log(
        &site,
        &["server.trusted_proxies=[\"127.0.0.1\"]"],
        Some(log),
    );
    let forwarded = [
        ("X-Forwarded-For", "203.0.113.50, 198.51.100.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "shop.example"),
    ];
    let form = http::get(server.addr, "/notes/", &forwarded);
    assert!(
        form.header("set-cookie")
            .is_some_and(|cookie| cookie.contains("; Secure")),
        "{:?}",
        form.headers
    );
    assert!(form.header("strict-transport-security").is_some());
    assert!(
        form.header("set-cookie")
            .is_some_and(|cookie| cookie.starts_with("__Host-kiln_csrf=")),
        "over https the cookie takes the __Host- prefix"
    );
    let (cookie, token) = csrf(&form);
    let mut headers = forwarded.to_vec();
    headers.push(("Cookie", &cookie));
    headers.push(("Origin", "https://shop.example"));
    let accepted = post(
        server.addr,
        "/notes/",
        &headers,
        &[("csrf_token", &token), ("author", "Ada"), ("body", "hello")],
    );
    assert_eq!(accepted.status, 303, "{}", accepted.text());
    // Over plain HTTP, no HSTS.
    let plain = http::get(server.addr, "/items/3", &[("X-Forwarded-Proto", "http")]);
    assert!(plain.header("strict-transport-security").is_none());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        if text.lines().count() >= 3 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(text.starts_with("198.51.100.7 "), "{text}");
}

/// A web page that points its own domain at 127.0.0.1 (DNS rebinding)
/// reached `kiln watch`: the dev site, its event stream and form writes to
/// the real database.
#[test]
fn dns_rebinding_to_kiln_watch_is_refused() {
    let site = shop();
    let settings = kiln::Settings::load_for_watch(site.root(), &[]).expect("settings");
    kiln::build(&settings, &kiln::build::report::Silent).expect("the watch build");
    let server = kiln::server::start(&settings, quiet_options()).expect("starts");
    let port = server.addr.port();
    let rebound = get_for_host(server.addr, "/items/", "evil.example");
    assert_eq!(rebound.status, 421, "{}", rebound.text());
    // Health probes name the address, whatever the site is called.
    assert_eq!(
        get_for_host(server.addr, "/healthz", "10.1.2.3:8080").status,
        200
    );
    assert_eq!(rebound.header("x-content-type-options"), Some("nosniff"));
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let local = get_for_host(server.addr, "/items/", &host);
        assert_eq!(local.status, 200, "{host}");
    }
    let _ = server.stop(false);
    // `kiln serve` answers any host unless told otherwise, and then only those.
    let settings = site.settings(&["server.allowed_hosts=[\".shop.example\"]"]);
    let server = kiln::server::start(&settings, quiet_options()).expect("starts");
    let other = get_for_host(server.addr, "/items/", "evil.example");
    assert_eq!(other.status, 421);
    let ours = get_for_host(server.addr, "/items/", "www.shop.example");
    assert_eq!(ours.status, 200);
}

/// A GET whose `Host` is `host` (the helpers send the socket address).
fn get_for_host(addr: std::net::SocketAddr, path: &str, host: &str) -> http::Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    http::raw(addr, request.as_bytes(), false)
}

/// `/slow?n=9000000000000`, several at once: the pool was held until the
/// queries finished, and every dynamic route answered 503 meanwhile.
#[test]
fn long_running_queries_are_cancelled_at_the_statement_timeout() {
    let site = shop();
    let server = TestServer::start(&site, &["database.statement_timeout_ms=300"]);
    assert_slow_queries_are_cancelled(&server);
}

/// `?n=9000000000000` on an `int` input without `max`: `kiln check` says
/// so, naming the route and the input.
#[test]
fn kiln_check_warns_about_integers_without_max() {
    let site = shop();
    assert!(
        kiln::server::check(&site.settings(&[]))
            .expect("check runs")
            .warnings
            .is_empty()
    );
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    site.write(
        "build.toml",
        format!(
            "{config}\n[[route]]\npath = \"/latest\"\nparams.limit = {{ type = \"int\", default = 10 }}\n\n[[route.query]]\nname = \"items\"\nallow_scan = true\nsql = \"SELECT id FROM items ORDER BY id LIMIT :limit\"\n"
        ),
    );
    let report = kiln::server::check(&site.settings(&[])).expect("check runs");
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("route GET /latest: params.limit is an int without max"),
        "{:?}",
        report.warnings
    );
}

/// A CSRF token taken from one visitor's page, replayed by another client
/// with its own cookie; two CSRF cookies, the first planted.
#[test]
fn a_csrf_token_from_another_visitors_page_or_a_planted_cookie_is_refused() {
    use common::forms::{csrf, post};
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let (cookie_a, token_a) = csrf(&http::get(server.addr, "/notes/", &[]));
    let (cookie_b, token_b) = csrf(&http::get(server.addr, "/notes/", &[]));
    let fields = [("author", "Eve"), ("body", "hello")];
    let with = |cookie: &str, token: &str| {
        let mut pairs = vec![("csrf_token", token)];
        pairs.extend_from_slice(&fields);
        post(server.addr, "/notes/", &[("Cookie", cookie)], &pairs).status
    };
    assert_eq!(with(&cookie_b, &token_a), 403, "A's token with B's cookie");
    assert_eq!(
        with(&format!("{cookie_b}; {cookie_a}"), &token_a),
        403,
        "two CSRF cookies"
    );
    assert_eq!(with(&cookie_a, &token_a), 303);
    assert_eq!(with(&cookie_b, &token_b), 303);
}
