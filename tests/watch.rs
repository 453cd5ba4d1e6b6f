//! `kiln watch` end to end: a real process on a temp copy of the watch
//! fixture, real file edits, and the events its live-reload channel sends.

mod common;

use std::fs;

use common::Site;
use common::http;
use common::watch::{EventStream, WatchProcess};

fn start() -> (Site, WatchProcess, EventStream) {
    let site = Site::fixture("watch");
    let process = WatchProcess::start(site.root(), &[]);
    let mut events = EventStream::connect(process.addr);
    let hello = events.next_named("hello");
    assert_eq!(hello.data["generation"], 0, "{:?}", hello.data);
    (site, process, events)
}

/// The output path of a manifest key in the watch build.
fn output_of(site: &Site, key: &str) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(site.path(".kiln/watch/manifest.json")).unwrap()).unwrap();
    manifest[key]["file"].as_str().unwrap().to_string()
}

fn get_text(process: &WatchProcess, path: &str) -> String {
    let response = http::get(process.addr, path, &[]);
    assert_eq!(response.status, 200, "{path}");
    response.text()
}

#[test]
fn serves_a_development_build_beside_the_production_output() {
    let (site, process, _events) = start();
    assert!(
        !site.dist().exists(),
        "dist/ is the production build's; watch leaves it alone"
    );
    let page = http::get(process.addr, "/", &[]);
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let html = page.text();
    assert!(
        html.contains(r#"<script type="module" src="/__kiln/live.js"></script></head>"#),
        "{html}"
    );
    let css = output_of(&site, "css/site.css");
    let stylesheet = http::get(process.addr, &format!("/{css}"), &[]);
    assert_eq!(stylesheet.header("cache-control"), Some("no-cache"));
    let text = stylesheet.text();
    assert!(text.contains("main {\n"), "not minified: {text}");
    assert!(text.contains("sourceMappingURL="), "source maps on: {text}");
    assert!(!site.path(&format!(".kiln/watch/{css}.br")).exists());
    let client = http::get(process.addr, "/__kiln/live.js", &[]);
    assert_eq!(client.status, 200);
    assert!(client.text().contains("EventSource"));
}

#[test]
fn a_css_edit_swaps_only_the_stylesheets_that_import_it() {
    let (site, mut process, mut events) = start();
    let old_site = output_of(&site, "css/site.css");
    let other = output_of(&site, "css/other.css");
    site.write("assets/css/_colors.css", "body { --marker: edited; }\n");
    let event = events.next_named("css");
    let swaps = event.data["swaps"].as_array().unwrap();
    assert_eq!(swaps.len(), 1, "{swaps:?}");
    assert_eq!(swaps[0]["old"], old_site.as_str());
    let new_site = swaps[0]["new"].as_str().unwrap();
    assert_ne!(new_site, old_site);
    assert!(
        swaps[0]["integrity"]
            .as_str()
            .unwrap()
            .starts_with("sha384-")
    );
    assert!(get_text(&process, &format!("/{new_site}")).contains("--marker: edited"));
    assert_eq!(
        output_of(&site, "css/other.css"),
        other,
        "other.css untouched"
    );
    // Pages link the new file, so a reload keeps the change.
    assert!(get_text(&process, "/about/").contains(new_site));
    let line = process.wait_for_line(|line| line.contains("_colors.css"));
    assert!(line.contains("1 stylesheet swapped in place"), "{line}");
    assert!(line.contains(" ms"), "{line}");
}

#[test]
fn a_template_edit_renders_only_the_pages_that_include_it_and_reloads() {
    let (site, mut process, mut events) = start();
    let plain_before = fs::metadata(site.path(".kiln/watch/plain/index.html")).unwrap();
    site.write(
        "templates/partials/note.html",
        "<p class=\"note\">second note</p>\n",
    );
    let event = events.next_named("reload");
    assert!(
        event.data["reason"].as_str().unwrap().contains("note.html"),
        "{:?}",
        event.data
    );
    assert!(get_text(&process, "/about/").contains("second note"));
    let line = process.wait_for_line(|line| line.contains("note.html"));
    assert!(line.contains("1 page rendered"), "{line}");
    assert!(line.contains("browsers reloaded"), "{line}");
    // An unchanged page is carried over (hard-linked), not rewritten.
    let plain_after = fs::metadata(site.path(".kiln/watch/plain/index.html")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(plain_before.ino(), plain_after.ino());
}

#[test]
fn a_script_module_edit_rebundles_and_reloads() {
    let (site, mut process, mut events) = start();
    let old = output_of(&site, "js/app.ts");
    site.write(
        "assets/js/_greeting.ts",
        "export function greeting(name: string): string {\n  return `welcome ${name}`;\n}\n",
    );
    events.next_named("reload");
    let new = output_of(&site, "js/app.ts");
    assert_ne!(new, old);
    assert!(get_text(&process, &format!("/{new}")).contains("welcome"));
    let line = process.wait_for_line(|line| line.contains("_greeting.ts"));
    assert!(line.contains("browsers reloaded"), "{line}");
}

#[test]
fn a_save_by_rename_is_seen() {
    let (site, _process, mut events) = start();
    let temporary = site.path("assets/css/.other.css.tmp-save");
    fs::write(&temporary, ".other { margin: 2px; }\n").unwrap();
    fs::rename(&temporary, site.path("assets/css/other.css")).unwrap();
    let event = events.next_named("css");
    assert_eq!(event.data["swaps"].as_array().unwrap().len(), 1);
}

#[test]
fn a_syntax_error_keeps_the_last_good_build_and_shows_until_fixed() {
    let (site, mut process, mut events) = start();
    let good = output_of(&site, "css/site.css");
    site.write(
        "assets/css/_colors.css",
        "body {\n  color: red;\n  @@@ x;\n}\n",
    );
    let problem = events.next_named("problem");
    let first = &problem.data["problems"][0];
    assert!(
        first["file"].as_str().unwrap().ends_with("_colors.css"),
        "{first}"
    );
    assert_eq!(first["line"], 3, "{first}");
    assert!(
        first["frame"].as_str().unwrap().contains("@@@ x;"),
        "{first}"
    );
    let line = process.wait_for_line(|line| line.contains("build failed"));
    assert!(line.contains("still serving the last good build"), "{line}");
    // The last good build is still served, and a browser opened now sees the problem.
    assert_eq!(output_of(&site, "css/site.css"), good);
    assert_eq!(
        http::get(process.addr, &format!("/{good}"), &[]).status,
        200
    );
    let mut late = EventStream::connect(process.addr);
    late.next_named("hello");
    late.next_named("problem");

    site.write("assets/css/_colors.css", "body { color: rgb(1, 2, 3); }\n");
    let fixed = events.next_named("css");
    assert_ne!(fixed.data["swaps"][0]["new"], good.as_str());
    // A new browser no longer gets the problem.
    let mut after = EventStream::connect(process.addr);
    after.next_named("hello");
    site.write("templates/partials/note.html", "<p>note</p>\n");
    assert_eq!(after.next().unwrap().name, "reload");
}

#[test]
fn a_template_error_is_located_and_recovery_reloads() {
    let (site, _process, mut events) = start();
    site.write("templates/partials/note.html", "<p>{{ page.title }</p>\n");
    let problem = events.next_named("problem");
    let first = &problem.data["problems"][0];
    assert!(
        first["file"].as_str().unwrap().ends_with("note.html"),
        "{first}"
    );
    assert_eq!(first["line"], 1, "{first}");
    site.write("templates/partials/note.html", "<p>{{ page.title }}</p>\n");
    events.next_named("reload");
}

#[test]
fn a_build_toml_edit_restarts_the_server_and_reconnecting_browsers_reload() {
    let (site, mut process, mut events) = start();
    site.write(
        "build.toml",
        "[build]\ntargets = \"chrome 120\"\n[pages]\nsri = false\n",
    );
    process.wait_for_line(|line| line.contains("server restarted"));
    // The old stream ends with the old server; a reconnecting client learns
    // it missed a reload from the generation in its greeting.
    while events.next().is_some() {}
    let mut again = EventStream::connect(process.addr);
    let hello = again.next_named("hello");
    assert_eq!(hello.data["generation"], 1, "{:?}", hello.data);
    assert!(!get_text(&process, "/").contains("integrity="));
}

#[test]
fn a_bad_build_toml_is_reported_and_the_server_keeps_running() {
    let (site, mut process, mut events) = start();
    site.write("build.toml", "[build]\nminify = \"yes\"\n");
    let problem = events.next_named("problem");
    assert!(
        problem.data["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("build.toml"),
        "{:?}",
        problem.data
    );
    process.wait_for_line(|line| line.contains("build failed"));
    assert_eq!(http::get(process.addr, "/", &[]).status, 200);
}

#[test]
fn ctrl_c_stops_watch_cleanly() {
    let (_site, process, _events) = start();
    // SAFETY: kill(2) with the child's pid and SIGINT.
    assert_eq!(unsafe { libc::kill(process.pid(), libc::SIGINT) }, 0);
    let status = process.wait();
    assert!(status.success(), "{status:?}");
}

/// Regression: under `kiln watch` (which opens no response cache) the
/// demo's cached routes reached the cached path and panicked the worker
/// (`unreachable!`), so the browser got an empty reply. Every page and
/// every dynamic route of the demo must answer, GET and a form POST.
#[test]
fn the_demo_site_answers_every_page_and_dynamic_route_under_watch() {
    let site = Site::demo();
    let process = WatchProcess::start(site.root(), &[]);
    let out = site.path(".kiln/watch");
    let mut pages = Vec::new();
    for entry in walkdir::WalkDir::new(&out) {
        let entry = entry.unwrap();
        let relative = entry
            .path()
            .strip_prefix(&out)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative.ends_with(".html") && !relative.starts_with('.') && relative != "404.html" {
            pages.push(format!("/{}", relative.trim_end_matches("index.html")));
        }
    }
    assert!(pages.len() >= 5, "{pages:?}");
    for page in &pages {
        let response = http::get(process.addr, page, &[]);
        assert_eq!(response.status, 200, "{page}");
        assert!(response.text().contains("/__kiln/live.js"), "{page}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    }
    let missing = http::get(process.addr, "/no-such-page", &[]);
    assert_eq!(missing.status, 404);

    for path in [
        "/catalogue/",
        "/catalogue/?q=kenya&roast=dark&page=2",
        "/catalogue/42",
        "/guestbook/",
    ] {
        let response = http::get(process.addr, path, &[]);
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert!(response.text().contains("/__kiln/live.js"), "{path}");
        assert_eq!(
            response.header("x-kiln-cache"),
            None,
            "{path}: no cache under watch"
        );
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    }
    let product = http::get(process.addr, "/catalogue/42", &[]).text();
    assert!(product.contains("Ethiopia Yirgacheffe Natural, dark roast (500 g)"));
    let json = http::get(process.addr, "/api/products/42", &[]);
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(
        http::get(process.addr, "/catalogue/999999", &[]).status,
        404
    );

    let page = http::get(process.addr, "/guestbook/", &[]);
    let (cookie, token) = common::forms::csrf(&page);
    let invalid = common::forms::post(
        process.addr,
        "/guestbook/",
        &[("Cookie", &cookie)],
        &[("csrf_token", &token), ("name", ""), ("message", "x")],
    );
    assert_eq!(invalid.status, 422, "{}", invalid.text());
    let signed = common::forms::post(
        process.addr,
        "/guestbook/",
        &[("Cookie", &cookie)],
        &[
            ("csrf_token", &token),
            ("name", "Ada"),
            ("message", "Hello from watch"),
        ],
    );
    assert_eq!(signed.status, 303, "{}", signed.text());
    assert_eq!(signed.header("location"), Some("/guestbook/#entry-2001"));
    let session = common::forms::set_cookie(&signed, "kiln_session").expect("a session");
    let cookies = format!("{cookie}; {session}");
    let after = http::get(process.addr, "/guestbook/", &[("Cookie", &cookies)]).text();
    assert!(after.contains("Hello from watch"), "{after}");
    assert!(
        after.contains("Thanks for signing, Ada!"),
        "the flash message"
    );
}

/// The live-reload endpoints pass through the same concerns as every other
/// response: security headers, and the metrics (class `live`).
#[test]
fn live_reload_responses_carry_security_headers_and_are_counted() {
    let (_site, process, _events) = start();
    let client = http::get(process.addr, "/__kiln/live.js", &[]);
    assert_eq!(client.status, 200);
    assert_eq!(client.header("x-content-type-options"), Some("nosniff"));
    assert!(client.has("referrer-policy"), "{:?}", client.headers);
    let metrics = http::get(process.addr, "/metrics", &[]).text();
    let counted = metrics.lines().any(|line| {
        line.starts_with("kiln_http_requests_total{")
            && line.contains("class=\"live\"")
            && line.contains("status=\"200\"")
    });
    assert!(counted, "{metrics}");
}
