//! Helpers shared by the integration tests: fixture sites copied into temp
//! directories, builds with overrides, and snapshots of output trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln::{BuildError, BuildReport, Override, Settings, Silent};

/// A fixture site copied into its own temporary directory.
pub(crate) struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    /// Copies `tests/fixtures/NAME` into a fresh temp dir.
    pub(crate) fn fixture(name: &str) -> Site {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let dir = tempfile::tempdir().expect("temp dir");
        copy_tree(&source, dir.path());
        Site { dir }
    }

    /// The repository's demo site, copied so a test never touches its
    /// `dist/` or its database.
    pub(crate) fn demo() -> Site {
        let site = Site::empty();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in ["assets", "templates", "data", "migrations"] {
            if repo.join(dir).is_dir() {
                copy_tree(&repo.join(dir), &site.path(dir));
            }
        }
        // A database left by a local `kiln serve` is not part of the site.
        for entry in fs::read_dir(site.path("data")).expect("data/") {
            let path = entry.expect("entry").path();
            if path.to_string_lossy().contains(".db") {
                fs::remove_file(path).expect("remove the database");
            }
        }
        fs::copy(repo.join("build.toml"), site.path("build.toml")).expect("build.toml");
        site
    }

    /// An empty site (no build.toml, no assets).
    pub(crate) fn empty() -> Site {
        Site {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.root().join(relative)
    }

    pub(crate) fn dist(&self) -> PathBuf {
        self.path("dist")
    }

    pub(crate) fn write(&self, relative: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, contents).expect("write");
    }

    pub(crate) fn read_dist(&self, relative: &str) -> Vec<u8> {
        fs::read(self.dist().join(relative)).unwrap_or_else(|err| panic!("dist/{relative}: {err}"))
    }

    pub(crate) fn read_dist_string(&self, relative: &str) -> String {
        String::from_utf8(self.read_dist(relative)).expect("utf-8")
    }

    pub(crate) fn settings(&self, overrides: &[&str]) -> Settings {
        let overrides: Vec<Override> = overrides
            .iter()
            .map(|raw| raw.parse().expect("override"))
            .collect();
        Settings::load(self.root(), &overrides).expect("settings")
    }

    pub(crate) fn build(&self) -> Result<BuildReport, BuildError> {
        self.build_with(&[])
    }

    pub(crate) fn build_with(&self, overrides: &[&str]) -> Result<BuildReport, BuildError> {
        kiln::build(&self.settings(overrides), &Silent)
    }

    /// A build that reuses what `session` kept from earlier ones (watch mode).
    pub(crate) fn build_in(&self, session: &kiln::BuildSession) -> Result<BuildReport, BuildError> {
        kiln::build_in(session, &self.settings(&[]), &Silent)
    }

    /// Gives this site `other`'s secret key (made when `other`'s server
    /// started): two instances of one deployment, which share cookies and
    /// their Redis entries.
    pub(crate) fn share_secret_key_of(&self, other: &Site) {
        fs::create_dir_all(self.path(".kiln")).expect("mkdir .kiln");
        fs::copy(
            other.path(".kiln/secret.key"),
            self.path(".kiln/secret.key"),
        )
        .expect("copy the secret key");
    }

    /// The manifest of the last build, as JSON.
    pub(crate) fn manifest(&self) -> serde_json::Value {
        serde_json::from_slice(&self.read_dist("manifest.json")).expect("manifest parses")
    }

    /// The output path the manifest gives for a source key.
    pub(crate) fn output_of(&self, key: &str) -> String {
        self.manifest()[key]["file"]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not in the manifest"))
            .to_string()
    }
}

/// Every file under `dir` with its bytes, keyed by `/`-separated relative path.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.expect("walk");
        if entry.file_type().is_file() {
            let relative = entry.path().strip_prefix(dir).expect("prefix");
            let key = relative.to_string_lossy().replace('\\', "/");
            files.insert(key, fs::read(entry.path()).expect("read"));
        }
    }
    files
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk fixture");
        let target = to.join(entry.path().strip_prefix(from).expect("prefix"));
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).expect("mkdir");
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The shared corpus directory (`../shared` beside the repository), if present.
pub(crate) fn shared_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("KILN_SHARED_DIR").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")),
        Some(PathBuf::from("/work/shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("corpus/fetch-npm.sh").is_file())
}

/// `node_modules/` of the pinned npm corpus, fetched once into a directory
/// outside the repository. `Err` says why it is unavailable; in CI
/// (`CI=true`) a missing corpus is a failure, not a skip.
pub(crate) fn npm_corpus() -> Result<PathBuf, String> {
    let dir = std::env::var_os("KILN_NPM_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kiln-npm-corpus"));
    let ready = dir.join("node_modules/.corpus-ok");
    if !ready.is_file() {
        let shared = shared_dir().ok_or("the shared corpus (../shared) is not present")?;
        let status = std::process::Command::new("bash")
            .arg(shared.join("corpus/fetch-npm.sh"))
            .arg(&dir)
            .status()
            .map_err(|err| format!("running fetch-npm.sh: {err}"))?;
        if !status.success() {
            return Err(format!("fetch-npm.sh exited with {status}"));
        }
    }
    Ok(dir.join("node_modules"))
}

/// Skips (with a printed reason) or, in CI, fails when a prerequisite is missing.
pub(crate) fn require<T>(what: Result<T, String>, test: &str) -> Option<T> {
    match what {
        Ok(value) => Some(value),
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: {reason}")
        }
        Err(reason) => {
            eprintln!("skipping {test}: {reason}");
            None
        }
    }
}

pub(crate) mod forms;
pub(crate) mod http;
pub(crate) mod jobs;
pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod server;
pub(crate) mod sink;
pub(crate) mod tls;
pub(crate) mod watch;

/// Runs an ES module script in node from `dir` and returns its stdout.
pub(crate) fn node(dir: &Path, script: &str) -> String {
    let path = dir.join("__test_runner.mjs");
    fs::write(&path, script).expect("write the runner");
    let output = std::process::Command::new("node")
        .arg(&path)
        .current_dir(dir)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "node failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
