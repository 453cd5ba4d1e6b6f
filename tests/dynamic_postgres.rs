//! Dynamic routes on PostgreSQL (when `KILN_TEST_POSTGRES_URL` is set; each
//! test in its own schema): the shop fixture and the demo site run with
//! only `database.url` changed, and conflicting serializable writers are
//! retried until every one lands.

mod common;

use common::forms::csrf;
use common::http;
use common::postgres::Schema;
use common::server::TestServer;
use common::{Site, copy_tree};

fn url_override(schema: &Schema) -> String {
    format!("database.url={:?}", schema.url())
}

fn post_form(
    addr: std::net::SocketAddr,
    path: &str,
    cookie: &str,
    pairs: &[(&str, &str)],
) -> http::Response {
    common::forms::post(addr, path, &[("Cookie", cookie)], pairs)
}

#[test]
fn the_shop_runs_on_postgres_with_only_the_url_changed() {
    let Some(schema) = Schema::create("shop") else {
        return;
    };
    let site = Site::fixture("shop");
    site.build().expect("builds");
    let url = url_override(&schema);
    let server = TestServer::start(&site, &[&url]);
    let list = http::get(server.addr, "/items/?q=Item%209&page=1", &[]);
    assert_eq!(list.status, 200);
    assert!(list.text().contains("data-id=\"9\""));
    let json = http::get(server.addr, "/api/items/7", &[]);
    let value: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"item": {"id": 7, "name": "Item 7", "price": 700}})
    );
    assert_eq!(http::get(server.addr, "/items/4242", &[]).status, 404);
    assert_eq!(http::get(server.addr, "/items/?page=0", &[]).status, 400);

    let (cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    let created = post_form(
        server.addr,
        "/notes/",
        &cookie,
        &[
            ("csrf_token", &token),
            ("author", "Pg"),
            ("body", "on postgres"),
        ],
    );
    assert_eq!(created.status, 303, "{}", created.text());
    assert_eq!(created.header("location"), Some("/notes/#note-1"));
    let invalid = post_form(
        server.addr,
        "/notes/",
        &cookie,
        &[("csrf_token", &token), ("author", ""), ("body", "x")],
    );
    assert_eq!(invalid.status, 422);
    let notes = http::get(server.addr, "/notes/", &[("Cookie", &cookie)]).text();
    assert!(notes.contains("on postgres"));
    let attack = http::get(
        server.addr,
        "/items/?q=%27%3B%20DROP%20TABLE%20items%3B%20--",
        &[],
    );
    assert_eq!(attack.status, 200);
    assert_eq!(http::get(server.addr, "/api/items/100", &[]).status, 200);
}

#[test]
fn the_demo_site_runs_unchanged_on_postgres() {
    let Some(schema) = Schema::create("demo") else {
        return;
    };
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let site = Site::empty();
    for dir in ["assets", "templates", "migrations"] {
        copy_tree(&repo.join(dir), &site.path(dir));
    }
    for file in ["build.toml", "data/site.toml", "data/products.toml"] {
        site.write(file, std::fs::read(repo.join(file)).unwrap());
    }
    // The guestbook's webhook, pointed at a sink (KILN_GUESTBOOK_WEBHOOK).
    let sink = common::sink::Sink::ok();
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    site.write(
        "build.toml",
        config.replace("http://127.0.0.1:8787/guestbook", &sink.url("/guestbook")),
    );
    site.build().expect("the demo builds");
    let url = url_override(&schema);
    let server = TestServer::start(&site, &[&url]);
    let catalogue = http::get(server.addr, "/catalogue/?q=kenya&roast=dark&page=2", &[]);
    assert_eq!(catalogue.status, 200, "{}", catalogue.text());
    let html = catalogue.text();
    assert!(html.contains("80 coffees, page 2 of 4."), "{html}");
    let product = http::get(server.addr, "/catalogue/42", &[]);
    assert_eq!(product.status, 200);
    assert!(
        product
            .text()
            .contains("Ethiopia Yirgacheffe Natural, dark roast (500 g)")
    );
    let page = http::get(server.addr, "/guestbook/", &[]);
    assert!(page.text().contains("2000 entries"));
    let (cookie, token) = csrf(&page);
    let signed = post_form(
        server.addr,
        "/guestbook/",
        &cookie,
        &[
            ("csrf_token", &token),
            ("name", "Ada"),
            ("message", "Hello from PostgreSQL"),
        ],
    );
    assert_eq!(signed.status, 303, "{}", signed.text());
    assert_eq!(signed.header("location"), Some("/guestbook/#entry-2001"));
    let session = common::forms::set_cookie(&signed, "kiln_session").expect("a session");
    let cookies = format!("{cookie}; {session}");
    let page = http::get(server.addr, "/guestbook/", &[("Cookie", &cookies)]).text();
    assert!(page.contains("Hello from PostgreSQL"));
    assert!(page.contains("2001 entries"));
    assert!(
        page.contains("Thanks for signing, Ada!"),
        "the flash message"
    );
    assert!(page.contains("value=\"Ada\""), "the name is remembered");
    // The entry's webhook, queued in its transaction, reaches the sink;
    // the catalogue lists what sells fast.
    let start = std::time::Instant::now();
    while sink.received().is_empty() {
        assert!(start.elapsed().as_secs() < 30, "no webhook");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let hook = sink.received()[0].json();
    assert_eq!(hook["entry"], 2001);
    assert_eq!(hook["message"], "Hello from PostgreSQL");
    let catalogue = http::get(server.addr, "/catalogue/", &[]).text();
    assert!(catalogue.contains("Selling fast"), "{catalogue}");
}

#[test]
fn conflicting_serializable_writers_are_retried_until_all_land() {
    use kiln::config::{DatabaseConfig, Isolation};
    use kiln::dynamic::db::{Database, SqlValue};

    let Some(schema) = Schema::create("serial") else {
        return;
    };
    common::postgres::admin(
        &schema.admin_url,
        &format!(
            "CREATE TABLE {}.counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL); INSERT INTO {}.counter VALUES (1, 0)",
            schema.name, schema.name
        ),
    );
    let config = DatabaseConfig {
        url: schema.url(),
        max_size: 8,
        retries: 20,
        min_idle: 0,
        ..DatabaseConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    actix_web::rt::System::new().block_on(async {
        let database = Database::open(&config, dir.path()).unwrap();
        let increment = || {
            database.write(
                vec![(
                    "UPDATE counter SET value = (SELECT value FROM counter WHERE id = 1) + 1 WHERE id = 1".into(),
                    vec![],
                )],
                Some(Isolation::Serializable),
            )
        };
        let results = futures_util::future::join_all((0..8).map(|_| increment())).await;
        for result in results {
            result.expect("every writer lands after retries");
        }
        let rows = database
            .read(vec![("SELECT value FROM counter".into(), vec![])])
            .await
            .unwrap();
        assert_eq!(rows[0][0].get("value"), Some(&SqlValue::Int(8)));
        let metrics = std::sync::Arc::new(database).metrics_text();
        let retries: f64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix("kiln_db_write_retries_total "))
            .and_then(|value| value.parse().ok())
            .unwrap();
        assert!(retries >= 1.0, "concurrent serializable updates conflicted: {metrics}");
    });
}

/// `/slow?n=9000000000000`, several at once, on PostgreSQL: the server
/// cancels each at `statement_timeout`, and the pool is idle again after.
#[test]
fn long_running_queries_are_cancelled_at_the_statement_timeout_on_postgres() {
    let Some(schema) = Schema::create("slow") else {
        return;
    };
    let site = Site::fixture("shop");
    site.build().expect("builds");
    let url = url_override(&schema);
    let server = TestServer::start(&site, &[&url, "database.statement_timeout_ms=300"]);
    common::server::assert_slow_queries_are_cancelled(&server);
}

/// A client leaves while its query runs, on PostgreSQL: the connection
/// leaves the pool and the server is asked to cancel the statement.
#[test]
fn a_client_that_disconnects_cancels_its_query_on_postgres() {
    let Some(schema) = Schema::create("departing") else {
        return;
    };
    let site = Site::fixture("shop");
    site.build().expect("builds");
    let url = url_override(&schema);
    let mut overrides = vec![url.as_str()];
    overrides.extend(common::server::ONE_CONNECTION);
    let server = TestServer::start(&site, &overrides);
    common::server::assert_a_departing_client_cancels_its_query(&server);
    // The statement itself stops: none of this size runs on after its
    // client left (the other tests' slow queries stop within 300 ms).
    let running = || {
        common::postgres::count(
            &schema.admin_url,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%WITH RECURSIVE c (x)%' AND query_start < now() - interval '2 seconds'",
        )
    };
    // Long enough for the departed query to count as old, and for the
    // other tests' slow queries (300 ms limit) to have stopped.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(running(), 0, "the departed client's statement still runs");
}
