//! Which source files changed: notify on the site's inputs (`assets/`,
//! `templates/`, `data/`, `migrations/` recursively, and the root itself
//! for `build.toml`), debounced into batches, with output, cache and editor
//! scratch files left out.
//!
//! Editors save in bursts (truncate then write; write a temporary file then
//! rename it over the original), so a batch closes only after the events
//! have been quiet for [`QUIET`]. The root and the watched directories are
//! watched rather than single files, so a save by rename is seen as the
//! new file it is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use crate::config::{CONFIG_FILE, Settings};

/// How long events must pause before a batch is rebuilt. Bursts of one
/// save arrive within a millisecond or two.
const QUIET: Duration = Duration::from_millis(5);
/// A batch closes after this long even if events keep coming (a large
/// copy), so progress shows.
const LONGEST: Duration = Duration::from_millis(600);
/// Site directories watched recursively, relative to the root.
const WATCHED_DIRS: [&str; 4] = ["assets", "templates", "data", "migrations"];

/// What the watch loop receives.
pub(crate) enum Message {
    Files(notify::Result<notify::Event>),
    /// Ctrl-C or SIGTERM: stop watching.
    Stop,
}

/// The changed source files of one batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Changes {
    pub paths: BTreeSet<PathBuf>,
    root: PathBuf,
    migrations_dir: PathBuf,
}

impl Changes {
    /// The site root the paths are under.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `build.toml` changed: everything is rebuilt and the server restarted.
    pub(crate) fn touches_config(&self) -> bool {
        self.paths.contains(&self.root.join(CONFIG_FILE))
    }

    /// A migration was added or edited.
    pub(crate) fn touches_migrations(&self) -> bool {
        self.paths
            .iter()
            .any(|path| path.starts_with(&self.migrations_dir))
    }

    /// Every change is a stylesheet under `assets/` (which may be swapped
    /// in place).
    pub(crate) fn only_stylesheets(&self) -> bool {
        let assets = self.root.join("assets");
        self.paths.iter().all(|path| {
            path.starts_with(&assets)
                && path
                    .extension()
                    .is_some_and(|extension| extension.eq_ignore_ascii_case("css"))
        })
    }

    /// `assets/css/site.css`, or `assets/css/a.css and 2 more`.
    pub(crate) fn describe(&self) -> String {
        let mut names = self.paths.iter().map(|path| {
            path.strip_prefix(&self.root)
                .unwrap_or(path)
                .display()
                .to_string()
        });
        let first = names.next().unwrap_or_default();
        match self.paths.len() {
            0 | 1 => first,
            count => format!("{first} and {} more", count - 1),
        }
    }
}

/// The notify watcher and the batches it produces.
pub(crate) struct SiteWatcher {
    watcher: RecommendedWatcher,
    receiver: Receiver<Message>,
    sender: Sender<Message>,
    filter: Filter,
    /// Watched directories that did not exist yet at the last look.
    missing: Vec<PathBuf>,
}

impl SiteWatcher {
    pub(crate) fn new(settings: &Settings) -> notify::Result<SiteWatcher> {
        let (sender, receiver) = channel();
        let events = sender.clone();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = events.send(Message::Files(event));
        })?;
        watcher.watch(&settings.root, RecursiveMode::NonRecursive)?;
        let mut site = SiteWatcher {
            watcher,
            receiver,
            sender,
            filter: Filter::new(settings),
            missing: WATCHED_DIRS
                .iter()
                .map(|dir| settings.root.join(dir))
                .collect(),
        };
        site.watch_new_directories();
        Ok(site)
    }

    /// A sender for [`Message::Stop`].
    pub(crate) fn sender(&self) -> Sender<Message> {
        self.sender.clone()
    }

    /// Blocks until a batch of changes is complete; `None` when told to stop.
    pub(crate) fn next_batch(&mut self) -> Option<Changes> {
        let mut changes = Changes {
            paths: BTreeSet::new(),
            root: self.filter.root.clone(),
            migrations_dir: self.filter.migrations_dir.clone(),
        };
        // Wait for the first relevant event, then until things are quiet.
        let mut opened: Option<Instant> = None;
        loop {
            let message = match opened {
                None => self.receiver.recv().ok()?,
                Some(at) if at.elapsed() >= LONGEST => break,
                Some(_) => match self.receiver.recv_timeout(QUIET) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return None,
                },
            };
            match message {
                Message::Stop => return None,
                Message::Files(Err(err)) => tracing::error!("watching files: {err}"),
                Message::Files(Ok(event)) => {
                    if matches!(event.kind, EventKind::Access(_)) {
                        continue;
                    }
                    for path in event.paths {
                        if self.filter.is_source(&path) {
                            changes.paths.insert(path);
                            opened.get_or_insert_with(Instant::now);
                        }
                    }
                    self.watch_new_directories();
                }
            }
        }
        Some(changes)
    }

    /// Starts watching site directories created since the last look
    /// (`mkdir templates` after `kiln watch` started).
    fn watch_new_directories(&mut self) {
        let watcher = &mut self.watcher;
        self.missing
            .retain(|dir| !(dir.is_dir() && watcher.watch(dir, RecursiveMode::Recursive).is_ok()));
    }
}

/// Which paths are sources of the site.
struct Filter {
    root: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    migrations_dir: PathBuf,
    watched: Vec<PathBuf>,
    ignored: Vec<PathBuf>,
}

impl Filter {
    fn new(settings: &Settings) -> Filter {
        let root = settings.root.clone();
        let mut watched: Vec<PathBuf> = WATCHED_DIRS.iter().map(|dir| root.join(dir)).collect();
        let migrations_dir = root.join(&settings.database().migrations);
        watched.push(migrations_dir.clone());
        Filter {
            config: root.join(CONFIG_FILE),
            data_dir: settings.data_dir.clone(),
            ignored: vec![
                settings.out_dir.clone(),
                settings.cache_dir.clone(),
                root.join(settings.build().out_dir.as_path()),
                root.join(".kiln"),
            ],
            migrations_dir,
            watched,
            root,
        }
    }

    fn is_source(&self, path: &Path) -> bool {
        if path == self.config {
            return true;
        }
        self.watched.iter().any(|dir| path.starts_with(dir))
            && !self.ignored.iter().any(|dir| path.starts_with(dir))
            && !is_hidden(path.strip_prefix(&self.root).unwrap_or(path))
            && !is_editor_scratch(path)
            && self.is_read_by_kiln(path)
    }

    /// Under `data/` only TOML and JSON are site data (the demo's SQLite
    /// database lives there too, and changes with every write); under
    /// `migrations/` only SQL.
    fn is_read_by_kiln(&self, path: &Path) -> bool {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .unwrap_or("");
        if path.starts_with(&self.migrations_dir) {
            return extension == "sql";
        }
        if path.starts_with(&self.data_dir) {
            return matches!(extension, "toml" | "json");
        }
        true
    }
}

/// A path with a hidden component: the build skips those (and editors put
/// their swap and lock files there: `.site.css.swp`, `.#site.css`).
fn is_hidden(relative: &Path) -> bool {
    relative.components().any(|part| {
        part.as_os_str()
            .to_str()
            .is_some_and(|name| name.starts_with('.'))
    })
}

/// Backup and temporary files editors write beside the file being saved.
fn is_editor_scratch(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return true;
    };
    name.ends_with('~')
        || name == "4913"
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        || [".swp", ".swx", ".swo", ".tmp", ".kate-swp"]
            .iter()
            .any(|suffix| name.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_scratch_files_are_not_sources() {
        for name in ["site.css~", "4913", "site.css___jb_tmp___", "x.tmp"] {
            assert!(is_editor_scratch(Path::new(name)), "{name}");
        }
        assert!(!is_editor_scratch(Path::new("site.css")));
        assert!(is_hidden(Path::new("assets/css/.site.css.swp")));
        assert!(is_hidden(Path::new("assets/.cache/x.css")));
        assert!(!is_hidden(Path::new("assets/css/site.css")));
    }

    #[test]
    fn outputs_and_caches_are_not_sources() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        std::fs::write(root.join("build.toml"), "[build]\nout_dir = \"public\"\n").unwrap();
        let settings = Settings::load_for_watch(root, &[]).unwrap();
        let filter = Filter::new(&settings);
        assert!(filter.is_source(&root.join("build.toml")));
        assert!(filter.is_source(&root.join("assets/css/site.css")));
        assert!(filter.is_source(&root.join("migrations/0001_init.sql")));
        assert!(!filter.is_source(&root.join("public/site.css")));
        assert!(!filter.is_source(&root.join(".kiln/watch/index.html")));
        assert!(!filter.is_source(&root.join("README.md")));
        assert!(!filter.is_source(&root.join("assets/css/.site.css.swp")));
        // The demo's database lives in data/ and changes on every write.
        assert!(filter.is_source(&root.join("data/nav.toml")));
        assert!(!filter.is_source(&root.join("data/site.db")));
        assert!(!filter.is_source(&root.join("data/site.db-wal")));
        assert!(!filter.is_source(&root.join("migrations/README.md")));
    }
}
