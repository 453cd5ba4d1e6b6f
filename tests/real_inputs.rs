//! Real-world inputs from the pinned npm corpus (`../shared/corpus`):
//! Bootstrap and normalize.css build, and the output parses.

mod common;

use std::path::Path;

use common::{Site, npm_corpus, require};
use lightningcss::stylesheet::{ParserOptions, StyleSheet};

/// A site whose `node_modules` is the corpus's, linked in.
fn site_with_packages(node_modules: &Path) -> Site {
    let site = Site::empty();
    std::os::unix::fs::symlink(node_modules, site.path("node_modules")).unwrap();
    site
}

#[test]
fn bootstrap_css_builds_and_the_output_parses() {
    let Some(node_modules) = require(npm_corpus(), "bootstrap_css_builds_and_the_output_parses")
    else {
        return;
    };
    let site = site_with_packages(&node_modules);
    site.write(
        "assets/css/site.css",
        "@import \"normalize.css\";\n@import \"bootstrap/dist/css/bootstrap.css\";\n",
    );
    site.build_with(&["build.targets=\">= 0.25%\""]).unwrap();
    let css = site.read_dist_string(&site.output_of("css/site.css"));
    let original =
        std::fs::read_to_string(node_modules.join("bootstrap/dist/css/bootstrap.css")).unwrap();
    assert!(
        css.len() < original.len() * 9 / 10,
        "minified: {} vs {}",
        css.len(),
        original.len()
    );
    for selector in [
        ".btn-primary",
        ".container-fluid",
        ".navbar-expand-lg",
        ".visually-hidden-focusable",
    ] {
        assert!(css.contains(selector), "{selector}");
    }
    // normalize.css came first, through its package.json.
    let normalize_at = css.find("-webkit-text-size-adjust").unwrap();
    assert!(normalize_at < css.find(".btn-primary").unwrap());
    let parsed = StyleSheet::parse(&css, ParserOptions::default());
    let sheet = parsed.unwrap_or_else(|err| panic!("output does not parse: {err}"));
    assert!(sheet.rules.0.len() > 1000, "{}", sheet.rules.0.len());
}
