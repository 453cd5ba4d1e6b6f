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
