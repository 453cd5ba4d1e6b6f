//! Driving `kiln jobs` from tests: the CLI run against a site, its JSON
//! listing read back, and waiting for the queue to get somewhere.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::Site;

pub(crate) fn kiln(site: &Site, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .args(["--root", site.root().to_str().unwrap()])
        .output()
        .expect("kiln runs")
}

/// What a successful command printed.
pub(crate) fn said(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `kiln jobs enqueue NAME --payload PAYLOAD`: the new job's id.
pub(crate) fn enqueue(site: &Site, name: &str, payload: &str, extra: &[&str]) -> i64 {
    let mut args = vec!["jobs", "enqueue", name, "--payload", payload];
    args.extend_from_slice(extra);
    let printed = said(kiln(site, &args));
    printed
        .parse()
        .unwrap_or_else(|_| panic!("an id, not {printed:?}"))
}

/// `kiln jobs list --state STATE`, as JSON values.
pub(crate) fn list(site: &Site, state: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["jobs", "list", "--state", state, "--limit", "100000"];
    args.extend_from_slice(extra);
    said(kiln(site, &args))
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Waits (at most `seconds`) until `done`, else fails naming `what`.
pub(crate) fn wait_up_to(seconds: u64, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most 30 s) until `done`, else fails naming `what`.
pub(crate) fn wait_for(what: &str, done: impl FnMut() -> bool) {
    wait_up_to(30, what, done)
}
