//! `kiln init`: each starter builds, passes `kiln check`, and serves its
//! pages (the shop's catalogue and order form too); a directory that is
//! not empty is refused unless `--force`.

mod common;

use std::process::Command;

use common::Site;
use common::forms::{self, csrf};
use common::http;
use common::server::TestServer;
use kiln::init::{Starter, init};

fn started(starter: Starter) -> Site {
    let site = Site::empty();
    init(site.root(), starter, false).expect("the starter is written");
    site.build().expect("the starter builds");
    let check = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["check", "--root", site.root().to_str().unwrap()])
        .output()
        .expect("kiln check runs");
    assert!(
        check.status.success(),
        "{starter:?}: kiln check: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    site
}

fn page(server: &TestServer, path: &str) -> String {
    let response = http::get(server.addr, path, &[]);
    assert_eq!(response.status, 200, "{path}");
    response.text()
}

#[test]
fn the_blank_starter_builds_checks_and_serves() {
    let site = started(Starter::Blank);
    let server = TestServer::start(&site, &[]);
    let home = page(&server, "/");
    assert!(home.contains("Hello from kiln"), "{home}");
    let css = site.output_of("css/site.css");
    assert!(home.contains(&css), "{home}");
    assert_eq!(http::get(server.addr, &format!("/{css}"), &[]).status, 200);
}

#[test]
fn the_blog_starter_lists_and_renders_its_markdown_posts() {
    let site = started(Starter::Blog);
    let server = TestServer::start(&site, &[]);
    let home = page(&server, "/");
    assert!(home.contains("href=\"/posts/hello-world/\""), "{home}");
    let post = page(&server, "/posts/hello-world/");
    assert!(post.contains("<h1>Hello, world</h1>"), "{post}");
    assert!(post.contains("highlighted at build time"), "{post}");
    let feed = page(&server, "/posts/atom.xml");
    assert!(
        feed.contains("<id>https://example.com/posts/hello-world/</id>"),
        "{feed}"
    );
    assert!(page(&server, "/sitemap.xml").contains("<loc>https://example.com/</loc>"));
}

#[test]
fn the_shop_starter_serves_its_catalogue_and_takes_an_order() {
    let site = started(Starter::Shop);
    let server = TestServer::start(&site, &[]);
    assert!(page(&server, "/").contains("catalogue"));
    let list = page(&server, "/products/");
    assert!(
        list.contains("Notebook") && list.contains("12.00 €"),
        "{list}"
    );
    let product = http::get(server.addr, "/products/1", &[]);
    assert!(product.text().contains("40 in stock"));
    let (cookie, token) = csrf(&product);
    let ordered = forms::post(
        server.addr,
        "/products/1",
        &[("Cookie", &cookie)],
        &[("csrf_token", &token), ("name", "Ada"), ("quantity", "2")],
    );
    assert_eq!(ordered.status, 303, "{}", ordered.text());
    let mut cookies = vec![cookie];
    cookies.extend(forms::set_cookie(&ordered, "kiln_session"));
    let after = http::get(
        server.addr,
        "/products/1",
        &[("Cookie", &cookies.join("; "))],
    );
    let text = after.text();
    assert!(text.contains("38 in stock"), "{text}");
    assert!(text.contains("Thanks, Ada: your order is in."), "{text}");
    // A bad quantity is answered with the form and its error.
    let (cookie, token) = csrf(&http::get(server.addr, "/products/2", &[]));
    let refused = forms::post(
        server.addr,
        "/products/2",
        &[("Cookie", &cookie)],
        &[("csrf_token", &token), ("name", "Ada"), ("quantity", "99")],
    );
    assert_eq!(refused.status, 422);
}

#[test]
fn init_refuses_a_directory_that_is_not_empty_unless_forced() {
    let site = Site::empty();
    site.write("notes.txt", "mine");
    let err = init(site.root(), Starter::Blank, false).expect_err("not empty");
    assert!(err.contains("--force"), "{err}");
    assert!(!site.path("build.toml").exists());
    init(site.root(), Starter::Blank, true).expect("forced");
    assert!(site.path("build.toml").is_file());
    assert_eq!(
        std::fs::read_to_string(site.path("notes.txt")).unwrap(),
        "mine"
    );
}
