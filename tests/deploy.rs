//! Deploys: a page of the previous build (in a browser, a CDN or a server
//! not yet upgraded) still finds every file it names after a new build is
//! swapped in; earlier builds are dropped once neither `build.keep_builds`
//! nor `build.keep_for_secs` keeps them; and the demo, redeployed twice
//! under a steady stream of visitors, never answers one of their requests
//! with an error; nor do two servers sharing Redis through a rolling
//! deploy (`kiln build --stage` on both, then a build on one, then on the
//! other) behind a balancer without sticky sessions.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Site;
use common::http;
use common::redis::RedisPrefix;
use common::server::TestServer;

/// The demo pages whose files the tests follow: static ones, the gallery
/// (with the lazy lightbox chunk's importer) and a cached dynamic one.
const PAGES: [&str; 3] = ["/", "/gallery/", "/catalogue/"];

/// The same-site URLs a page names: stylesheets, scripts, icons, images
/// and every `srcset` candidate.
fn named_files(html: &str) -> BTreeSet<String> {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse("link[href], script[src], img, source").unwrap();
    let mut urls = BTreeSet::new();
    for element in document.select(&selector) {
        let value = element.value();
        if value.name() == "link" && value.attr("rel") == Some("canonical") {
            continue;
        }
        for url in ["href", "src"].iter().filter_map(|name| value.attr(name)) {
            urls.insert(url.to_string());
        }
        for candidate in value
            .attr("srcset")
            .into_iter()
            .flat_map(|set| set.split(','))
        {
            if let Some(url) = candidate.split_whitespace().next() {
                urls.insert(url.to_string());
            }
        }
    }
    urls.retain(|url| url.starts_with('/') && !url.starts_with("//"));
    urls
}

/// The scripts a script imports, statically or lazily (`./name.HASH.js`),
/// as URLs beside its own.
fn imported_chunks(script_url: &str, source: &str) -> BTreeSet<String> {
    let base = &script_url[..script_url.rfind('/').map_or(0, |slash| slash + 1)];
    let mut chunks = BTreeSet::new();
    for (end, _) in source.match_indices(".js\"") {
        let start = source[..end].rfind('"').map_or(end, |quote| quote + 1);
        let name = &source[start..end + 3];
        if let Some(relative) = name.strip_prefix("./") {
            chunks.insert(format!("{base}{relative}"));
        }
    }
    chunks
}

/// Every file the demo's pages name, the chunks their scripts import
/// included, as the server names them now.
fn files_of_pages(addr: SocketAddr) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for page in PAGES {
        let response = http::get(addr, page, &[]);
        assert_eq!(response.status, 200, "{page}");
        files.extend(named_files(&response.text()));
    }
    let scripts: Vec<String> = files
        .iter()
        .filter(|url| url.ends_with(".js"))
        .cloned()
        .collect();
    for script in scripts {
        let source = http::get(addr, &script, &[]).text();
        files.extend(imported_chunks(&script, &source));
    }
    files
}

/// A change to the stylesheet, the lazily loaded chunk and the layout:
/// every hashed file a page names changes, and pages say which deploy
/// made them.
fn change_the_site(site: &Site, marker: &str) {
    let append = |relative: &str, text: &str| {
        let mut contents = std::fs::read_to_string(site.path(relative)).unwrap();
        contents.push_str(text);
        site.write(relative, contents);
    };
    append(
        "assets/css/site.css",
        &format!("\n.deploy-{marker} {{ outline: 1px solid red; }}\n"),
    );
    append(
        "assets/js/_lightbox.ts",
        &format!("\ndocument.documentElement.dataset.deploy = \"{marker}\";\n"),
    );
    let layout = std::fs::read_to_string(site.path("templates/layouts/base.html")).unwrap();
    site.write(
        "templates/layouts/base.html",
        layout.replacen(
            "<head>",
            &format!("<head>\n  <meta name=\"deploy\" content=\"{marker}\">"),
            1,
        ),
    );
}

/// Waits until every page of the demo says it is from `marker`'s deploy.
fn wait_for_deploy(addr: SocketAddr, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let wanted = format!("content=\"{marker}\"");
    while !PAGES
        .iter()
        .all(|page| http::get(addr, page, &[]).text().contains(&wanted))
    {
        assert!(
            Instant::now() < deadline,
            "the server never served the {marker} deploy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_page_of_the_previous_build_still_finds_every_file_it_names() {
    let site = Site::demo();
    site.build().expect("the first build");
    let server = TestServer::start(&site, &[]);
    let before = files_of_pages(server.addr);
    assert!(
        before.iter().any(|url| url.contains("/_lightbox.")),
        "the gallery's script names its lazy lightbox chunk: {before:?}"
    );

    change_the_site(&site, "second");
    site.build().expect("the second build");
    wait_for_deploy(server.addr, "second");
    let after = files_of_pages(server.addr);
    let replaced: Vec<&String> = before.difference(&after).collect();
    assert!(
        replaced.iter().any(|url| url.ends_with(".css"))
            && replaced.iter().any(|url| url.contains("/_lightbox.")),
        "the stylesheet and the chunk have new names: {replaced:?}"
    );
    for url in before.iter().chain(&after) {
        let response = http::get(server.addr, url, &[("Accept-Encoding", "br, gzip")]);
        assert_eq!(response.status, 200, "{url}");
        assert!(
            response
                .header("cache-control")
                .is_some_and(|value| value.contains("immutable")),
            "{url}: {:?}",
            response.header("cache-control")
        );
    }
}

/// Builds the demo with `overrides`, after changing its stylesheet, and
/// returns the stylesheet's output path.
fn build_a_new_stylesheet(site: &Site, overrides: &[&str], marker: &str) -> String {
    let mut css = std::fs::read_to_string(site.path("assets/css/site.css")).unwrap();
    css.push_str(&format!("\n.deploy-{marker} {{ color: red; }}\n"));
    site.write("assets/css/site.css", css);
    site.build_with(overrides).expect("the build");
    site.output_of("css/site.css")
}

fn record(site: &Site) -> serde_json::Value {
    serde_json::from_slice(&site.read_dist(".kiln-builds.json")).expect("the record parses")
}

#[test]
fn earlier_builds_are_dropped_once_neither_their_count_nor_their_age_keeps_them() {
    let site = Site::fixture("basic");
    let one_kept = ["build.keep_builds=1", "build.keep_for_secs=0"];
    let first = build_a_new_stylesheet(&site, &one_kept, "first");
    let second = build_a_new_stylesheet(&site, &one_kept, "second");
    let third = build_a_new_stylesheet(&site, &one_kept, "third");
    let dist = site.dist();
    assert!(!dist.join(&first).exists(), "two builds back: dropped");
    assert!(!dist.join(format!("{first}.br")).exists());
    assert!(dist.join(&second).is_file(), "the previous build is kept");
    assert!(dist.join(format!("{second}.br")).is_file());
    assert!(dist.join(&third).is_file());
    let kept = record(&site);
    assert_eq!(kept["previous"].as_array().map(Vec::len), Some(1));

    // Kept by age alone.
    let by_age = ["build.keep_builds=0", "build.keep_for_secs=3600"];
    let fourth = build_a_new_stylesheet(&site, &by_age, "fourth");
    assert!(dist.join(&second).is_file() && dist.join(&third).is_file());

    // Neither: only the current build's files.
    let none = ["build.keep_builds=0", "build.keep_for_secs=0"];
    let fifth = build_a_new_stylesheet(&site, &none, "fifth");
    for gone in [&second, &third, &fourth] {
        assert!(!dist.join(gone).exists(), "{gone}");
    }
    assert!(dist.join(&fifth).is_file());
    assert_eq!(record(&site)["previous"], serde_json::json!([]));
}

#[test]
fn a_rebuild_without_changes_keeps_the_record_as_it_was() {
    let site = Site::fixture("basic");
    site.build().expect("the first build");
    let first = site.read_dist(".kiln-builds.json");
    site.build().expect("the second build");
    assert_eq!(site.read_dist(".kiln-builds.json"), first);
    assert_eq!(record(&site)["previous"], serde_json::json!([]));
}

/// Visitors of the demo during deploys, and what they have seen.
struct Traffic {
    servers: Vec<SocketAddr>,
    requests: AtomicUsize,
    failures: Mutex<Vec<String>>,
    /// Every file named by a page some visitor received, as browsers
    /// holding those pages (whose lazy chunks load later) ask for them.
    held: Mutex<BTreeSet<String>>,
    /// The deploy every server serves now: pages asked for from here on
    /// must be from it.
    deployed: Mutex<Option<&'static str>>,
}

impl Traffic {
    fn new(servers: Vec<SocketAddr>) -> Traffic {
        Traffic {
            servers,
            requests: AtomicUsize::new(0),
            failures: Mutex::default(),
            held: Mutex::default(),
            deployed: Mutex::default(),
        }
    }

    fn fail(&self, problem: String) {
        self.failures.lock().unwrap().push(problem);
    }

    /// `url` from the next server (a balancer without sticky sessions);
    /// its body if it answered 200.
    fn get(&self, url: &str) -> Option<String> {
        let turn = self.requests.fetch_add(1, Ordering::Relaxed);
        let server = self.servers[turn % self.servers.len()];
        let response = http::get(server, url, &[]);
        if response.status != 200 {
            self.fail(format!("{url} from {server}: {}", response.status));
            return None;
        }
        Some(response.text())
    }

    /// One visit: every page, then every file it names, then every file of
    /// every page received before.
    fn visit(&self) {
        let mut named = BTreeSet::new();
        for page in PAGES {
            let deployed = *self.deployed.lock().unwrap();
            let Some(html) = self.get(page) else { continue };
            if let Some(marker) = deployed
                && !html.contains(&format!("content=\"{marker}\""))
            {
                self.fail(format!("{page}: not from the {marker} deploy"));
            }
            named.extend(named_files(&html));
        }
        for url in named.clone() {
            if let Some(body) = self.get(&url)
                && url.ends_with(".js")
            {
                named.extend(imported_chunks(&url, &body));
            }
        }
        let held: Vec<String> = {
            let mut held = self.held.lock().unwrap();
            held.extend(named);
            held.iter().cloned().collect()
        };
        for url in held {
            self.get(&url);
        }
    }

    /// Visits in `visitors` threads until `deploy` returns.
    fn during(&self, visitors: usize, deploy: impl FnOnce()) {
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..visitors {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        self.visit();
                    }
                });
            }
            deploy();
            stop.store(true, Ordering::Relaxed);
        });
    }

    /// No failure, and visitors held pages of each of the `builds`.
    fn assert_every_visitor_was_answered(self, builds: usize) {
        let failures = self.failures.into_inner().unwrap();
        assert!(failures.is_empty(), "{failures:#?}");
        let held = self.held.into_inner().unwrap();
        let chunks = held.iter().filter(|url| url.contains("/_lightbox."));
        assert_eq!(
            chunks.count(),
            builds,
            "visitors held pages of every build: {held:#?}"
        );
    }
}

#[test]
fn the_demo_redeployed_under_traffic_answers_every_visitor() {
    let site = Site::demo();
    site.build().expect("the first build");
    let server = TestServer::start(&site, &[]);
    let traffic = Traffic::new(vec![server.addr]);
    traffic.during(3, || {
        for marker in ["second", "third"] {
            // Visitors hold pages of the deploy before.
            std::thread::sleep(Duration::from_millis(300));
            change_the_site(&site, marker);
            site.build().expect("a deploy builds");
            wait_for_deploy(server.addr, marker);
            *traffic.deployed.lock().unwrap() = Some(marker);
        }
        std::thread::sleep(Duration::from_millis(300));
    });
    traffic.assert_every_visitor_was_answered(3);
}

/// Waits until `server` serves every hashed file of the build `site`
/// staged last.
fn wait_for_staged_files(site: &Site, server: SocketAddr) {
    let staged = record(site)["previous"][0]["files"].clone();
    let css = staged
        .as_array()
        .and_then(|files| {
            files
                .iter()
                .find_map(|file| file.as_str()?.strip_suffix(".css").map(str::to_string))
        })
        .expect("the staged build has a stylesheet");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http::get(server, &format!("/{css}.css"), &[]).status != 200 {
        assert!(
            Instant::now() < deadline,
            "{server} never served the staged files"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rolling_deploy_of_two_servers_on_one_redis_answers_every_visitor() {
    let Some(redis) = RedisPrefix::new("rolling-deploy") else {
        return;
    };
    let overrides = redis.overrides();
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let sites = [Site::demo(), Site::demo()];
    for site in &sites {
        site.build().expect("the first build");
    }
    let first = TestServer::start(&sites[0], &overrides);
    // One deployment, one secret key: the servers share their entries.
    sites[1].share_secret_key_of(&sites[0]);
    let second = TestServer::start(&sites[1], &overrides);
    let servers = [first.addr, second.addr];
    let traffic = Traffic::new(servers.to_vec());
    traffic.during(3, || {
        std::thread::sleep(Duration::from_millis(300));
        for (site, server) in sites.iter().zip(servers) {
            change_the_site(site, "second");
            kiln::stage(&site.settings(&[]), &kiln::Silent).expect("the build stages");
            wait_for_staged_files(site, server);
        }
        // Staging changed no page.
        assert!(
            !http::get(servers[0], "/", &[])
                .text()
                .contains("content=\"second\"")
        );
        for (site, server) in sites.iter().zip(servers) {
            site.build().expect("the server's deploy builds");
            wait_for_deploy(server, "second");
            // Visitors meet both builds, on either server.
            std::thread::sleep(Duration::from_millis(300));
        }
        *traffic.deployed.lock().unwrap() = Some("second");
        std::thread::sleep(Duration::from_millis(300));
    });
    traffic.assert_every_visitor_was_answered(2);
}

#[test]
fn staging_needs_a_build_to_stage_beside() {
    let site = Site::fixture("basic");
    let err = kiln::stage(&site.settings(&[]), &kiln::Silent).expect_err("nothing to stage beside");
    assert!(err.to_string().contains("run `kiln build` first"), "{err}");
    assert!(!site.dist().exists());
}
