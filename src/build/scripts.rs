//! The script stage's driver: all script entries bundled together (so code
//! they share is shared), the last bundle reused while no module it read
//! has changed (in memory for a watch session, else from the build cache),
//! and each chunk turned into output files and a manifest entry, with the
//! stylesheets its modules import built by the stylesheet stage.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;

use super::cache::{Cache, FileStamp, Key};
use super::graph::{self, Entry, SourceKind};
use super::hash::HashStyle;
use super::{Context, EntryOutput, OutputFile, js, lock, stylesheets};
use crate::diagnostic::Diagnostic;

/// Runs the bundler, or reuses its last result when no module it read has changed.
pub(super) fn bundle(
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
        store(context.cache, &key, &output);
    }
    if context.session.is_persistent() {
        *remembered = Some((key, output));
    }
    Ok(chunks)
}

fn store(cache: &Cache, key: &Key, output: &js::JsOutput) {
    if let Ok(json) = serde_json::to_vec(output) {
        cache.put_bytes(key, &json);
    }
}

/// A chunk's files and manifest entry; stylesheets its modules import are
/// built by the CSS stage (once, however many chunks import them), listed in
/// its `css` and in the manifest under their source path (so pages get their
/// integrity).
pub(super) fn outputs(
    context: &Context,
    chunk: js::ChunkOutput,
    style: HashStyle,
    built_css: &mut HashSet<PathBuf>,
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
        let mut stylesheet = stylesheets::build(context, &entry, style)?;
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
