//! `kiln loadtest`: the traffic it reads off a site, the shapes of its
//! scenarios (requests per second of intended send time, and every one of
//! them reaching the server), the objectives gate, the target policy, the
//! server's resources read during a run and the bottleneck named from
//! them, the HTML report and the comparison with an earlier run.

mod common;

use std::process::Command;

use common::Site;
use common::server::{Captured, TestServer};
use kiln::loadtest::{LoadtestOptions, Scenario};
use kiln::server::access_log::AccessLog;

/// Built pages (`/`, `/about/`, `/flat.html`) and the assets of the
/// basic fixture's manifest.
fn site() -> Site {
    common::server::site_with_pages()
}

/// Runs `scenario` against `server` with `overrides`; returns the report.
fn load(
    site: &Site,
    server: &TestServer,
    scenario: Scenario,
    overrides: &[&str],
) -> serde_json::Value {
    let options = options(Some(server), scenario);
    load_with(site, options, overrides).0
}

fn options(server: Option<&TestServer>, scenario: Scenario) -> LoadtestOptions {
    LoadtestOptions {
        target: server.map(|server| format!("http://{}", server.addr)),
        scenario,
        report: None,
        allow_remote: false,
        metrics: server.and_then(|server| server.running().admin_addr.map(|addr| addr.to_string())),
        compare: None,
    }
}

/// Runs with `options` into a fresh report directory; returns the JSON
/// report, the HTML page and the verdict.
fn load_with(
    site: &Site,
    mut options: LoadtestOptions,
    overrides: &[&str],
) -> (serde_json::Value, String, kiln::loadtest::Verdict) {
    let report = tempfile::tempdir().expect("a report directory");
    options.report = Some(report.path().to_path_buf());
    let settings = site.settings(overrides);
    let verdict = kiln::loadtest::run(&settings, &options).expect("the load test runs");
    let json = std::fs::read(report.path().join("loadtest.json")).expect("loadtest.json");
    let summary = std::fs::read_to_string(report.path().join("summary.txt")).expect("summary.txt");
    let html = std::fs::read_to_string(report.path().join("report.html")).expect("report.html");
    assert_eq!(summary, verdict.text);
    (
        serde_json::from_slice(&json).expect("the report parses"),
        html,
        verdict,
    )
}

fn per_second(run: &serde_json::Value) -> Vec<u64> {
    run["by_second"]
        .as_array()
        .expect("by_second")
        .iter()
        .map(|second| second["requests"].as_u64().expect("requests"))
        .collect()
}

fn near(count: u64, wanted: f64) -> bool {
    (count as f64 - wanted).abs() <= wanted * 0.03 + 2.0
}

#[test]
fn the_normal_scenario_sends_the_sites_own_traffic_at_the_asked_rate() {
    let site = site();
    let log = Captured::default();
    let server = TestServer::start_with_log(
        &site,
        &[],
        Some(AccessLog::to_writer(
            kiln::config::AccessLogFormat::Json,
            Box::new(log.clone()),
        )),
    );
    let report = load(
        &site,
        &server,
        Scenario::Normal,
        &["loadtest.rate=200", "loadtest.duration_secs=3"],
    );
    let run = &report["runs"][0];
    assert_eq!(report["met"], true, "{report:#}");
    assert!(near(run["requests"].as_u64().unwrap(), 600.0), "{run:#}");
    assert!(
        per_second(run).iter().all(|&count| near(count, 200.0)),
        "{:?}",
        per_second(run)
    );
    // Pages, the manifest's assets, both answered without an error.
    for class in ["page", "asset"] {
        assert!(
            run["by_class"][class]["requests"].as_u64().unwrap() > 0,
            "{class}"
        );
    }
    assert_eq!(run["error_rate"], 0.0);
    // Every request reached the server (the learning visit of each URL
    // first), and repeat visits revalidated.
    server.stop(true);
    let lines = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let statuses: Vec<u64> = lines
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["status"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let learned = statuses.len() as u64 - run["requests"].as_u64().unwrap();
    assert!(learned > 3 && learned < 200, "{learned} first visits");
    assert!(statuses.iter().filter(|&&status| status == 304).count() > 100);
    assert!(
        statuses
            .iter()
            .all(|&status| status == 200 || status == 304)
    );
}

#[test]
fn peak_ramps_and_spike_jumps_as_documented() {
    let site = site();
    let server = TestServer::start(&site, &[]);
    let peak = load(
        &site,
        &server,
        Scenario::Peak,
        &["loadtest.rate=100", "loadtest.duration_secs=6"],
    );
    // 100 → 300 req/s over 3 s, then held.
    let counts = per_second(&peak["runs"][0]);
    for (second, wanted) in [133.3, 200.0, 266.7, 300.0, 300.0, 300.0]
        .iter()
        .enumerate()
    {
        assert!(near(counts[second], *wanted), "peak: {counts:?}");
    }
    let spike = load(
        &site,
        &server,
        Scenario::Spike,
        &["loadtest.rate=100", "loadtest.duration_secs=6"],
    );
    // 500 req/s from 2 s for 1 s.
    let counts = per_second(&spike["runs"][0]);
    for (second, wanted) in [100.0, 100.0, 500.0, 100.0, 100.0, 100.0]
        .iter()
        .enumerate()
    {
        assert!(near(counts[second], *wanted), "spike: {counts:?}");
    }
}

/// The stress scenario raises the rate step by step and stops at the
/// first step that misses an objective; the knee is the step before.
#[test]
fn stress_stops_at_the_first_step_that_misses_an_objective() {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    let server = TestServer::start(&site, &[]);
    // One slow query per request (an uncached route counting to 200,000),
    // one database connection: steps of 20, 40, 60… req/s overload it
    // within a few steps.
    let report = load(
        &site,
        &server,
        Scenario::Stress,
        &[
            "loadtest.rate=20",
            "loadtest.step_secs=1",
            "loadtest.p99_ms=400",
            "loadtest.weights={ pages = 0, assets = 0, routes = 0, urls = 1 }",
            "loadtest.url=[{ path = \"/slow?n=200000\" }]",
            "database.max_size=1",
        ],
    );
    let runs = report["runs"].as_array().unwrap();
    assert!(runs.len() >= 2 && runs.len() < 30, "{} steps", runs.len());
    let last = runs.last().unwrap();
    // Requests never sent count against the error rate too.
    let due = last["requests"].as_f64().unwrap() + last["unsent"].as_f64().unwrap();
    assert!(
        last["latency_ms"]["p99"].as_f64().unwrap() > 400.0
            || last["error_rate"].as_f64().unwrap() > 0.01
            || last["unsent"].as_f64().unwrap() > due * 0.01,
        "{last:#}"
    );
}

#[test]
fn a_missed_objective_fails_the_command() {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "loadtest",
            "--root",
            site.root().to_str().unwrap(),
            "--no-build",
            "--set",
            "loadtest.rate=20",
            "--set",
            "loadtest.duration_secs=2",
            "--set",
            "loadtest.p99_ms=1",
            "--set",
            "loadtest.weights={ pages = 0, assets = 0, routes = 0, urls = 1 }",
            "--set",
            "loadtest.url=[{ path = \"/slow?n=200000\" }]",
        ])
        .output()
        .expect("kiln runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("objectives MISSED (p99 ≤ 1 ms"), "{stdout}");
}

#[test]
fn a_target_elsewhere_needs_allow_remote() {
    let site = site();
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "loadtest",
            "--root",
            site.root().to_str().unwrap(),
            "--target",
            "http://192.0.2.7:8080",
        ])
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--target http://192.0.2.7:8080: not on this machine; pass --allow-remote"),
        "{stderr}"
    );
}

/// The shop's slow route on one database connection, at a rate it cannot
/// take: the analysis names the pool, with the route that held it, from
/// the metrics of the server the test started (in this process).
#[test]
fn an_overloaded_pool_is_named_as_the_bottleneck_with_its_route() {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    let (report, html, verdict) = load_with(
        &site,
        options(None, Scenario::Normal),
        &[
            "loadtest.rate=100",
            "loadtest.duration_secs=3",
            "loadtest.goal_rate=5000",
            "loadtest.weights={ pages = 0, assets = 0, routes = 0, urls = 1 }",
            "loadtest.url=[{ path = \"/slow?n=300000\" }]",
            "database.max_size=1",
        ],
    );
    let run = &report["runs"][0];
    let analysis = &run["analysis"];
    assert_eq!(analysis["limit"], "pool", "{analysis:#}");
    let headline = analysis["headline"].as_str().unwrap();
    assert!(
        headline.starts_with("pool-bound: all 1 database connections in use"),
        "{headline}"
    );
    assert!(
        headline.contains("GET /slow took 100% of query time"),
        "{headline}"
    );
    assert!(
        analysis["scaling"]
            .as_str()
            .unwrap()
            .contains("5000 req/s (loadtest.goal_rate) needs"),
        "{analysis:#}"
    );
    // A point for each second, read while the server worked.
    let points = run["resources"]["points"].as_array().unwrap();
    assert!(points.len() >= 2, "{:#}", run["resources"]);
    assert!(
        points
            .iter()
            .all(|point| point["rss_mb"].as_f64().unwrap() > 1.0)
    );
    assert!(
        points
            .iter()
            .any(|point| point["cpu_cores"].as_f64().unwrap() > 0.0)
    );
    assert!(verdict.text.contains("pool-bound"), "{}", verdict.text);
    assert!(html.contains("pool-bound: all 1 database connections"));
}

/// The report opens offline: charts drawn inline, no script, nothing
/// fetched; and it has each chart the documentation lists.
#[test]
fn the_html_report_draws_its_charts_inline_and_fetches_nothing() {
    let site = site();
    let server = TestServer::start(&site, &[]);
    let (report, html, _) = load_with(
        &site,
        options(Some(&server), Scenario::Normal),
        &["loadtest.rate=100", "loadtest.duration_secs=2"],
    );
    for title in [
        "Throughput by second of intended send time",
        "Latency percentiles by second",
        "Latency distribution",
        "CPU",
        "Memory",
        "Connections and requests in the server",
    ] {
        assert!(
            html.contains(&format!("aria-label=\"{title}\"")),
            "no chart {title:?}"
        );
    }
    assert!(html.matches("<polyline").count() >= 8);
    let lowered = html.to_ascii_lowercase();
    for fetch in [
        "<script", "src=", "href=", "url(", "@import", "http://", "https://",
    ] {
        assert!(!lowered.contains(fetch), "the report contains {fetch:?}");
    }
    // Resources came over the admin listener of the target.
    let points = report["runs"][0]["resources"]["points"].as_array().unwrap();
    assert!(!points.is_empty(), "{:#}", report["runs"][0]["resources"]);
    assert!(
        points
            .iter()
            .any(|point| point["served_per_s"].as_f64().unwrap() > 50.0),
        "{points:#?}"
    );
    assert!(
        report["runs"][0]["analysis"]["cpu_ms_per_request"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// `--compare`: a run set against a report it cannot match fails with
/// the regression named, and against itself it passes.
#[test]
fn compare_flags_a_regression_against_an_earlier_report() {
    let site = site();
    let server = TestServer::start(&site, &[]);
    let overrides = ["loadtest.rate=100", "loadtest.duration_secs=1"];
    let (report, _, _) = load_with(&site, options(Some(&server), Scenario::Normal), &overrides);
    let kept = tempfile::tempdir().expect("a directory");
    // An earlier run ten times faster than anything loopback gives.
    let mut better = report.clone();
    better["runs"][0]["throughput"] = serde_json::json!(1_000_000.0);
    let old = kept.path().join("old.json");
    std::fs::write(&old, better.to_string()).unwrap();
    let mut compared = options(Some(&server), Scenario::Normal);
    compared.compare = Some(old.clone());
    let (_, _, verdict) = load_with(&site, compared, &overrides);
    // The forced one; latency on a loaded machine may add its own.
    assert!(
        verdict
            .regressions
            .iter()
            .any(|regression| regression == "normal: throughput"),
        "{}",
        verdict.text
    );
    assert!(verdict.text.contains("REGRESSED"), "{}", verdict.text);
    // The same through the command: exit 1, and a usage error for a file
    // that is not a report.
    let garbage = kept.path().join("garbage.json");
    std::fs::write(&garbage, "{\"not\": \"a report\"}").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "loadtest",
            "--root",
            site.root().to_str().unwrap(),
            "--target",
            &format!("http://{}", server.addr),
            "--compare",
            garbage.to_str().unwrap(),
        ])
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not a loadtest.json: it has no \"runs\""),
        "{stderr}"
    );
}

/// The errors scenario mixes in requests every refusal path answers:
/// each kind is counted as expected, none as a failure, and the server
/// still serves afterwards.
#[test]
fn the_errors_scenario_probes_each_refusal_path_as_expected_failures() {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    let server = TestServer::start(&site, &[]);
    let report = load(
        &site,
        &server,
        Scenario::Errors,
        &[
            "loadtest.rate=100",
            "loadtest.duration_secs=2",
            "loadtest.error_share=0.5",
        ],
    );
    let run = &report["runs"][0];
    assert_eq!(report["met"], true, "{run:#}");
    for class in ["malformed", "oversized", "not_found", "unauthorised"] {
        let tally = &run["by_class"][class];
        assert!(
            tally["requests"].as_u64().unwrap_or(0) > 5,
            "{class}: {run:#}"
        );
        assert_eq!(
            tally["outcomes"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["expected_error"],
            "{class}: {tally:#}"
        );
    }
    assert_eq!(run["error_rate"], 0.0, "{run:#}");
    let page = common::http::get(server.addr, "/items/", &[]);
    assert_eq!(page.status, 200);
}

/// Recovery overloads the second quarter of the run and reports how long
/// the server took to meet the objectives again; static pages take none.
#[test]
fn recovery_overloads_a_quarter_and_reports_the_time_to_recover() {
    let site = site();
    let server = TestServer::start(&site, &[]);
    let report = load(
        &site,
        &server,
        Scenario::Recovery,
        &[
            "loadtest.rate=50",
            "loadtest.overload=4",
            "loadtest.duration_secs=4",
        ],
    );
    let run = &report["runs"][0];
    let counts = per_second(run);
    for (second, wanted) in [50.0, 200.0, 50.0, 50.0].iter().enumerate() {
        assert!(near(counts[second], *wanted), "{counts:?}");
    }
    assert_eq!(run["recovered_after_secs"], 0, "{run:#}");
    assert_eq!(report["met"], true);
}

/// Soak reports memory, open files and latency by minute and their slopes.
#[test]
fn soak_reports_the_drift_of_memory_files_and_latency() {
    let site = site();
    let server = TestServer::start(&site, &[]);
    let (report, _, verdict) = load_with(
        &site,
        options(Some(&server), Scenario::Soak),
        &["loadtest.rate=100", "loadtest.soak_secs=3"],
    );
    let drift = &report["runs"][0]["drift"];
    assert!(drift["rss_mb_per_min"].is_number(), "{drift:#}");
    assert!(drift["open_fds_per_min"].is_number(), "{drift:#}");
    let minutes = drift["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 1);
    assert!(minutes[0]["rss_mb"].as_f64().unwrap() > 1.0);
    assert!(verdict.text.contains("drift: memory"), "{}", verdict.text);
}

/// A scenario file: its stages shape the run, its [loadtest] keys apply,
/// and a mistake names the line.
#[test]
fn a_scenario_file_shapes_the_run_and_a_mistake_names_its_line() {
    let site = site();
    let server = TestServer::start(&site, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("launch.toml");
    std::fs::write(
        &file,
        "start_rate = 100\n\
         [[stage]]\nduration_secs = 2\nrate = 300\n\
         [[stage]]\nduration_secs = 1\nrate = 300\n\
         [loadtest]\nconnections = 4\np99_ms = 900\n",
    )
    .unwrap();
    let report = load(&site, &server, Scenario::File(file), &[]);
    assert_eq!(report["scenario"], "launch");
    assert_eq!(report["objectives"]["p99_ms"], 900.0);
    let counts = per_second(&report["runs"][0]);
    for (second, wanted) in [150.0, 250.0, 300.0].iter().enumerate() {
        assert!(near(counts[second], *wanted), "{counts:?}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[stage]]\nduration_secs = 2\nrat = 100\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "loadtest",
            "--root",
            site.root().to_str().unwrap(),
            "--target",
            &format!("http://{}", server.addr),
            "--scenario",
            bad.to_str().unwrap(),
        ])
        .output()
        .expect("kiln runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml: line 3, column 1: unknown field `rat`"),
        "{stderr}"
    );
}

/// The closed model: a few users, each waiting for its answer and
/// thinking, send far fewer requests than an open schedule would.
#[test]
fn the_closed_model_runs_users_that_wait_and_think() {
    let site = site();
    let server = TestServer::start(&site, &[]);
    let report = load(
        &site,
        &server,
        Scenario::Normal,
        &[
            "loadtest.model=\"closed\"",
            "loadtest.users=4",
            "loadtest.think_ms=100",
            "loadtest.duration_secs=2",
        ],
    );
    let run = &report["runs"][0];
    let requests = run["requests"].as_u64().unwrap();
    // 4 users × 2 s / (100 ms of thinking and a little latency).
    assert!((30..=95).contains(&requests), "{requests}");
    assert!(
        run["name"]
            .as_str()
            .unwrap()
            .contains("closed model: 4 users, think 100 ms"),
        "{run:#}"
    );
    assert_eq!(report["model"], "closed");
    let stress = kiln::loadtest::run(
        &site.settings(&["loadtest.model=\"closed\""]),
        &options(Some(&server), Scenario::Stress),
    );
    assert!(matches!(
        stress,
        Err(kiln::loadtest::LoadtestError::ClosedModel(_))
    ));
}

/// Routes with parameters join the mix: a query's rows and given samples
/// fill their paths (and queries), and an `int` parameter without either
/// takes 1 to 10; a [[loadtest.route]] naming no route is refused.
#[test]
fn routes_with_parameters_are_requested_with_samples_query_rows_and_generated_ids() {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    let log = Captured::default();
    let server = TestServer::start_with_log(
        &site,
        &[],
        Some(AccessLog::to_writer(
            kiln::config::AccessLogFormat::Json,
            Box::new(log.clone()),
        )),
    );
    let (report, html, _) = load_with(
        &site,
        options(Some(&server), Scenario::Normal),
        &[
            "loadtest.rate=300",
            "loadtest.duration_secs=2",
            "loadtest.weights={ pages = 0, assets = 0, routes = 1, urls = 0 }",
            "loadtest.route=[\
             { path = \"/items/{id:int}\", sql = \"SELECT id FROM items ORDER BY id LIMIT 2\", weight = 3 },\
             { path = \"/items/\", samples = [{ q = \"a b\", page = 2 }] }]",
        ],
    );
    assert_eq!(report["runs"][0]["error_rate"], 0.0, "{report:#}");
    // The cached item pages were rendered once per id, then served from
    // the cache; the uncached list has no ratio.
    let resources = &report["runs"][0]["resources"];
    let ratio = resources["route_hit_ratio"]["GET /items/{id:int}"]
        .as_f64()
        .unwrap_or_else(|| panic!("no hit ratio: {resources:#}"));
    assert!(ratio > 0.9, "{ratio}");
    assert!(resources["route_hit_ratio"]["GET /items/"].is_null());
    assert!(resources["route_requests"]["GET /items/"].as_f64().unwrap() > 0.0);
    assert!(html.contains("<th>cache hits</th>"));
    server.stop(true);
    let lines = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let targets: std::collections::BTreeSet<String> = lines
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["target"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for wanted in [
        "/items/1",
        "/items/2",
        "/items/?page=2&q=a%20b",
        "/api/items/7",
    ] {
        assert!(
            targets.contains(wanted),
            "{wanted} not requested: {targets:?}"
        );
    }
    assert!(!targets.contains("/items/3"), "the query gave two rows");
    let settings =
        site.settings(&["loadtest.route=[{ path = \"/nowhere/{id}\", samples = [{ id = 1 }] }]"]);
    let refused = kiln::loadtest::run(&settings, &options(None, Scenario::Normal));
    assert!(
        matches!(&refused, Err(kiln::loadtest::LoadtestError::Routes(reason))
            if reason.contains("loadtest.route \"/nowhere/{id}\": no GET route has this path")),
        "{:?}",
        refused.err().map(|err| err.to_string())
    );
}

/// Forms as a visitor posts them: the page's CSRF token and cookie, the
/// post, the redirect followed; each flow is one request of the schedule,
/// and the notes it posted are on the page. Posts without a form to take
/// a token from are left out with the reason.
#[test]
fn form_flows_take_the_token_post_and_follow_the_redirect() {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    let log = Captured::default();
    let server = TestServer::start_with_log(
        &site,
        &[],
        Some(AccessLog::to_writer(
            kiln::config::AccessLogFormat::Json,
            Box::new(log.clone()),
        )),
    );
    let (report, _, verdict) = load_with(
        &site,
        options(Some(&server), Scenario::Normal),
        &[
            "loadtest.rate=20",
            "loadtest.duration_secs=2",
            "loadtest.weights={ pages = 0, assets = 0, routes = 0, urls = 0, forms = 1 }",
        ],
    );
    let run = &report["runs"][0];
    let forms = &run["by_class"]["form"];
    assert!(forms["requests"].as_u64().unwrap() >= 30, "{run:#}");
    assert_eq!(
        forms["outcomes"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["ok"],
        "{}",
        verdict.text
    );
    for line in verdict
        .text
        .lines()
        .filter(|line| line.starts_with("left out"))
    {
        assert!(line.starts_with("left out of the mix: POST "), "{line}");
    }
    let notes = common::http::get(server.addr, "/notes/", &[]);
    assert!(notes.text().contains("kiln loadtest"), "{}", notes.text());
    server.stop(true);
    let lines = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let posts = lines
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|entry| entry["method"] == "POST" && entry["status"] == 303)
        .count();
    assert!(posts >= 30, "{posts} posts answered 303");
}

/// A POST route's [[loadtest.route]] rows fill its path parameters and
/// fields by name (one form per row), and its redirect's placeholders
/// find the page the form is on.
#[test]
fn form_rows_fill_path_parameters_and_fields() {
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    let server = TestServer::start(&site, &[]);
    let (report, _, verdict) = load_with(
        &site,
        options(Some(&server), Scenario::Normal),
        &[
            "loadtest.rate=10",
            "loadtest.duration_secs=2",
            "loadtest.weights={ pages = 0, assets = 0, routes = 0, urls = 0, forms = 1 }",
            "loadtest.route=[\
             { path = \"/rename/{name:slug}\", method = \"POST\", samples = [{ name = \"red-mug\", label = \"A label from a row\" }] },\
             { path = \"/notes/\", method = \"POST\", samples = [{ author = \"Ada\", body = \"from a sample row\" }] }]",
        ],
    );
    let forms = &report["runs"][0]["by_class"]["form"];
    assert_eq!(forms["error_rate"], 0.0, "{}", verdict.text);
    assert!(
        forms["requests"].as_u64().unwrap() >= 10,
        "{}",
        verdict.text
    );
    let notes = common::http::get(server.addr, "/notes/", &[]);
    for posted in ["from a sample row", "<b>red-mug</b> A label from a row"] {
        assert!(notes.text().contains(posted), "{}", notes.text());
    }
    // Both routes were in the mix: none was left out.
    assert!(
        !verdict.text.contains("left out of the mix: POST /rename"),
        "{}",
        verdict.text
    );
    // A POST entry must name a POST route.
    let settings = site.settings(&[
        "loadtest.route=[{ path = \"/whoami\", method = \"POST\", samples = [{ name = \"x\" }] }]",
    ]);
    let refused = kiln::loadtest::run(&settings, &options(Some(&server), Scenario::Normal));
    assert!(
        matches!(&refused, Err(kiln::loadtest::LoadtestError::Routes(reason))
            if reason.contains("no POST route has this path")),
        "{:?}",
        refused.err().map(|err| err.to_string())
    );
}

/// The closed model's stages count users (k6's ramping-vus): two users
/// for a second, then eight, and the requests per second follow.
#[test]
fn closed_model_stages_ramp_the_users() {
    let site = site();
    let server = TestServer::start(&site, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    std::fs::write(
        &file,
        "[[stage]]\nduration_secs = 1\nusers = 2\n\
         [[stage]]\nduration_secs = 0\nusers = 8\n\
         [[stage]]\nduration_secs = 2\nusers = 8\n\
         [loadtest]\nmodel = \"closed\"\nthink_ms = 100\n",
    )
    .unwrap();
    let report = load(&site, &server, Scenario::File(file), &[]);
    let run = &report["runs"][0];
    assert!(
        run["name"].as_str().unwrap().contains("up to 8 users"),
        "{run:#}"
    );
    let counts = per_second(run);
    // About 2 × 10 requests in the first second, 8 × 10 in the third.
    assert!(counts[2] as f64 > counts[0] as f64 * 2.5, "{counts:?}");
    assert!((8..=25).contains(&counts[0]), "{counts:?}");
    // A rate belongs to the open model's stages.
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        "[[stage]]\nduration_secs = 1\nrate = 20\n[loadtest]\nmodel = \"closed\"\n",
    )
    .unwrap();
    let refused = kiln::loadtest::run(
        &site.settings(&[]),
        &options(Some(&server), Scenario::File(wrong)),
    );
    assert!(
        refused.as_ref().is_err_and(|err| err
            .to_string()
            .contains("stage 1: rate belongs to the open model")),
        "{:?}",
        refused.err().map(|err| err.to_string())
    );
}

/// An https:// target is verified against loadtest.ca_file and spoken to
/// in HTTP/2 when the server agrees by ALPN, `streams` requests sharing
/// each connection; in HTTP/1.1 when asked; and refused, saying why, when
/// its certificate's CA is unknown.
#[test]
fn https_targets_are_verified_and_spoken_to_in_http2_with_streams() {
    let site = site();
    let certs = common::tls::certificates();
    site.write("tls/cert.pem", &certs.cert_pem);
    site.write("tls/key.pem", &certs.key_pem);
    site.write("tls/ca.pem", &certs.ca_pem);
    let log = Captured::default();
    let server = TestServer::start_with_log(
        &site,
        &[
            "server.tls_cert=\"tls/cert.pem\"",
            "server.tls_key=\"tls/key.pem\"",
        ],
        Some(AccessLog::to_writer(
            kiln::config::AccessLogFormat::Json,
            Box::new(log.clone()),
        )),
    );
    let mut https = options(Some(&server), Scenario::Normal);
    https.target = Some(format!("https://{}", server.addr));
    let versions = |log: &Captured| -> std::collections::BTreeSet<String> {
        let mut lines = log.0.lock().unwrap();
        let text = String::from_utf8(std::mem::take(&mut *lines)).unwrap();
        text.lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            // The metrics, read on the admin listener, are not the load.
            .filter(|entry| entry["target"] != "/metrics")
            .map(|entry| entry["version"].as_str().unwrap().to_string())
            .collect()
    };
    let common = [
        "loadtest.rate=200",
        "loadtest.duration_secs=2",
        "loadtest.connections=2",
        "loadtest.ca_file=\"tls/ca.pem\"",
    ];
    // What the server answered before (its start-up checks) is not the
    // generator's.
    versions(&log);
    let (report, _, verdict) = load_with(
        &site,
        https.clone(),
        &[&common[..], &["loadtest.streams=4"]].concat(),
    );
    let run = &report["runs"][0];
    assert_eq!(run["error_rate"], 0.0, "{}", verdict.text);
    assert!(run["requests"].as_u64().unwrap() >= 380, "{}", verdict.text);
    assert_eq!(
        run["connections_opened"],
        serde_json::json!({ "http1": 0, "http2": 2 }),
        "{}",
        verdict.text
    );
    assert!(verdict.text.contains("connections opened: 2 HTTP/2"));
    assert_eq!(
        versions(&log),
        std::collections::BTreeSet::from(["HTTP/2.0".to_string()])
    );
    let (report, _, verdict) = load_with(
        &site,
        https.clone(),
        &[&common[..], &["loadtest.protocol=\"http1\""]].concat(),
    );
    let run = &report["runs"][0];
    assert_eq!(run["error_rate"], 0.0, "{}", verdict.text);
    assert_eq!(run["connections_opened"]["http2"], 0, "{}", verdict.text);
    assert_eq!(
        versions(&log),
        std::collections::BTreeSet::from(["HTTP/1.1".to_string()])
    );
    // Without --target, the site's own server serves HTTPS as the site
    // says, and kiln speaks HTTP/2 to it.
    let (report, _, verdict) = load_with(
        &site,
        options(None, Scenario::Normal),
        &[
            "server.tls_cert=\"tls/cert.pem\"",
            "server.tls_key=\"tls/key.pem\"",
            "loadtest.rate=100",
            "loadtest.duration_secs=1",
            "loadtest.connections=2",
        ],
    );
    let run = &report["runs"][0];
    assert_eq!(run["error_rate"], 0.0, "{}", verdict.text);
    assert_eq!(run["connections_opened"]["http2"], 2, "{}", verdict.text);
    // The test CA is not the system's: nothing answers, and the summary
    // says it was the certificate.
    let refused = kiln::loadtest::run(&site.settings(&[]), &https);
    let Err(kiln::loadtest::LoadtestError::NoTraffic(reasons)) = &refused else {
        panic!("{:?}", refused.err().map(|err| err.to_string()));
    };
    assert!(
        reasons.contains("tls: ") && reasons.contains("certificate"),
        "{reasons}"
    );
}
