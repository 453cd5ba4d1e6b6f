//! The `kiln` binary: exit codes, messages and `--set` / `--out` handling.

mod common;

use std::process::{Command, Output};

use common::{Site, snapshot};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("kiln runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn build_prints_a_summary_with_compressed_sizes() {
    let site = Site::fixture("basic");
    let root = site.root().to_str().unwrap();
    let output = kiln(&["build", "--root", root]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.contains("data/words."))
        .unwrap();
    assert!(
        line.contains("21.49 kB") && line.contains("gzip: ") && line.contains("br: "),
        "{line}"
    );
    let files = stdout
        .lines()
        .filter(|line| line.contains(" │ gzip: "))
        .count();
    assert!(
        stdout.contains(&format!("built {files} files in ")),
        "{stdout}"
    );
}

/// `kiln build --timings`: one page with every stage, each unit of work
/// on its thread's row (a stylesheet entry, a page, a compressed variant,
/// a written file by name), and nothing fetched.
#[test]
fn build_timings_writes_a_page_of_stages_and_units() {
    let site = Site::fixture("basic");
    let root = site.root().to_str().unwrap();
    let output = kiln(&["build", "--root", root, "--timings"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("timings: "),
        "{}",
        text(&output.stderr)
    );
    let page = std::fs::read_to_string(site.root().join(".kiln/timings.html"))
        .expect(".kiln/timings.html");
    for stage in [
        "discover", "assets", "entries", "pages", "compress", "write",
    ] {
        assert!(
            page.contains(&format!("</span> {stage}</td>")),
            "no stage {stage}"
        );
    }
    assert!(page.contains("aria-label=\"Units by thread\""));
    assert!(page.contains("aria-label=\"Units running\""));
    assert!(
        page.contains("<title>assets/css/other.css (entries): "),
        "{page}"
    );
    assert!(page.contains(".br (compress): "), "{page}");
    assert!(page.contains(" (write): "), "{page}");

    assert!(!page.contains("http://") && !page.contains("https://"));
    // Given a file, it is written there.
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("t.html");
    let output = kiln(&["build", "--root", root, "--timings", file.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("kiln build timings")
    );
}

/// `--timings` on a site with pages: each page is a unit of its own
/// (rendered in parallel), and says whether it was rendered or, under
/// `kiln watch`, remembered unchanged.
#[test]
fn build_timings_time_each_page() {
    let site = Site::fixture("basic");
    for (name, title) in [("index", "Home"), ("about", "About")] {
        site.write(
            &format!("templates/pages/{name}.html"),
            format!("<!doctype html><title>{title}</title><h1>{title}</h1>\n"),
        );
    }
    let root = site.root().to_str().unwrap();
    let output = kiln(&["build", "--root", root, "--timings"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let page = std::fs::read_to_string(site.root().join(".kiln/timings.html"))
        .expect(".kiln/timings.html");
    for name in ["pages/index.html", "pages/about.html"] {
        assert!(
            page.contains(&format!("<title>{name} (rendered) (pages): ")),
            "no unit for {name}: {page}"
        );
    }
}

#[test]
fn set_overrides_apply_without_editing_build_toml() {
    let site = Site::fixture("basic");
    let root = site.root().to_str().unwrap();
    let output = kiln(&[
        "build",
        "--root",
        root,
        "--set",
        "build.precompress=[]",
        "--set",
        "build.minify=false",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let files = snapshot(&site.dist());
    assert!(files.keys().all(|path| !path.ends_with(".br")));
    let css = site.read_dist_string(&site.output_of("css/other.css"));
    assert!(css.contains(".other {\n"), "{css}");
}

#[test]
fn out_flag_chooses_the_output_directory() {
    let site = Site::fixture("basic");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("www");
    let output = kiln(&[
        "build",
        "--root",
        site.root().to_str().unwrap(),
        "--out",
        target.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(target.join("manifest.json").is_file());
    assert!(!site.dist().exists());
}

#[test]
fn unknown_config_key_fails_naming_key_and_line() {
    let site = Site::empty();
    site.write("build.toml", "[build]\nminify = true\nhash_lenght = 10\n");
    let output = kiln(&["build", "--root", site.root().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("build.toml"), "{stderr}");
    assert!(stderr.contains("hash_lenght"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
}

#[test]
fn bad_override_fails_naming_it() {
    let site = Site::empty();
    let output = kiln(&[
        "build",
        "--root",
        site.root().to_str().unwrap(),
        "--set",
        "build.minify=maybe",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("--set build.minify=maybe"), "{stderr}");
}

#[test]
fn failed_build_exits_non_zero_with_a_code_frame() {
    let site = Site::fixture("basic");
    let root = site.root().to_str().unwrap();
    assert!(kiln(&["build", "--root", root]).status.success());
    let before = snapshot(&site.dist());
    site.write(
        "assets/css/other.css",
        ".other {\n  color: red;\n  background: url(./gone.png);\n}\n",
    );
    let output = kiln(&["build", "--root", root]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("other.css:3:"), "{stderr}");
    assert!(
        stderr.contains("3 |   background: url(./gone.png);"),
        "{stderr}"
    );
    assert!(stderr.contains("was left as it was"), "{stderr}");
    assert_eq!(snapshot(&site.dist()), before);
}

#[test]
fn build_stage_adds_the_new_hashed_files_and_changes_no_page() {
    let site = Site::demo();
    let root = site.root().to_str().unwrap();
    assert!(kiln(&["build", "--root", root]).status.success());
    let before = snapshot(&site.dist());
    let mut css = std::fs::read_to_string(site.path("assets/css/site.css")).unwrap();
    css.push_str("\n.staged { color: red; }\n");
    site.write("assets/css/site.css", css);
    let output = kiln(&["build", "--root", root, "--stage"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let after = snapshot(&site.dist());
    for (path, bytes) in &before {
        if path != ".kiln-builds.json" {
            assert_eq!(after.get(path), Some(bytes), "{path} is as it was");
        }
    }
    let added: Vec<&String> = after
        .keys()
        .filter(|path| !before.contains_key(*path))
        .collect();
    assert!(
        added
            .iter()
            .any(|path| path.starts_with("css/site.") && path.ends_with(".css")),
        "{added:?}"
    );
    assert!(
        added.iter().all(|path| !path.ends_with(".html")),
        "{added:?}"
    );
}

#[test]
fn cache_purge_needs_exactly_one_target() {
    let site = Site::fixture("shop");
    let root = site.root().to_str().unwrap();
    let output = kiln(&["cache", "purge", "--root", root]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("exactly one of --all, --tag, --route, --url"));
    let output = kiln(&["cache", "purge", "--root", root, "--all"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), r#"{"dropped":0}"#);
}
