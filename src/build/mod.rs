//! `kiln build`: reads the site's sources, runs each stage, and swaps the
//! finished output in atomically. [`build_in`] is the table of contents:
//!
//! 1. [`graph`]: what to build — entries by kind, static assets;
//! 2. [`assets`]: static assets and [`images`], hashed (emitted on demand
//!    too, when a stylesheet or page names one);
//! 3. entries: [`stylesheets`] (over [`css`]) in parallel with
//!    [`scripts`] (over [`js`]), each stage owning its use of the [`cache`];
//! 4. [`assemble`]: the manifest;
//! 5. [`pages`]: templates and Markdown rendered through the manifest;
//! 6. [`precompress`]: `.br`, `.gz`, `.zst` variants;
//! 7. [`write`]: staging, with the earlier builds' hashed files still kept
//!    ([`retain`]), then the atomic swap ([`output`]).
//!
//! Every stage consults the [`cache`], so a rebuild with no changes reuses
//! everything.

pub(crate) mod assemble;
pub(crate) mod assets;
pub(crate) mod cache;
pub(crate) mod css;
pub(crate) mod graph;
pub mod hash;
pub(crate) mod images;
pub(crate) mod js;
pub(crate) mod output;
pub(crate) mod pages;
pub(crate) mod precompress;
pub mod report;
pub(crate) mod resolve;
pub(crate) mod retain;
pub(crate) mod scripts;
pub(crate) mod stylesheets;
pub(crate) mod svg;
pub mod timings;
pub(crate) mod write;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use crate::config::{Encoding, Settings};
use crate::diagnostic::{BuildError, Diagnostic};
use crate::site::manifest::ManifestChunk;
use assets::{AssetTable, StaticAsset};
use cache::{Cache, CacheStats, Key};
use graph::{Entry, SourceKind};
use hash::HashStyle;
use output::BuildLock;
use report::{BuildReport, Progress};

/// One file of the output, before precompression.
#[derive(Debug, Clone)]
struct OutputFile {
    /// Path relative to the output directory.
    path: String,
    bytes: Arc<Vec<u8>>,
}

/// What building one entry produced.
struct EntryOutput {
    key: String,
    chunk: ManifestChunk,
    files: Vec<OutputFile>,
}

/// Everything a stage needs, borrowed for the length of one build.
struct Context<'a> {
    settings: &'a Settings,
    cache: &'a Cache,
    stats: &'a CacheStats,
    assets: &'a AssetTable<'a>,
    progress: &'a dyn Progress,
    session: &'a BuildSession,
}

/// What a long-running process (`kiln watch`) keeps between builds so that a
/// rebuild redoes only what changed: parsed JavaScript modules by content,
/// rendered pages with what they were made from, and the digest of every
/// output file (an unchanged one is hard-linked from the current output
/// instead of written again). The disk cache covers the other stages.
#[derive(Default)]
pub struct BuildSession {
    pub js_modules: js::cache::ModuleCache,
    pub pages: pages::memo::PageMemo,
    assets: assets::AssetMemo,
    /// The last script bundle with its cache key, kept in memory (reading
    /// and parsing the disk cache's copy costs more than a rebuild).
    scripts: Mutex<Option<(Key, js::JsOutput)>>,
    /// Output path → blake3 of its bytes, as of the last successful build;
    /// `None` in a one-shot session.
    outputs: Mutex<Option<OutputDigests>>,
}

type OutputDigests = std::collections::HashMap<String, blake3::Hash>;

impl BuildSession {
    /// A session that remembers pages, assets, scripts and outputs between builds.
    pub fn persistent() -> BuildSession {
        BuildSession {
            js_modules: Default::default(),
            pages: pages::memo::PageMemo::enabled(),
            assets: assets::AssetMemo::enabled(),
            scripts: Mutex::default(),
            outputs: Mutex::new(Some(OutputDigests::new())),
        }
    }

    /// Tells the session which files a watcher saw change: what was made
    /// from them is not reused, whatever their size and modification time
    /// say (two saves within one clock tick can leave both the same).
    pub fn changed<'a>(&self, paths: impl IntoIterator<Item = &'a Path>) {
        for path in paths {
            self.assets.forget(path);
            let mut scripts = lock(&self.scripts);
            let stale = scripts
                .as_ref()
                .is_some_and(|(_, output)| output.inputs.iter().any(|input| input.path == path));
            if stale {
                *scripts = None;
            }
        }
    }

    fn is_persistent(&self) -> bool {
        self.previous_outputs().is_some()
    }

    fn previous_outputs(&self) -> std::sync::MutexGuard<'_, Option<OutputDigests>> {
        lock(&self.outputs)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Builds the site described by `settings` into its output directory.
///
/// On error nothing in the output directory has changed; every problem found
/// is in the returned [`BuildError`].
pub fn build(settings: &Settings, progress: &dyn Progress) -> Result<BuildReport, BuildError> {
    one_shot(settings, progress, Release::Current)
}

/// Builds the site but adds only its content-hashed files to the output:
/// the build being served stays current (its pages, manifest and hints).
/// The first step of a rolling deploy, run on every server before any of
/// them builds for real, so that no server lacks a file a page of the new
/// build names. The staged files are kept as an earlier build's are.
pub fn stage(settings: &Settings, progress: &dyn Progress) -> Result<BuildReport, BuildError> {
    one_shot(settings, progress, Release::Staged)
}

fn one_shot(
    settings: &Settings,
    progress: &dyn Progress,
    release: Release,
) -> Result<BuildReport, BuildError> {
    let session = BuildSession::default();
    let result = run(&session, settings, progress, release);
    // Freeing every parsed module takes milliseconds (7 ms for three.js);
    // nobody needs to wait for it.
    std::thread::spawn(move || drop(session));
    result
}

/// What a build makes of the output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// The build becomes the one served.
    Current,
    /// Only its hashed files are added ([`stage`]).
    Staged,
}

/// [`build`], reusing (and updating) what `session` kept from earlier builds.
pub fn build_in(
    session: &BuildSession,
    settings: &Settings,
    progress: &dyn Progress,
) -> Result<BuildReport, BuildError> {
    run(session, settings, progress, Release::Current)
}

fn run(
    session: &BuildSession,
    settings: &Settings,
    progress: &dyn Progress,
    release: Release,
) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let lock = BuildLock::acquire(&settings.out_dir)?;
    let cache = Cache::open(&settings.cache_dir);
    let stats = CacheStats::default();
    let style = HashStyle {
        encoding: settings.build().hash_encoding,
        length: settings.build().hash_length,
    };
    let assets = AssetTable::new(settings, &cache, &stats, style, &session.assets);
    let context = Context {
        settings,
        cache: &cache,
        stats: &stats,
        assets: &assets,
        progress,
        session,
    };

    let graph = graph::discover(settings)?;
    emit_static_assets(&context, &graph.static_assets)?;
    let entries = build_entries(&context, &graph.entries, style)?;
    let manifest = assemble::manifest(&entries, &assets.emitted());
    progress.stage("pages", 0);
    let rendered = pages::build(
        settings,
        &cache,
        &session.pages,
        &manifest,
        &assets.emitted(),
        progress,
    )?;
    let files = output_files(&entries, &assets.emitted(), &rendered);
    let variants = precompress::all(&context, &files);
    let changed = write::commit(
        &context,
        &lock,
        write::Written {
            files: &files,
            variants: &variants,
            manifest: &manifest,
            rendered: &rendered,
        },
        release,
    )?;
    cache.prune();

    Ok(BuildReport {
        outputs: write::output_sizes(&files, &variants),
        duration: started.elapsed(),
        cache_hits: stats.hits(),
        cache_misses: stats.misses(),
        warnings: rendered.warnings,
        pages_rendered: rendered.rendered,
        changed,
    })
}

/// Every file of the build, sorted by path: the entries' outputs, the
/// static assets with their image variants, the pages.
fn output_files(
    entries: &[EntryOutput],
    assets: &[Arc<StaticAsset>],
    rendered: &pages::Pages,
) -> Vec<OutputFile> {
    let mut files: Vec<OutputFile> = entries
        .iter()
        .flat_map(|entry| entry.files.clone())
        .collect();
    for asset in assets {
        files.push(OutputFile {
            path: asset.file.clone(),
            bytes: Arc::clone(&asset.bytes),
        });
        for variant in asset.image.iter().flat_map(|image| &image.variants) {
            files.push(OutputFile {
                path: variant.file.clone(),
                bytes: Arc::clone(&variant.bytes),
            });
        }
    }
    files.extend(rendered.pages.iter().map(|page| OutputFile {
        path: page.output.clone(),
        bytes: Arc::new(page.html.clone().into_bytes()),
    }));
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// `path` relative to the site root, for timings.
fn display_relative(context: &Context, path: &std::path::Path) -> String {
    path.strip_prefix(&context.settings.root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Reads and hashes every static asset, reporting all unreadable ones.
fn emit_static_assets(context: &Context, paths: &[std::path::PathBuf]) -> Result<(), BuildError> {
    context.progress.stage("assets", paths.len());
    let problems: Vec<Diagnostic> = paths
        .par_iter()
        .filter_map(|path| {
            let started = Instant::now();
            let result = context.assets.emit_discovered(path);
            context
                .progress
                .done(&display_relative(context, path), started);
            result.err()
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.into())
    }
}

/// Builds every entry: stylesheets in parallel with each other and with the
/// JavaScript bundle (all script entries bundle together, so code they
/// share is shared). The errors of all entries are reported together.
fn build_entries(
    context: &Context,
    entries: &[Entry],
    style: HashStyle,
) -> Result<Vec<EntryOutput>, BuildError> {
    context.progress.stage("entries", entries.len());
    let (stylesheets, scripts): (Vec<&Entry>, Vec<&Entry>) = entries
        .iter()
        .partition(|entry| entry.kind == SourceKind::Css);
    let (css_results, js_result) = rayon::join(
        || {
            stylesheets
                .par_iter()
                .map(|entry| {
                    let started = Instant::now();
                    let result = stylesheets::build(context, entry, style);
                    context
                        .progress
                        .done(&display_relative(context, &entry.source), started);
                    result
                })
                .collect::<Vec<_>>()
        },
        || {
            let started = Instant::now();
            let bundled = scripts::bundle(context, &scripts, style);
            if !scripts.is_empty() {
                let what = format!("script bundle ({} entries)", scripts.len());
                context.progress.timed(&what, started);
            }
            bundled
        },
    );
    let mut outputs = Vec::new();
    let mut problems = Vec::new();
    for result in css_results {
        match result {
            Ok(output) => outputs.push(output),
            Err(mut found) => problems.append(&mut found),
        }
    }
    match js_result {
        Ok(chunks) => {
            for _ in &scripts {
                context.progress.advance();
            }
            // A stylesheet entry imported from a script too is emitted once,
            // as the entry.
            let mut built_css: std::collections::HashSet<std::path::PathBuf> = stylesheets
                .iter()
                .map(|entry| entry.source.clone())
                .collect();
            for chunk in chunks {
                match scripts::outputs(context, chunk, style, &mut built_css) {
                    Ok(mut produced) => outputs.append(&mut produced),
                    Err(mut found) => problems.append(&mut found),
                }
            }
        }
        Err(mut found) => problems.append(&mut found),
    }
    if problems.is_empty() {
        Ok(outputs)
    } else {
        Err(problems.into())
    }
}

/// The `../` path from `from` up to `to` (`to` must be an ancestor or
/// share one), with a trailing slash, for source map `sources`.
pub fn relative_prefix(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut prefix = "../".repeat(from.len() - common);
    for part in &to[common..] {
        prefix.push_str(&part.as_os_str().to_string_lossy());
        prefix.push('/');
    }
    prefix
}

/// The precompressed variants of each output, by index into `files`.
type Variants = Vec<Vec<(Encoding, Vec<u8>)>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_prefix_climbs_to_root() {
        assert_eq!(
            relative_prefix(Path::new("/site/dist/css"), Path::new("/site")),
            "../../"
        );
        assert_eq!(
            relative_prefix(Path::new("/out/css"), Path::new("/site")),
            "../../site/"
        );
        assert_eq!(relative_prefix(Path::new("/site"), Path::new("/site")), "");
    }
}
