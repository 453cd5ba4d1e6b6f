//! Background jobs delivered: `http` jobs to a local webhook sink
//! (headers, placeholders, retries, permanent failures), batches (one
//! request or one statement for many payloads), deduplication, cron
//! schedules taken once per tick by several instances, concurrency
//! limits, leases kept alive while a job runs long, wake-ups on
//! PostgreSQL, and no job lost when workers are killed.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::Site;
use common::jobs::{enqueue, kiln, list, said, wait_for, wait_up_to};
use common::server::TestServer;
use common::sink::Sink;

/// The shop fixture with `jobs` appended to its build.toml, built.
fn shop_with(jobs: &str) -> Site {
    let site = Site::fixture("shop");
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    site.write("build.toml", format!("{config}\n{jobs}"));
    site.build().expect("the shop builds");
    site
}

/// The site's SQLite database: the shop's, or the demo's.
fn sqlite(site: &Site) -> rusqlite::Connection {
    let shop = site.path("data/shop.db");
    let file = if shop.exists() {
        shop
    } else {
        site.path("data/site.db")
    };
    let db = rusqlite::Connection::open(file).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db
}

fn count(site: &Site, sql: &str) -> i64 {
    sqlite(site).query_row(sql, [], |row| row.get(0)).unwrap()
}

/// Puts `count` jobs of `job` straight into the queue's table, payloads
/// `{"n": 0…count-1}`, as a backlog enqueued while no worker ran.
fn backlog(site: &Site, job: &str, count: usize) {
    // Creates the table.
    said(kiln(site, &["jobs", "list", "--limit", "1"]));
    let mut db = sqlite(site);
    let transaction = db.transaction().unwrap();
    {
        let mut insert = transaction
            .prepare(
                "INSERT INTO kiln_jobs (job, queue, priority, payload, state, max_attempts, run_at, created_ms) \
                 VALUES (?1, 'default', 0, ?2, 'ready', 5, 0, 0)",
            )
            .unwrap();
        for n in 0..count {
            insert
                .execute(rusqlite::params![job, format!("{{\"n\":{n}}}")])
                .unwrap();
        }
    }
    transaction.commit().unwrap();
}

#[test]
fn http_jobs_send_their_request_retry_server_errors_and_bury_client_errors() {
    let sink = Sink::start(
        Duration::ZERO,
        Arc::new(|number, request: &common::sink::Received| {
            if request.target.contains("refused") {
                (400, "")
            } else if number == 0 {
                (503, "Retry-After: 0\r\n")
            } else {
                (204, "")
            }
        }),
    );
    let site = shop_with(&format!(
        r#"
[jobs]
poll_ms = 20

[[job]]
name = "hook"
kind = "http"
url = "{}/orders/{{order}}?src=kiln"
method = "PUT"
headers = {{ Authorization = "Bearer ${{KILN_TEST_SINK_TOKEN:-t0ken}}", X-Order = "{{order}}" }}
backoff_ms = 10
"#,
        sink.url("")
    ));
    let server = TestServer::start(&site, &[]);
    let ok = enqueue(&site, "hook", r#"{"order": "A 1", "total": 12}"#, &[]);
    wait_for("the hook to succeed", || {
        list(&site, "succeeded", &[])
            .iter()
            .any(|job| job["id"] == ok)
    });
    let received = sink.received();
    assert_eq!(received.len(), 2, "a 503, then the retry: {received:?}");
    let retry = &received[1];
    assert_eq!(retry.method, "PUT");
    assert_eq!(retry.target, "/orders/A%201?src=kiln");
    assert_eq!(retry.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(retry.header("x-order"), Some("A 1"));
    assert_eq!(retry.header("content-type"), Some("application/json"));
    assert_eq!(
        retry.json(),
        serde_json::json!({"order": "A 1", "total": 12})
    );

    // A 400 cannot get better: dead after one attempt, the status and the
    // body's start in its error.
    let refused = enqueue(&site, "hook", r#"{"order": "refused"}"#, &[]);
    wait_for("the refused hook to die", || {
        list(&site, "dead", &[])
            .iter()
            .any(|job| job["id"] == refused)
    });
    let dead = list(&site, "dead", &[]);
    let job = dead.iter().find(|job| job["id"] == refused).unwrap();
    assert_eq!(job["attempts"], 1, "{job}");
    let error = job["last_error"].as_str().unwrap();
    assert!(
        error.contains("status 400") && error.contains("ok"),
        "{error}"
    );
    drop(server);
}

#[test]
fn ten_thousand_payloads_reach_the_sink_in_at_most_101_batched_calls() {
    let sink = Sink::ok();
    let site = shop_with(&format!(
        r#"
[jobs]
poll_ms = 20

[[job]]
name = "index"
kind = "http"
url = "{}"
batch = {{ size = 100, max_wait_ms = 200 }}
"#,
        sink.url("/bulk")
    ));
    backlog(&site, "index", 10_000);
    let _server = TestServer::start(&site, &[]);
    wait_up_to(120, "every payload delivered", || {
        count(
            &site,
            "SELECT count(*) FROM kiln_jobs WHERE state = 'succeeded'",
        ) == 10_000
    });
    let received = sink.received();
    assert!(received.len() <= 101, "{} calls", received.len());
    let mut seen: Vec<i64> = received
        .iter()
        .flat_map(|request| {
            request
                .json()
                .as_array()
                .expect("a batch is a JSON array")
                .iter()
                .map(|payload| payload["n"].as_i64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..10_000).collect::<Vec<i64>>());
}

#[test]
fn a_batched_sql_job_reads_its_payloads_as_one_json_array_and_a_short_batch_waits() {
    let site = shop_with(
        r#"
[jobs]
poll_ms = 20

[[job]]
name = "bulk-notes"
kind = "sql"
exec = ["INSERT INTO notes (author, body) SELECT 'bulk', json_extract(value, '$.body') FROM json_each(:payloads)",
        "INSERT INTO notes (author, body) VALUES ('batch', json_array_length(:payloads))"]
batch = { size = 50, max_wait_ms = 300 }
"#,
    );
    let _server = TestServer::start(&site, &[]);
    for body in ["one", "two", "three"] {
        enqueue(
            &site,
            "bulk-notes",
            &format!(r#"{{"body": "{body}"}}"#),
            &[],
        );
    }
    wait_for("the short batch to go after max_wait_ms", || {
        count(&site, "SELECT count(*) FROM notes WHERE author = 'bulk'") == 3
    });
    // Three payloads, enqueued within max_wait_ms: one delivery.
    let sizes: Vec<String> = sqlite(&site)
        .prepare("SELECT body FROM notes WHERE author = 'batch'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sizes, ["3"]);
}

#[test]
fn unique_jobs_are_enqueued_once_within_their_window() {
    let site = shop_with(
        r#"
[[job]]
name = "reindex"
kind = "sql"
exec = ["INSERT INTO notes (author, body) VALUES ('reindex', :product)"]
unique_for_secs = 3600
unique_key = "{product}"
"#,
    );
    let first = enqueue(&site, "reindex", r#"{"product": 7, "why": "price"}"#, &[]);
    let again = said(kiln(
        &site,
        &[
            "jobs",
            "enqueue",
            "reindex",
            "--payload",
            r#"{"product": 7, "why": "stock"}"#,
        ],
    ));
    assert!(again.starts_with("duplicate"), "{again}");
    let other = enqueue(&site, "reindex", r#"{"product": 8}"#, &[]);
    assert!(other > first);
    assert_eq!(list(&site, "ready", &[]).len(), 2);
}

/// A kiln process of the test's, killed (SIGKILL) when dropped: a
/// failing test leaves none running.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `kiln jobs work` on the site until dropped.
fn worker(site: &Site, sets: &[&str]) -> Process {
    spawn(site, &["jobs", "work"], sets)
}

/// Runs `kiln ARGS --root SITE --set …` until dropped.
fn spawn(site: &Site, args: &[&str], sets: &[&str]) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .args(["--root", site.root().to_str().unwrap()]);
    for set in sets {
        command.args(["--set", set]);
    }
    Process(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kiln starts"),
    )
}

#[test]
fn a_schedule_is_taken_once_per_tick_by_several_instances() {
    let site = shop_with(
        r#"
[jobs]
poll_ms = 20

[[job]]
name = "tick"
kind = "sql"
exec = ["INSERT INTO notes (author, body) VALUES ('tick', :label)"]
schedule = "* * * * * *"
time_zone = "Europe/Paris"
payload = { label = "every second" }
"#,
    );
    let _server = TestServer::start(&site, &[]);
    let others = [worker(&site, &[]), worker(&site, &[])];
    wait_up_to(60, "four ticks", || {
        count(&site, "SELECT count(*) FROM notes WHERE author = 'tick'") >= 4
    });
    drop(others);
    let runs = count(&site, "SELECT count(*) FROM kiln_jobs WHERE job = 'tick'");
    let ticks = count(
        &site,
        "SELECT count(DISTINCT run_at) FROM kiln_jobs WHERE job = 'tick'",
    );
    assert_eq!(runs, ticks, "a tick enqueued twice");
    let on_the_second = count(
        &site,
        "SELECT count(*) FROM kiln_jobs WHERE job = 'tick' AND run_at % 1000 = 0",
    );
    assert_eq!(on_the_second, runs);
}

#[test]
fn concurrency_limits_hold_per_job_and_per_queue() {
    let sink = Sink::start(Duration::from_millis(150), Arc::new(|_, _| (200, "")));
    let site = shop_with(&format!(
        r#"
[jobs]
poll_ms = 20
workers = 8
queues.mail = {{ concurrency = 2 }}

[[job]]
name = "one-at-a-time"
kind = "http"
url = "{url}/single"
concurrency = 1

[[job]]
name = "mail"
kind = "http"
url = "{url}/mail"
queue = "mail"
"#,
        url = sink.url("")
    ));
    backlog(&site, "one-at-a-time", 6);
    let _server = TestServer::start(&site, &[]);
    wait_for("the single jobs", || {
        count(
            &site,
            "SELECT count(*) FROM kiln_jobs WHERE state = 'succeeded'",
        ) == 6
    });
    assert_eq!(sink.most_in_flight(), 1);
    sqlite(&site)
        .execute(
            "UPDATE kiln_jobs SET job = 'mail', queue = 'mail', state = 'ready', attempts = 0, run_at = 0",
            [],
        )
        .unwrap();
    wait_for("the mail jobs", || {
        count(
            &site,
            "SELECT count(*) FROM kiln_jobs WHERE state = 'succeeded'",
        ) == 6
    });
    assert_eq!(sink.most_in_flight(), 2);
}

#[test]
fn a_job_running_past_its_lease_keeps_it_through_heartbeats() {
    let sink = Sink::start(Duration::from_millis(3500), Arc::new(|_, _| (200, "")));
    let site = shop_with(&format!(
        r#"
[jobs]
poll_ms = 20
lease_secs = 1

[[job]]
name = "long"
kind = "http"
url = "{}"
"#,
        sink.url("/long")
    ));
    let _server = TestServer::start(&site, &[]);
    let id = enqueue(&site, "long", "{}", &[]);
    wait_for("the long job", || {
        list(&site, "succeeded", &[])
            .iter()
            .any(|job| job["id"] == id)
    });
    // Claimed again after its lease, it would have been sent twice.
    assert_eq!(sink.received().len(), 1);
}

/// No job lost: 10,000 jobs, the server killed (-9) twice mid-run and
/// started again; each job's write is there exactly once (a `sql` job's
/// success commits with its statements, so a killed run leaves neither).
#[test]
fn no_job_is_lost_when_the_server_is_killed_mid_run() {
    let site = shop_with(
        r#"
[jobs]
poll_ms = 20
lease_secs = 2

[[job]]
name = "count"
kind = "sql"
exec = ["INSERT INTO notes (author, body) VALUES ('count', :n)"]
"#,
    );
    // The site's migrations (the notes table).
    said(kiln(&site, &["check"]));
    backlog(&site, "count", 10_000);
    let done = || count(&site, "SELECT count(*) FROM notes WHERE author = 'count'");
    let serve = || {
        spawn(
            &site,
            &["serve", "--no-build", "--addr", "127.0.0.1:0"],
            &[],
        )
    };
    for round in 1..=2 {
        let server = serve();
        let before = done();
        wait_up_to(120, "progress", || done() > before + 500);
        // SIGKILL: no grace, no give-back.
        drop(server);
        assert!(done() < 10_000, "round {round}: all done before the kill");
    }
    let server = serve();
    wait_up_to(180, "every job", || {
        count(
            &site,
            "SELECT count(*) FROM kiln_jobs WHERE state = 'succeeded'",
        ) == 10_000
    });
    drop(server);
    assert_eq!(done(), 10_000);
    assert_eq!(
        count(
            &site,
            "SELECT count(DISTINCT body) FROM notes WHERE author = 'count'"
        ),
        10_000
    );
}

/// The same on PostgreSQL with three `kiln jobs work` processes, two of
/// them killed twice; and enqueues wake the workers through LISTEN/NOTIFY
/// (their poll is a minute).
#[test]
fn postgres_workers_share_the_queue_lose_nothing_and_wake_on_notify() {
    let Some(schema) = common::postgres::Schema::create("jobs_kill") else {
        return;
    };
    let site = shop_with(
        r#"
[jobs]
lease_secs = 2

[[job]]
name = "count"
kind = "sql"
exec = ["INSERT INTO notes (author, body) VALUES ('count', :n)"]
"#,
    );
    let url = format!("database.url={:?}", schema.url());
    said(kiln(&site, &["check", "--set", &url]));
    let sets = [url.as_str(), "jobs.poll_ms=60000"];
    let mut workers: Vec<Process> = (0..3).map(|_| worker(&site, &sets)).collect();
    // Woken by NOTIFY: a minute's poll would fail the 30 s wait.
    std::thread::sleep(Duration::from_secs(1));
    let first = enqueue(&site, "count", r#"{"n": -1}"#, &["--set", &url]);
    wait_for("the notified workers", || {
        list(&site, "succeeded", &["--set", &url])
            .iter()
            .any(|job| job["id"] == first)
    });
    let done = || {
        common::postgres::count(
            &schema.url(),
            "SELECT count(*) FROM notes WHERE author = 'count' AND body <> '-1'",
        )
    };
    let values: Vec<String> = (0..10_000)
        .map(|n| format!("('count', 'default', 0, '{{\"n\":{n}}}', 'ready', 5, 0, 0)"))
        .collect();
    common::postgres::admin(
        &schema.url(),
        &format!(
            "INSERT INTO kiln_jobs (job, queue, priority, payload, state, max_attempts, run_at, created_ms) VALUES {}; NOTIFY kiln_jobs",
            values.join(", ")
        ),
    );
    for round in 1..=2 {
        let before = done();
        wait_up_to(120, "progress", || done() > before + 500);
        // SIGKILL, as they are dropped.
        drop(workers.drain(..2));
        assert!(done() < 10_000, "round {round}: all done before the kill");
        workers.splice(0..0, (0..2).map(|_| worker(&site, &sets)));
    }
    wait_up_to(180, "every job", || done() == 10_000);
    drop(workers);
    assert_eq!(
        common::postgres::count(
            &schema.url(),
            "SELECT count(DISTINCT body) FROM notes WHERE author = 'count' AND body <> '-1'"
        ),
        10_000
    );
}

/// The demo's build.toml with its guestbook webhook pointed at `sink`
/// (what `KILN_GUESTBOOK_WEBHOOK` does for a user).
fn demo_with_webhook(site: &Site, sink: &Sink) {
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    let default = "http://127.0.0.1:8787/guestbook";
    assert!(config.contains(default), "the demo's webhook default moved");
    site.write(
        "build.toml",
        config.replace(default, &sink.url("/guestbook")),
    );
}

/// The demo on SQLite: signing the guestbook queues its webhook in the
/// entry's transaction and the sink receives the entry; the catalogue
/// shows the "Selling fast" list the scheduled job keeps, and running
/// that job refreshes it.
#[test]
fn the_demo_guestbook_notifies_its_webhook_and_the_catalogue_lists_what_sells_fast() {
    let sink = Sink::ok();
    let site = Site::demo();
    demo_with_webhook(&site, &sink);
    site.build().expect("the demo builds");
    let server = TestServer::start(&site, &[]);
    let catalogue = common::http::get(server.addr, "/catalogue/", &[]).text();
    assert!(catalogue.contains("Selling fast"), "{catalogue}");
    let page = common::http::get(server.addr, "/guestbook/", &[]);
    let (cookie, token) = common::forms::csrf(&page);
    let signed = common::forms::post(
        server.addr,
        "/guestbook/",
        &[("Cookie", &cookie)],
        &[
            ("csrf_token", &token),
            ("name", "Ada"),
            ("message", "Hello, webhook"),
        ],
    );
    assert_eq!(signed.status, 303, "{}", signed.text());
    wait_for("the webhook", || !sink.received().is_empty());
    let hook = &sink.received()[0];
    assert_eq!(hook.target, "/guestbook");
    assert_eq!(hook.header("x-kiln-entry"), Some("2001"));
    assert_eq!(
        hook.json(),
        serde_json::json!({"entry": 2001, "name": "Ada", "message": "Hello, webhook"})
    );
    let before: String = sqlite(&site)
        .query_row(
            "SELECT refreshed_at FROM popular_products LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let id = enqueue(&site, "popular", "{}", &[]);
    wait_for("the popular job", || {
        list(&site, "succeeded", &[])
            .iter()
            .any(|job| job["id"] == id)
    });
    let after: String = sqlite(&site)
        .query_row(
            "SELECT refreshed_at FROM popular_products LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_ne!(before, after, "refreshed");
    assert_eq!(count(&site, "SELECT count(*) FROM popular_products"), 4);
}

/// Unbatched sql jobs claimed together share one transaction, each in a
/// savepoint: a failing job's writes are rolled back alone (its first
/// statement with it), the others commit, and the failure is recorded.
#[test]
fn a_failing_job_in_a_commit_group_rolls_back_alone() {
    let site = shop_with(
        r#"
[jobs]
poll_ms = 20

[[job]]
name = "good"
kind = "sql"
exec = ["INSERT INTO notes (author, body) VALUES ('good', :n)"]

[[job]]
name = "half"
kind = "sql"
max_attempts = 1
exec = ["INSERT INTO notes (author, body) VALUES ('half', :n)", "INSERT INTO nowhere (x) VALUES (:n)"]
"#,
    );
    said(kiln(&site, &["check"]));
    backlog(&site, "good", 20);
    backlog(&site, "half", 5);
    let _server = TestServer::start(&site, &[]);
    wait_for("every job to end", || {
        count(
            &site,
            "SELECT count(*) FROM kiln_jobs WHERE state IN ('succeeded', 'dead')",
        ) == 25
    });
    assert_eq!(
        count(&site, "SELECT count(*) FROM notes WHERE author = 'good'"),
        20
    );
    assert_eq!(
        count(&site, "SELECT count(*) FROM notes WHERE author = 'half'"),
        0
    );
    let dead = list(&site, "dead", &[]);
    assert_eq!(dead.len(), 5);
    assert!(
        dead.iter()
            .all(|job| job["last_error"].as_str().unwrap().contains("nowhere"))
    );
}

/// `warm` and `purge` jobs act on the server's route cache: a warmed URL
/// is a hit on its first request, a purged tag's entry a miss again. A
/// worker-only process leaves them to the server.
#[test]
fn warm_and_purge_jobs_act_on_the_servers_route_cache() {
    let site = shop_with(
        r#"
[jobs]
poll_ms = 20

[[job]]
name = "warm-item"
kind = "warm"
urls = ["/items/{id}"]

[[job]]
name = "purge-item"
kind = "purge"
tags = ["item:{id}"]
"#,
    );
    said(kiln(&site, &["check"]));
    let warm = enqueue(&site, "warm-item", r#"{"id": 3}"#, &[]);
    {
        let _worker = worker(&site, &[]);
        std::thread::sleep(Duration::from_millis(1500));
        let ready = list(&site, "ready", &[]);
        assert!(ready.iter().any(|job| job["id"] == warm), "{ready:?}");
    }
    let server = TestServer::start(&site, &[]);
    wait_for("the warm job", || {
        list(&site, "succeeded", &[])
            .iter()
            .any(|job| job["id"] == warm)
    });
    let cache = |path: &str| {
        common::http::get(server.addr, path, &[])
            .header("x-kiln-cache")
            .map(str::to_string)
    };
    assert_eq!(cache("/items/3").as_deref(), Some("hit"));
    let purge = enqueue(&site, "purge-item", r#"{"id": 3}"#, &[]);
    wait_for("the purge job", || {
        list(&site, "succeeded", &[])
            .iter()
            .any(|job| job["id"] == purge)
    });
    assert_eq!(cache("/items/3").as_deref(), Some("miss"));
}
