//! Sessions: the cookie's attributes and signature, values remembered by
//! forms and read by SQL and templates, flash messages, idle and absolute
//! expiry on a clock the test moves, id rotation, the size limit, sled
//! across a restart and a `kill -9`, no store I/O for static files, and
//! Redis shared by two servers (when `KILN_TEST_REDIS_URL` is set).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::Site;
use common::forms::{csrf, post};
use common::http::{self, Response};
use common::server::TestServer;

fn shop() -> Site {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    site
}

/// The `kiln_session=…` pair a response sets.
fn session_cookie(response: &Response) -> Option<String> {
    common::forms::set_cookie(response, "kiln_session")
}

/// The whole `Set-Cookie` value of cookie `name`.
fn set_cookie_header(response: &Response, name: &str) -> String {
    let prefix = format!("{name}=");
    response
        .headers
        .iter()
        .find(|(header, value)| {
            header.eq_ignore_ascii_case("set-cookie") && value.starts_with(&prefix)
        })
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

/// Signs in as `name` with the CSRF pair of `/notes/`; the response.
fn post_profile(server: &TestServer, name: &str) -> Response {
    let (csrf_cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    post(
        server.addr,
        "/profile",
        &[("Cookie", &csrf_cookie)],
        &[("csrf_token", &token), ("name", name)],
    )
}

/// Server options whose session clock reads `now` (Unix milliseconds).
fn options_with_clock(now: &Arc<AtomicU64>) -> kiln::server::ServeOptions {
    let now = Arc::clone(now);
    kiln::server::ServeOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        workers: Some(2),
        clock: kiln::dynamic::session::Clock(Arc::new(move || now.load(Ordering::SeqCst))),
        ..Default::default()
    }
}

/// Signs in as `name` (a POST that sets and rotates the session); returns
/// the session cookie.
fn sign_in(server: &TestServer, cookie: Option<&str>, name: &str) -> String {
    let (csrf_cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    let cookies = match cookie {
        Some(session) => format!("{csrf_cookie}; {session}"),
        None => csrf_cookie,
    };
    let response = post(
        server.addr,
        "/profile",
        &[("Cookie", &cookies)],
        &[("csrf_token", &token), ("name", name)],
    );
    assert_eq!(response.status, 303, "{}", response.text());
    session_cookie(&response).expect("signing in sets the session cookie")
}

/// The name `/whoami` reads from the session (SQL `:session.name`).
fn whoami(server: &TestServer, cookie: &str) -> serde_json::Value {
    let response = http::get(server.addr, "/whoami", &[("Cookie", cookie)]);
    assert_eq!(response.status, 200, "{}", response.text());
    let value: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    value["me"]["name"].clone()
}

fn store_operations(server: &TestServer) -> f64 {
    let body = server.metrics().text();
    body.lines()
        .find_map(|line| {
            line.strip_prefix("kiln_session_store_operations_total ")?
                .parse()
                .ok()
        })
        .expect("session metrics")
}

#[test]
fn only_pages_that_change_the_session_set_its_cookie() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    assert_eq!(
        session_cookie(&http::get(server.addr, "/items/1", &[])),
        None
    );
    assert_eq!(
        session_cookie(&http::get(server.addr, "/notes/", &[])),
        None
    );
    assert_eq!(
        session_cookie(&http::get(server.addr, "/whoami", &[])),
        None
    );
    let posted = post_profile(&server, "Ada");
    let header = set_cookie_header(&posted, "kiln_session");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(header.contains(attribute), "{header}");
    }
    assert!(
        !header.contains("Secure"),
        "no TLS, secure = auto: {header}"
    );
    let value = header
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("kiln_session=");
    assert!(value.len() > 43, "an id with its signature: {value}");
    // Reading the session sets no cookie.
    let cookie = session_cookie(&posted).unwrap();
    assert_eq!(whoami(&server, &cookie), "Ada");
    assert_eq!(
        session_cookie(&http::get(server.addr, "/whoami", &[("Cookie", &cookie)])),
        None
    );
}

#[test]
fn forms_remember_values_and_flash_a_message_once() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let (csrf_cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    let posted = post(
        server.addr,
        "/notes/",
        &[("Cookie", &csrf_cookie)],
        &[
            ("csrf_token", &token),
            ("author", "Grace"),
            ("body", "hello"),
        ],
    );
    assert_eq!(posted.status, 303);
    let session = session_cookie(&posted).expect("the form started a session");
    let cookies = format!("{csrf_cookie}; {session}");
    let first = http::get(server.addr, "/notes/", &[("Cookie", &cookies)]).text();
    assert!(
        first.contains("<p class=\"flash\">Thanks, Grace!</p>"),
        "{first}"
    );
    assert!(
        first.contains("name=\"author\" value=\"Grace\""),
        "the name is remembered"
    );
    let second = http::get(server.addr, "/notes/", &[("Cookie", &cookies)]).text();
    assert!(!second.contains("class=\"flash\""), "a flash shows once");
    assert!(second.contains("name=\"author\" value=\"Grace\""));
    // Another visitor's cached page does not show Grace's name.
    let stranger = http::get(server.addr, "/notes/", &[]).text();
    assert!(stranger.contains("name=\"author\" value=\"\""));
}

#[test]
fn a_tampered_cookie_is_not_a_session() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let cookie = sign_in(&server, None, "Ada");
    let mut tampered = cookie.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(whoami(&server, &tampered), serde_json::Value::Null);
    let forged = "kiln_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(whoami(&server, forged), serde_json::Value::Null);
    assert_eq!(whoami(&server, &cookie), "Ada");
}

#[test]
fn idle_and_absolute_expiry_follow_the_server_clock() {
    let site = shop();
    let now = Arc::new(AtomicU64::new(1_800_000_000_000));
    let options = options_with_clock(&now);
    let overrides = [
        "session.idle_timeout_secs=600",
        "session.max_lifetime_secs=3600",
    ];
    let server = TestServer::start_with_options(&site, &overrides, options);
    let advance = |secs: u64| now.fetch_add(secs * 1000, Ordering::SeqCst);

    let cookie = sign_in(&server, None, "Ada");
    advance(590);
    assert_eq!(
        whoami(&server, &cookie),
        "Ada",
        "used within the idle timeout"
    );
    advance(590);
    assert_eq!(
        whoami(&server, &cookie),
        "Ada",
        "idle time counts from the last use"
    );
    advance(601);
    assert_eq!(
        whoami(&server, &cookie),
        serde_json::Value::Null,
        "idle too long"
    );

    // Active every 550 s, but gone once an hour old.
    let cookie = sign_in(&server, None, "Cy");
    for step in 1..=7u64 {
        advance(550);
        let expected = if step * 550 < 3600 {
            serde_json::json!("Cy")
        } else {
            serde_json::Value::Null
        };
        assert_eq!(
            whoami(&server, &cookie),
            expected,
            "{} s after sign-in",
            step * 550
        );
    }
}

#[test]
fn rotation_gives_a_new_id_and_retires_the_old_one() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let first = sign_in(&server, None, "Ada");
    let second = sign_in(&server, Some(&first), "Ada Lovelace");
    assert_ne!(first, second);
    assert_eq!(whoami(&server, &second), "Ada Lovelace");
    assert_eq!(
        whoami(&server, &first),
        serde_json::Value::Null,
        "the old id is dead"
    );
}

#[test]
fn a_form_that_would_overflow_the_session_is_refused() {
    let site = shop();
    let server = TestServer::start(&site, &["session.max_bytes=64"]);
    let (csrf_cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    let response = post(
        server.addr,
        "/profile",
        &[("Cookie", &csrf_cookie)],
        &[("csrf_token", &token), ("name", &"x".repeat(100))],
    );
    assert_eq!(response.status, 413);
    assert!(
        response
            .text()
            .contains("more in your session than the server allows")
    );
    assert_eq!(session_cookie(&response), None);
}

#[test]
fn sled_sessions_survive_a_restart_and_static_files_never_touch_the_store() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let cookie = sign_in(&server, None, "Ada");
    let css = format!("/{}", site.output_of("css/site.css"));
    let before = store_operations(&server);
    for _ in 0..20 {
        assert_eq!(
            http::get(server.addr, &css, &[("Cookie", &cookie)]).status,
            200
        );
        assert_eq!(
            http::get(server.addr, "/about.txt", &[("Cookie", &cookie)]).status,
            404
        );
    }
    assert_eq!(
        store_operations(&server),
        before,
        "static requests do no session I/O"
    );
    server.stop(true);
    let server = TestServer::start(&site, &[]);
    assert_eq!(whoami(&server, &cookie), "Ada");
}

#[test]
fn two_servers_share_sessions_through_redis() {
    let Some(url) = common::require(
        std::env::var("KILN_TEST_REDIS_URL")
            .map_err(|_| "KILN_TEST_REDIS_URL is not set".to_string()),
        "two_servers_share_sessions_through_redis",
    ) else {
        return;
    };
    let prefix = format!("kiln-test-session-{}:", std::process::id());
    let store = "session.store=\"redis\"".to_string();
    let redis_url = format!("session.redis_url={url:?}");
    let redis_prefix = format!("session.redis_prefix={prefix:?}");
    let overrides = [store.as_str(), redis_url.as_str(), redis_prefix.as_str()];
    let site_a = shop();
    let site_b = shop();
    // One secret key signs both servers' cookies, as in a real deployment.
    let a = TestServer::start(&site_a, &overrides);
    site_b.share_secret_key_of(&site_a);
    let b = TestServer::start(&site_b, &overrides);
    let cookie = sign_in(&a, None, "Shared");
    assert_eq!(whoami(&b, &cookie), "Shared");
    let rotated = sign_in(&b, Some(&cookie), "Renamed");
    assert_eq!(whoami(&a, &rotated), "Renamed");
    assert_eq!(whoami(&a, &cookie), serde_json::Value::Null);
}

/// A `kiln serve` process on `site`; returns it and its address.
fn spawn_kiln(site: &Site) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--no-build", "--addr", "127.0.0.1:0", "--root"])
        .arg(site.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("kiln serve prints its address")
            .unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// The author name `/notes/` prefills from the session.
fn remembered_author(addr: std::net::SocketAddr, cookie: &str) -> String {
    let page = http::get(addr, "/notes/", &[("Cookie", cookie)]).text();
    let start = page.find("name=\"author\" value=\"").expect("author field") + 21;
    page[start..].split('"').next().unwrap().to_string()
}

#[test]
fn sessions_are_old_or_new_after_kill_9_during_writes() {
    let site = shop();
    for round in 0..3 {
        let (mut server, addr) = spawn_kiln(&site);
        let (csrf_cookie, token) = csrf(&http::get(addr, "/notes/", &[]));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let (csrf_cookie, token, stop) =
                    (csrf_cookie.clone(), token.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let first = post(
                        addr,
                        "/notes/",
                        &[("Cookie", &csrf_cookie)],
                        &[
                            ("csrf_token", &token),
                            ("author", &format!("w{writer}-0")),
                            ("body", "start"),
                        ],
                    );
                    let session = session_cookie(&first).expect("a session");
                    let cookies = format!("{csrf_cookie}; {session}");
                    let mut acknowledged = 0;
                    for step in 1.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let author = format!("w{writer}-{step}");
                        let sent = std::panic::catch_unwind(|| {
                            post(
                                addr,
                                "/notes/",
                                &[("Cookie", &cookies)],
                                &[("csrf_token", &token), ("author", &author), ("body", "x")],
                            )
                        });
                        match sent {
                            Ok(response) if response.status == 303 => acknowledged = step,
                            _ => break, // the server died mid-request
                        }
                    }
                    (cookies, writer, acknowledged)
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300 + 100 * round));
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        stop.store(true, Ordering::SeqCst);
        let results: Vec<_> = writers
            .into_iter()
            .map(|writer| writer.join().unwrap())
            .collect();
        let (mut server, addr) = spawn_kiln(&site);
        for (cookies, writer, acknowledged) in results {
            let author = remembered_author(addr, &cookies);
            let old = format!("w{writer}-{acknowledged}");
            let new = format!("w{writer}-{}", acknowledged + 1);
            assert!(
                author == old || author == new,
                "round {round}: writer {writer} has {author:?}, expected {old} or {new}"
            );
        }
        server.kill().unwrap();
        server.wait().unwrap();
    }
}

#[test]
fn cookie_only_sessions_are_encrypted_and_expire_on_the_server_clock() {
    let site = shop();
    let now = Arc::new(AtomicU64::new(1_800_000_000_000));
    let options = options_with_clock(&now);
    let overrides = ["session.store=\"cookie\"", "session.idle_timeout_secs=600"];
    let server = TestServer::start_with_options(&site, &overrides, options);
    let cookie = sign_in(&server, None, "Ada Lovelace");
    assert!(
        !cookie.contains("Ada") && !cookie.contains("Lovelace"),
        "the values are encrypted: {cookie}"
    );
    assert_eq!(whoami(&server, &cookie), "Ada Lovelace");
    assert!(
        !site.path(".kiln/sessions").exists(),
        "no store on the server"
    );

    now.fetch_add(500_000, Ordering::SeqCst);
    let used = http::get(server.addr, "/whoami", &[("Cookie", &cookie)]);
    assert!(used.text().contains("Ada Lovelace"));
    let refreshed =
        session_cookie(&used).expect("using the session re-issues the cookie with its last use");
    now.fetch_add(500_000, Ordering::SeqCst);
    assert_eq!(
        whoami(&server, &cookie),
        serde_json::Value::Null,
        "the old cookie is idle for 1,000 s"
    );
    assert_eq!(
        whoami(&server, &refreshed),
        "Ada Lovelace",
        "the refreshed one for 500 s"
    );
}

#[test]
fn the_cookie_name_and_secure_flag_follow_the_configuration() {
    let site = shop();
    let server = TestServer::start(
        &site,
        &[
            "session.cookie_name=\"sid\"",
            "session.secure=\"always\"",
            "session.same_site=\"strict\"",
        ],
    );
    let header = set_cookie_header(&post_profile(&server, "Ada"), "sid");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attribute), "{header}");
    }
}

/// Behind a TLS-terminating proxy, `secure = "auto"` sent the session
/// cookie without `Secure` (kiln itself spoke plain HTTP), so a visitor's
/// session id could leave over any later plain-HTTP request.
#[test]
fn the_session_cookie_is_secure_when_a_trusted_proxy_says_https() {
    let site = shop();
    let server = TestServer::start(&site, &["server.trusted_proxies=[\"127.0.0.1\"]"]);
    let https = ("X-Forwarded-Proto", "https");
    let (csrf_cookie, token) = csrf(&http::get(server.addr, "/notes/", &[https]));
    assert!(csrf_cookie.starts_with("__Host-"), "{csrf_cookie}");
    let response = post(
        server.addr,
        "/profile",
        &[("Cookie", &csrf_cookie), https],
        &[("csrf_token", &token), ("name", "Ada")],
    );
    assert_eq!(response.status, 303, "{}", response.text());
    let header = set_cookie_header(&response, "kiln_session");
    assert!(
        header.ends_with("; Secure") || header.contains("; Secure;"),
        "{header}"
    );
    // Through the same proxy over plain HTTP the cookie stays usable there.
    let plain = set_cookie_header(&post_profile(&server, "Bob"), "kiln_session");
    assert!(!plain.contains("Secure"), "{plain}");
}
