//! Background jobs: `[[job]]`s enqueued from the CLI and run by the
//! server's workers, failures retried with backoff and then dead, the
//! highest priority first, a job whose worker died claimed again after
//! its lease, and the same queue on PostgreSQL.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Site;
use common::jobs::{enqueue, kiln, list, said, wait_for};
use common::server::TestServer;

const JOBS: &str = r#"
[jobs]
poll_ms = 20

[[job]]
name = "note"
kind = "sql"
exec = ["INSERT INTO notes (author, body) VALUES (:author, :body)"]

[[job]]
name = "broken"
kind = "sql"
exec = ["INSERT INTO nowhere (x) VALUES (:x)"]
max_attempts = 3
backoff_ms = 10
backoff_max_ms = 20

[[job]]
name = "urgent"
kind = "sql"
priority = 10
exec = ["INSERT INTO notes (author, body) VALUES ('urgent', :body)"]

[[job]]
name = "slow"
kind = "sql"
exec = ["INSERT INTO notes (author, body) SELECT 'slow', count(*) FROM generate_series(1, :n)"]

[[job]]
name = "later"
kind = "sql"
exec = ["INSERT INTO notes (author, body) VALUES ('later', :body)"]

# A write route that enqueues in its own transaction, with a RETURNING
# column in the payload; and one whose write fails after its insert.
[[route]]
method = "POST"
path = "/notes/with-job"
redirect = "/notes/"
fields.author = { required = true, max_length = 20 }
fields.body = { required = true, min_length = 2 }
exec = ["INSERT INTO notes (author, body) VALUES (:author, :body) RETURNING id"]
[route.enqueue]
job = "note"
payload = { author = "job for {id}", body = "{body}" }

[[route]]
method = "POST"
path = "/notes/failing"
redirect = "/notes/"
fields.author = { required = true, max_length = 20 }
fields.body = { required = true, min_length = 2 }
exec = [
  "INSERT INTO notes (author, body) VALUES (:author, :body)",
  "INSERT INTO nowhere (x) VALUES (1)",
]
[[route.enqueue]]
job = "note"
payload = { author = "never", body = "{body}" }
"#;

/// The shop with the jobs above, built.
fn shop_with_jobs() -> Site {
    let site = Site::fixture("shop");
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    site.write("build.toml", format!("{config}\n{JOBS}"));
    site.build().expect("the shop builds");
    site
}

fn notes_by(site: &Site, author: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(site.path("data/shop.db")).unwrap();
    let mut statement = db
        .prepare("SELECT body FROM notes WHERE author = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([author], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn jobs_enqueued_from_the_cli_run_in_the_server_and_failures_retry_then_die() {
    let site = shop_with_jobs();
    let server = TestServer::start(&site, &[]);
    let note = enqueue(
        &site,
        "note",
        r#"{"author": "Job", "body": "written by a job"}"#,
        &[],
    );
    let broken = enqueue(&site, "broken", r#"{"x": 1}"#, &[]);
    wait_for("the note job", || {
        list(&site, "succeeded", &[])
            .iter()
            .any(|job| job["id"] == note)
    });
    assert_eq!(notes_by(&site, "Job"), ["written by a job"]);
    wait_for("the broken job to die", || {
        list(&site, "dead", &[])
            .iter()
            .any(|job| job["id"] == broken)
    });
    let dead = list(&site, "dead", &[]);
    let job = dead.iter().find(|job| job["id"] == broken).unwrap();
    assert_eq!(job["attempts"], 3, "{job}");
    assert!(
        job["last_error"].as_str().unwrap().contains("nowhere"),
        "{job}"
    );
    // Retried by hand, it runs its attempts again and dies again; purged,
    // it is gone.
    let id = broken.to_string();
    assert_eq!(
        said(kiln(&site, &["jobs", "retry", &id])),
        "1 job(s) retried"
    );
    wait_for("the broken job to die again", || {
        server
            .metrics()
            .text()
            .contains("kiln_jobs_total{job=\"broken\",queue=\"default\",event=\"dead\"} 2")
    });
    wait_for("the broken job to be recorded dead", || {
        list(&site, "dead", &[]).len() == 1
    });
    assert_eq!(
        said(kiln(&site, &["jobs", "purge", "--dead"])),
        "1 job(s) purged"
    );
    assert!(list(&site, "dead", &[]).is_empty());
    let metrics = server.metrics().text();
    for line in [
        "kiln_jobs_total{job=\"broken\",queue=\"default\",event=\"retried\"} 4",
        "kiln_jobs_total{job=\"note\",queue=\"default\",event=\"succeeded\"} 1",
        "kiln_job_run_duration_seconds_count{job=\"note\"} 1",
        "kiln_jobs_workers 4",
    ] {
        assert!(metrics.contains(line), "no {line} in:\n{metrics}");
    }
    // A payload that does not fit is refused before it is queued.
    for (name, payload, wanted) in [
        ("nope", "{}", "no [[job]] is named \"nope\""),
        ("note", r#"{"author": "x"}"#, "payload: no value for body"),
        ("note", "[1]", "payload: must be a JSON object"),
    ] {
        let output = kiln(&site, &["jobs", "enqueue", name, "--payload", payload]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(wanted), "{stderr}");
    }
}

/// A write route's job is queued in the write's transaction: with the
/// route's RETURNING id in its payload when the write commits, not at
/// all when it rolls back.
#[test]
fn a_write_route_enqueues_in_its_own_transaction() {
    let site = shop_with_jobs();
    let server = TestServer::start(&site, &[]);
    let page = common::http::get(server.addr, "/notes/", &[]);
    let (cookie, token) = common::forms::csrf(&page);
    let post = |path: &str, body: &str| {
        common::forms::post(
            server.addr,
            path,
            &[("Cookie", &cookie)],
            &[("author", "Ada"), ("body", body), ("csrf_token", &token)],
        )
    };
    assert_eq!(post("/notes/with-job", "first").status, 303);
    let id: i64 = {
        let db = rusqlite::Connection::open(site.path("data/shop.db")).unwrap();
        db.query_row(
            "SELECT id FROM notes WHERE author = 'Ada' AND body = 'first'",
            [],
            |row| row.get(0),
        )
        .unwrap()
    };
    let author = format!("job for {id}");
    wait_for("the route's job", || notes_by(&site, &author) == ["first"]);
    // The failing write leaves neither its note nor its job.
    assert_eq!(post("/notes/failing", "second").status, 500);
    let db = rusqlite::Connection::open(site.path("data/shop.db")).unwrap();
    let left: i64 = db
        .query_row(
            "SELECT (SELECT count(*) FROM notes WHERE body = 'second') \
             + (SELECT count(*) FROM kiln_jobs WHERE payload LIKE '%second%')",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    let metrics = server.metrics().text();
    assert!(
        metrics.contains("kiln_jobs_total{job=\"note\",queue=\"default\",event=\"enqueued\"} 1"),
        "{metrics}"
    );
}

/// With the queue full before any worker runs, the urgent jobs (priority
/// 10) all run before the later ones (priority 0), though queued after.
#[test]
fn higher_priority_jobs_start_first() {
    let site = shop_with_jobs();
    // Queued with no server running; the migrations the jobs write to
    // run when the server starts.
    for number in 0..5 {
        enqueue(&site, "later", &format!(r#"{{"body": "l{number}"}}"#), &[]);
    }
    for number in 0..5 {
        enqueue(&site, "urgent", &format!(r#"{{"body": "u{number}"}}"#), &[]);
    }
    let _server = TestServer::start(&site, &["jobs.workers=1"]);
    wait_for("ten jobs", || list(&site, "succeeded", &[]).len() == 10);
    let db = rusqlite::Connection::open(site.path("data/shop.db")).unwrap();
    let mut statement = db
        .prepare("SELECT author FROM notes WHERE author IN ('urgent', 'later') ORDER BY id")
        .unwrap();
    let authors: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        authors,
        [["urgent"; 5], ["later"; 5]].concat(),
        "the run order"
    );
}

/// A job left `running` by a worker that died is claimed again once its
/// lease has run out, and counts the attempt it lost.
#[test]
fn a_job_whose_worker_died_is_claimed_again_after_its_lease() {
    let site = shop_with_jobs();
    assert!(list(&site, "running", &[]).is_empty());
    // A job cancelled before it starts never runs.
    let cancelled = enqueue(&site, "note", r#"{"author": "Nobody", "body": "no"}"#, &[]);
    let cancel = || kiln(&site, &["jobs", "cancel", &cancelled.to_string()]);
    assert_eq!(
        String::from_utf8_lossy(&cancel().stdout).trim(),
        "1 job(s) cancelled"
    );
    let again = cancel();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("none cancelled"));
    let db = rusqlite::Connection::open(site.path("data/shop.db")).unwrap();
    db.execute(
        "INSERT INTO kiln_jobs (job, queue, priority, payload, state, attempts, max_attempts, \
         run_at, locked_until, created_ms) VALUES ('note', 'default', 0, \
         '{\"author\": \"Lazarus\", \"body\": \"back\"}', 'running', 1, 5, 0, 1, 0)",
        [],
    )
    .unwrap();
    let _server = TestServer::start(&site, &[]);
    wait_for("the orphaned job", || {
        list(&site, "succeeded", &[])
            .iter()
            .any(|job| job["attempts"] == 2)
    });
    assert_eq!(notes_by(&site, "Lazarus"), ["back"]);
    assert!(notes_by(&site, "Nobody").is_empty());
}

#[test]
fn jobs_run_on_postgres() {
    let Some(schema) = common::postgres::Schema::create("jobs") else {
        return;
    };
    let site = shop_with_jobs();
    let url = format!("database.url={:?}", schema.url());
    let server = TestServer::start(&site, &[&url]);
    let id = enqueue(
        &site,
        "note",
        r#"{"author": "Pg", "body": "on postgres"}"#,
        &["--set", &url],
    );
    wait_for("the job on PostgreSQL", || {
        list(&site, "succeeded", &["--set", &url])
            .iter()
            .any(|job| job["id"] == id)
    });
    assert_eq!(
        common::postgres::count(
            &schema.url(),
            "SELECT count(*) FROM notes WHERE author = 'Pg' AND body = 'on postgres'"
        ),
        1
    );
    server.stop(true);
}

/// Mistakes in jobs and in routes' enqueues are named when the site
/// loads, not when a job first runs.
#[test]
fn mistakes_in_jobs_and_enqueues_are_named_at_load() {
    let site = Site::fixture("shop");
    let config = std::fs::read_to_string(site.path("build.toml")).unwrap();
    let load = |extra: &str| {
        site.write("build.toml", format!("{config}\n{extra}"));
        let settings = kiln::Settings::load(site.root(), &[]).map_err(|err| err.to_string())?;
        kiln::server::check(&settings)
            .map(|_| ())
            .map_err(|err| err.to_string())
    };
    let job = "[[job]]\nname = \"note\"\nkind = \"sql\"\nexec = [\"INSERT INTO notes (author, body) VALUES (:author, :body)\"]\n";
    for (extra, wanted) in [
        (
            "[[job]]\nname = \"x\"\nkind = \"sql\"\n".to_string(),
            "job[0] (\"x\"): a sql job needs exec",
        ),
        (
            "[[route]]\nmethod = \"POST\"\npath = \"/x\"\nredirect = \"/\"\nexec = [\"DELETE FROM notes\"]\nenqueue = { job = \"nope\" }\n"
                .to_string(),
            "enqueue: no [[job]] is named \"nope\"",
        ),
        (
            format!(
                "{job}[[route]]\nmethod = \"POST\"\npath = \"/x\"\nredirect = \"/\"\nexec = [\"DELETE FROM notes\"]\nenqueue = {{ job = \"note\", payload = {{ author = \"a\" }} }}\n"
            ),
            "route POST /x: enqueue \"note\": the payload gives no body",
        ),
        (
            format!("{job}[[job]]\nname = \"note\"\nkind = \"sql\"\nexec = [\"SELECT 1\"]\n"),
            "another [[job]] has this name",
        ),
        (
            "[[job]]\nname = \"w\"\nkind = \"warm\"\n".to_string(),
            "job[0] (\"w\"): a warm job needs urls",
        ),
        (
            "[[job]]\nname = \"p\"\nkind = \"purge\"\ntags = [\"t\"]\nexec = [\"SELECT 1\"]\n".to_string(),
            "job[0] (\"p\"): exec belong to sql jobs",
        ),
        (
            "[[job]]\nname = \"b\"\nkind = \"sql\"\nexec = [\"SELECT :payloads\"]\nbatch = { size = 5000 }\n".to_string(),
            "batch.size = 5000: must be 1 to jobs.max_batch (1000)",
        ),
        (
            "[[job]]\nname = \"c\"\nkind = \"sql\"\nexec = [\"SELECT 1\"]\nschedule = \"0 0 25 * * *\"\n".to_string(),
            "job[0] (\"c\"): schedule \"0 0 25 * * *\"",
        ),
        (
            "[[job]]\nname = \"z\"\nkind = \"sql\"\nexec = [\"SELECT 1\"]\nschedule = \"0 * * * * *\"\ntime_zone = \"Mars/Olympus\"\n".to_string(),
            "time_zone \"Mars/Olympus\"",
        ),
        (
            "[[job]]\nname = \"h\"\nkind = \"http\"\nurl = \"ftp://x/\"\n".to_string(),
            "url \"ftp://x/\": must start with http:// or https://",
        ),
        (
            "[[job]]\nname = \"s\"\nkind = \"sql\"\nexec = [\"SELECT :payloads\"]\n".to_string(),
            ":payloads is a batch's payloads",
        ),
    ] {
        let error = load(&extra).expect_err(wanted);
        assert!(error.contains(wanted), "{error}");
    }
}

/// The status page's event stream carries the queue: its depth by state,
/// the workers, and each job's events per second.
#[test]
fn the_status_stream_shows_the_queue() {
    use std::io::{BufRead, BufReader, Write};
    let site = shop_with_jobs();
    let server = TestServer::start(&site, &[]);
    let admin = server.running().admin_addr.expect("an admin listener");
    let mut stream = std::net::TcpStream::connect(admin).expect("connect");
    write!(stream, "GET /status/events HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut jobs = serde_json::Value::Null;
    for line in BufReader::new(stream).lines() {
        let line = line.expect("the stream goes on");
        if line == "retry: 1000" {
            enqueue(&site, "note", r#"{"author": "S", "body": "seen"}"#, &[]);
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let sample: serde_json::Value = serde_json::from_str(data).unwrap();
            jobs = sample["jobs"].clone();
            if jobs["per_s"]["note"]["succeeded"].as_f64().unwrap_or(0.0) > 0.0 {
                break;
            }
        }
    }
    assert_eq!(jobs["workers"], 4.0, "{jobs:#}");
    assert!(jobs["queued"].is_object(), "{jobs:#}");
    assert!(jobs["oldest_ready_s"].as_f64().is_some(), "{jobs:#}");
}

/// `kiln jobs work` stopped past its grace gives its running job back:
/// ready again at once, the interrupted attempt not counted. (On
/// PostgreSQL: a SQLite job mid-transaction holds the write lock the
/// give-back needs, and is claimed again after its lease instead.)
#[test]
fn a_stopped_worker_gives_back_the_job_it_could_not_finish() {
    let Some(schema) = common::postgres::Schema::create("jobs_stop") else {
        return;
    };
    let site = shop_with_jobs();
    let url = format!("database.url={:?}", schema.url());
    // The tables the job writes to, from the site's migrations.
    let check = kiln(&site, &["check", "--set", &url]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let slow = enqueue(&site, "slow", r#"{"n": 100000000}"#, &["--set", &url]);
    let mut worker = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["jobs", "work", "--root", site.root().to_str().unwrap()])
        .args(["--set", &url, "--set", "server.shutdown_grace_secs=0"])
        .args(["--set", "jobs.poll_ms=20"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kiln jobs work starts");
    wait_for("the slow job to start", || {
        list(&site, "running", &["--set", &url])
            .iter()
            .any(|job| job["id"] == slow)
    });
    let killed = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the worker did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let ready = list(&site, "ready", &["--set", &url]);
    let job = ready
        .iter()
        .find(|job| job["id"] == slow)
        .unwrap_or_else(|| panic!("not given back: {ready:?}"));
    assert_eq!(job["attempts"], 0, "{job}");
    // The stopped worker's statement may still run on the server until it
    // notices its client is gone; end it, so dropping the schema does not
    // wait on (or deadlock with) its locks.
    let orphan = "FROM pg_stat_activity WHERE query LIKE '%generate_series(1, $1%' \
                  AND pid <> pg_backend_pid()";
    common::postgres::admin(
        &schema.admin_url,
        &format!("SELECT pg_terminate_backend(pid) {orphan}"),
    );
    wait_for("the orphaned statement to end", || {
        common::postgres::count(&schema.admin_url, &format!("SELECT count(*) {orphan}")) == 0
    });
}
