//! `kiln loadtest`: the traffic it reads off a site, the shapes of its
//! scenarios (requests per second of intended send time, and every one of
//! them reaching the server), the objectives gate and the target policy.

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
    let report = tempfile::tempdir().expect("a report directory");
    let settings = site.settings(overrides);
    let options = LoadtestOptions {
        target: Some(format!("http://{}", server.addr)),
        scenario,
        report: Some(report.path().to_path_buf()),
        allow_remote: false,
    };
    let verdict = kiln::loadtest::run(&settings, &options).expect("the load test runs");
    let json = std::fs::read(report.path().join("loadtest.json")).expect("loadtest.json");
    let summary = std::fs::read_to_string(report.path().join("summary.txt")).expect("summary.txt");
    assert_eq!(summary, verdict.text);
    serde_json::from_slice(&json).expect("the report parses")
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
    assert!(
        last["latency_ms"]["p99"].as_f64().unwrap() > 400.0
            || last["error_rate"].as_f64().unwrap() > 0.01,
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
