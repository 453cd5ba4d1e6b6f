//! kiln in a real browser: headless Chromium (Debian's `chromium`, driven
//! over WebDriver by `chromedriver`). `kiln watch` on a page of the watch
//! fixture while the test edits the site's files; and every page of the
//! demo, served as in production, at a phone's width and a desktop's,
//! where every image must load and fill its place.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Site;
use common::server::TestServer;
use common::watch::{PATIENCE, WatchProcess};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const FLAGS: [&str; 6] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
];

/// A chromedriver process and one browser session, both ended on drop.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    fn launch() -> Result<Browser, String> {
        for program in [CHROMIUM, CHROMEDRIVER] {
            if !std::path::Path::new(program).is_file() {
                return Err(format!(
                    "{program} is not installed (apt-get install chromium chromium-driver)"
                ));
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|err| err.to_string())?
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("starting chromedriver: {err}"))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        wait_until("chromedriver to be ready", || {
            TcpStream::connect(addr).is_ok()
                && browser.call("GET", "/status", None)["ready"] == true
        });
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": FLAGS },
        }}});
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no browser session: {created}"))?
            .to_string();
        Ok(browser)
    }

    /// One WebDriver command; its `value`. chromedriver keeps connections
    /// open whatever the request says, so the body is read by its length.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let Ok(stream) = TcpStream::connect(self.addr) else {
            return Value::Null;
        };
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut writer = &stream;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        if writer.write_all(request.as_bytes()).is_err() {
            return Value::Null;
        }
        let mut reader = BufReader::new(&stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return Value::Null;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut bytes = vec![0; length];
        if reader.read_exact(&mut bytes).is_err() {
            return Value::Null;
        }
        let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        reply["value"].clone()
    }

    fn open(&self, url: &str) {
        let path = format!("/session/{}/url", self.session);
        self.call("POST", &path, Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page and returns its result.
    fn run(&self, script: &str) -> Value {
        let path = format!("/session/{}/execute/sync", self.session);
        self.call("POST", &path, Some(json!({ "script": script, "args": [] })))
    }

    /// Sets the window's size in CSS pixels.
    fn resize(&self, width: u32, height: u32) {
        let path = format!("/session/{}/window/rect", self.session);
        self.call(
            "POST",
            &path,
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Polls `script` until it returns `true`.
    fn wait_for(&self, what: &str, script: &str) {
        wait_until(what, || self.run(script) == true);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn css_swaps_in_place_templates_reload_and_errors_overlay_until_fixed() {
    let Some(browser) = common::require(Browser::launch(), "the browser test") else {
        return;
    };
    let site = Site::fixture("watch");
    let process = WatchProcess::start(site.root(), &[]);
    browser.open(&format!("http://{}/", process.addr));
    browser.wait_for(
        "the live-reload channel",
        "return window.__kilnLive === 'connected'",
    );
    assert_eq!(
        browser.run("return getComputedStyle(document.body).color"),
        "rgb(10, 20, 30)"
    );
    // The development bundle of the page's script ran.
    browser.wait_for(
        "the page's script",
        "return document.documentElement.dataset.greeting === 'hello watch'",
    );
    browser.run("window.__sameDocument = true; return true");

    // A stylesheet edit applies without reloading the page.
    site.write(
        "assets/css/_colors.css",
        "body { color: rgb(200, 0, 0); }\n",
    );
    browser.wait_for(
        "the new color",
        "return getComputedStyle(document.body).color === 'rgb(200, 0, 0)'",
    );
    assert_eq!(browser.run("return window.__sameDocument === true"), true);

    // A template edit reloads the page.
    site.write(
        "templates/pages/index.html",
        "+++\ntitle = \"Home\"\n+++\n{% extends \"layouts/base.html\" %}\n\
         {% block content %}<h1>Home again</h1>{% endblock %}\n",
    );
    browser.wait_for(
        "the reloaded page",
        "return document.querySelector('h1')?.textContent === 'Home again'",
    );
    assert_eq!(
        browser.run("return window.__sameDocument === undefined"),
        true
    );
    browser.wait_for(
        "the channel after the reload",
        "return window.__kilnLive === 'connected'",
    );

    // A syntax error shows an overlay naming the file and line.
    site.write(
        "assets/css/_colors.css",
        "body {\n  color: rgb(0, 0, 200);\n  @@@ x;\n}\n",
    );
    browser.wait_for(
        "the error overlay",
        "const overlay = document.getElementById('kiln-overlay');\
         return !!overlay && overlay.textContent.includes('_colors.css:3:')",
    );

    // Fixing it removes the overlay and applies the fix.
    site.write(
        "assets/css/_colors.css",
        "body { color: rgb(0, 0, 200); }\n",
    );
    browser.wait_for(
        "the overlay to go",
        "return document.getElementById('kiln-overlay') === null \
         && getComputedStyle(document.body).color === 'rgb(0, 0, 200)'",
    );
}

/// The same-site pages the demo's home page links to, and itself.
fn demo_pages(browser: &Browser, addr: SocketAddr) -> Vec<String> {
    browser.open(&format!("http://{addr}/"));
    let links = browser.run(
        "return [...new Set([...document.querySelectorAll('a[href]')]\
           .map(a => new URL(a.href, location.href))\
           .filter(url => url.origin === location.origin && !url.search)\
           .map(url => url.pathname))]",
    );
    let mut pages: Vec<String> = links
        .as_array()
        .map(|links| {
            links
                .iter()
                .filter_map(|link| link.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if !pages.contains(&"/".to_string()) {
        pages.push("/".into());
    }
    pages.sort();
    pages
}

/// Every image of the page in view once (lazy ones load when near it),
/// then the ones that did not load, have no size, or leave part of their
/// gallery cell empty.
const IMAGE_PROBLEMS: &str = "
    const problems = [];
    for (const img of document.images) {
        const box = img.getBoundingClientRect();
        const name = img.currentSrc || img.src;
        if (!img.complete) { problems.push(`${name}: still loading`); continue; }
        if (img.naturalWidth === 0) { problems.push(`${name}: broken`); continue; }
        if (box.width < 1 || box.height < 1) { problems.push(`${name}: ${box.width}x${box.height}`); }
        const cell = img.closest('.gallery figure');
        if (cell) {
            const place = cell.getBoundingClientRect();
            if (Math.abs(place.width - box.width) > 1 || Math.abs(place.height - box.height) > 1) {
                problems.push(`${name}: ${box.width}x${box.height} in a ${place.width}x${place.height} cell`);
            }
        }
    }
    return problems;";

/// The gallery left empty bands under four of its five photos: the
/// first photo spanned two columns, so its row was twice as tall as the
/// others' photos. And at a phone's width the header's links ran off the
/// side of the page.
#[test]
fn every_image_of_the_demo_loads_and_fills_its_place_at_two_widths() {
    let Some(browser) = common::require(Browser::launch(), "the browser test") else {
        return;
    };
    let site = Site::demo();
    site.build().expect("the demo builds");
    let server = TestServer::start(&site, &[]);
    let pages = demo_pages(&browser, server.addr);
    assert!(
        pages.iter().any(|page| page == "/gallery/"),
        "the home page links the gallery: {pages:?}"
    );
    let mut images = 0;
    for (width, height) in [(390, 844), (1280, 900)] {
        browser.resize(width, height);
        for page in &pages {
            browser.open(&format!("http://{}{page}", server.addr));
            images += browser
                .run(
                    "for (const img of document.images) { img.scrollIntoView({block: 'center'}); }\
                     return document.images.length",
                )
                .as_u64()
                .unwrap_or(0);
            let deadline = Instant::now() + PATIENCE;
            let problems = loop {
                let problems = browser.run(IMAGE_PROBLEMS);
                let settled = problems.as_array().is_some_and(|list| {
                    list.iter()
                        .all(|problem| !problem.as_str().unwrap_or("").ends_with("still loading"))
                });
                if settled || Instant::now() > deadline {
                    break problems;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            assert_eq!(problems, json!([]), "{page} at {width}px");
            assert_eq!(
                browser.run("return document.documentElement.scrollWidth <= innerWidth"),
                true,
                "{page} at {width}px is wider than the window"
            );
        }
    }
    assert!(
        images >= 10,
        "the demo's pages show their photos ({images})"
    );
}

/// The status page of the admin listener, live: its six charts fill and
/// move as samples arrive each second, a requested route shows in the
/// routes table with its rate, and its slow query in the list.
#[test]
fn the_status_page_draws_the_servers_metrics_live() {
    let Some(browser) = common::require(Browser::launch(), "the browser test") else {
        return;
    };
    let site = Site::fixture("shop");
    site.build().expect("the shop builds");
    let server = TestServer::start(&site, &["database.slow_query_ms=1"]);
    let admin = server.running().admin_addr.expect("an admin listener");
    browser.open(&format!("http://{admin}/status"));
    browser.wait_for(
        "two samples",
        "return Number(document.getElementById('state').dataset.updates) >= 2",
    );
    assert_eq!(
        browser.run("return document.querySelectorAll('#charts svg').length"),
        6
    );
    for _ in 0..5 {
        let answer = common::http::get(server.addr, "/slow?n=300000", &[]);
        assert_eq!(answer.status, 200);
    }
    browser.wait_for(
        "the route in the table",
        "return [...document.querySelectorAll('#routes td')].some(td => td.textContent === 'GET /slow')",
    );
    browser.wait_for(
        "its slow query in the list",
        "return [...document.querySelectorAll('#slow td')].some(td => td.textContent === 'GET /slow')",
    );
    let points = "return document.querySelector('#chart-traffic polyline').getAttribute('points').split(' ').length";
    let before = browser.run(points).as_u64().expect("a traffic line");
    browser.wait_for("the charts to move", &format!("{points} > {before}"));
}
