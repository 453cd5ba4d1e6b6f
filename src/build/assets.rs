//! Static assets: files emitted under content-hashed names — unchanged, or
//! for images, optimised by the image stage with their variants beside them.
//!
//! The table is shared by every stage of one build. A stylesheet that meets
//! `url(../images/a.png)` asks the table for that file's public URL; the file
//! is read and processed once, whichever stage asks first, and then emitted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::build::cache::{Cache, CacheStats, Key};
use crate::build::graph::key_of;
use crate::build::hash::{HashStyle, cached_integrity, hashed_path};
use crate::build::images;
use crate::config::Settings;
use crate::diagnostic::Diagnostic;
use crate::site::images::{EmittedVariant, Format, ImageOutputs};

/// Output directory for referenced files that live outside `assets/`
/// (for example fonts under `node_modules/`).
pub(crate) const VENDOR_DIR: &str = "vendor";

/// One emitted static asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaticAsset {
    /// Absolute path of the source file.
    pub source: PathBuf,
    /// Manifest key: the path relative to `assets/` (or to the site root for
    /// files outside `assets/`).
    pub key: String,
    /// Output path relative to the output directory.
    pub file: String,
    pub bytes: Arc<Vec<u8>>,
    pub integrity: String,
    /// For images: dimensions and the variants made from it.
    pub image: Option<ImageOutputs>,
}

type Slot = Arc<OnceLock<Result<Arc<StaticAsset>, String>>>;

/// Memoised, thread-safe emission of static assets.
pub(crate) struct AssetTable<'a> {
    settings: &'a Settings,
    cache: &'a Cache,
    stats: &'a CacheStats,
    style: HashStyle,
    slots: Mutex<HashMap<PathBuf, Slot>>,
    memo: &'a AssetMemo,
}

/// What a long-running session keeps of emitted assets between builds: an
/// asset whose source has the same size and modification time, and that no
/// watcher reported changed, is reused without reading it (or its cached
/// image variants) again. Disabled (keeping nothing) for one-shot builds.
#[derive(Default)]
pub(crate) struct AssetMemo {
    enabled: bool,
    assets: Mutex<HashMap<PathBuf, (SourceStat, Arc<StaticAsset>)>>,
}

/// Size and modification time of a source file.
type SourceStat = (u64, Option<std::time::SystemTime>);

fn source_stat(path: &Path) -> Option<SourceStat> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()))
}

impl AssetMemo {
    pub(crate) fn enabled() -> AssetMemo {
        AssetMemo {
            enabled: true,
            assets: Mutex::default(),
        }
    }

    /// Drops what was made from `path`.
    pub(crate) fn forget(&self, path: &Path) {
        self.lock().remove(path);
    }

    fn get(&self, path: &Path, stat: &SourceStat) -> Option<Arc<StaticAsset>> {
        let assets = self.lock();
        let (remembered, asset) = assets.get(path)?;
        (remembered == stat).then(|| Arc::clone(asset))
    }

    fn put(&self, path: &Path, stat: SourceStat, asset: &Arc<StaticAsset>) {
        if self.enabled {
            self.lock()
                .insert(path.to_path_buf(), (stat, Arc::clone(asset)));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (SourceStat, Arc<StaticAsset>)>> {
        self.assets
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl<'a> AssetTable<'a> {
    pub(crate) fn new(
        settings: &'a Settings,
        cache: &'a Cache,
        stats: &'a CacheStats,
        style: HashStyle,
        memo: &'a AssetMemo,
    ) -> AssetTable<'a> {
        AssetTable {
            settings,
            cache,
            stats,
            style,
            slots: Mutex::new(HashMap::new()),
            memo,
        }
    }

    /// Emits `path` (absolute, normalised) if it is not emitted yet, and
    /// returns the result. Errors are phrased without a location; the caller
    /// knows where the reference came from.
    pub(crate) fn emit(&self, path: &Path) -> Result<Arc<StaticAsset>, String> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            Arc::clone(slots.entry(path.to_path_buf()).or_default())
        };
        slot.get_or_init(|| self.load_or_reuse(path)).clone()
    }

    fn load_or_reuse(&self, path: &Path) -> Result<Arc<StaticAsset>, String> {
        // Taken before the read: a write racing with it leaves a stale stat
        // (a reload next time), never a fresh stat on old contents.
        let stat = source_stat(path);
        if let Some(asset) = stat.as_ref().and_then(|stat| self.memo.get(path, stat)) {
            self.stats.hit();
            return Ok(asset);
        }
        let asset = Arc::new(self.load(path)?);
        if let Some(stat) = stat {
            self.memo.put(path, stat, &asset);
        }
        Ok(asset)
    }

    /// Like [`AssetTable::emit`], for files the build found itself.
    pub(crate) fn emit_discovered(&self, path: &Path) -> Result<Arc<StaticAsset>, Diagnostic> {
        self.emit(path).map_err(Diagnostic::new)
    }

    fn load(&self, path: &Path) -> Result<StaticAsset, String> {
        let source = std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))?;
        let (key, logical) = self.locate(path)?;
        let (bytes, image) = match Format::of(&logical) {
            Some(format) => {
                let processed = self
                    .process_image(format, &source)
                    .map_err(|err| format!("{}: {err}", path.display()))?;
                let outputs = ImageOutputs {
                    format,
                    size: processed.size,
                    variants: self.emit_variants(&logical, processed.size, processed.variants),
                };
                (processed.main, Some(outputs))
            }
            None => (source, None),
        };
        let digest = blake3::hash(&bytes);
        let file = hashed_path(&logical, &self.style.of_digest(digest));
        Ok(StaticAsset {
            source: path.to_path_buf(),
            key,
            file,
            integrity: cached_integrity(self.cache, &bytes, &digest),
            bytes: Arc::new(bytes),
            image,
        })
    }

    /// Runs the image stage, or takes its result from the cache: keyed by
    /// the source bytes and the `[images]` settings.
    fn process_image(&self, format: Format, source: &[u8]) -> Result<images::Processed, String> {
        let config = self.settings.images();
        let settings = serde_json::to_vec(config).unwrap_or_default();
        let key = Key::new("image", &[&settings, blake3::hash(source).as_bytes()]);
        if let Some(processed) = self.cached_image(&key) {
            self.stats.hit();
            return Ok(processed);
        }
        self.stats.miss();
        let processed = images::process(format, source, config)?;
        self.store_image(&key, &processed);
        Ok(processed)
    }

    fn cached_image(&self, key: &Key) -> Option<images::Processed> {
        let record: CachedImage = self.cache.get_record(key)?;
        let blob = |hex: &str| self.cache.get_blob(&blake3::Hash::from_hex(hex).ok()?);
        let variants = record
            .variants
            .iter()
            .map(|variant| {
                Some(images::Variant {
                    width: variant.width,
                    height: variant.height,
                    format: variant.format,
                    bytes: blob(&variant.blob)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(images::Processed {
            main: blob(&record.main)?,
            size: record.size,
            variants,
        })
    }

    fn store_image(&self, key: &Key, processed: &images::Processed) {
        let hex = |bytes: &[u8]| self.cache.put_blob(bytes).to_hex().to_string();
        let record = CachedImage {
            main: hex(&processed.main),
            size: processed.size,
            variants: processed
                .variants
                .iter()
                .map(|variant| CachedVariant {
                    width: variant.width,
                    height: variant.height,
                    format: variant.format,
                    blob: hex(&variant.bytes),
                })
                .collect(),
        };
        self.cache.put_record(key, &record);
    }

    /// Names each variant by content: `images/a.webp` at full size,
    /// `images/a-480w.webp` resized, with the hash inserted.
    fn emit_variants(
        &self,
        logical: &str,
        size: Option<(u32, u32)>,
        variants: Vec<images::Variant>,
    ) -> Vec<EmittedVariant> {
        let stem = logical.rsplit_once('.').map_or(logical, |(stem, _)| stem);
        let full_width = size.map(|(width, _)| width);
        variants
            .into_iter()
            .map(|variant| {
                let suffix = if Some(variant.width) == full_width {
                    String::new()
                } else {
                    format!("-{}w", variant.width)
                };
                let name = format!("{stem}{suffix}.{}", variant.format.extension());
                EmittedVariant {
                    file: hashed_path(&name, &self.style.of(&variant.bytes)),
                    width: variant.width,
                    height: variant.height,
                    format: variant.format,
                    bytes: Arc::new(variant.bytes),
                }
            })
            .collect()
    }

    /// The manifest key and the unhashed output path of a source file.
    fn locate(&self, path: &Path) -> Result<(String, String), String> {
        let settings = self.settings;
        if path.starts_with(&settings.assets_dir) {
            let key = key_of(&settings.assets_dir, path);
            return Ok((key.clone(), key));
        }
        if path.starts_with(&settings.root) {
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok((key_of(&settings.root, path), format!("{VENDOR_DIR}/{name}")));
        }
        Err(format!(
            "{} lies outside the site root {}",
            path.display(),
            settings.root.display()
        ))
    }

    /// Every asset emitted so far, sorted by output path.
    pub(crate) fn emitted(&self) -> Vec<Arc<StaticAsset>> {
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut assets: Vec<Arc<StaticAsset>> = slots
            .values()
            .filter_map(|slot| slot.get().and_then(|result| result.as_ref().ok()).cloned())
            .collect();
        assets.sort_by(|a, b| a.file.cmp(&b.file));
        assets.dedup_by(|a, b| a.file == b.file);
        assets
    }
}

/// The cache record of one processed image: bytes live in blobs.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedImage {
    main: String,
    size: Option<(u32, u32)>,
    variants: Vec<CachedVariant>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedVariant {
    width: u32,
    height: u32,
    format: Format,
    blob: String,
}
