//! The retain step: the hashed files of earlier builds stay in the output
//! for a while, so a browser holding an earlier page (its lazy chunks are
//! fetched minutes after it loaded), a CDN or a server not yet upgraded
//! still finds the stylesheets, scripts and images that page names. Rails'
//! asset pipeline keeps earlier versions for the same reason.
//!
//! `.kiln-builds.json` in the output records the current build's hashed
//! files and each earlier build still kept, with when it was replaced. A
//! build carries over (hard links) the files of the earlier builds that
//! are among the last `build.keep_builds` or were replaced less than
//! `build.keep_for_secs` ago, whichever keeps more; the others are gone
//! with the old directory. Pages, the manifest and every unhashed file
//! are the current build's only: they are never carried over.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::output::Staging;
use crate::diagnostic::Diagnostic;
use crate::site::builds::{Build, RECORD_FILE, Record, Replaced, read};

/// How long earlier builds are kept, from `[build]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    pub keep_builds: usize,
    pub keep_for: Duration,
}

/// Carries the kept earlier builds' files from the current output into
/// `staging` (none that `current` writes itself) and writes the new record.
/// Two builds of the same input write the same record: the current build
/// carries no time, and a rebuild with no change keeps the record as it was.
pub(crate) fn carry(
    staging: &Staging,
    out_dir: &Path,
    current: Build,
    retention: Retention,
    now: SystemTime,
) -> Result<Record, Diagnostic> {
    let now_ms = unix_ms(now);
    let mut previous = match read(out_dir) {
        Some(record) if record.current.id == current.id => record.previous,
        Some(record) => {
            let mut previous = vec![Replaced {
                build: record.current,
                replaced_unix_ms: now_ms,
            }];
            previous.extend(record.previous);
            previous
        }
        None => Vec::new(),
    };
    // Staged beforehand (`kiln build --stage`): it is the current one now.
    previous.retain(|build| build.build.id != current.id);
    let keep_for_ms = retention.keep_for.as_millis() as u64;
    let mut index = 0;
    previous.retain(|build| {
        index += 1;
        index <= retention.keep_builds
            || now_ms.saturating_sub(build.replaced_unix_ms) < keep_for_ms
    });
    let written: HashSet<&str> = current.files.iter().map(String::as_str).collect();
    let mut carried: HashSet<String> = HashSet::new();
    for build in &mut previous {
        let mut kept = Vec::with_capacity(build.build.files.len());
        for file in std::mem::take(&mut build.build.files) {
            if written.contains(file.as_str()) || carried.contains(&file) {
                kept.push(file);
                continue;
            }
            if !is_plain_relative(&file) {
                continue;
            }
            // A file gone from the output (removed by hand) is forgotten.
            if staging.keep(&file)? {
                carried.insert(file.clone());
                kept.push(file);
            }
        }
        build.build.files = kept;
    }
    let record = Record {
        current,
        previous,
        staged: false,
    };
    write_record(staging, &record)?;
    Ok(record)
}

/// Adds the `staged` build, whose hashed files are in `staging`, beside the
/// build being served: every file of the current output is carried over
/// (its pages, manifest and hints stay the ones served, its earlier builds
/// stay kept), and the record lists the staged build first among the
/// earlier ones, so the next build keeps it as it keeps those.
pub(crate) fn stage(
    staging: &Staging,
    out_dir: &Path,
    staged: Build,
    now: SystemTime,
) -> Result<Record, Diagnostic> {
    let Some(mut record) = read(out_dir) else {
        return Err(Diagnostic::new(format!(
            "kiln build --stage: {} holds no build to stage beside; run `kiln build` first",
            out_dir.display()
        )));
    };
    let written: HashSet<&str> = staged.files.iter().map(String::as_str).collect();
    for entry in walkdir::WalkDir::new(out_dir).min_depth(1) {
        let entry =
            entry.map_err(|err| Diagnostic::new(format!("{}: {err}", out_dir.display())))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(out_dir) else {
            continue;
        };
        let relative = relative.to_string_lossy().replace('\\', "/");
        if relative == RECORD_FILE || written.contains(relative.as_str()) {
            continue;
        }
        staging.keep(&relative)?;
    }
    record.previous.retain(|build| build.build.id != staged.id);
    if record.current.id != staged.id {
        record.previous.insert(
            0,
            Replaced {
                build: staged,
                replaced_unix_ms: unix_ms(now),
            },
        );
    }
    record.staged = true;
    write_record(staging, &record)?;
    Ok(record)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn write_record(staging: &Staging, record: &Record) -> Result<(), Diagnostic> {
    let json = serde_json::to_vec_pretty(record)
        .map_err(|err| Diagnostic::new(format!("{RECORD_FILE}: {err}")))?;
    staging.write(RECORD_FILE, &json)
}

/// A record names files inside the output only: it is ours, but a hand
/// edit must not make a build link files from elsewhere.
fn is_plain_relative(file: &str) -> bool {
    !file.is_empty()
        && !file.starts_with('/')
        && file
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_only_files_inside_the_output() {
        assert!(is_plain_relative("assets/site.abc.css"));
        assert!(!is_plain_relative("../secret"));
        assert!(!is_plain_relative("/etc/passwd"));
        assert!(!is_plain_relative("a//b"));
        assert!(!is_plain_relative(".kiln-builds.json"));
    }
}
