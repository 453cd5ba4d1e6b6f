//! The stylesheet stage's driver: a bundle from the build cache when none
//! of its inputs changed (its `url()`s re-resolved against this build's
//! assets), else bundled by [`super::css`]; then hashed into its output
//! file, source map and manifest entry.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use super::assets::AssetTable;
use super::cache::{Cache, Key};
use super::css::{self, CssBundle, CssOptions, UrlResolver};
use super::graph::Entry;
use super::hash::{HashStyle, hashed_path, integrity};
use super::{Context, EntryOutput, OutputFile, relative_prefix};
use crate::diagnostic::Diagnostic;
use crate::site::manifest::ManifestChunk;
use crate::site::url::public_url;

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

pub(super) fn build(
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

/// The output directory of an entry, relative to the output root (`css`).
fn output_dir_of(key: &str) -> &str {
    key.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("")
}

/// `css/site.css` → `site`.
fn stem(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.rsplit_once('.')
        .map(|(stem, _)| stem)
        .unwrap_or(name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_drop_directory_and_extension() {
        assert_eq!(stem("css/site.css"), "site");
        assert_eq!(stem("app.min.js"), "app.min");
    }
}
