//! The route cache: hits and misses, the disk level across a restart,
//! invalidation by tag on every level, one query for many concurrent
//! misses, stale-while-revalidate, CSRF pages cached with a per-visitor
//! token, the memory budget, warming, what a hostile client cannot make
//! it store (free text, floods of one-off keys), and Redis shared by two
//! servers (when `KILN_TEST_REDIS_URL` is set; keys under a prefix per run).

mod common;

use std::time::{Duration, Instant};

use common::Site;
use common::forms::csrf;
use common::http::{self, Response};
use common::redis::RedisPrefix;
use common::server::TestServer;

fn shop() -> Site {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    site
}

fn metrics(server: &TestServer) -> String {
    server.metrics().text()
}

/// The value of the series `line_start` (name and labels) in `/metrics`.
fn metric(server: &TestServer, line_start: &str) -> f64 {
    metrics(server)
        .lines()
        .find_map(|line| {
            line.strip_prefix(line_start)?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

fn route_queries(server: &TestServer, route: &str) -> f64 {
    let series = format!("kiln_route_query_duration_seconds_count{{route=\"{route}\"}}");
    metrics(server)
        .lines()
        .find_map(|line| {
            line.strip_prefix(series.as_str())?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn cache_state(response: &Response) -> &str {
    response.header("x-kiln-cache").expect("x-kiln-cache")
}

fn post_form(server: &TestServer, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> Response {
    common::forms::post(server.addr, path, &[("Cookie", cookie)], pairs)
}

/// A POST to a form route, with a CSRF pair fetched from `/notes/`.
fn set_price(server: &TestServer, id: u32, price: &str) -> Response {
    let (cookie, token) = csrf(&http::get(server.addr, "/notes/", &[]));
    post_form(
        server,
        &format!("/items/{id}/price"),
        &cookie,
        &[("csrf_token", &token), ("price", price)],
    )
}

#[test]
fn a_second_request_is_a_memory_hit_with_validators() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let first = http::get(server.addr, "/items/5", &[("Accept-Encoding", "br")]);
    assert_eq!(cache_state(&first), "miss");
    assert_eq!(
        first.header("content-encoding"),
        Some("br"),
        "brotli is made once per entry"
    );
    let second = http::get(server.addr, "/items/5", &[("Accept-Encoding", "br")]);
    assert_eq!(cache_state(&second), "hit");
    assert_eq!(second.body, first.body);
    assert!(second.has("age"));
    let etag = second.header("etag").unwrap().to_string();
    let revalidated = http::get(
        server.addr,
        "/items/5",
        &[("Accept-Encoding", "br"), ("If-None-Match", &etag)],
    );
    assert_eq!(revalidated.status, 304);
    assert_eq!(route_queries(&server, "GET /items/{id:int}"), 1.0);
    assert_eq!(
        metric(&server, "kiln_cache_hits_total{level=\"memory\"}"),
        2.0
    );
    // Not-found rows are not cached.
    assert_eq!(http::get(server.addr, "/items/4242", &[]).status, 404);
    assert_eq!(http::get(server.addr, "/items/4242", &[]).status, 404);
    assert_eq!(route_queries(&server, "GET /items/{id:int}"), 3.0);
}

#[test]
fn the_disk_level_survives_a_restart() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    assert_eq!(
        cache_state(&http::get(server.addr, "/items/9", &[])),
        "miss"
    );
    // Its second use writes it to disk (admit = "repeat").
    assert_eq!(cache_state(&http::get(server.addr, "/items/9", &[])), "hit");
    assert_eq!(metric(&server, "kiln_cache_promoted_total"), 1.0);
    server.stop(true);
    let server = TestServer::start(&site, &[]);
    let after = http::get(server.addr, "/items/9", &[]);
    assert_eq!(cache_state(&after), "hit");
    assert!(after.text().contains("Item 9"));
    assert_eq!(
        metric(&server, "kiln_cache_hits_total{level=\"disk\"}"),
        1.0
    );
    assert_eq!(
        route_queries(&server, "GET /items/{id:int}"),
        0.0,
        "no query after the restart"
    );
}

/// Marks the item template, as a deploy that changes it would.
fn deploy_a_new_item_template(site: &Site) {
    let template = std::fs::read_to_string(site.path("templates/item.html")).unwrap();
    site.write(
        "templates/item.html",
        template.replace("<h1>", "<h1 data-build=\"new\">"),
    );
    site.build().expect("the new build");
}

/// A disk entry outlived its build: after a deploy and a restart, the
/// page rendered by the previous templates (linking the previous build's
/// hashed files) was served until its TTL ran out.
#[test]
fn a_restart_on_a_new_build_never_serves_the_previous_builds_disk_entries() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    http::get(server.addr, "/items/9", &[]);
    http::get(server.addr, "/items/9", &[]);
    assert_eq!(metric(&server, "kiln_cache_promoted_total"), 1.0);
    server.stop(true);
    deploy_a_new_item_template(&site);
    let server = TestServer::start(&site, &[]);
    let after = http::get(server.addr, "/items/9", &[]);
    assert_eq!(cache_state(&after), "miss");
    assert!(after.text().contains("data-build=\"new\""));
}

#[test]
fn a_build_loaded_while_serving_retires_the_cached_pages_of_the_previous_one() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    http::get(server.addr, "/items/9", &[]);
    assert_eq!(cache_state(&http::get(server.addr, "/items/9", &[])), "hit");
    deploy_a_new_item_template(&site);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http::get(server.addr, "/items/9", &[])
        .text()
        .contains("data-build=\"new\"")
    {
        assert!(Instant::now() < deadline, "the old page is still served");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its memory and disk entries both, dropped in the background.
    while metric(&server, "kiln_cache_retired_total") < 2.0 {
        assert!(
            Instant::now() < deadline,
            "the old entries were not retired"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&server, "kiln_cache_retired_total"), 2.0);
}

#[test]
fn a_write_drops_its_tags_from_every_level() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    assert!(
        http::get(server.addr, "/items/3", &[])
            .text()
            .contains("<p class=\"price\">300</p>")
    );
    assert!(
        http::get(server.addr, "/items/4", &[])
            .text()
            .contains("<p class=\"price\">400</p>")
    );
    let updated = set_price(&server, 3, "333");
    assert_eq!(updated.status, 303);
    assert_eq!(updated.header("location"), Some("/items/3"));
    let after = http::get(server.addr, "/items/3", &[]);
    assert_eq!(cache_state(&after), "miss");
    assert!(after.text().contains("<p class=\"price\">333</p>"));
    assert_eq!(
        cache_state(&http::get(server.addr, "/items/4", &[])),
        "hit",
        "other items keep their entries"
    );
    assert!(metric(&server, "kiln_cache_invalidated_total") >= 1.0);
    // The disk level dropped the old entry too.
    set_price(&server, 4, "444");
    server.stop(true);
    let server = TestServer::start(&site, &[]);
    let restarted = http::get(server.addr, "/items/4", &[]);
    assert_eq!(cache_state(&restarted), "miss");
    assert!(restarted.text().contains("<p class=\"price\">444</p>"));
}

#[test]
fn concurrent_misses_run_the_query_once() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let addr = server.addr;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(50));
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                http::get(addr, "/slow-items/8?n=300000", &[])
            })
        })
        .collect();
    for request in requests {
        let response = request.join().unwrap();
        assert_eq!(response.status, 200);
        assert!(response.text().contains("Item 8"));
    }
    assert_eq!(
        route_queries(&server, "GET /slow-items/{id:int}"),
        1.0,
        "50 misses, one query"
    );
}

#[test]
fn a_stale_entry_is_served_while_it_refreshes() {
    let site = shop();
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    site.write(
        "build.toml",
        config.replace(
            "cache = { ttl_secs = 300, tags = [\"items\", \"item:{id}\"] }",
            "cache = { ttl_secs = 1, stale_secs = 60, tags = [\"items\", \"item:{id}\"] }",
        ),
    );
    let server = TestServer::start(&site, &[]);
    assert_eq!(
        cache_state(&http::get(server.addr, "/items/6", &[])),
        "miss"
    );
    let db = rusqlite::Connection::open(site.path("data/shop.db")).unwrap();
    db.execute("UPDATE items SET price = 666 WHERE id = 6", [])
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let stale = http::get(server.addr, "/items/6", &[]);
    assert_eq!(cache_state(&stale), "stale");
    assert!(
        stale.text().contains(">600<"),
        "the stale body is served at once"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = http::get(server.addr, "/items/6", &[]);
        if cache_state(&fresh) == "hit" && fresh.text().contains(">666<") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the background refresh never landed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metric(&server, "kiln_cache_stale_served_total") >= 1.0);
}

#[test]
fn pages_with_a_csrf_field_are_cached_with_each_visitors_token() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let first = http::get(server.addr, "/notes/", &[]);
    let second = http::get(server.addr, "/notes/", &[]);
    assert_eq!(cache_state(&first), "miss");
    assert_eq!(cache_state(&second), "hit");
    let (cookie_a, token_a) = csrf(&first);
    let (_, token_b) = csrf(&second);
    assert_ne!(token_a, token_b, "each visitor gets a token of their own");
    assert!(!second.text().contains("kiln-csrf-placeholder"));
    assert_eq!(second.header("cache-control"), Some("private, no-cache"));
    let mine = http::get(server.addr, "/notes/", &[("Cookie", &cookie_a)]);
    assert!(mine.text().contains(&token_a));
    assert!(!mine.has("set-cookie"));
    // Posting invalidates the page, which then shows the note.
    let posted = post_form(
        &server,
        "/notes/",
        &cookie_a,
        &[
            ("csrf_token", &token_a),
            ("author", "Ada"),
            ("body", "cached?"),
        ],
    );
    assert_eq!(posted.status, 303);
    let after = http::get(server.addr, "/notes/", &[("Cookie", &cookie_a)]);
    assert_eq!(cache_state(&after), "miss");
    assert!(after.text().contains("cached?"));
}

#[test]
fn the_memory_level_stays_within_its_budget() {
    let site = shop();
    let server = TestServer::start(&site, &["cache.memory_bytes=20000", "cache.disk=false"]);
    for id in 1..=100 {
        assert_eq!(
            http::get(server.addr, &format!("/items/{id}"), &[]).status,
            200
        );
    }
    let bytes = metric(&server, "kiln_cache_bytes{level=\"memory\"}");
    assert!(bytes > 0.0 && bytes <= 20_000.0, "{bytes}");
    assert!(metric(&server, "kiln_cache_evictions_total{level=\"memory\"}") > 0.0);
}

#[test]
fn warmed_urls_are_hits_from_the_first_request() {
    let site = shop();
    let server = TestServer::start(&site, &["cache.warm=[\"/items/7\", \"/notes/\"]"]);
    assert_eq!(cache_state(&http::get(server.addr, "/items/7", &[])), "hit");
    assert_eq!(cache_state(&http::get(server.addr, "/notes/", &[])), "hit");
}

#[test]
fn cache_keys_leave_out_no_input_the_queries_read() {
    let site = shop();
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    site.write(
        "build.toml",
        config.replace(
            "cache = { ttl_secs = 300 }",
            "cache = { ttl_secs = 300, vary = [] }",
        ),
    );
    let settings = site.settings(&[]);
    let options = kiln::server::ServeOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        workers: Some(1),
        handle_signals: false,
        access_log: None,
        clock: Default::default(),
        live: None,
    };
    let err = kiln::server::start(&settings, options)
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("cache.vary leaves out \"n\""),
        "{err}"
    );
}

/// A cached page whose template changed the CSRF token as it rendered it
/// (`| upper`): the cache found no placeholder to fill, so every visitor
/// got the cache's placeholder, uppercased, instead of a token.
#[test]
fn a_cached_page_that_changes_its_csrf_token_is_rendered_per_visitor() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let token = |response: &Response| {
        let body = response.text();
        let start = body.find("value=\"").expect("the token field") + 7;
        body[start..].split('"').next().unwrap().to_string()
    };
    let first = http::get(server.addr, "/shouty/", &[]);
    let second = http::get(server.addr, "/shouty/", &[]);
    for response in [&first, &second] {
        assert_eq!(response.status, 200);
        assert!(!response.has("x-kiln-cache"), "rendered for its request");
        assert!(
            !response.text().contains("KILN-CSRF-"),
            "{}",
            response.text()
        );
        assert!(response.has("set-cookie"), "each visitor gets a cookie");
    }
    assert_ne!(token(&first), token(&second));
}

/// `/catalogue/?q=<random>` in a loop: every request was a miss that ran
/// the queries, rendered, compressed twice and wrote to disk, and each
/// left an entry behind.
#[test]
fn random_searches_in_a_loop_store_nothing() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    assert_eq!(
        cache_state(&http::get(server.addr, "/catalogue/", &[])),
        "miss"
    );
    for n in 0..20 {
        let search = http::get(server.addr, &format!("/catalogue/?q=x{n}y"), &[]);
        assert_eq!(search.status, 200);
        assert!(
            search.text().contains(&format!("x{n}y")),
            "rendered for its request"
        );
        assert!(!search.has("x-kiln-cache"), "past the cache");
    }
    assert_eq!(metric(&server, "kiln_cache_bypassed_total"), 20.0);
    // The search never displaced or split the page everyone reads.
    assert_eq!(
        cache_state(&http::get(server.addr, "/catalogue/", &[])),
        "hit"
    );
    assert_eq!(
        cache_state(&http::get(server.addr, "/catalogue/?q=", &[])),
        "hit"
    );
    // Only the page read twice went to disk.
    assert_eq!(metric(&server, "kiln_cache_promoted_total"), 1.0);
}

/// A client walking `?page=1..N` (or any parameter with many values)
/// filled the cache with entries nobody asked for twice, pushing out the
/// pages people read.
#[test]
fn a_flood_of_one_off_keys_cannot_push_out_a_routes_popular_pages() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    assert_eq!(
        cache_state(&http::get(server.addr, "/catalogue/", &[])),
        "miss"
    );
    for page in 2..=30 {
        let response = http::get(server.addr, &format!("/catalogue/?page={page}"), &[]);
        assert_eq!(response.status, 200);
        assert_eq!(cache_state(&response), "miss");
    }
    // max_entries = 5: the first page and four others were kept.
    assert_eq!(metric(&server, "kiln_cache_route_full_total"), 25.0);
    assert_eq!(
        cache_state(&http::get(server.addr, "/catalogue/", &[])),
        "hit"
    );
    assert_eq!(
        cache_state(&http::get(server.addr, "/catalogue/?page=3", &[])),
        "hit"
    );
    assert_eq!(
        cache_state(&http::get(server.addr, "/catalogue/?page=30", &[])),
        "miss",
        "a full route stores nothing new"
    );
    // Other routes keep their own room.
    http::get(server.addr, "/items/1", &[]);
    assert_eq!(cache_state(&http::get(server.addr, "/items/1", &[])), "hit");
}

/// Under `admit = "repeat"` a key asked for once costs no disk write.
#[test]
fn a_key_requested_once_never_reaches_the_disk() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    for id in 1..=10 {
        assert_eq!(
            cache_state(&http::get(server.addr, &format!("/items/{id}"), &[])),
            "miss"
        );
    }
    assert_eq!(metric(&server, "kiln_cache_bytes{level=\"disk\"}"), 0.0);
    assert_eq!(
        cache_state(&http::get(server.addr, "/items/10", &[])),
        "hit"
    );
    assert!(metric(&server, "kiln_cache_bytes{level=\"disk\"}") > 0.0);
    server.stop(true);
    let server = TestServer::start(&site, &[]);
    assert_eq!(
        cache_state(&http::get(server.addr, "/items/9", &[])),
        "miss"
    );
    assert_eq!(
        cache_state(&http::get(server.addr, "/items/10", &[])),
        "hit"
    );
    assert_eq!(
        metric(&server, "kiln_cache_hits_total{level=\"disk\"}"),
        1.0
    );
}

// Redis

#[test]
fn two_servers_share_entries_and_invalidations_through_redis() {
    let Some(redis) = RedisPrefix::new("shared") else {
        return;
    };
    let overrides = redis.overrides();
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    // Two sites on one database file, as two instances behind a balancer.
    let site_a = shop();
    let site_b = shop();
    let database = site_a.path("data/shop.db").display().to_string();
    let url = format!("database.url=\"sqlite://{database}\"");
    let mut with_url = overrides.clone();
    with_url.push(&url);
    let a = TestServer::start(&site_a, &with_url);
    // One secret key, as in a real deployment: it names the site in Redis.
    site_b.share_secret_key_of(&site_a);
    let b = TestServer::start(&site_b, &with_url);

    assert_eq!(cache_state(&http::get(a.addr, "/items/2", &[])), "miss");
    // Its second use on A stores it in Redis (admit = "repeat").
    assert_eq!(cache_state(&http::get(a.addr, "/items/2", &[])), "hit");
    let from_b = http::get(b.addr, "/items/2", &[]);
    assert_eq!(cache_state(&from_b), "hit");
    assert!(from_b.text().contains("Item 2"));
    assert_eq!(metric(&b, "kiln_cache_hits_total{level=\"redis\"}"), 1.0);
    assert_eq!(route_queries(&b, "GET /items/{id:int}"), 0.0);

    // A write on A reaches B's memory level too.
    assert_eq!(set_price(&a, 2, "222").status, 303);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = http::get(b.addr, "/items/2", &[]);
        if response.text().contains(">222<") {
            break;
        }
        assert!(Instant::now() < deadline, "B kept serving the old price");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A rolling deploy: two servers of one site on one Redis, one on the
/// previous build, one on the new. Each served the other's cached pages,
/// with hashed URLs the other build does not have.
#[test]
fn servers_on_different_builds_never_share_cached_pages_through_redis() {
    let Some(redis) = RedisPrefix::new("rolling") else {
        return;
    };
    let overrides = redis.overrides();
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let (site_a, site_b) = (shop(), shop());
    let a = TestServer::start(&site_a, &overrides);
    site_b.share_secret_key_of(&site_a);
    deploy_a_new_item_template(&site_b);
    let b = TestServer::start(&site_b, &overrides);
    http::get(a.addr, "/items/2", &[]);
    assert_eq!(cache_state(&http::get(a.addr, "/items/2", &[])), "hit");
    let from_b = http::get(b.addr, "/items/2", &[]);
    assert_eq!(cache_state(&from_b), "miss");
    assert!(from_b.text().contains("data-build=\"new\""));
    http::get(b.addr, "/items/2", &[]);
    let from_a = http::get(a.addr, "/items/2", &[]);
    assert!(!from_a.text().contains("data-build"));
    assert_eq!(metric(&a, "kiln_cache_hits_total{level=\"redis\"}"), 0.0);
}

/// Two sites (or a site's staging and production) on one Redis with the
/// default prefix: each served the other's cached pages.
#[test]
fn two_sites_on_one_redis_never_see_each_others_entries() {
    let Some(redis) = RedisPrefix::new("two-sites") else {
        return;
    };
    let overrides = redis.overrides();
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    // Each site generates its own secret key, and so has its own identity.
    let (site_a, site_b) = (shop(), shop());
    let a = TestServer::start(&site_a, &overrides);
    let b = TestServer::start(&site_b, &overrides);
    assert_eq!(cache_state(&http::get(a.addr, "/items/2", &[])), "miss");
    assert_eq!(cache_state(&http::get(b.addr, "/items/2", &[])), "miss");
    assert_eq!(metric(&b, "kiln_cache_hits_total{level=\"redis\"}"), 0.0);
}

/// A tag's set in Redis grew by one member per stored key for as long as
/// the tag kept getting entries, whether or not those entries still
/// existed.
#[test]
fn redis_tag_sets_are_pruned_with_their_entries() {
    let Some(redis) = RedisPrefix::new("tag-prune") else {
        return;
    };
    let overrides = redis.overrides();
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let site = shop();
    let server = TestServer::start(&site, &overrides);
    // ttl_secs = 1, admit = "always": each goes to Redis at once.
    for id in 1..=5 {
        assert_eq!(
            http::get(server.addr, &format!("/brief/{id}"), &[]).status,
            200
        );
    }
    assert_eq!(redis.tag_members("brief"), 5);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(http::get(server.addr, "/brief/6", &[]).status, 200);
    assert_eq!(
        redis.tag_members("brief"),
        1,
        "the expired members went with their entries"
    );
}

// `kiln cache`

use kiln::dynamic::purge::Purge;
use kiln::server::cache_control;

fn purge_through(server: &TestServer, site: &Site, wanted: &Purge) -> serde_json::Value {
    let admin = server.running().admin_addr;
    let answer = cache_control::purge(&site.settings(&[]), admin, wanted).expect("the purge");
    serde_json::from_str(&answer).expect("JSON")
}

#[test]
fn kiln_cache_purges_a_url_a_route_a_tag_or_everything_through_the_admin_listener() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let warm = |ids: &[u32]| {
        for id in ids {
            http::get(server.addr, &format!("/items/{id}"), &[]);
        }
    };
    let state =
        |id: u32| cache_state(&http::get(server.addr, &format!("/items/{id}"), &[])).to_string();
    warm(&[1, 2, 3]);

    let dropped = purge_through(&server, &site, &Purge::Url("/items/1".into()));
    assert_eq!(dropped["dropped"], 1);
    assert_eq!(state(1), "miss");
    assert_eq!(state(2), "hit");

    assert_eq!(
        purge_through(&server, &site, &Purge::Tag("item:2".into()))["dropped"],
        1
    );
    assert_eq!(state(2), "miss");
    assert_eq!(state(3), "hit");

    let dropped = purge_through(&server, &site, &Purge::Route("/items/{id:int}".into()));
    assert_eq!(dropped["dropped"], 3);
    assert_eq!(state(3), "miss");

    warm(&[4]);
    assert!(purge_through(&server, &site, &Purge::All)["dropped"].as_u64() >= Some(1));
    assert_eq!(state(4), "miss");

    let stats: serde_json::Value = serde_json::from_str(
        &cache_control::stats(&site.settings(&[]), server.running().admin_addr).unwrap(),
    )
    .unwrap();
    assert!(stats["memory_entries"].as_u64() >= Some(1), "{stats}");
    assert!(stats["hits"]["memory"].as_u64() >= Some(2), "{stats}");

    let unknown = cache_control::purge(
        &site.settings(&[]),
        server.running().admin_addr,
        &Purge::Route("/nowhere/".into()),
    )
    .expect_err("no such route");
    assert!(unknown.contains("no cached route /nowhere/"), "{unknown}");
}

#[test]
fn kiln_cache_warms_urls_through_the_admin_listener() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let admin = server.running().admin_addr;
    let answer = cache_control::warm_urls(
        &site.settings(&[]),
        admin,
        &["/items/5".into(), "/items/4242".into()],
    )
    .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["warmed"], 1, "{answer}");
    assert!(
        answer["failed"][0]
            .as_str()
            .unwrap()
            .contains("/items/4242: not found")
    );
    assert_eq!(cache_state(&http::get(server.addr, "/items/5", &[])), "hit");
}

#[test]
fn kiln_cache_purges_the_disk_level_when_no_server_runs() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    http::get(server.addr, "/items/9", &[]);
    http::get(server.addr, "/items/9", &[]);
    assert_eq!(metric(&server, "kiln_cache_promoted_total"), 1.0);
    server.stop(true);
    let stats = cache_control::stats(&site.settings(&[]), None).expect("offline stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["disk_entries"], 1, "{stats}");
    let answer = cache_control::purge(&site.settings(&[]), None, &Purge::Url("/items/9".into()))
        .expect("offline purge");
    assert!(answer.contains("\"dropped\":1"), "{answer}");
    let server = TestServer::start(&site, &[]);
    assert_eq!(
        cache_state(&http::get(server.addr, "/items/9", &[])),
        "miss"
    );
}

#[test]
fn a_purge_on_one_server_reaches_the_others_through_redis() {
    let Some(redis) = RedisPrefix::new("purge") else {
        return;
    };
    let overrides = redis.overrides();
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let (site_a, site_b) = (shop(), shop());
    let a = TestServer::start(&site_a, &overrides);
    site_b.share_secret_key_of(&site_a);
    let b = TestServer::start(&site_b, &overrides);
    http::get(b.addr, "/items/3", &[]);
    assert_eq!(cache_state(&http::get(b.addr, "/items/3", &[])), "hit");
    purge_through(&a, &site_a, &Purge::Url("/items/3".into()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache_state(&http::get(b.addr, "/items/3", &[])) == "hit" {
        assert!(Instant::now() < deadline, "B kept its entry");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Route pages were served as rendered: no minification, no preload
/// hints (in the page or as `Link`), unlike the built pages beside them.
#[test]
fn route_pages_get_the_rewrites_built_pages_get_cached_with_the_entry() {
    let site = Site::fixture("shop");
    let template = std::fs::read_to_string(site.path("templates/item.html")).unwrap();
    site.write(
        "templates/item.html",
        template.replace(
            "<h1>",
            "<!-- a note for the template's authors -->\n\n   <h1>",
        ),
    );
    site.build().expect("the shop builds");
    let server = TestServer::start(&site, &[]);
    let css = site.output_of("css/site.css");
    for state in ["miss", "hit"] {
        let page = http::get(server.addr, "/items/5", &[]);
        assert_eq!(cache_state(&page), state);
        let html = page.text();
        assert!(
            !html.contains("a note for the template's authors"),
            "{html}"
        );
        assert!(!html.contains("\n\n   <h1>"), "{html}");
        assert!(
            html.contains(&format!(
                "<link rel=\"preload\" as=\"style\" href=\"/{css}\""
            )),
            "{html}"
        );
        assert_eq!(
            page.header("link"),
            Some(format!("</{css}>; rel=preload; as=style; crossorigin=anonymous").as_str()),
        );
    }
}

/// Redis restarted under two servers: an invalidation published while it
/// was down was lost, and the other server kept serving the old page
/// from memory until its TTL ran out.
#[test]
fn an_invalidation_made_while_redis_was_down_reaches_the_other_server_when_it_is_back() {
    let Some(mut redis) = common::redis::OwnRedis::start("redis restarted") else {
        return;
    };
    let (site_a, site_b) = (shop(), shop());
    let database = site_a.path("data/shop.db").display().to_string();
    let overrides = [
        format!("cache.redis_url={:?}", redis.url()),
        "cache.disk=false".to_string(),
        format!("database.url=\"sqlite://{database}\""),
    ];
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let a = TestServer::start(&site_a, &overrides);
    site_b.share_secret_key_of(&site_a);
    let b = TestServer::start(&site_b, &overrides);
    http::get(b.addr, "/items/2", &[]);
    assert_eq!(cache_state(&http::get(b.addr, "/items/2", &[])), "hit");

    redis.stop();
    assert_eq!(set_price(&a, 2, "333").status, 303);
    redis.restart();

    let deadline = Instant::now() + Duration::from_secs(15);
    while !http::get(b.addr, "/items/2", &[]).text().contains(">333<") {
        assert!(Instant::now() < deadline, "B kept serving the old price");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&a, "kiln_cache_redelivered_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "A never delivered the postponed invalidation"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&a, "kiln_cache_outbox"), 0.0);
}

#[test]
fn kiln_cache_warms_the_most_requested_cached_urls_of_an_access_log() {
    let site = shop();
    let line = |method: &str, target: &str, status: u16| {
        format!(
            "127.0.0.1 - - [07/Dec/2026:14:00:00 +0000] \"{method} {target} HTTP/1.1\" {status} 10 \"-\" \"curl\"\n"
        )
    };
    let mut log = String::new();
    for _ in 0..3 {
        log.push_str(&line("GET", "/items/5", 200));
        log.push_str(&line("GET", "/static.css", 200));
    }
    for _ in 0..2 {
        log.push_str(&line("GET", "/items/6", 200));
        log.push_str(&line("GET", "/items/7", 404));
    }
    log.push_str(&line("GET", "/items/8", 200));
    log.push_str(&line("POST", "/notes/", 200));
    let settings = site.settings(&[]);
    let urls = cache_control::most_requested(&settings, &log, 2).unwrap();
    assert_eq!(urls, ["/items/5", "/items/6"]);
    let server = TestServer::start(&site, &[]);
    let answer = cache_control::warm_urls(&settings, server.running().admin_addr, &urls).unwrap();
    assert!(answer.contains("\"warmed\":2"), "{answer}");
    assert_eq!(cache_state(&http::get(server.addr, "/items/6", &[])), "hit");
}

// PostgreSQL as the invalidation channel, when there is no Redis

/// Waits until `server` serves `/items/{id}` with `price`.
fn until_it_shows(server: &TestServer, id: u32, price: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let wanted = format!(">{price}<");
    while !http::get(server.addr, &format!("/items/{id}"), &[])
        .text()
        .contains(&wanted)
    {
        assert!(
            Instant::now() < deadline,
            "item {id} kept being served without the price {price}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two servers on one PostgreSQL database and no Redis kept their own
/// cached pages after a write on the other: the price changed on A, B
/// served the old one until the TTL ran out. Also after the listening
/// connection is cut: B may have missed the notification, so it drops
/// its levels when it listens again.
#[test]
fn two_servers_without_redis_share_invalidations_through_postgres_notify() {
    let Some(schema) = common::postgres::Schema::create("notify") else {
        return;
    };
    let url = format!("database.url={:?}", schema.url());
    let (site_a, site_b) = (shop(), shop());
    let a = TestServer::start(&site_a, &[&url]);
    site_b.share_secret_key_of(&site_a);
    let b = TestServer::start(&site_b, &[&url]);
    for id in [2, 5] {
        http::get(b.addr, &format!("/items/{id}"), &[]);
        assert_eq!(
            cache_state(&http::get(b.addr, &format!("/items/{id}"), &[])),
            "hit"
        );
    }

    assert_eq!(set_price(&a, 2, "222").status, 303);
    until_it_shows(&b, 2, "222");
    assert!(metric(&b, "kiln_cache_heard_total") >= 1.0);

    // Every listening connection of this test binary's servers is cut,
    // and a write follows at once: B hears it or, listening again,
    // assumes it missed it.
    common::postgres::admin(
        &schema.admin_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'kiln cache invalidations'",
    );
    assert_eq!(set_price(&a, 5, "555").status, 303);
    until_it_shows(&b, 5, "555");

    // And the channel works again both ways.
    http::get(a.addr, "/items/6", &[]);
    assert_eq!(cache_state(&http::get(a.addr, "/items/6", &[])), "hit");
    assert_eq!(set_price(&b, 6, "666").status, 303);
    until_it_shows(&a, 6, "666");
}

/// An invalidation dropped memory, then disk; a request that missed
/// memory in between found the entry on disk and put it back in memory,
/// where it stayed, stale, until the tag's next write (found by
/// benches/invalidation.py). Now lower levels go first, and a lookup that
/// overlaps an invalidation of its tags never refills memory.
#[test]
fn a_lookup_racing_an_invalidation_never_brings_the_old_page_back() {
    let site = shop();
    let server = TestServer::start(&site, &[]);
    let addr = server.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    http::get(addr, "/items/3", &[]);
                }
            })
        })
        .collect();
    for round in 0..150 {
        let price = (1000 + round).to_string();
        assert_eq!(set_price(&server, 3, &price).status, 303);
        let page = http::get(addr, "/items/3", &[]);
        assert!(
            page.text().contains(&format!(">{price}<")),
            "round {round}: the page after the write was not the new one"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.join().expect("reader");
    }
}
