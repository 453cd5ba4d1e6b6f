//! The file table: the output directory loaded once (and again after each
//! build), with every header a response needs precomputed. Small files, and
//! all their precompressed variants, are kept in memory within a budget;
//! the rest stay on disk behind an open file handle, so a request never
//! opens a file and a newer build swapped in underneath cannot tear a
//! response in two.
//!
//! Only what the walk finds can ever be served: request paths are looked up
//! in this table, never joined onto the filesystem, so `..`, encoded
//! separators and symlinks cannot reach outside the output directory.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderMap, HeaderValue, HttpDate};
use actix_web::web::Bytes;
use rayon::prelude::*;

use crate::config::{Encoding, Settings};
use crate::http::headers::{self, SecurityHeaders};
use crate::site::manifest::MANIFEST_FILE;

/// Where a variant's bytes live.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    Memory(Bytes),
    Disk { file: Arc<File>, len: u64 },
}

impl Content {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Content::Memory(bytes) => bytes.len() as u64,
            Content::Disk { len, .. } => *len,
        }
    }
}

/// One stored encoding of a resource.
#[derive(Debug, Clone)]
pub(crate) struct Variant {
    /// `None` for the unencoded original.
    pub encoding: Option<Encoding>,
    pub content: Content,
    /// Strong entity tag of exactly these bytes, quotes included.
    pub etag: HeaderValue,
    /// Every header of a 200 response with this variant, security headers
    /// included: a response clones the map instead of building it.
    pub headers: HeaderMap,
    /// The headers of a 304 for this variant (RFC 9110 §15.4.5: what a cache
    /// needs to update its stored response, no representation metadata).
    pub not_modified_headers: HeaderMap,
}

/// What kind of file a resource is, for metrics and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A content-hashed build output (immutable).
    Asset,
    /// An HTML page.
    Page,
    /// Any other file.
    Other,
}

/// A servable file with its variants and precomputed headers.
#[derive(Debug)]
pub(crate) struct Resource {
    /// Path relative to the output directory.
    pub path: String,
    pub kind: FileKind,
    pub content_type: HeaderValue,
    pub last_modified: SystemTime,
    /// Smallest first, so negotiation ties go to the smaller variant.
    pub variants: Vec<Variant>,
    /// Each variant's coding, in the same order, for negotiation.
    pub codings: Vec<Option<Encoding>>,
}

/// Counts for `/metrics` and the start-up line.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableStats {
    pub resources: usize,
    pub memory_bytes: u64,
    pub memory_variants: usize,
    pub disk_variants: usize,
}

/// The loaded output directory.
#[derive(Debug, Default)]
pub(crate) struct Table {
    resources: foldhash::HashMap<String, Arc<Resource>>,
    pub not_found: Option<Arc<Resource>>,
    pub spa_fallback: Option<Arc<Resource>>,
    pub stats: TableStats,
    /// Device and inode of the directory when loaded: a build swaps in a new
    /// directory, so a change means there is a new build to load.
    pub identity: (u64, u64),
}

impl Table {
    pub(crate) fn get(&self, path: &str) -> Option<&Arc<Resource>> {
        self.resources.get(path)
    }

    pub(crate) fn contains(&self, path: &str) -> bool {
        self.resources.contains_key(path)
    }

    /// Loads `settings.out_dir`.
    pub(crate) fn load(settings: &Settings) -> io::Result<Table> {
        let root = std::fs::canonicalize(&settings.out_dir).map_err(|err| {
            io::Error::new(err.kind(), format!("{}: {err}", settings.out_dir.display()))
        })?;
        let identity = directory_identity(&root)?;
        let files = list_files(&root)?;
        let grouped = group_variants(&files);
        let hashed = hashed_outputs(&root);
        let hints = crate::site::hints::read(&root);
        let placement = place(settings, &grouped, &files);
        let security = SecurityHeaders::new(settings, settings.tls_files().is_some());
        let loaded: Vec<io::Result<Resource>> = grouped
            .par_iter()
            .map(|(path, variants)| {
                let meta = ResourceMeta {
                    hashed: hashed.contains(path.as_str()),
                    link: hints.get(path.as_str()),
                    security: &security,
                };
                load_resource(settings, path, variants, &files, &placement, meta)
            })
            .collect();
        let mut table = Table {
            identity,
            ..Table::default()
        };
        table.resources.reserve(loaded.len());
        for resource in loaded {
            let resource = resource?;
            table.count(&resource);
            table
                .resources
                .insert(resource.path.clone(), Arc::new(resource));
        }
        let server = settings.server();
        table.not_found = table.resources.get(&server.not_found_page).cloned();
        if !server.spa_fallback.is_empty() {
            table.spa_fallback = table.resources.get(&server.spa_fallback).cloned();
        }
        Ok(table)
    }

    fn count(&mut self, resource: &Resource) {
        self.stats.resources += 1;
        for variant in &resource.variants {
            match &variant.content {
                Content::Memory(bytes) => {
                    self.stats.memory_variants += 1;
                    self.stats.memory_bytes += bytes.len() as u64;
                }
                Content::Disk { .. } => self.stats.disk_variants += 1,
            }
        }
    }
}

/// Device and inode of a directory.
pub(crate) fn directory_identity(dir: &Path) -> io::Result<(u64, u64)> {
    let meta = std::fs::metadata(dir)?;
    Ok((meta.dev(), meta.ino()))
}

/// A file found in the output directory.
struct Found {
    /// The file to read (a symlink's resolved target).
    real: PathBuf,
    len: u64,
    modified: SystemTime,
}

/// Every servable file, by `/`-separated relative path. Dotfiles and
/// dot-directories, the manifest, non-UTF-8 names and symlinks leading
/// outside the directory are left out.
fn list_files(root: &Path) -> io::Result<HashMap<String, Found>> {
    let mut files = HashMap::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| !entry.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = entry.map_err(io::Error::other)?;
        let Some(relative) = relative_path(root, entry.path()) else {
            continue;
        };
        if relative == MANIFEST_FILE {
            continue;
        }
        let real = if entry.path_is_symlink() {
            match std::fs::canonicalize(entry.path()) {
                Ok(target) if target.starts_with(root) => target,
                _ => continue,
            }
        } else {
            entry.path().to_path_buf()
        };
        let meta = std::fs::metadata(&real)?;
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        files.insert(
            relative,
            Found {
                real,
                len: meta.len(),
                modified: whole_seconds(modified),
            },
        );
    }
    Ok(files)
}

fn relative_path(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    Some(parts?.join("/"))
}

/// HTTP dates have whole seconds; comparisons must too.
fn whole_seconds(time: SystemTime) -> SystemTime {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The files of one resource: (coding, file path); identity is `None`.
type VariantFiles = Vec<(Option<Encoding>, String)>;

/// Resource path → its files: (coding, file path). A `.br`/`.gz`/`.zst`
/// file is a variant when its base file exists, a resource of its own
/// otherwise (a download named `data.tar.gz`).
fn group_variants(files: &HashMap<String, Found>) -> Vec<(String, VariantFiles)> {
    let mut groups: HashMap<String, VariantFiles> = HashMap::new();
    for path in files.keys() {
        let variant = [Encoding::Brotli, Encoding::Gzip, Encoding::Zstd]
            .into_iter()
            .find_map(|encoding| {
                let base = path.strip_suffix(&format!(".{}", encoding.extension()))?;
                files
                    .contains_key(base)
                    .then(|| (encoding, base.to_string()))
            });
        match variant {
            Some((encoding, base)) => groups
                .entry(base)
                .or_default()
                .push((Some(encoding), path.clone())),
            None => groups
                .entry(path.clone())
                .or_default()
                .push((None, path.clone())),
        }
    }
    let mut grouped: Vec<_> = groups.into_iter().collect();
    grouped.sort_by(|a, b| a.0.cmp(&b.0));
    grouped
}

/// Output paths the manifest names (and their source maps), and every
/// content-hashed file of the current and the kept earlier builds
/// ([`crate::site::builds`]): immutable.
fn hashed_outputs(root: &Path) -> HashSet<String> {
    let mut files = manifest_outputs(root);
    if let Some(record) = crate::site::builds::read(root) {
        let kept = std::iter::once(record.current)
            .chain(record.previous.into_iter().map(|replaced| replaced.build));
        files.extend(kept.flat_map(|build| build.files));
    }
    files
}

fn manifest_outputs(root: &Path) -> HashSet<String> {
    let Ok(text) = std::fs::read(root.join(MANIFEST_FILE)) else {
        return HashSet::new();
    };
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return HashSet::new();
    };
    let mut files = HashSet::new();
    for chunk in manifest
        .as_object()
        .into_iter()
        .flat_map(|map| map.values())
    {
        if let Some(file) = chunk.get("file").and_then(|file| file.as_str()) {
            files.insert(format!("{file}.map"));
            files.insert(file.to_string());
        }
    }
    files
}

/// Which files are kept in memory: the smallest first (small files are the
/// hot ones), each no larger than `memory_file_limit`, until the budget is
/// spent. Everything else is served from disk.
fn place(
    settings: &Settings,
    grouped: &[(String, VariantFiles)],
    files: &HashMap<String, Found>,
) -> HashSet<String> {
    let server = settings.server();
    let mut sizes: Vec<(u64, &String)> = grouped
        .iter()
        .flat_map(|(_, variants)| variants.iter().map(|(_, path)| (files[path].len, path)))
        .collect();
    sizes.sort();
    let mut spent = 0;
    let mut in_memory = HashSet::new();
    for (len, path) in sizes {
        if len > server.memory_file_limit || spent + len > server.memory_budget {
            continue;
        }
        spent += len;
        in_memory.insert(path.clone());
    }
    in_memory
}

/// Per-resource facts from the build, and the server-wide headers.
struct ResourceMeta<'a> {
    hashed: bool,
    link: Option<&'a Vec<String>>,
    security: &'a SecurityHeaders,
}

fn load_resource(
    settings: &Settings,
    path: &str,
    files_of: &[(Option<Encoding>, String)],
    files: &HashMap<String, Found>,
    in_memory: &HashSet<String>,
    meta: ResourceMeta,
) -> io::Result<Resource> {
    let mut stored = Vec::with_capacity(files_of.len());
    for (encoding, file) in files_of {
        let found = &files[file];
        let (content, digest) = if in_memory.contains(file) {
            let bytes = std::fs::read(&found.real)?;
            let digest = blake3::hash(&bytes);
            (Content::Memory(Bytes::from(bytes)), digest)
        } else {
            let handle = File::open(&found.real)?;
            let digest = hash_file(&handle)?;
            let len = handle.metadata()?.len();
            (
                Content::Disk {
                    file: Arc::new(handle),
                    len,
                },
                digest,
            )
        };
        stored.push((*encoding, content, entity_tag(&digest)));
    }
    stored.sort_by_key(|(encoding, content, _)| (content.len(), encoding.is_none()));
    let negotiable = stored.len() > 1;
    let content_type = headers::content_type(path);
    let kind = if meta.hashed {
        FileKind::Asset
    } else if content_type.starts_with("text/html") {
        FileKind::Page
    } else {
        FileKind::Other
    };
    let last_modified = files[path].modified;
    let shared = SharedHeaders {
        content_type: header_value(&content_type),
        cache_control: header_value(&headers::cache_control(settings, path, meta.hashed)),
        last_modified: header_value(&HttpDate::from(last_modified).to_string()),
        link: meta
            .link
            .filter(|links| !links.is_empty())
            .and_then(|links| HeaderValue::from_str(&links.join(", ")).ok()),
        negotiable,
        security: meta.security,
    };
    let variants: Vec<Variant> = stored
        .into_iter()
        .map(|(encoding, content, etag)| Variant {
            headers: shared.full(encoding, &etag),
            not_modified_headers: shared.not_modified(&etag),
            encoding,
            content,
            etag,
        })
        .collect();
    Ok(Resource {
        path: path.to_string(),
        kind,
        content_type: shared.content_type.clone(),
        last_modified,
        codings: variants.iter().map(|variant| variant.encoding).collect(),
        variants,
    })
}

/// The header values all variants of a resource share.
struct SharedHeaders<'a> {
    content_type: HeaderValue,
    cache_control: HeaderValue,
    last_modified: HeaderValue,
    link: Option<HeaderValue>,
    negotiable: bool,
    security: &'a SecurityHeaders,
}

impl SharedHeaders<'_> {
    /// The headers of a 200 response with one variant.
    fn full(&self, encoding: Option<Encoding>, etag: &HeaderValue) -> HeaderMap {
        let mut map = self.not_modified(etag);
        map.insert(header::CONTENT_TYPE, self.content_type.clone());
        map.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(encoding) = encoding {
            map.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding.token()),
            );
        }
        if let Some(link) = &self.link {
            map.insert(header::LINK, link.clone());
        }
        map
    }

    /// Validators, caching and Vary, plus the security headers.
    fn not_modified(&self, etag: &HeaderValue) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(12);
        map.insert(header::ETAG, etag.clone());
        map.insert(header::CACHE_CONTROL, self.cache_control.clone());
        map.insert(header::LAST_MODIFIED, self.last_modified.clone());
        if self.negotiable {
            map.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        for (name, value) in &self.security.headers {
            map.insert(name.clone(), value.clone());
        }
        map
    }
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn hash_file(mut file: &File) -> io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0; 256 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize())
}

/// A strong entity tag from a content digest: distinct for every encoding
/// because each encoding's bytes differ.
fn entity_tag(digest: &blake3::Hash) -> HeaderValue {
    let hex = digest.to_hex();
    header_value(&format!("\"{}\"", &hex[..24]))
}
