//! What the build consists of: the entries (CSS and JS files that become
//! outputs of their own) and the static assets (everything else under
//! `assets/` that is not excluded), discovered from the filesystem and
//! `build.entries`.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::diagnostic::Diagnostic;

/// What kind of source a file is, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// A stylesheet: only reachable as an entry or through `@import`.
    Css,
    /// A script module: only reachable as an entry or through `import`.
    Script,
    /// Anything else: emitted as-is under a hashed name.
    Static,
}

impl SourceKind {
    pub(crate) fn of(path: &Path) -> SourceKind {
        let ext = path
            .extension()
            .and_then(|ext| ext.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("css") => SourceKind::Css,
            Some("js" | "mjs" | "cjs" | "jsx" | "ts" | "mts" | "cts" | "tsx") => SourceKind::Script,
            _ => SourceKind::Static,
        }
    }
}

/// A file that becomes an output of its own and a manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Absolute path of the source.
    pub source: PathBuf,
    /// Path relative to `assets/`, with `/` separators: the manifest key.
    pub key: String,
    pub kind: SourceKind,
}

/// Everything one build reads from `assets/`.
#[derive(Debug, Clone, Default)]
pub(crate) struct SiteGraph {
    pub entries: Vec<Entry>,
    /// Absolute paths of the static assets, sorted.
    pub static_assets: Vec<PathBuf>,
}

/// Walks `assets/` and picks the entries. A missing `assets/` is an empty site.
pub(crate) fn discover(settings: &Settings) -> Result<SiteGraph, Vec<Diagnostic>> {
    let files = list_sources(settings)?;
    let static_assets = files
        .iter()
        .filter(|path| SourceKind::of(path) == SourceKind::Static)
        .cloned()
        .collect();
    let entries = match &settings.build().entries {
        Some(keys) => configured_entries(settings, keys)?,
        None => default_entries(settings, &files),
    };
    Ok(SiteGraph {
        entries,
        static_assets,
    })
}

/// Every non-hidden, non-excluded file under `assets/`, sorted by path.
fn list_sources(settings: &Settings) -> Result<Vec<PathBuf>, Vec<Diagnostic>> {
    let dir = &settings.assets_dir;
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !is_hidden(entry.file_name()));
    for entry in walker {
        let entry = entry.map_err(|err| {
            let path = err.path().unwrap_or(dir).to_path_buf();
            // A link to an ancestor (the site root, say) is a loop to the
            // walker; say first what is wrong with where it points.
            if err.loop_ancestor().is_some()
                && let Err(problem) = check_link_stays_inside(&settings.root, &path)
            {
                return problem;
            }
            vec![Diagnostic::new(format!("{}: {err}", path.display()))]
        })?;
        if entry.path_is_symlink() {
            check_link_stays_inside(&settings.root, entry.path())?;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let key = key_of(dir, entry.path());
        if settings.exclude.is_match(&key) {
            continue;
        }
        files.push(entry.into_path());
    }
    Ok(files)
}

/// A symbolic link under `assets/` may point anywhere inside the site
/// root (a shared folder, a package), but not outside it: publishing
/// `/etc` or a home directory because of one link is not what anyone
/// meant. Links inside a linked folder are checked as the walk reaches them.
fn check_link_stays_inside(root: &Path, link: &Path) -> Result<(), Vec<Diagnostic>> {
    let target = std::fs::canonicalize(link)
        .map_err(|err| vec![Diagnostic::new(format!("{}: {err}", link.display()))])?;
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let Ok(inside) = target.strip_prefix(&root) else {
        return Err(vec![Diagnostic::new(format!(
            "{}: a symbolic link to {}, outside the site root; kiln publishes only files under {} (copy the file in, or move the link's target inside the site)",
            link.display(),
            target.display(),
            root.display()
        ))]);
    };
    // Inside the root, but where the site keeps what must never be served:
    // the configuration, the database and migrations, hidden directories
    // (`.kiln/secret.key`, `.git`).
    let private = inside.as_os_str().is_empty()
        || inside == Path::new(crate::config::CONFIG_FILE)
        || inside.starts_with(crate::config::DATA_DIR)
        || inside.starts_with("migrations")
        || inside
            .components()
            .any(|part| part.as_os_str().to_string_lossy().starts_with('.'));
    if private {
        return Err(vec![Diagnostic::new(format!(
            "{}: a symbolic link to {}, which holds the site's configuration, data or secrets; kiln does not publish the site root, build.toml, data/, migrations/ or hidden directories",
            link.display(),
            target.display()
        ))]);
    }
    Ok(())
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|name| name.starts_with('.'))
}

pub(crate) use crate::site::manifest::key_of;

/// Top-level files of `assets/css/` and `assets/js/` not starting with `_`.
fn default_entries(settings: &Settings, files: &[PathBuf]) -> Vec<Entry> {
    let mut entries = Vec::new();
    for path in files {
        let key = key_of(&settings.assets_dir, path);
        let Some((dir, name)) = key.split_once('/') else {
            continue;
        };
        let top_level = (dir == "css" || dir == "js") && !name.contains('/');
        let kind = SourceKind::of(path);
        if top_level && !name.starts_with('_') && kind != SourceKind::Static {
            entries.push(Entry {
                source: path.clone(),
                key,
                kind,
            });
        }
    }
    entries
}

fn configured_entries(settings: &Settings, keys: &[String]) -> Result<Vec<Entry>, Vec<Diagnostic>> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for key in keys {
        let source = settings.assets_dir.join(key);
        let kind = SourceKind::of(&source);
        if !source.is_file() {
            problems.push(Diagnostic::new(format!(
                "build.entries: {key:?} does not exist under {}",
                settings.assets_dir.display()
            )));
        } else if kind == SourceKind::Static {
            problems.push(Diagnostic::new(format!(
                "build.entries: {key:?} is neither a stylesheet nor a script"
            )));
        } else if !entries.iter().any(|entry: &Entry| entry.key == *key) {
            entries.push(Entry {
                source,
                key: key.clone(),
                kind,
            });
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_extension() {
        assert_eq!(SourceKind::of(Path::new("a/site.CSS")), SourceKind::Css);
        assert_eq!(SourceKind::of(Path::new("a/app.tsx")), SourceKind::Script);
        assert_eq!(SourceKind::of(Path::new("a/logo.svg")), SourceKind::Static);
        assert_eq!(SourceKind::of(Path::new("a/Makefile")), SourceKind::Static);
    }

    #[test]
    fn keys_use_forward_slashes() {
        let key = key_of(
            Path::new("/site/assets"),
            Path::new("/site/assets/css/x.css"),
        );
        assert_eq!(key, "css/x.css");
    }
}
