//! Dynamic routes over SQLite: typed inputs, result shapes, forms with CSRF
//! and post/redirect/get, transactions retried on SQLITE_BUSY, an exhausted
//! pool answering 503, migrations, the plan check and metrics. The
//! fixture is `tests/fixtures/shop`, built in a temp dir per test.

mod common;

use std::time::Duration;

use common::Site;
use common::forms::csrf;
use common::http;
use common::server::{TestServer, quiet_options};

fn shop() -> Site {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    site
}

fn metric(server: &TestServer, name: &str) -> f64 {
    let body = server.metrics().text();
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn get_routes_render_lists_single_rows_and_json() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let list = http::get(server.addr, "/items/?page=2", &[]);
    assert_eq!(list.status, 200);
    assert_eq!(
        list.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = list.text();
    assert_eq!(html.matches("class=\"item\"").count(), 10);
    assert!(html.contains("data-id=\"11\""), "page 2 starts at item 11");
    let css = site.output_of("css/site.css");
    assert!(
        html.contains(&format!("href=\"/{css}\"")),
        "templates link hashed assets"
    );

    let one = http::get(server.addr, "/items/42", &[]);
    assert_eq!(one.status, 200);
    assert!(one.text().contains("<h1>Item 42</h1>"));

    let json = http::get(server.addr, "/api/items/7", &[]);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"item": {"id": 7, "name": "Item 7", "price": 700}})
    );

    let missing = http::get(server.addr, "/items/4242", &[]);
    assert_eq!(
        missing.status, 404,
        "a one-row query that finds nothing is a 404"
    );
    let head = http::head(server.addr, "/items/42", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn typed_parameters_reject_bad_input() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    assert_eq!(http::get(server.addr, "/items/abc", &[]).status, 404);
    assert_eq!(http::get(server.addr, "/items/1.5", &[]).status, 404);
    let zero = http::get(server.addr, "/items/?page=0", &[]);
    assert_eq!(zero.status, 400);
    assert!(zero.text().contains("page must be at least 1"));
    assert_eq!(http::get(server.addr, "/items/?page=two", &[]).status, 400);
    let long = format!("/items/?q={}", "x".repeat(51));
    assert_eq!(http::get(server.addr, &long, &[]).status, 400);
    let wrong = http::send(server.addr, "DELETE", "/items/1", &[]);
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD"));
}

#[test]
fn injection_attempts_are_inert() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    for attack in [
        "%27%3B%20DROP%20TABLE%20items%3B%20--",
        "%25%27%20OR%201%3D1%20--",
        "%22%29%20UNION%20SELECT%20sqlite_version%28%29--",
    ] {
        let response = http::get(server.addr, &format!("/items/?q={attack}"), &[]);
        assert_eq!(response.status, 200, "{attack}");
        assert_eq!(
            response.text().matches("class=\"item\"").count(),
            0,
            "{attack}"
        );
    }
    assert_eq!(
        http::get(server.addr, "/items/1%20OR%201=1", &[]).status,
        404
    );
    // The table is still there, every row intact.
    let last = http::get(server.addr, "/api/items/100", &[]);
    assert_eq!(last.status, 200);
    let found = http::get(server.addr, "/items/?q=Item%2099", &[]).text();
    assert!(found.contains("data-id=\"99\""));
}

#[test]
fn forms_refuse_requests_without_a_valid_csrf_token() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let page = http::get(server.addr, "/notes/", &[]);
    let (cookie, token) = csrf(&page);
    assert!(page.header("set-cookie").unwrap().contains("HttpOnly"));
    assert!(page.header("set-cookie").unwrap().contains("SameSite=Lax"));
    assert_eq!(page.header("cache-control"), Some("private, no-cache"));
    let fields = [("author", "Ada"), ("body", "Hello")];

    let no_cookie = common::forms::post(
        server.addr,
        "/notes/",
        &[],
        &[("csrf_token", &token), fields[0], fields[1]],
    );
    assert_eq!(no_cookie.status, 403);
    let no_token = common::forms::post(server.addr, "/notes/", &[("Cookie", &cookie)], &fields);
    assert_eq!(no_token.status, 403);
    let forged = "AAAA.BBBB".to_string();
    let forged_pair = common::forms::post(
        server.addr,
        "/notes/",
        &[("Cookie", &format!("kiln_csrf={forged}"))],
        &[("csrf_token", &forged), fields[0], fields[1]],
    );
    assert_eq!(
        forged_pair.status, 403,
        "an unsigned token is refused even when both match"
    );
    let cross_site = common::forms::post(
        server.addr,
        "/notes/",
        &[("Cookie", &cookie), ("Origin", "https://evil.example")],
        &[("csrf_token", &token), fields[0], fields[1]],
    );
    assert_eq!(cross_site.status, 403);
    let notes = http::get(server.addr, "/notes/", &[]).text();
    assert!(
        !notes.contains("class=\"note\""),
        "no refused form wrote anything"
    );

    let origin = format!("http://{}", server.addr);
    let accepted = common::forms::post(
        server.addr,
        "/notes/",
        &[("Cookie", &cookie), ("Origin", &origin)],
        &[("csrf_token", &token), fields[0], fields[1]],
    );
    assert_eq!(accepted.status, 303);
    // A page rendered for a visitor who has the cookie reuses its token.
    let again = http::get(server.addr, "/notes/", &[("Cookie", &cookie)]);
    assert!(!again.has("set-cookie"));
    assert!(again.text().contains(&token));
}

#[test]
fn post_redirect_get_and_invalid_input_re_renders_with_errors() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let (cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    let headers = [("Cookie", cookie.as_str())];

    let created = common::forms::post(
        server.addr,
        "/notes/",
        &headers,
        &[
            ("csrf_token", &token),
            ("author", "Grace"),
            ("body", "<b>bold</b> claim"),
        ],
    );
    assert_eq!(created.status, 303);
    assert_eq!(
        created.header("location"),
        Some("/notes/#note-1"),
        "RETURNING id fills the redirect"
    );
    let list = http::get(server.addr, "/notes/", &headers).text();
    assert!(list.contains("id=\"note-1\""));
    assert!(list.contains("&lt;b&gt;bold"), "output is escaped");
    assert!(!list.contains("<b>bold"));

    let invalid = common::forms::post(
        server.addr,
        "/notes/",
        &headers,
        &[("csrf_token", &token), ("author", ""), ("body", "x")],
    );
    assert_eq!(invalid.status, 422);
    let html = invalid.text();
    assert!(html.contains("data-field=\"author\">is required"));
    assert!(html.contains("data-field=\"body\">must be at least 2 characters"));
    assert!(html.contains(">x</textarea>"), "submitted values are kept");
    assert!(
        html.contains("id=\"note-1\""),
        "the page's queries ran for the re-render"
    );

    let api = common::forms::post(
        server.addr,
        "/api/notes",
        &headers,
        &[
            ("csrf_token", &token),
            ("author", "x".repeat(21).as_str()),
            ("body", "ok"),
        ],
    );
    assert_eq!(api.status, 422);
    let errors: serde_json::Value = serde_json::from_slice(&api.body).unwrap();
    assert_eq!(
        errors,
        serde_json::json!({"errors": {"author": "must be at most 20 characters"}})
    );

    let json_body = http::send_body(
        server.addr,
        "POST",
        "/api/notes",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(json_body.status, 415);
    let counted = http::get(server.addr, "/notes/", &headers).text();
    assert_eq!(counted.matches("class=\"note\"").count(), 1);
}

#[test]
fn every_statement_of_a_write_route_runs_in_one_transaction() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let (cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    for body in ["one", "two", "three"] {
        let response = common::forms::post(
            server.addr,
            "/notes/",
            &[("Cookie", &cookie)],
            &[("csrf_token", &token), ("author", "a"), ("body", body)],
        );
        assert_eq!(response.status, 303);
    }
    drop(server);
    let db = rusqlite::Connection::open(site.path("data/shop.db")).unwrap();
    let (notes, counter): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM notes), (SELECT value FROM counters WHERE name = 'notes')",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((notes, counter), (3, 3));
}

#[test]
fn dynamic_pages_have_entity_tags_and_compression() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let first = http::get(server.addr, "/items/", &[]);
    let etag = first.header("etag").expect("etag").to_string();
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    let again = http::get(server.addr, "/items/", &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let gzip = http::get(server.addr, "/items/", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    // The shop has sessions, and an uncached template is handed the
    // session, so the page varies on the cookie too.
    assert_eq!(gzip.header("vary"), Some("Accept-Encoding, Cookie"));
    let mut decoded = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&gzip.body[..]),
        &mut decoded,
    )
    .unwrap();
    assert_eq!(decoded.as_bytes(), first.body.as_slice());
    assert_ne!(
        gzip.header("etag"),
        Some(etag.as_str()),
        "each coding has its own tag"
    );
}

#[test]
fn sqlite_busy_writers_are_retried_then_answered_503() {
    let site = shop();
    let server = TestServer::start(
        &site,
        &["database.busy_timeout_ms=20", "database.retries=8"],
    );
    let (cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    let fields = [
        ("csrf_token", token.as_str()),
        ("author", "w"),
        ("body", "written"),
    ];

    // Another writer holds the lock for a moment, then commits.
    let holder = hold_write_lock(&site, Duration::from_millis(300));
    let response = common::forms::post(server.addr, "/notes/", &[("Cookie", &cookie)], &fields);
    holder.join().unwrap();
    assert_eq!(response.status, 303, "{}", response.text());
    assert!(metric(&server, "kiln_db_write_retries_total") >= 1.0);
    drop(server);

    // A writer that never lets go exhausts the retries: 503, not a hang.
    let server = TestServer::start(
        &site,
        &["database.busy_timeout_ms=20", "database.retries=1"],
    );
    let holder = hold_write_lock(&site, Duration::from_secs(2));
    let response = common::forms::post(server.addr, "/notes/", &[("Cookie", &cookie)], &fields);
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(metric(&server, "kiln_db_write_busy_failures_total"), 1.0);
    holder.join().unwrap();
}

/// Takes SQLite's write lock on the shop's database from another
/// connection and keeps it for `duration`; returns once the lock is held.
fn hold_write_lock(site: &Site, duration: Duration) -> std::thread::JoinHandle<()> {
    let path = site.path("data/shop.db");
    let (locked, wait) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let db = rusqlite::Connection::open(path).unwrap();
        db.execute_batch("BEGIN IMMEDIATE; UPDATE counters SET value = value")
            .unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(duration);
        db.execute_batch("COMMIT").unwrap();
    });
    wait.recv().unwrap();
    holder
}

#[test]
fn an_exhausted_pool_answers_503_and_recovers() {
    let site = shop();
    // The statement timeout is raised so the slow query finishes on a
    // slow machine too (it took more than the default 5 s on one).
    let server = TestServer::start(
        &site,
        &[
            "database.max_size=1",
            "database.acquire_timeout_ms=200",
            "database.statement_timeout_ms=60000",
        ],
    );
    let addr = server.addr;
    // One slow query holds the only connection for a few seconds.
    let slow = std::thread::spawn(move || http::get(addr, "/slow?n=20000000", &[]));
    std::thread::sleep(Duration::from_millis(300));
    let refused = http::get(server.addr, "/items/1", &[]);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 200);
    assert!(slow.text().contains("20000000"));
    assert_eq!(http::get(server.addr, "/items/1", &[]).status, 200);
    assert!(metric(&server, "kiln_db_acquire_timeouts_total") >= 1.0);
}

#[test]
fn migrations_apply_once_and_a_changed_one_stops_start_up() {
    let site = shop();
    drop(TestServer::start(&site, &[]));
    // A second start applies nothing again (the seed would fail on duplicate ids).
    drop(TestServer::start(&site, &[]));
    let db = rusqlite::Connection::open(site.path("data/shop.db")).unwrap();
    let applied: i64 = db
        .query_row("SELECT count(*) FROM kiln_migrations", [], |row| row.get(0))
        .unwrap();
    assert_eq!(applied, 2);
    drop(db);

    site.write(
        "migrations/0002_seed.sql",
        "INSERT INTO items (id, name, price) VALUES (1000, 'x', 1);\n",
    );
    let settings = site.settings(&[]);
    let err = kiln::server::start(&settings, quiet_options())
        .err()
        .expect("start-up fails");
    let message = err.to_string();
    assert!(message.contains("0002_seed.sql"), "{message}");
    assert!(
        message.contains("changed after it was applied"),
        "{message}"
    );
}

#[test]
fn a_failing_migration_is_located_and_rolled_back() {
    let site = shop();
    site.write(
        "migrations/0003_broken.sql",
        "CREATE TABLE extra (id INTEGER);\nINSERT INTO extra VALUES (1);\nSELEC 1;\n",
    );
    let err = kiln::server::start(&site.settings(&[]), quiet_options())
        .err()
        .expect("start-up fails");
    let message = err.to_string();
    assert!(message.contains("0003_broken.sql:3:1"), "{message}");
    assert!(message.contains("syntax error"), "{message}");
    let db = rusqlite::Connection::open(site.path("data/shop.db")).unwrap();
    let extra: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'extra'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(extra, 0, "the failed migration left nothing behind");
}

#[test]
fn route_mistakes_stop_start_up_naming_the_route() {
    let site = shop();
    let mut config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    config = config.replace(
        "WHERE id = :id\"\n\n[[route]]\npath = \"/api",
        "WHERE id = :ident\"\n\n[[route]]\npath = \"/api",
    );
    site.write("build.toml", &config);
    let err = kiln::server::start(&site.settings(&[]), quiet_options())
        .err()
        .expect("fails");
    let message = err.to_string();
    assert!(
        message.contains("route[1] (GET /items/{id:int})"),
        "{message}"
    );
    assert!(
        message.contains(":ident is not a path parameter"),
        "{message}"
    );

    let site = shop();
    site.write(
        "templates/item.html",
        "{% extends \"base.html\" %}\n{% block content %}{{ item.name }{% endblock %}\n",
    );
    let err = kiln::server::start(&site.settings(&[]), quiet_options())
        .err()
        .expect("fails");
    let message = err.to_string();
    assert!(message.contains("item.html:2"), "{message}");
}

#[test]
fn the_plan_check_names_routes_that_scan_whole_tables() {
    let site = shop();
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    site.write(
        "build.toml",
        format!(
            "{config}\n[[route]]\npath = \"/by-name/{{name}}\"\n\n[[route.query]]\nname = \"item\"\none = true\nsql = \"SELECT id FROM items WHERE name = :name\"\n"
        ),
    );
    let report = kiln::server::check(&site.settings(&[])).expect("check runs");
    assert_eq!(report.routes, 18);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("route GET /by-name/{name}"));
    assert!(report.warnings[0].contains("scans every row of items"));

    site.write(
        "migrations/0003_index.sql",
        "CREATE INDEX items_by_name ON items (name);\n",
    );
    let report = kiln::server::check(&site.settings(&[])).expect("check runs");
    assert_eq!(report.applied, ["0003_index.sql"]);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn metrics_report_the_pool_and_each_route() {
    let site = shop();
    let server = TestServer::start(&site, &["database.min_idle=2"]);
    assert_eq!(http::get(server.addr, "/items/5", &[]).status, 200);
    let body = server.metrics().text();
    assert!(
        body.contains("kiln_route_query_duration_seconds_count{route=\"GET /items/{id:int}\"} 1"),
        "{body}"
    );
    assert!(body.contains("kiln_db_connections_max 8"));
    assert!(body.contains("kiln_db_acquire_wait_seconds_count"));
    assert!(
        body.contains("kiln_http_requests_total{class=\"dynamic\",status=\"200\"} 1"),
        "{body}"
    );
    assert!(
        metric(&server, "kiln_db_connections_idle") >= 2.0,
        "min_idle connections are open"
    );
}

#[test]
fn slow_queries_are_logged_and_counted() {
    let site = shop();
    let server = TestServer::start(&site, &["database.slow_query_ms=1"]);
    assert_eq!(http::get(server.addr, "/slow?n=2000000", &[]).status, 200);
    assert!(metric(&server, "kiln_slow_queries_total") >= 1.0);
}

#[test]
fn kiln_check_reports_scans_and_exits_1() {
    let site = shop();
    let check = |site: &Site| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["check", "--root"])
            .arg(site.root())
            .output()
            .unwrap()
    };
    let clean = check(&site);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&clean.stdout),
        "checked 17 route(s): 0 warning(s)\n"
    );

    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    site.write(
        "build.toml",
        format!("{config}\n[[route]]\npath = \"/cheap\"\n\n[[route.query]]\nname = \"all\"\nsql = \"SELECT * FROM items WHERE price > 5\"\n"),
    );
    let warned = check(&site);
    assert_eq!(warned.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert!(
        stderr.contains("warning: route GET /cheap: query \"all\" scans every row of items"),
        "{stderr}"
    );
}
