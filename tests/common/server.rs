//! Starting kiln's server in-process on an ephemeral port, for tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use kiln::server::access_log::AccessLog;
use kiln::server::{RunningServer, ServeOptions};

use super::Site;

/// A running server that stops when dropped.
pub(crate) struct TestServer {
    server: Option<RunningServer>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub(crate) fn start(site: &Site, overrides: &[&str]) -> TestServer {
        TestServer::start_with_log(site, overrides, None)
    }

    pub(crate) fn start_with_log(
        site: &Site,
        overrides: &[&str],
        log: Option<AccessLog>,
    ) -> TestServer {
        let settings = site.settings(&with_admin_listener(overrides));
        let options = ServeOptions {
            addr: Some("127.0.0.1:0".parse().unwrap()),
            workers: Some(2),
            handle_signals: false,
            access_log: Some(
                log.unwrap_or_else(|| AccessLog::stdout(kiln::config::AccessLogFormat::Off)),
            ),
            clock: Default::default(),
            live: None,
        };
        let server = kiln::server::start(&settings, options).expect("server starts");
        TestServer {
            addr: server.addr,
            server: Some(server),
        }
    }

    /// Starts with options of the test's own (a clock, workers).
    pub(crate) fn start_with_options(
        site: &Site,
        overrides: &[&str],
        options: ServeOptions,
    ) -> TestServer {
        let settings = site.settings(&with_admin_listener(overrides));
        let server = kiln::server::start(&settings, options).expect("server starts");
        TestServer {
            addr: server.addr,
            server: Some(server),
        }
    }

    /// `/metrics`, read on the admin listener every test server has.
    pub(crate) fn metrics(&self) -> super::http::Response {
        let admin = self.running().admin_addr.expect("an admin listener");
        super::http::get(admin, "/metrics", &[])
    }

    pub(crate) fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("running")
    }

    /// Stops gracefully and waits for the server thread.
    pub(crate) fn stop(mut self, graceful: bool) {
        if let Some(server) = self.server.take() {
            server.stop(graceful).expect("server stops");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop(false);
        }
    }
}

/// Test servers read `/metrics` on an admin listener of their own, as
/// production scrapers do; a test's overrides come after, and win.
fn with_admin_listener<'a>(overrides: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["server.admin_addr=\"127.0.0.1:0\""];
    all.extend_from_slice(overrides);
    all
}

/// Deterministic, poorly compressible bytes.
pub(crate) fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The basic fixture, built, with pages and extra files added to `dist/` the
/// way later build stages and users put them there.
pub(crate) fn site_with_pages() -> Site {
    let site = Site::fixture("basic");
    site.build().expect("fixture builds");
    let css = site.output_of("css/site.css");
    let dist = |relative: &str| format!("dist/{relative}");
    site.write(
        &dist("index.html"),
        "<!doctype html><title>Home</title><h1>Home</h1>\n",
    );
    site.write(
        &dist("about/index.html"),
        "<!doctype html><title>About</title><h1>About us</h1>\n",
    );
    site.write(&dist("flat.html"), "<!doctype html><title>Flat</title>\n");
    site.write(
        &dist("404.html"),
        "<!doctype html><title>Not found</title><h1>Nothing here</h1>\n",
    );
    site.write(&dist("robots.txt"), "User-agent: *\nAllow: /\n");
    site.write(&dist("big.bin"), noise(3 * 1024 * 1024 + 17));
    site.write(&dist(".secret"), "do not serve");
    site.write(&dist(".kiln/hints.json"), format!(
        "{{\"index.html\": [\"</{css}>; rel=preload; as=style\", \"</js/app.js>; rel=modulepreload\"]}}"
    ));
    let outside = site.path("outside.txt");
    std::fs::write(&outside, "outside the output directory").unwrap();
    std::os::unix::fs::symlink(&outside, site.dist().join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(Path::new("robots.txt"), site.dist().join("robots-link.txt"))
        .unwrap();
    site
}

/// Options for a server a test starts itself: one worker, an ephemeral
/// port, no signals, no access log.
pub(crate) fn quiet_options() -> ServeOptions {
    ServeOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        workers: Some(1),
        handle_signals: false,
        access_log: Some(AccessLog::stdout(kiln::config::AccessLogFormat::Off)),
        clock: Default::default(),
        live: None,
    }
}

/// A writer tests can read back (an access log's, say).
#[derive(Clone, Default)]
pub(crate) struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Four `/slow?n=9000000000000` requests at once (the route's query runs
/// for hours) are each cancelled at the statement timeout with a 503, and
/// the pool is idle again afterwards.
pub(crate) fn assert_slow_queries_are_cancelled(server: &TestServer) {
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || super::http::get(addr, "/slow?n=9000000000000", &[]))
        })
        .collect();
    for request in slow {
        let response = request.join().unwrap();
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.header("retry-after"), Some("1"));
    }
    let after = super::http::get(server.addr, "/items/3", &[]);
    assert_eq!(after.status, 200, "{}", after.text());
}

/// Overrides for [`assert_a_departing_client_cancels_its_query`]: one
/// pooled connection, which only a cancelled query gives back before the
/// next request's wait (30 s) or the statement timeout (60 s) ends.
pub(crate) const ONE_CONNECTION: [&str; 4] = [
    "database.max_size=1",
    "database.min_idle=1",
    "database.statement_timeout_ms=60000",
    "database.acquire_timeout_ms=30000",
];

/// A client sends `/slow?n=9000000000000` and closes its connection while
/// the query runs: the query is stopped and its pooled connection given
/// back (or replaced), so the next request is answered.
pub(crate) fn assert_a_departing_client_cancels_its_query(server: &TestServer) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
    let request = format!(
        "GET /slow?n=9000000000000 HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).unwrap();
    let started = std::time::Instant::now();
    // The query has its connection (and a moment to begin) before the
    // client leaves.
    while !server
        .metrics()
        .text()
        .contains("kiln_db_connections_in_use 1")
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(stream);
    let next = super::http::get(server.addr, "/api/items/3", &[]);
    assert_eq!(next.status, 200, "{}", next.text());
}
