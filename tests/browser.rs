//! `kiln watch` in a real browser: headless Chromium (Debian's `chromium`,
//! driven over WebDriver by `chromedriver`) on a page of the watch fixture,
//! while the test edits the site's files.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Site;
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
