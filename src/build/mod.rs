//! `kiln build`: reads the site's sources, runs each stage, and swaps the
//! finished output in atomically.
//!
//! Data flows one way: settings → [`graph`] (what to build) → stages
//! ([`assets`], [`css`]) → precompression ([`crate::site::codec`]) →
//! [`output`] (staging + swap) with the [`crate::site::manifest`]. Every stage consults the [`cache`], so a rebuild with
//! no changes reuses everything.

pub(crate) mod assets;
pub(crate) mod cache;
pub(crate) mod css;
pub(crate) mod graph;
pub mod hash;
pub(crate) mod images;
pub(crate) mod js;
pub(crate) mod output;
pub(crate) mod pages;
pub mod report;
pub(crate) mod resolve;
pub(crate) mod svg;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use crate::config::{Encoding, Settings};
use crate::diagnostic::{BuildError, Diagnostic};
use crate::site::codec as compress;
use crate::site::manifest::{self, MANIFEST_FILE, Manifest, ManifestChunk};
use crate::site::url::public_url;
use assets::{AssetTable, StaticAsset};
use cache::{Cache, CacheStats, FileStamp, Key};
use css::{CssBundle, CssOptions, UrlResolver};
use graph::{Entry, SourceKind};
use hash::{HashStyle, hashed_path, integrity};
use output::{BuildLock, Staging};
use report::{BuildReport, OutputSize, Progress};

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
    let session = BuildSession::default();
    let result = build_in(&session, settings, progress);
    // Freeing every parsed module takes milliseconds (7 ms for three.js);
    // nobody needs to wait for it.
    std::thread::spawn(move || drop(session));
    result
}

/// [`build`], reusing (and updating) what `session` kept from earlier builds.
pub fn build_in(
    session: &BuildSession,
    settings: &Settings,
    progress: &dyn Progress,
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

    let mut files: Vec<OutputFile> = entries
        .iter()
        .flat_map(|entry| entry.files.clone())
        .collect();
    for asset in assets.emitted() {
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
    let manifest = assemble_manifest(&entries, &assets.emitted());
    progress.stage("pages", 0);
    let rendered = pages::build(
        settings,
        &cache,
        &session.pages,
        &manifest,
        &assets.emitted(),
    )?;
    files.extend(rendered.pages.iter().map(|page| OutputFile {
        path: page.output.clone(),
        bytes: Arc::new(page.html.clone().into_bytes()),
    }));
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let variants = precompress(&context, &files);

    progress.stage("write", files.len());
    let digests = session
        .previous_outputs()
        .is_some()
        .then(|| digest_outputs(&files));
    let staging = Staging::create(&settings.out_dir, &lock)?;
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
    write_outputs(&staging, &files, &variants, &unchanged, progress)?;
    staging.write(MANIFEST_FILE, &manifest::to_json(&manifest))?;
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
    cache.prune();
    // Only a persistent session has a previous build to compare with.
    let mut changed = Vec::new();
    if let Some(digests) = digests {
        changed = files
            .iter()
            .zip(&unchanged)
            .filter(|(_, unchanged)| !**unchanged)
            .map(|(file, _)| file.path.clone())
            .collect();
        let paths = files.iter().map(|file| file.path.clone());
        *session.previous_outputs() = Some(paths.zip(digests).collect());
    }

    Ok(BuildReport {
        outputs: output_sizes(&files, &variants),
        duration: started.elapsed(),
        cache_hits: stats.hits(),
        cache_misses: stats.misses(),
        warnings: rendered.warnings,
        pages_rendered: rendered.rendered,
        changed,
    })
}

fn digest_outputs(files: &[OutputFile]) -> Vec<blake3::Hash> {
    files
        .par_iter()
        .map(|file| blake3::hash(&file.bytes))
        .collect()
}

/// Reads and hashes every static asset, reporting all unreadable ones.
fn emit_static_assets(context: &Context, paths: &[std::path::PathBuf]) -> Result<(), BuildError> {
    context.progress.stage("assets", paths.len());
    let problems: Vec<Diagnostic> = paths
        .par_iter()
        .filter_map(|path| {
            let result = context.assets.emit_discovered(path);
            context.progress.advance();
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
                    let result = build_stylesheet(context, entry, style);
                    context.progress.advance();
                    result
                })
                .collect::<Vec<_>>()
        },
        || bundle_scripts(context, &scripts, style),
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
                match script_output(context, chunk, style, &mut built_css) {
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

/// Runs the bundler, or reuses its last result when no module it read has changed.
fn bundle_scripts(
    context: &Context,
    scripts: &[&Entry],
    style: HashStyle,
) -> Result<Vec<js::ChunkOutput>, Vec<Diagnostic>> {
    if scripts.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<js::ScriptEntry> = scripts
        .iter()
        .map(|entry| js::ScriptEntry {
            source: entry.source.clone(),
            key: entry.key.clone(),
        })
        .collect();
    let mut parts: Vec<Vec<u8>> = vec![js::fingerprint(context.settings)];
    for entry in &entries {
        parts.push(entry.source.as_os_str().as_encoded_bytes().to_vec());
        parts.push(entry.key.clone().into_bytes());
    }
    let borrowed: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let key = Key::new("js", &borrowed);
    let remembered = lock(&context.session.scripts)
        .as_ref()
        .filter(|(remembered_key, _)| *remembered_key == key)
        .map(|(_, output)| output.clone());
    let cached = remembered.or_else(|| {
        context
            .cache
            .get_bytes(&key)
            .and_then(|bytes| serde_json::from_slice::<js::JsOutput>(&bytes).ok())
    });
    if let Some(output) = cached.filter(|output| output.inputs.par_iter().all(FileStamp::unchanged))
    {
        context.stats.hit();
        let chunks = output.chunks.clone();
        if context.session.is_persistent() {
            *lock(&context.session.scripts) = Some((key, output));
        }
        return Ok(chunks);
    }
    context.stats.miss();
    let output = js::bundle(
        &context.session.js_modules,
        context.settings,
        &entries,
        style,
    )?;
    let chunks = output.chunks.clone();
    let mut remembered = lock(&context.session.scripts);
    // A session's rebuilds stay in memory: the disk copy serves the next
    // process, whose first build finds the sources changed since anyway.
    let rebuilding = remembered.is_some();
    if !rebuilding {
        store_scripts(context.cache, &key, &output);
    }
    if context.session.is_persistent() {
        *remembered = Some((key, output));
    }
    Ok(chunks)
}

fn store_scripts(cache: &Cache, key: &Key, output: &js::JsOutput) {
    if let Ok(json) = serde_json::to_vec(output) {
        cache.put_bytes(key, &json);
    }
}

/// A chunk's files and manifest entry; stylesheets its modules import are
/// built by the CSS stage (once, however many chunks import them), listed in
/// its `css` and in the manifest under their source path (so pages get their
/// integrity).
fn script_output(
    context: &Context,
    chunk: js::ChunkOutput,
    style: HashStyle,
    built_css: &mut std::collections::HashSet<std::path::PathBuf>,
) -> Result<Vec<EntryOutput>, Vec<Diagnostic>> {
    let mut outputs = Vec::new();
    let mut manifest_chunk = chunk.chunk;
    for path in &chunk.css {
        let base = if path.starts_with(&context.settings.assets_dir) {
            &context.settings.assets_dir
        } else {
            &context.settings.root
        };
        let entry = Entry {
            source: path.clone(),
            key: graph::key_of(base, path),
            kind: SourceKind::Css,
        };
        let mut stylesheet = build_stylesheet(context, &entry, style)?;
        manifest_chunk.css.push(stylesheet.chunk.file.clone());
        if built_css.insert(path.clone()) {
            stylesheet.chunk.is_entry = false;
            outputs.push(stylesheet);
        }
    }
    let mut files = vec![OutputFile {
        path: manifest_chunk.file.clone(),
        bytes: Arc::new(chunk.code.into_bytes()),
    }];
    for (path, text) in chunk.map.into_iter().chain(chunk.license) {
        files.push(OutputFile {
            path,
            bytes: Arc::new(text.into_bytes()),
        });
    }
    outputs.push(EntryOutput {
        key: chunk.key,
        chunk: manifest_chunk,
        files,
    });
    Ok(outputs)
}

/// The output directory of an entry, relative to the output root (`css`).
fn output_dir_of(key: &str) -> &str {
    key.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
}

/// Resolves `url()` targets to the public URLs of their hashed outputs, as
/// seen from the stylesheet's output directory.
struct StylesheetUrls<'a> {
    assets: &'a AssetTable<'a>,
    base_url: &'a str,
    from_dir: &'a str,
}

impl UrlResolver for StylesheetUrls<'_> {
    fn url_for(&self, file: &Path) -> Result<String, String> {
        let asset = self.assets.emit(file)?;
        Ok(public_url(self.base_url, &asset.file, self.from_dir))
    }
}

fn build_stylesheet(
    context: &Context,
    entry: &Entry,
    style: HashStyle,
) -> Result<EntryOutput, Vec<Diagnostic>> {
    let settings = context.settings;
    let build = settings.build();
    let from_dir = output_dir_of(&entry.key);
    let map_dir = settings.out_dir.join(from_dir);
    let map_to_root = relative_prefix(&map_dir, &settings.root);
    let options = CssOptions {
        targets: settings.targets,
        minify: build.minify,
        sourcemaps: build.sourcemaps,
        root: &settings.root,
        assets_dir: &settings.assets_dir,
        map_to_root: &map_to_root,
    };
    let urls = StylesheetUrls {
        assets: context.assets,
        base_url: &build.base_url,
        from_dir,
    };
    let key = Key::new(
        "css",
        &[
            entry.source.as_os_str().as_encoded_bytes(),
            build.targets.as_bytes(),
            &[u8::from(build.minify), u8::from(build.sourcemaps)],
            build.base_url.as_bytes(),
            map_to_root.as_bytes(),
        ],
    );
    let bundle = match load_bundle(context.cache, &key, &urls) {
        Some(bundle) => {
            context.stats.hit();
            bundle
        }
        None => {
            context.stats.miss();
            let bundle = css::bundle(&entry.source, &options, &urls)?;
            store_bundle(context.cache, &key, &bundle);
            bundle
        }
    };
    let mut asset_files: Vec<String> = bundle
        .references
        .iter()
        .filter_map(|reference| context.assets.emit(&reference.file).ok())
        .map(|asset| asset.file.clone())
        .collect();
    asset_files.sort();
    asset_files.dedup();
    Ok(stylesheet_output(entry, bundle, asset_files, style))
}

/// What the cache keeps of a stylesheet bundle: the stylesheet and its map
/// as blobs (no JSON escaping of large text), the rest inline.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedBundle {
    inputs: Vec<css::InputFile>,
    references: Vec<css::UrlReference>,
    code: String,
    map: Option<String>,
}

fn store_bundle(cache: &Cache, key: &Key, bundle: &CssBundle) {
    let record = CachedBundle {
        inputs: bundle.inputs.clone(),
        references: bundle.references.clone(),
        code: cache.put_blob(bundle.code.as_bytes()).to_hex().to_string(),
        map: bundle
            .map
            .as_ref()
            .map(|map| cache.put_blob(map.as_bytes()).to_hex().to_string()),
    };
    cache.put_record(key, &record);
}

/// A cached bundle, if it is still valid: every file it read hashes the
/// same and every URL it wrote still names the same output.
fn load_bundle(cache: &Cache, key: &Key, urls: &StylesheetUrls) -> Option<CssBundle> {
    let record: CachedBundle = cache.get_record(key)?;
    let inputs_unchanged = record.inputs.par_iter().all(|input| {
        std::fs::read(&input.path)
            .map(|bytes| blake3::hash(&bytes).to_hex().as_str() == input.blake3)
            .unwrap_or(false)
    });
    let urls_unchanged = record.references.iter().all(|reference| {
        urls.url_for(&reference.file)
            .is_ok_and(|url| url == reference.url)
    });
    if !inputs_unchanged || !urls_unchanged {
        return None;
    }
    let text_of = |hex: &str| {
        let digest = blake3::Hash::from_hex(hex).ok()?;
        String::from_utf8(cache.get_blob(&digest)?).ok()
    };
    let map = match &record.map {
        Some(hex) => Some(text_of(hex)?),
        None => None,
    };
    Some(CssBundle {
        code: text_of(&record.code)?,
        map,
        inputs: record.inputs,
        references: record.references,
    })
}

/// Names the stylesheet (and its map) by content and fills in its manifest entry.
fn stylesheet_output(
    entry: &Entry,
    bundle: CssBundle,
    asset_files: Vec<String>,
    style: HashStyle,
) -> EntryOutput {
    // The map is part of the hash: a map that changes must not keep its name.
    let mut hasher = blake3::Hasher::new();
    hasher.update(bundle.code.as_bytes());
    if let Some(map) = &bundle.map {
        hasher.update(map.as_bytes());
    }
    let file = hashed_path(&entry.key, &style.of_digest(hasher.finalize()));
    let mut code = bundle.code;
    let mut files = Vec::new();
    if let Some(map) = bundle.map {
        let map_file = format!("{file}.map");
        let map_name = map_file.rsplit('/').next().unwrap_or(&map_file);
        code.push_str(&format!("\n/*# sourceMappingURL={map_name} */\n"));
        files.push(OutputFile {
            path: map_file,
            bytes: Arc::new(map.into_bytes()),
        });
    }
    let chunk = ManifestChunk {
        file: file.clone(),
        src: Some(entry.key.clone()),
        name: Some(stem(&entry.key)),
        is_entry: true,
        assets: asset_files,
        integrity: integrity(code.as_bytes()),
        ..Default::default()
    };
    files.push(OutputFile {
        path: file,
        bytes: Arc::new(code.into_bytes()),
    });
    EntryOutput {
        key: entry.key.clone(),
        chunk,
        files,
    }
}

/// `css/site.css` → `site`.
fn stem(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.rsplit_once('.')
        .map(|(stem, _)| stem)
        .unwrap_or(name)
        .to_string()
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

fn assemble_manifest(entries: &[EntryOutput], assets: &[Arc<StaticAsset>]) -> Manifest {
    let mut manifest = Manifest::new();
    for asset in assets {
        let image = asset.image.as_ref();
        manifest.insert(
            asset.key.clone(),
            ManifestChunk {
                file: asset.file.clone(),
                src: Some(asset.key.clone()),
                integrity: asset.integrity.clone(),
                width: image.and_then(|image| image.size).map(|(width, _)| width),
                height: image.and_then(|image| image.size).map(|(_, height)| height),
                variants: image
                    .map(|image| {
                        image
                            .variants
                            .iter()
                            .map(|variant| manifest::ImageVariant {
                                file: variant.file.clone(),
                                width: variant.width,
                                height: variant.height,
                                format: variant.format,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                ..Default::default()
            },
        );
    }
    for entry in entries {
        manifest.insert(entry.key.clone(), entry.chunk.clone());
    }
    manifest
}

/// The precompressed variants of each output, by index into `files`.
type Variants = Vec<Vec<(Encoding, Vec<u8>)>>;

/// Compresses every compressible output with every configured encoding, in
/// parallel, largest first so no core idles at the end; results are cached
/// by content.
fn precompress(context: &Context, files: &[OutputFile]) -> Variants {
    let encodings = &context.settings.build().precompress;
    let mut jobs: Vec<(usize, Encoding)> = files
        .iter()
        .enumerate()
        .filter(|(_, file)| compress::is_compressible(&file.path))
        .flat_map(|(index, _)| encodings.iter().map(move |&encoding| (index, encoding)))
        .collect();
    jobs.sort_by_key(|&(index, _)| std::cmp::Reverse(files[index].bytes.len()));
    context.progress.stage("compress", jobs.len());
    let results: Vec<(usize, Encoding, Option<Vec<u8>>)> = jobs
        .par_iter()
        .map(|&(index, encoding)| {
            let packed = compress_cached(context, encoding, &files[index].bytes);
            context.progress.advance();
            (index, encoding, packed)
        })
        .collect();
    let mut variants: Variants = vec![Vec::new(); files.len()];
    for (index, encoding, packed) in results {
        if let Some(packed) = packed {
            variants[index].push((encoding, packed));
        }
    }
    for list in &mut variants {
        list.sort_by_key(|(encoding, _)| *encoding);
    }
    variants
}

/// The compressed bytes, or `None` when compressing does not make the file smaller.
fn compress_cached(context: &Context, encoding: Encoding, bytes: &[u8]) -> Option<Vec<u8>> {
    let digest = blake3::hash(bytes);
    let key = Key::new(
        "compress",
        &[
            compress::settings_fingerprint(encoding).as_bytes(),
            digest.as_bytes(),
        ],
    );
    let packed = match context.cache.get_bytes(&key) {
        Some(packed) => {
            context.stats.hit();
            packed
        }
        None => {
            context.stats.miss();
            let packed = compress::compress(encoding, bytes);
            // An empty record means "not worth it": compressed output is never empty.
            let worth_it = packed.len() < bytes.len();
            context
                .cache
                .put_bytes(&key, if worth_it { &packed } else { &[] });
            if worth_it { packed } else { Vec::new() }
        }
    };
    (!packed.is_empty()).then_some(packed)
}

/// Writes every output and its variants into staging; an output the
/// previous build of this session wrote with the same bytes (`unchanged`)
/// is hard-linked from the current output directory instead.
fn write_outputs(
    staging: &Staging,
    files: &[OutputFile],
    variants: &Variants,
    unchanged: &[bool],
    progress: &dyn Progress,
) -> Result<(), Diagnostic> {
    files
        .par_iter()
        .zip(variants)
        .zip(unchanged)
        .try_for_each(|((file, packed), &unchanged)| {
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
            progress.advance();
            Ok(())
        })
}

fn output_sizes(files: &[OutputFile], variants: &Variants) -> Vec<OutputSize> {
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

    #[test]
    fn stems_drop_directory_and_extension() {
        assert_eq!(stem("css/site.css"), "site");
        assert_eq!(stem("app.min.js"), "app.min");
    }
}
