//! `kiln init`: a starter site that builds, serves and passes `kiln check`
//! as it is. `blank` is one page, a stylesheet and a script; `blog` adds
//! Markdown posts, their layout, a sitemap and an Atom feed; `shop` adds a catalogue and an order
//! form over SQLite, with its migration. The files live in `starters/`
//! and are compiled into the binary, so `kiln init` needs nothing else.

use std::path::{Path, PathBuf};

/// Which starter site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Starter {
    Blank,
    Blog,
    Shop,
}

/// A starter file: its path in the new site and its contents.
type File = (&'static str, &'static str);

macro_rules! starter_files {
    ($starter:literal: $($path:literal as $name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../starters/", $starter, "/", $path)))),*]
    };
}

const BLANK: &[File] = starter_files!("blank":
    "build.toml" as "build.toml",
    "gitignore" as ".gitignore",
    "assets/css/site.css" as "assets/css/site.css",
    "assets/js/site.ts" as "assets/js/site.ts",
    "templates/layouts/base.html" as "templates/layouts/base.html",
    "templates/pages/index.html" as "templates/pages/index.html",
);

const BLOG: &[File] = starter_files!("blog":
    "build.toml" as "build.toml",
    "templates/layouts/base.html" as "templates/layouts/base.html",
    "templates/layouts/page.html" as "templates/layouts/page.html",
    "templates/pages/index.html" as "templates/pages/index.html",
    "templates/pages/posts/hello-world.md" as "templates/pages/posts/hello-world.md",
);

const SHOP: &[File] = starter_files!("shop":
    "build.toml" as "build.toml",
    "gitignore" as ".gitignore",
    "data/site.toml" as "data/site.toml",
    "migrations/0001_shop.sql" as "migrations/0001_shop.sql",
    "templates/pages/index.html" as "templates/pages/index.html",
    "templates/products/list.html" as "templates/products/list.html",
    "templates/products/item.html" as "templates/products/item.html",
);

impl Starter {
    /// Its files: the blank site's, with the starter's own added or in
    /// their place.
    fn files(self) -> Vec<File> {
        let own = match self {
            Starter::Blank => &[][..],
            Starter::Blog => BLOG,
            Starter::Shop => SHOP,
        };
        let mut files: Vec<File> = BLANK
            .iter()
            .filter(|(path, _)| !own.iter().any(|(replaced, _)| replaced == path))
            .copied()
            .collect();
        files.extend_from_slice(own);
        files
    }
}

/// Writes `starter` into `dir` (created if missing) and returns the files
/// written. A directory that holds anything is refused unless `force`,
/// which overwrites the starter's files and leaves every other file alone.
pub fn init(dir: &Path, starter: Starter, force: bool) -> Result<Vec<PathBuf>, String> {
    let occupied = std::fs::read_dir(dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied && !force {
        return Err(format!(
            "{} is not empty; pass --force to write the starter's files into it anyway",
            dir.display()
        ));
    }
    let mut written = Vec::new();
    for (relative, contents) in starter.files() {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| format!("{}: {err}", parent.display()))?;
        }
        std::fs::write(&path, contents).map_err(|err| format!("{}: {err}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_starter_has_a_build_toml_a_layout_and_a_home_page() {
        for starter in [Starter::Blank, Starter::Blog, Starter::Shop] {
            let files = starter.files();
            for needed in [
                "build.toml",
                "templates/layouts/base.html",
                "templates/pages/index.html",
            ] {
                assert_eq!(
                    files.iter().filter(|(path, _)| *path == needed).count(),
                    1,
                    "{starter:?}: {needed}"
                );
            }
        }
    }
}
