//! Hostile input and careless configuration (issue #15): each test is named
//! after what was tried, and checks it is refused or contained by default.
//! The fixture is `tests/fixtures/shop`, built in a temp dir per test.

mod common;

use common::Site;
use common::http;
use common::server::{
    Captured, TestServer, assert_slow_queries_are_cancelled, quiet_options, site_with_pages,
};

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

/// Behind a proxy that rewrites `Host` to its upstream's name: every
/// request was refused (the proxy's `Host` is not the site's), or, with
/// that name allowed, the check protected nothing. From a trusted proxy
/// the forwarded host is the one checked; from anyone else, `Host`.
#[test]
fn the_host_allow_list_checks_what_a_trusted_proxy_forwarded() {
    let site = shop();
    let settings = site.settings(&[
        "server.allowed_hosts=[\"shop.example\"]",
        "server.trusted_proxies=[\"127.0.0.1\"]",
    ]);
    let server = kiln::server::start(&settings, quiet_options()).expect("starts");
    let forwarded = |host: &str| {
        let request = format!(
            "GET /items/ HTTP/1.1\r\nHost: upstream:8080\r\nX-Forwarded-Host: {host}\r\nConnection: close\r\n\r\n"
        );
        http::raw(server.addr, request.as_bytes(), false).status
    };
    assert_eq!(forwarded("shop.example"), 200);
    assert_eq!(forwarded("evil.example"), 421);
    assert_eq!(
        get_for_host(server.addr, "/items/", "upstream:8080").status,
        421
    );
    let _ = server.stop(false);
    // Anyone else's X-Forwarded-Host is not believed.
    let settings = site.settings(&["server.allowed_hosts=[\"shop.example\"]"]);
    let server = kiln::server::start(&settings, quiet_options()).expect("starts");
    let request = "GET /items/ HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: shop.example\r\nConnection: close\r\n\r\n";
    assert_eq!(
        http::raw(server.addr, request.as_bytes(), false).status,
        421
    );
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

// Connections: deadlines on every request, caps on how many. Each server
// here is started with short deadlines so the tests run in seconds; the
// defaults are documented in docs/build-toml.md.

/// A kept-alive connection: requests written and responses read one by one.
struct KeptAlive {
    stream: std::net::TcpStream,
}

impl KeptAlive {
    fn open(addr: std::net::SocketAddr) -> KeptAlive {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        KeptAlive { stream }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.stream.write_all(bytes)
    }

    /// Reads one response with a Content-Length body.
    fn response(&mut self) -> http::Response {
        use std::io::Read;
        let mut bytes = Vec::new();
        let mut byte = [0u8; 1];
        while !bytes.ends_with(b"\r\n\r\n") {
            let read = self.stream.read(&mut byte).expect("read head");
            assert_eq!(
                read,
                1,
                "closed mid-head: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            bytes.push(byte[0]);
        }
        let head = http::parse(&bytes, true);
        let length: usize = head
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).expect("read body");
        bytes.extend_from_slice(&body);
        http::parse(&bytes, false)
    }

    /// Whether the server closes the connection within `within` (reading
    /// and discarding whatever it still sends).
    fn closed_within(&mut self, within: std::time::Duration) -> bool {
        use std::io::Read;
        let deadline = std::time::Instant::now() + within;
        let mut sink = [0u8; 64 * 1024];
        while std::time::Instant::now() < deadline {
            self.stream
                .set_read_timeout(Some(std::time::Duration::from_millis(200)))
                .unwrap();
            match self.stream.read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}

fn get_request(addr: std::net::SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

fn metrics_text(server: &TestServer) -> String {
    server.metrics().text()
}

/// One request answered on a kept-alive connection, then the next head
/// dribbled a byte at a time: the connection stayed open for good, and a
/// thousand of them took every route down.
#[test]
fn a_second_request_head_dribbled_on_a_kept_alive_connection_is_cut_off() {
    let site = site_with_pages();
    let server = TestServer::start(
        &site,
        &["server.header_timeout_secs=1", "server.keep_alive_secs=60"],
    );
    let mut connection = KeptAlive::open(server.addr);
    connection.write(&get_request(server.addr, "/")).unwrap();
    assert_eq!(connection.response().status, 200);
    connection.write(b"GET / HTTP/1.1\r\n").unwrap();
    let started = std::time::Instant::now();
    let mut cut_off = false;
    // Twenty seconds of dribbling, at most: far past the deadline.
    while started.elapsed() < std::time::Duration::from_secs(20) {
        if connection.write(b"X").is_err() || connection.closed_within(Default::default()) {
            cut_off = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(cut_off, "the dribbled head kept its connection");
    let metrics = metrics_text(&server);
    assert!(
        metrics.contains("kiln_connections_timed_out_total{phase=\"head\"} 1"),
        "{metrics}"
    );
}

/// A pipelined request's head left unfinished after the first response:
/// actix-http had buffered its bytes and set no timer at all.
#[test]
fn a_pipelined_head_left_unfinished_is_cut_off() {
    let site = site_with_pages();
    let server = TestServer::start(
        &site,
        &["server.header_timeout_secs=1", "server.keep_alive_secs=1"],
    );
    let mut connection = KeptAlive::open(server.addr);
    let mut request = get_request(server.addr, "/");
    request.extend_from_slice(b"GET / HT");
    connection.write(&request).unwrap();
    assert_eq!(connection.response().status, 200);
    assert!(
        connection.closed_within(std::time::Duration::from_secs(20)),
        "the unfinished head kept its connection"
    );
}

/// A form body sent at 20 bytes a second was never cut off.
#[test]
fn a_form_body_sent_at_twenty_bytes_a_second_is_cut_off() {
    let site = shop();
    let server = TestServer::start(
        &site,
        &["server.body_timeout_secs=1", "server.min_body_rate=1024"],
    );
    let mut connection = KeptAlive::open(server.addr);
    let head = format!(
        "POST /notes/ HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n",
        server.addr
    );
    connection.write(head.as_bytes()).unwrap();
    let dribbler = {
        let mut stream = connection.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            for _ in 0..200 {
                if stream.write_all(&[b'a'; 20]).is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        })
    };
    let response = connection.response();
    assert_eq!(response.status, 408);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(connection.closed_within(std::time::Duration::from_secs(20)));
    drop(connection);
    dribbler.join().unwrap();
    // A body at a normal pace still goes through (to the CSRF check).
    let response = http::send_body(
        server.addr,
        "POST",
        "/notes/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"author=ann&body=hello",
    );
    assert_eq!(response.status, 403);
}

/// A client that asks for a lot and never reads held its connection, and
/// the response buffered for it, for good.
#[test]
fn a_client_that_stops_reading_is_disconnected() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &["server.send_timeout_secs=1"]);
    // A small receive window, and 30 MiB asked for, never read.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).expect("connect");
    let mut connection = KeptAlive {
        stream: socket.into(),
    };
    let request = get_request(server.addr, "/big.bin");
    let mut pipelined = Vec::new();
    for _ in 0..10 {
        pipelined.extend_from_slice(&request);
    }
    // The server stops reading once its writes stall, so this write may
    // block until the connection is closed: it runs on its own thread.
    let mut writer = connection.stream.try_clone().unwrap();
    let writing = std::thread::spawn(move || {
        use std::io::Write;
        let _ = writer.write_all(&pipelined);
    });
    let started = std::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if metrics_text(&server).contains("kiln_connections_timed_out_total{phase=\"send\"} 1") {
            closed = true;
            break;
        }
    }
    assert!(closed, "the stalled writer kept its connection");
    assert!(connection.closed_within(std::time::Duration::from_secs(20)));
    writing.join().unwrap();
}

/// A thousand idle connections from one host exhausted file descriptors
/// and took every route down for everyone.
#[test]
fn connections_from_one_address_are_capped_and_others_still_get_in() {
    let site = site_with_pages();
    let server = TestServer::start(
        &site,
        &[
            "server.max_connections_per_ip=4",
            "server.header_timeout_secs=30",
        ],
    );
    let held: Vec<KeptAlive> = (0..4).map(|_| answered_once(server.addr)).collect();
    let refused = http::get(server.addr, "/", &[]);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Another address is not held to 127.0.0.1's share.
    let other = get_from(server.addr, "127.0.0.2", "/");
    assert_eq!(other.status, 200);
    drop(held);
    let started = std::time::Instant::now();
    let mut status = 0;
    while started.elapsed() < std::time::Duration::from_secs(10) {
        status = http::get(server.addr, "/", &[]).status;
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(status, 200, "places are given back when connections close");
    let metrics = metrics_text(&server);
    assert!(
        metrics.contains("kiln_connections_refused_total{reason=\"max_connections_per_ip\"} 1"),
        "{metrics}"
    );
}

/// Every connection counts against `server.max_connections`.
#[test]
fn the_connection_cap_refuses_new_connections_until_one_closes() {
    let site = site_with_pages();
    let server = TestServer::start(
        &site,
        &["server.max_connections=3", "server.header_timeout_secs=30"],
    );
    // Each answered once, so each holds its place.
    let held: Vec<KeptAlive> = (0..3).map(|_| answered_once(server.addr)).collect();
    let refused = get_from(server.addr, "127.0.0.2", "/");
    assert_eq!(refused.status, 503);
    drop(held);
    let mut status = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(10) {
        status = http::get(server.addr, "/", &[]).status;
        if status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(status, 200);
}

/// A kept-alive connection carries `server.max_requests_per_connection`
/// requests, then is closed (nginx's `keepalive_requests`).
#[test]
fn a_kept_alive_connection_is_closed_after_its_allowance_of_requests() {
    let site = site_with_pages();
    let server = TestServer::start(&site, &["server.max_requests_per_connection=3"]);
    let mut connection = KeptAlive::open(server.addr);
    for n in 1..=3 {
        connection.write(&get_request(server.addr, "/")).unwrap();
        let response = connection.response();
        assert_eq!(response.status, 200);
        let closes = response.header("connection") == Some("close");
        assert_eq!(closes, n == 3, "request {n}");
    }
    assert!(connection.closed_within(std::time::Duration::from_secs(10)));
}

/// A kept-alive connection that has had one request answered.
fn answered_once(addr: std::net::SocketAddr) -> KeptAlive {
    let mut connection = KeptAlive::open(addr);
    connection.write(&get_request(addr, "/")).unwrap();
    assert_eq!(connection.response().status, 200);
    connection
}

/// A GET sent from `source` (another loopback address).
fn get_from(addr: std::net::SocketAddr, source: &str, path: &str) -> http::Response {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket
        .bind(&source.into())
        .expect("bind a second loopback address");
    socket.connect(&addr.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    http::parse(&bytes, false)
}

/// `/metrics` through a reverse proxy on the same host: every visitor
/// looked like a loopback client and read the server's metrics.
#[test]
fn metrics_are_not_served_to_the_public_listener_by_default() {
    let site = site_with_pages();
    site.write("metrics.token", "0123456789abcdef0123\n");
    let token = site.path("metrics.token");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = TestServer::start(&site, &["server.metrics_token_file=\"metrics.token\""]);
    // From loopback, as a same-host proxy forwards every visitor.
    assert_eq!(http::get(server.addr, "/metrics", &[]).status, 404);
    let wrong = [("Authorization", "Bearer 0123456789abcdef0124")];
    assert_eq!(http::get(server.addr, "/metrics", &wrong).status, 404);
    let right = [("Authorization", "Bearer 0123456789abcdef0123")];
    let metrics = http::get(server.addr, "/metrics", &right);
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("kiln_open_connections"));
    // Health probes still reach the public listener.
    assert_eq!(http::get(server.addr, "/healthz", &[]).status, 200);
    // The admin listener answers its two endpoints and nothing else.
    let admin = server.running().admin_addr.unwrap();
    assert_eq!(http::get(admin, "/metrics", &[]).status, 200);
    assert_eq!(http::get(admin, "/healthz", &[]).status, 200);
    assert_eq!(http::get(admin, "/robots.txt", &[]).status, 404);
    drop(server);
    // `loopback` serves local clients, but not what a proxy forwarded.
    let server = TestServer::start(&site, &["server.metrics=\"loopback\""]);
    assert_eq!(http::get(server.addr, "/metrics", &[]).status, 200);
    let forwarded = [("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(http::get(server.addr, "/metrics", &forwarded).status, 404);
}

/// A metrics token anyone could guess, or in a file others can read.
#[test]
fn a_weak_or_readable_metrics_token_is_refused_at_start() {
    let site = site_with_pages();
    use std::os::unix::fs::PermissionsExt;
    for (contents, mode, expected) in [
        ("short\n", 0o600, "at least 16"),
        ("0123456789abcdef0123\n", 0o644, "chmod 600"),
    ] {
        site.write("metrics.token", contents);
        let token = site.path("metrics.token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
        let settings = site.settings(&["server.metrics_token_file=\"metrics.token\""]);
        let err = kiln::server::start(&settings, quiet_options())
            .err()
            .expect("refused");
        let message = err.to_string();
        assert!(message.contains("metrics.token"), "{message}");
        assert!(message.contains(expected), "{message}");
    }
}

/// Slow queries, many at once: every dynamic route waited on the pool and
/// answered 503 together; dynamic requests now shed at once beyond their
/// places and queue, and static files are served all the while.
#[test]
fn dynamic_routes_shed_load_while_static_files_keep_being_served() {
    let site = shop();
    let css = site.output_of("css/site.css");
    let server = TestServer::start(
        &site,
        &[
            "server.dynamic_in_flight=1",
            "server.admission_queue=1",
            "server.admission_wait_ms=200",
            "database.statement_timeout_ms=3000",
        ],
    );
    let addr = server.addr;
    let slow = std::thread::spawn(move || http::get(addr, "/slow?n=9000000000000", &[]));
    // The slow query holds the only place; wait until it does.
    wait_until_the_only_place_is_taken(&server);
    let shed = http::get(server.addr, "/items/3", &[]);
    assert_eq!(shed.status, 503, "{}", shed.text());
    assert_eq!(shed.header("retry-after"), Some("1"));
    let file = http::get(server.addr, &format!("/{css}"), &[]);
    assert_eq!(file.status, 200);
    assert_eq!(slow.join().unwrap().status, 503);
    assert_eq!(http::get(server.addr, "/items/3", &[]).status, 200);
    let metrics = metrics_text(&server);
    assert!(
        metrics.contains("kiln_requests_shed_total{class=\"dynamic\"} 1"),
        "{metrics}"
    );
}

/// Waits (up to 10 s) until a dynamic request holds a database place.
fn wait_until_the_only_place_is_taken(server: &TestServer) {
    let started = std::time::Instant::now();
    while !metrics_text(server).contains("kiln_requests_in_flight{class=\"dynamic\"} 1")
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Cache hits took a place as if they ran queries: with slow queries
/// holding every place, a cached page answered 503 although it needed no
/// database. A place is now held only around database work.
#[test]
fn cached_pages_are_served_while_slow_queries_hold_every_place() {
    let site = shop();
    let server = TestServer::start(
        &site,
        &[
            "server.dynamic_in_flight=1",
            "server.admission_queue=0",
            "database.statement_timeout_ms=3000",
        ],
    );
    assert_eq!(http::get(server.addr, "/items/3", &[]).status, 200);
    let addr = server.addr;
    let slow = std::thread::spawn(move || http::get(addr, "/slow?n=9000000000000", &[]));
    wait_until_the_only_place_is_taken(&server);
    let hit = http::get(server.addr, "/items/3", &[]);
    assert_eq!(hit.status, 200, "{}", hit.text());
    assert_eq!(hit.header("x-kiln-cache"), Some("hit"));
    assert_eq!(
        http::get(server.addr, "/items/4", &[]).status,
        503,
        "a miss needs a place"
    );
    assert_eq!(slow.join().unwrap().status, 503);
}

/// A client posting in a loop: with `server.write_rate_per_minute`, its
/// writes beyond the rate are refused before any work is done.
#[test]
fn writes_beyond_the_per_client_rate_get_429() {
    let site = shop();
    let server = TestServer::start(&site, &["server.write_rate_per_minute=2"]);
    let post = || {
        http::send_body(
            server.addr,
            "POST",
            "/notes/",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"author=ann&body=hello",
        )
    };
    // No CSRF token: refused by the form, but counted against the rate.
    assert_eq!(post().status, 403);
    assert_eq!(post().status, 403);
    let limited = post();
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("60"));
    // Reads are not writes.
    assert_eq!(http::get(server.addr, "/items/3", &[]).status, 200);
}

/// A client that gave up on a slow page left its query running, holding a
/// pooled connection until the statement timeout.
#[test]
fn a_client_that_disconnects_cancels_its_query() {
    let site = shop();
    let server = TestServer::start(&site, &common::server::ONE_CONNECTION);
    common::server::assert_a_departing_client_cancels_its_query(&server);
}

/// `?q=%` in a `LIKE` search matched every row: user text injected
/// wildcards. The documented escape makes it match only itself.
#[test]
fn a_search_for_a_wildcard_matches_only_the_character() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let items = |query: &str| {
        let response = http::get(server.addr, &format!("/items/?q={query}"), &[]);
        assert_eq!(response.status, 200);
        response.text().matches("class=\"item\"").count()
    };
    assert_eq!(items("Item%201"), 10, "a plain search still matches");
    assert_eq!(items("%25"), 0);
    assert_eq!(items("_"), 0);
    assert_eq!(items("Item_1"), 0);
}
