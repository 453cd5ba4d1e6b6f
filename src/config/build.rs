//! `[build]`: where outputs go, how they are named, hashed, targeted and
//! compressed. Stage two resolves the output directory against the site
//! root and compiles the browserslist query and the exclude globs.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use lightningcss::targets::{Browsers, Targets};
use serde::{Deserialize, Serialize};

use super::{ASSETS_DIR, ConfigError, DATA_DIR, TEMPLATES_DIR, config_error};

/// The `[build]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildConfig {
    /// Entry files, relative to `assets/`. `None` discovers every top-level
    /// file of `assets/css/` and `assets/js/` whose name does not start with `_`.
    pub entries: Option<Vec<String>>,
    /// A browserslist query: CSS is lowered and prefixed for these browsers.
    pub targets: String,
    /// Output directory, relative to the site root.
    pub out_dir: PathBuf,
    /// Public base URL the site is served under (a path, or a CDN origin).
    pub base_url: String,
    /// Characters of content hash in output file names.
    pub hash_length: usize,
    /// Alphabet of the content hash in file names.
    pub hash_encoding: HashEncoding,
    /// Precompressed siblings written next to every compressible output.
    pub precompress: Vec<Encoding>,
    /// Write `.map` files and link them from the outputs.
    pub sourcemaps: bool,
    /// Minify CSS (and later JS and HTML).
    pub minify: bool,
    /// Globs (relative to `assets/`) of files that are not part of the site.
    pub exclude: Vec<String>,
    /// Earlier builds whose hashed files stay in the output, however old.
    pub keep_builds: usize,
    /// Earlier builds replaced less than this long ago keep their hashed
    /// files in the output too.
    pub keep_for_secs: u64,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            entries: None,
            targets: "defaults".into(),
            out_dir: PathBuf::from("dist"),
            base_url: "/".into(),
            hash_length: 8,
            hash_encoding: HashEncoding::Base32,
            precompress: vec![Encoding::Brotli, Encoding::Gzip, Encoding::Zstd],
            sourcemaps: false,
            minify: true,
            exclude: vec!["**/*.md".into()],
            keep_builds: 3,
            keep_for_secs: 24 * 60 * 60,
        }
    }
}

/// How the content hash in a file name is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashEncoding {
    /// Lowercase RFC 4648 base32 without padding: 5 bits per character.
    Base32,
    /// Lowercase hexadecimal: 4 bits per character.
    Hex,
}

impl HashEncoding {
    /// The longest hash a 256-bit blake3 digest can spell in this alphabet.
    pub fn max_length(self) -> usize {
        match self {
            HashEncoding::Base32 => 51,
            HashEncoding::Hex => 64,
        }
    }
}

/// A content encoding kiln can precompress with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Encoding {
    #[serde(rename = "br")]
    Brotli,
    #[serde(rename = "gzip")]
    Gzip,
    #[serde(rename = "zstd")]
    Zstd,
}

impl Encoding {
    /// The file-name suffix of a precompressed sibling (`.br`, `.gz`, `.zst`).
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gz",
            Encoding::Zstd => "zst",
        }
    }

    /// The token used in `Accept-Encoding` / `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
        }
    }
}

/// `[build]` values that needed resolving, resolved once.
pub(super) struct BuildSettings {
    pub(super) out_dir: PathBuf,
    pub(super) targets: Targets,
    pub(super) exclude: GlobSet,
}

/// Stage two for `[build]`.
pub(super) fn validate(build: &BuildConfig, root: &Path) -> Result<BuildSettings, ConfigError> {
    let out_dir = validate_out_dir(root, &build.out_dir)?;
    validate_hash_length(build)?;
    validate_base_url(&build.base_url)?;
    validate_precompress(&build.precompress)?;
    let targets = resolve_targets(&build.targets)?;
    let exclude = compile_globs("build.exclude", &build.exclude)?;
    if let Some(entries) = &build.entries {
        validate_entries(entries)?;
    }
    Ok(BuildSettings {
        out_dir,
        targets,
        exclude,
    })
}

pub(super) fn validate_out_dir(root: &Path, out_dir: &Path) -> Result<PathBuf, ConfigError> {
    let out = std::path::absolute(root.join(out_dir))
        .map_err(|err| config_error(format!("build.out_dir: {err}")))?;
    let out = normalize(&out);
    let protected = [
        root.to_path_buf(),
        root.join(ASSETS_DIR),
        root.join(TEMPLATES_DIR),
        root.join(DATA_DIR),
    ];
    for dir in &protected {
        if dir.starts_with(&out) {
            return Err(config_error(format!(
                "build.out_dir = {:?}: the output directory would replace {}; choose a directory of its own",
                out_dir.display().to_string(),
                dir.display()
            )));
        }
    }
    if out.starts_with(root.join(ASSETS_DIR)) {
        return Err(config_error(format!(
            "build.out_dir = {:?} lies inside assets/, so outputs would become inputs",
            out_dir.display().to_string()
        )));
    }
    Ok(out)
}

/// Removes `.` and resolves `..` lexically, so overlap checks see real paths.
/// `path` with `.` and `..` resolved lexically (no filesystem access, so
/// symlinks are not followed).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn validate_hash_length(build: &BuildConfig) -> Result<(), ConfigError> {
    let max = build.hash_encoding.max_length();
    if build.hash_length < 8 || build.hash_length > max {
        return Err(config_error(format!(
            "build.hash_length = {}: must be between 8 and {max} for {:?} hashes",
            build.hash_length, build.hash_encoding
        )));
    }
    Ok(())
}

fn validate_base_url(base_url: &str) -> Result<(), ConfigError> {
    let absolute = base_url.starts_with('/')
        || base_url.starts_with("https://")
        || base_url.starts_with("http://");
    if base_url == "./" || (absolute && base_url.ends_with('/')) {
        return Ok(());
    }
    Err(config_error(format!(
        "build.base_url = {base_url:?}: expected a path or URL ending in '/', such as \"/\", \"/static/\", \"https://cdn.example.com/\", or \"./\" for relative URLs"
    )))
}

fn validate_precompress(encodings: &[Encoding]) -> Result<(), ConfigError> {
    for (index, encoding) in encodings.iter().enumerate() {
        if encodings[..index].contains(encoding) {
            return Err(config_error(format!(
                "build.precompress: {:?} is listed twice",
                encoding.token()
            )));
        }
    }
    Ok(())
}

fn resolve_targets(query: &str) -> Result<Targets, ConfigError> {
    let browsers = Browsers::from_browserslist([query])
        .map_err(|err| config_error(format!("build.targets = {query:?}: {err}")))?;
    Ok(Targets::from(browsers))
}

fn validate_entries(entries: &[String]) -> Result<(), ConfigError> {
    for entry in entries {
        let path = Path::new(entry);
        let escapes = path.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir
                    | std::path::Component::RootDir
                    | std::path::Component::Prefix(_)
            )
        });
        if entry.is_empty() || escapes {
            return Err(config_error(format!(
                "build.entries: {entry:?} must be a path relative to assets/, without `..`"
            )));
        }
    }
    Ok(())
}

fn compile_globs(key: &str, patterns: &[String]) -> Result<GlobSet, ConfigError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|err| config_error(format!("{key}: {err}")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|err| config_error(format!("{key}: {err}")))
}
