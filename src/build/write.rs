//! The write step: every output and its precompressed variants into the
//! staging directory (hard-linking those a watch session's previous build
//! wrote with the same bytes), the earlier builds' hashed files still kept
//! ([`retain`]), the manifest and the hints file, then the swap.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;

use super::output::{BuildLock, Staging};
use super::pages::Pages;
use super::report::{OutputSize, Progress};
use super::retain;
use super::{Context, OutputFile, Release, Variants};
use crate::config::Encoding;
use crate::diagnostic::Diagnostic;
use crate::site::builds::Build;
use crate::site::manifest::{self, MANIFEST_FILE, Manifest};

/// What the build made, for the write step.
pub(super) struct Written<'a> {
    pub files: &'a [OutputFile],
    pub variants: &'a Variants,
    pub manifest: &'a Manifest,
    pub rendered: &'a Pages,
}

/// Writes the build and swaps it in; returns the outputs that changed since
/// the session's previous build (none recorded for a one-shot build).
pub(super) fn commit(
    context: &Context,
    lock: &BuildLock,
    written: Written,
    release: Release,
) -> Result<Vec<String>, Diagnostic> {
    let Written {
        files,
        variants,
        manifest,
        rendered,
    } = written;
    let (settings, session, progress) = (context.settings, context.session, context.progress);
    progress.stage("write", files.len());
    // Only a persistent session has a previous build to compare with.
    let digests = session
        .previous_outputs()
        .is_some()
        .then(|| digest_outputs(files));
    let staging = Staging::create(&settings.out_dir, lock)?;
    let unchanged = {
        let previous = session.previous_outputs();
        match (previous.as_ref(), &digests) {
            (Some(previous), Some(digests)) => files
                .iter()
                .zip(digests)
                .map(|(file, digest)| previous.get(&file.path) == Some(digest))
                .collect(),
            _ => vec![false; files.len()],
        }
    };
    let pages: HashSet<&str> = rendered
        .pages
        .iter()
        .map(|page| page.output.as_str())
        .collect();
    let manifest_json = manifest::to_json(manifest);
    let build = Build {
        id: blake3::hash(&manifest_json).to_hex()[..16].to_string(),
        files: hashed_files(files, variants, &pages),
    };
    let retention = retain::Retention {
        keep_builds: settings.build().keep_builds,
        keep_for: std::time::Duration::from_secs(settings.build().keep_for_secs),
    };
    let now = std::time::SystemTime::now();
    if release == Release::Staged {
        // The pages stay the served build's: only the hashed files are new.
        write_outputs(&staging, files, variants, &unchanged, &pages, progress)?;
        retain::stage(&staging, &settings.out_dir, build, now)?;
        staging.commit()?;
        return Ok(Vec::new());
    }
    write_outputs(
        &staging,
        files,
        variants,
        &unchanged,
        &HashSet::new(),
        progress,
    )?;
    retain::carry(&staging, &settings.out_dir, build, retention, now)?;
    staging.write(MANIFEST_FILE, &manifest_json)?;
    let hints: BTreeMap<&str, &Vec<String>> = rendered
        .pages
        .iter()
        .filter(|page| !page.hints.is_empty())
        .map(|page| (page.output.as_str(), &page.hints))
        .collect();
    if let Some(json) = crate::site::hints::to_json(&hints) {
        staging.write(crate::site::hints::HINTS_FILE, &json)?;
    }
    staging.commit()?;
    let Some(digests) = digests else {
        return Ok(Vec::new());
    };
    let changed = files
        .iter()
        .zip(&unchanged)
        .filter(|(_, unchanged)| !**unchanged)
        .map(|(file, _)| file.path.clone())
        .collect();
    let paths = files.iter().map(|file| file.path.clone());
    *session.previous_outputs() = Some(paths.zip(digests).collect());
    Ok(changed)
}

/// Writes every output but those in `skipped`, and its variants, into
/// staging; an output the previous build of this session wrote with the
/// same bytes (`unchanged`) is hard-linked from the current output
/// directory instead.
fn write_outputs(
    staging: &Staging,
    files: &[OutputFile],
    variants: &Variants,
    unchanged: &[bool],
    skipped: &HashSet<&str>,
    progress: &dyn Progress,
) -> Result<(), Diagnostic> {
    files
        .par_iter()
        .zip(variants)
        .zip(unchanged)
        .try_for_each(|((file, packed), &unchanged)| {
            if skipped.contains(file.path.as_str()) {
                progress.advance();
                return Ok(());
            }
            let started = std::time::Instant::now();
            let put = |path: &str, bytes: &[u8]| {
                if unchanged {
                    staging.link_or_write(path, bytes)
                } else {
                    staging.write(path, bytes)
                }
            };
            put(&file.path, &file.bytes)?;
            for (encoding, bytes) in packed {
                put(&format!("{}.{}", file.path, encoding.extension()), bytes)?;
            }
            progress.done(&file.path, started);
            Ok(())
        })
}

/// Every output but the pages, with its precompressed siblings: the
/// content-hashed files a page of this build may name.
fn hashed_files(files: &[OutputFile], variants: &Variants, pages: &HashSet<&str>) -> Vec<String> {
    let mut hashed = Vec::new();
    for (file, packed) in files.iter().zip(variants) {
        if pages.contains(file.path.as_str()) {
            continue;
        }
        hashed.push(file.path.clone());
        for (encoding, _) in packed {
            hashed.push(format!("{}.{}", file.path, encoding.extension()));
        }
    }
    hashed
}

fn digest_outputs(files: &[OutputFile]) -> Vec<blake3::Hash> {
    files
        .par_iter()
        .map(|file| blake3::hash(&file.bytes))
        .collect()
}

pub(super) fn output_sizes(files: &[OutputFile], variants: &Variants) -> Vec<OutputSize> {
    files
        .iter()
        .zip(variants)
        .map(|(file, packed)| {
            let size_of = |wanted: Encoding| {
                packed
                    .iter()
                    .find(|(encoding, _)| *encoding == wanted)
                    .map(|(_, bytes)| bytes.len() as u64)
            };
            OutputSize {
                file: file.path.clone(),
                bytes: file.bytes.len() as u64,
                gzip: size_of(Encoding::Gzip),
                brotli: size_of(Encoding::Brotli),
                zstd: size_of(Encoding::Zstd),
            }
        })
        .collect()
}
