//! HTTP lint of the demo site with REDbot (`../shared/tools/redlint.py`):
//! every page and every asset must give 0 BAD and 0 WARN notes.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::server::TestServer;
use common::{Site, require, shared_dir};

/// The Python of a virtualenv with `redbot` installed (`.ci/run` makes one).
fn redbot_python() -> Result<PathBuf, String> {
    let python = std::env::var_os("KILN_REDBOT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/kiln-redbot/bin/python"));
    let works = Command::new(&python)
        .args(["-c", "import redbot, thor, httplint"])
        .output()
        .is_ok_and(|output| output.status.success());
    if works {
        Ok(python)
    } else {
        Err(format!(
            "no redbot in {} (set KILN_REDBOT_PYTHON)",
            python.display()
        ))
    }
}

#[test]
fn demo_site_is_clean_under_redbot() {
    let Some(python) = require(redbot_python(), "demo_site_is_clean_under_redbot") else {
        return;
    };
    let Some(shared) = require(
        shared_dir().ok_or_else(|| "the shared tools (../shared) are not present".to_string()),
        "demo_site_is_clean_under_redbot",
    ) else {
        return;
    };
    let site = Site::demo();
    site.build().expect("the demo site builds");
    let server = TestServer::start(&site, &[]);
    let base = format!("http://{}", server.addr);

    let mut pages = Vec::new();
    for entry in walkdir::WalkDir::new(site.dist()) {
        let entry = entry.unwrap();
        let relative = entry
            .path()
            .strip_prefix(site.dist())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative.ends_with(".html") && !relative.starts_with('.') {
            let url_path = relative.trim_end_matches("index.html");
            pages.push(format!("{base}/{url_path}"));
        }
    }
    let manifest = site.manifest();
    let assets: Vec<String> = manifest
        .as_object()
        .unwrap()
        .values()
        .map(|chunk| {
            format!(
                "{base}/{}",
                chunk["file"].as_str().unwrap().replace(' ', "%20")
            )
        })
        .collect();
    assert!(!assets.is_empty());
    // The dynamic routes of the demo: catalogue, product, JSON, guestbook.
    for path in [
        "/catalogue/",
        "/catalogue/?q=kenya&roast=dark&page=2",
        "/catalogue/42",
        "/guestbook/",
    ] {
        pages.push(format!("{base}{path}"));
    }
    let mut urls = pages.clone();
    urls.extend(assets);
    urls.push(format!("{base}/api/products/42"));
    urls.push(format!("{base}/no-such-page"));

    // One process per URL: redlint's event loop lingers on kept-alive
    // connections between URLs of one run. Four at a time.
    let mut reports = Vec::new();
    for batch in urls.chunks(4) {
        let handles: Vec<_> = batch
            .iter()
            .map(|url| {
                let mut command = Command::new(&python);
                command.arg(shared.join("tools/redlint.py"));
                if pages.contains(url) {
                    command.arg("--assets");
                }
                command.arg(url);
                std::thread::spawn(move || command.output().unwrap())
            })
            .collect();
        reports.extend(handles.into_iter().map(|handle| handle.join().unwrap()));
    }
    for output in reports {
        let report = String::from_utf8_lossy(&output.stdout);
        let problems: Vec<&str> = report
            .lines()
            .filter(|line| line.contains("BAD") || line.contains("WARN") || line.starts_with("=="))
            .collect();
        assert!(
            output.status.success() && report.contains("redlint: 0 bad, 0 warn"),
            "{}\n{}",
            problems.join("\n"),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
