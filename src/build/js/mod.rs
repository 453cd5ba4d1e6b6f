//! The JavaScript/TypeScript stage: kiln's own bundler on swc.
//!
//! [`graph`] parses every reachable module ([`parse`] brings each to the
//! normal form of [`module`], with [`define`] replacing configured globals
//! and [`scan`] recording imports and exports; [`crate::build::resolve`] finds files the
//! way Node does, with browser conditions); [`link`] tree-shakes at module
//! level, splits chunks and scope-hoists each chunk into one module;
//! [`emit`] minifies and prints each chunk in parallel. Chunks refer to each other through fixed-length
//! placeholders, replaced by content-hashed names at the end, so source maps
//! stay exact.

mod ast;
pub(crate) mod cache;
mod define;
pub(crate) mod emit;
pub(crate) mod graph;
pub(crate) mod link;
pub(crate) mod module;
pub(crate) mod parse;
mod scan;

use std::collections::HashSet;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::build::cache::FileStamp;
use crate::build::hash::{HashStyle, hashed_path};
use crate::config::Settings;
use crate::diagnostic::Diagnostic;
use crate::site::manifest::ManifestChunk;
use cache::ModuleCache;
use link::ChunkKind;
use parse::ParseOptions;

/// A script entry: its source and manifest key (`js/app.ts`).
#[derive(Debug, Clone)]
pub(crate) struct ScriptEntry {
    pub source: PathBuf,
    pub key: String,
}

/// One output file of the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkOutput {
    /// Manifest key (Vite's conventions: the source for entries, `_file`
    /// for shared chunks).
    pub key: String,
    pub chunk: ManifestChunk,
    pub code: String,
    /// `(path, json)` of the source map.
    pub map: Option<(String, String)>,
    /// `(path, text)` of extracted license comments.
    pub license: Option<(String, String)>,
    /// Stylesheets the chunk's modules import, to be built by the CSS stage.
    pub css: Vec<PathBuf>,
}

/// Everything the stage produced, and the files it read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JsOutput {
    pub chunks: Vec<ChunkOutput>,
    /// Every module read.
    pub inputs: Vec<FileStamp>,
}

/// Bundles all script entries together (shared code is shared between them).
pub(crate) fn bundle(
    cache: &ModuleCache,
    settings: &Settings,
    entries: &[ScriptEntry],
    style: HashStyle,
) -> Result<JsOutput, Vec<Diagnostic>> {
    let ctx = cache.ctx();
    let js = settings.js();
    cache.use_options(serde_json::to_vec(&(&js.jsx_import_source, &js.define)).unwrap_or_default());
    let mut define = Vec::new();
    for (key, value) in &js.define {
        let expr = define::parse_define_value(ctx, key, value).map_err(|err| vec![err])?;
        define.push((key.split('.').map(Into::into).collect(), expr));
    }
    let options = ParseOptions {
        jsx_import_source: &js.jsx_import_source,
        define: &define,
    };
    let paths: Vec<PathBuf> = entries.iter().map(|entry| entry.source.clone()).collect();
    let graph = graph::build(cache, &paths, &options)?;
    let names: Vec<String> = entries.iter().map(|entry| entry_name(&entry.key)).collect();
    let plan = link::plan(&graph, js.splitting, &names)?;
    let mut linked = link::link(ctx, &graph, &plan, style.length)?;
    let dir = entries
        .first()
        .and_then(|entry| entry.key.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .unwrap_or_default();
    let map_dir = settings.out_dir.join(&dir);
    let emit_options = emit::EmitOptions {
        minify: settings.build().minify,
        compress: !settings.dev,
        sourcemaps: settings.build().sourcemaps,
        targets: settings.build().targets.clone(),
        legal_comments: js.legal_comments,
        root: settings.root.clone(),
        map_to_root: crate::build::relative_prefix(&map_dir, &settings.root),
    };
    let emitted: Vec<Result<emit::Emitted, Diagnostic>> = linked
        .par_iter_mut()
        .zip(&plan.chunks)
        .map(|(chunk, chunk_plan)| {
            let modules: Vec<&module::JsModule> = chunk_plan
                .modules
                .iter()
                .map(|id| &*graph.modules[*id])
                .collect();
            // Moved, not cloned: the linked AST is not needed after printing.
            let body = std::mem::take(&mut chunk.module.body);
            let module = swc_core::ecma::ast::Module {
                body,
                ..chunk.module.clone()
            };
            emit::emit(ctx, module, chunk.helper_ctxt, &modules, &emit_options)
        })
        .collect();
    let mut problems = Vec::new();
    let mut printed = Vec::new();
    for result in emitted {
        match result {
            Ok(emitted) => printed.push(emitted),
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let chunks = name_chunks(
        settings, entries, &graph, &plan, &linked, printed, style, &dir,
    );
    Ok(JsOutput {
        chunks,
        inputs: graph.inputs,
    })
}

/// `js/app.ts` → `app`.
fn entry_name(key: &str) -> String {
    let file = key.rsplit('/').next().unwrap_or(key);
    file.rsplit_once('.')
        .map_or(file, |(stem, _)| stem)
        .to_string()
}

/// Content-hashes every chunk and swaps the placeholders for real names.
/// A chunk's name covers its own content and that of every chunk it
/// reaches, so a change anywhere renames everything that would load it.
#[allow(clippy::too_many_arguments)]
fn name_chunks(
    settings: &Settings,
    entries: &[ScriptEntry],
    graph: &graph::Graph,
    plan: &link::Plan,
    linked: &[link::LinkedChunk],
    printed: Vec<emit::Emitted>,
    style: HashStyle,
    dir: &str,
) -> Vec<ChunkOutput> {
    let isolated: Vec<blake3::Hash> = printed
        .iter()
        .map(|emitted| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(emitted.code.as_bytes());
            if let Some(map) = &emitted.map {
                hasher.update(map.as_bytes());
            }
            for legal in &emitted.legal {
                hasher.update(legal.as_bytes());
            }
            hasher.finalize()
        })
        .collect();
    let files: Vec<String> = (0..printed.len())
        .map(|index| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(isolated[index].as_bytes());
            for reached in reachable(linked, index) {
                hasher.update(isolated[reached].as_bytes());
            }
            let name = format!("{}.js", plan.chunks[index].name);
            let logical = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            hashed_path(&logical, &style.of_digest(hasher.finalize()))
        })
        .collect();
    let replacements: Vec<(String, String)> = (0..printed.len())
        .map(|index| {
            let placeholder = link::placeholder(index, &plan.chunks[index].name, style.length);
            let file_name = files[index]
                .rsplit('/')
                .next()
                .unwrap_or(&files[index])
                .to_string();
            (placeholder, file_name)
        })
        .collect();
    let keys: Vec<String> = (0..printed.len())
        .map(|index| manifest_key(settings, entries, graph, plan, &files, index))
        .collect();
    printed
        .into_iter()
        .enumerate()
        .map(|(index, emitted)| {
            let mut code = emitted.code;
            for (placeholder, file_name) in &replacements {
                if code.contains(placeholder.as_str()) {
                    code = code.replace(placeholder.as_str(), file_name);
                }
            }
            let file = files[index].clone();
            let file_name = file.rsplit('/').next().unwrap_or(&file).to_string();
            let license = (!emitted.legal.is_empty()).then(|| {
                code.push_str(&format!(
                    "/*! For license information see {file_name}.LICENSE.txt */\n"
                ));
                (
                    format!("{file}.LICENSE.txt"),
                    emitted.legal.join("\n\n") + "\n",
                )
            });
            let map = emitted.map.map(|map| {
                code.push_str(&format!("//# sourceMappingURL={file_name}.map\n"));
                (format!("{file}.map"), map)
            });
            let chunk_plan = &plan.chunks[index];
            let chunk = ManifestChunk {
                file: file.clone(),
                src: match chunk_plan.kind {
                    ChunkKind::Shared => None,
                    _ => Some(keys[index].clone()),
                },
                name: Some(chunk_plan.name.clone()),
                is_entry: matches!(chunk_plan.kind, ChunkKind::Entry(_)),
                is_dynamic_entry: chunk_plan.kind == ChunkKind::DynamicEntry,
                imports: linked[index]
                    .static_imports
                    .iter()
                    .map(|i| keys[*i].clone())
                    .collect(),
                dynamic_imports: linked[index]
                    .dynamic_imports
                    .iter()
                    .map(|i| keys[*i].clone())
                    .collect(),
                integrity: crate::build::hash::integrity(code.as_bytes()),
                ..Default::default()
            };
            ChunkOutput {
                key: keys[index].clone(),
                chunk,
                code,
                map,
                license,
                css: linked[index].css.clone(),
            }
        })
        .collect()
}

/// Chunks reachable from `index` through static and dynamic imports, sorted.
fn reachable(linked: &[link::LinkedChunk], index: usize) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut stack = vec![index];
    while let Some(chunk) = stack.pop() {
        for next in linked[chunk]
            .static_imports
            .iter()
            .chain(&linked[chunk].dynamic_imports)
        {
            if *next != index && seen.insert(*next) {
                stack.push(*next);
            }
        }
    }
    let mut reached: Vec<usize> = seen.into_iter().collect();
    reached.sort_unstable();
    reached
}

/// Vite's keys: entries by source path, dynamic entries by source path
/// (relative to `assets/`, or the site root outside it), shared chunks as
/// `_` + file name.
fn manifest_key(
    settings: &Settings,
    entries: &[ScriptEntry],
    graph: &graph::Graph,
    plan: &link::Plan,
    files: &[String],
    index: usize,
) -> String {
    let chunk = &plan.chunks[index];
    match chunk.kind {
        ChunkKind::Entry(entry) => entries[entry].key.clone(),
        ChunkKind::DynamicEntry => {
            let path = &graph.modules[chunk.entry.expect("dynamic entries have a module")].path;
            let base = if path.starts_with(&settings.assets_dir) {
                &settings.assets_dir
            } else {
                &settings.root
            };
            crate::build::graph::key_of(base, path)
        }
        ChunkKind::Shared => format!(
            "_{}",
            files[index].rsplit('/').next().unwrap_or(&files[index])
        ),
    }
}

/// Settings that change the stage's output, for the cache key.
pub(crate) fn fingerprint(settings: &Settings) -> Vec<u8> {
    let js = settings.js();
    serde_json::to_vec(&(
        js,
        settings.build().minify,
        settings.dev,
        settings.build().sourcemaps,
        &settings.build().targets,
        settings.build().hash_length,
        settings.build().hash_encoding,
        &settings.out_dir,
    ))
    .unwrap_or_default()
}
