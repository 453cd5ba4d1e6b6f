//! Atomic output: a build writes into a staging directory beside the output
//! directory and swaps it in only when everything succeeded, so the last good
//! `dist/` is never touched by a failed build and a server never sees a mix
//! of two builds. A lock file keeps two builds of the same output apart.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

use crate::diagnostic::Diagnostic;

/// An exclusive lock on building into one output directory, held for the
/// life of the value.
#[derive(Debug)]
pub(crate) struct BuildLock {
    _file: fs::File,
}

impl BuildLock {
    /// Waits for, then takes, the lock beside `out_dir`.
    pub(crate) fn acquire(out_dir: &Path) -> Result<BuildLock, Diagnostic> {
        let path = sibling(out_dir, "lock");
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|err| Diagnostic::io(parent, &err))?;
        }
        let file = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|err| Diagnostic::io(&path, &err))?;
        file.lock().map_err(|err| Diagnostic::io(&path, &err))?;
        Ok(BuildLock { _file: file })
    }
}

/// A hidden path next to `out_dir`: `/site/.dist.kiln-NAME`.
fn sibling(out_dir: &Path, name: &str) -> PathBuf {
    let base = out_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    out_dir.with_file_name(format!(".{base}.kiln-{name}"))
}

/// A directory being filled with the next output. Dropped without
/// [`Staging::commit`], it is removed and the output directory is untouched.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
    out_dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates an empty staging directory for `out_dir`, clearing any left
    /// by a build that crashed (the caller holds the [`BuildLock`]).
    pub(crate) fn create(out_dir: &Path, _lock: &BuildLock) -> Result<Staging, Diagnostic> {
        let dir = sibling(out_dir, "staging");
        remove_dir_if_present(&dir).map_err(|err| Diagnostic::io(&dir, &err))?;
        fs::create_dir_all(&dir).map_err(|err| Diagnostic::io(&dir, &err))?;
        Ok(Staging {
            dir,
            out_dir: out_dir.to_path_buf(),
            committed: false,
        })
    }

    /// Writes one output file at `relative` (a `/`-separated path).
    pub(crate) fn write(&self, relative: &str, bytes: &[u8]) -> Result<(), Diagnostic> {
        let path = self.dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|err| Diagnostic::io(parent, &err))?;
        }
        fs::write(&path, bytes).map_err(|err| Diagnostic::io(&path, &err))
    }

    /// Hard-links `relative` from the current output directory, where the
    /// caller knows it holds exactly `bytes`; writes them when it cannot.
    pub(crate) fn link_or_write(&self, relative: &str, bytes: &[u8]) -> Result<(), Diagnostic> {
        let path = self.dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|err| Diagnostic::io(parent, &err))?;
        }
        if fs::hard_link(self.out_dir.join(relative), &path).is_ok() {
            return Ok(());
        }
        fs::write(&path, bytes).map_err(|err| Diagnostic::io(&path, &err))
    }

    /// Hard-links (or, across filesystems, copies) `relative` from the
    /// current output directory; `false` when the current output lacks it.
    pub(crate) fn keep(&self, relative: &str) -> Result<bool, Diagnostic> {
        let from = self.out_dir.join(relative);
        if !from.is_file() {
            return Ok(false);
        }
        let path = self.dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|err| Diagnostic::io(parent, &err))?;
        }
        if fs::hard_link(&from, &path).is_err() {
            fs::copy(&from, &path).map_err(|err| Diagnostic::io(&from, &err))?;
        }
        Ok(true)
    }

    /// Swaps the staging directory in as the output directory. The previous
    /// output is removed afterwards; readers see either the old tree or the
    /// new one, never a mix.
    pub(crate) fn commit(mut self) -> Result<(), Diagnostic> {
        swap_into_place(&self.dir, &self.out_dir).map_err(|err| {
            Diagnostic::new(format!(
                "replacing {} with the new build: {err}",
                self.out_dir.display()
            ))
        })?;
        self.committed = true;
        // After an exchange the staging path holds the old output.
        let _ = remove_dir_if_present(&self.dir);
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_dir_if_present(&self.dir);
        }
    }
}

/// Puts `staging` at `out_dir`. An existing `out_dir` is exchanged in one
/// step (`renameat2(RENAME_EXCHANGE)`); where the filesystem cannot do that
/// it is moved aside first, leaving only a brief window with no output.
fn swap_into_place(staging: &Path, out_dir: &Path) -> io::Result<()> {
    if !out_dir.exists() {
        return fs::rename(staging, out_dir);
    }
    match renameat_with(CWD, staging, CWD, out_dir, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(_) => {
            let aside = sibling(out_dir, "previous");
            remove_dir_if_present(&aside)?;
            fs::rename(out_dir, &aside)?;
            fs::rename(staging, out_dir)?;
            fs::rename(&aside, staging)
        }
    }
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_output_and_removes_old_tree() {
        let temp = tempfile::tempdir().unwrap();
        let out = temp.path().join("dist");
        fs::create_dir_all(&out).unwrap();
        fs::write(out.join("old.txt"), "old").unwrap();
        let lock = BuildLock::acquire(&out).unwrap();
        let staging = Staging::create(&out, &lock).unwrap();
        staging.write("css/new.css", b"new").unwrap();
        staging.commit().unwrap();
        assert!(!out.join("old.txt").exists());
        assert_eq!(fs::read(out.join("css/new.css")).unwrap(), b"new");
        assert!(!sibling(&out, "staging").exists());
    }

    #[test]
    fn dropped_staging_leaves_output_alone() {
        let temp = tempfile::tempdir().unwrap();
        let out = temp.path().join("dist");
        fs::create_dir_all(&out).unwrap();
        fs::write(out.join("keep.txt"), "keep").unwrap();
        let lock = BuildLock::acquire(&out).unwrap();
        {
            let staging = Staging::create(&out, &lock).unwrap();
            staging.write("partial.css", b"x").unwrap();
        }
        assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"keep");
        assert!(!out.join("partial.css").exists());
        assert!(!sibling(&out, "staging").exists());
    }

    #[test]
    fn first_build_creates_output() {
        let temp = tempfile::tempdir().unwrap();
        let out = temp.path().join("nested/dist");
        let lock = BuildLock::acquire(&out).unwrap();
        let staging = Staging::create(&out, &lock).unwrap();
        staging.write("a.txt", b"a").unwrap();
        staging.commit().unwrap();
        assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"a");
    }
}
