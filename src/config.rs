//! The `build.toml` model: one serde struct tree with a default for every key,
//! `--set key=value` overrides, and the second validation stage that turns the
//! raw values into [`Settings`] the build can use without re-checking them.
//!
//! Stage one (serde) rejects unknown keys and wrong types, naming the key and
//! its line. Stage two ([`Config::validate`]) checks what serde cannot: value
//! ranges, browserslist queries, paths that must not overlap.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use lightningcss::targets::{Browsers, Targets};
use serde::{Deserialize, Serialize};

mod dynamic;
pub use dynamic::{
    CacheConfig, CookieSecure, DatabaseConfig, Isolation, ParamConfig, ParamType, QueryConfig,
    QueueOrder, RouteCacheConfig, RouteConfig, RouteMethod, RouteSessionConfig, SameSitePolicy,
    SessionConfig, SessionStoreKind, is_identifier,
};

/// The name of the configuration file at the site root.
pub const CONFIG_FILE: &str = "build.toml";
/// Sources are read from this directory under the site root.
pub const ASSETS_DIR: &str = "assets";
/// Templates (pages, layouts, partials) live here.
pub const TEMPLATES_DIR: &str = "templates";
/// Data files available to templates live here.
pub const DATA_DIR: &str = "data";
/// The persistent build cache lives here, under the site root.
pub const CACHE_DIR: &str = ".kiln-cache";
/// Where `kiln watch` builds, relative to the site root: the production
/// output directory is left as `kiln build` made it.
pub const WATCH_OUT_DIR: &str = ".kiln/watch";

/// What `kiln watch` sets where neither `build.toml` nor `--set` chose a
/// value: no minifying or precompression (fast rebuilds), source maps on.
const WATCH_DEFAULTS: [(&str, &str); 3] = [
    ("build.minify", "false"),
    ("build.precompress", "[]"),
    ("build.sourcemaps", "true"),
];

/// The whole of `build.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub build: BuildConfig,
    pub js: JsConfig,
    pub images: ImagesConfig,
    pub pages: PagesConfig,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub session: SessionConfig,
    /// Declarative dynamic routes (`[[route]]`).
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
}

/// The `[js]` table: how JavaScript and TypeScript entries are bundled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsConfig {
    /// Where the automatic JSX runtime is imported from (`react`, `preact`).
    pub jsx_import_source: String,
    /// Global expressions replaced at build time: dotted name → JavaScript
    /// literal (`"process.env.NODE_ENV" = '"production"'`).
    pub define: std::collections::BTreeMap<String, String>,
    /// What happens to license comments (`/*! … */`, `@license`, `@preserve`).
    pub legal_comments: LegalComments,
    /// Put dynamic imports and modules shared by several entries in chunks of their own.
    pub splitting: bool,
}

impl Default for JsConfig {
    fn default() -> Self {
        JsConfig {
            jsx_import_source: "react".into(),
            define: [(
                "process.env.NODE_ENV".to_string(),
                "\"production\"".to_string(),
            )]
            .into(),
            legal_comments: LegalComments::Inline,
            splitting: true,
        }
    }
}

/// Where license comments go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LegalComments {
    /// Kept in the output.
    Inline,
    /// Moved to a `NAME.HASH.js.LICENSE.txt` file beside the chunk.
    External,
    /// Dropped.
    None,
}

/// The `[images]` table: how raster and SVG images are optimised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// oxipng preset, 0 (fast) to 6 (smallest).
    pub png_level: u8,
    /// Drop metadata (EXIF, text chunks, comments) that does not affect display.
    pub strip_metadata: bool,
    /// JPEG re-encoding quality (1–100); a re-encode is kept only when smaller.
    pub jpeg_quality: u8,
    /// Write WebP variants of raster images.
    pub webp: bool,
    /// WebP quality (1–100).
    pub webp_quality: u8,
    /// Write AVIF variants of raster images.
    pub avif: bool,
    /// AVIF quality (1–100).
    pub avif_quality: u8,
    /// AVIF encoder speed, 1 (slow, smallest) to 10 (fast).
    pub avif_speed: u8,
    /// Widths of responsive variants; never larger than the image.
    pub widths: Vec<u32>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            png_level: 2,
            strip_metadata: true,
            jpeg_quality: 82,
            webp: true,
            webp_quality: 80,
            avif: true,
            avif_quality: 60,
            avif_speed: 8,
            widths: vec![480, 960, 1440],
        }
    }
}

/// The `[pages]` table: how templates become HTML pages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagesConfig {
    /// `pages/about.html` → `about/index.html` (served as `/about/`).
    pub pretty_urls: bool,
    /// Add `loading="lazy"` and dimensions to images, except the first one.
    pub lazy_loading: bool,
    /// Add `integrity` and `crossorigin` to scripts and stylesheets.
    pub sri: bool,
    /// Add preload/modulepreload links for each page's entries.
    pub resource_hints: bool,
    /// Render pages marked `draft = true`.
    pub drafts: bool,
}

impl Default for PagesConfig {
    fn default() -> Self {
        PagesConfig {
            pretty_urls: true,
            lazy_loading: true,
            sri: true,
            resource_hints: true,
            drafts: false,
        }
    }
}

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
        }
    }
}

/// The `[server]` table: how `kiln serve` serves the output directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (`--addr` overrides it).
    pub addr: String,
    /// Worker threads; 0 means one per CPU core (`--workers` overrides it).
    pub workers: usize,
    /// Bytes of file contents (all encodings) kept in memory.
    pub memory_budget: u64,
    /// Files larger than this are streamed from disk instead of kept in memory.
    pub memory_file_limit: u64,
    /// Serve `/about/` from `about/index.html` and `/about` from `about.html`,
    /// and redirect `/about` to `/about/` when `about/index.html` exists.
    pub pretty_urls: bool,
    /// A file (relative to the output directory) served with status 200 for
    /// unknown paths that look like page navigations. Empty: off.
    pub spa_fallback: String,
    /// The page served with status 404 (relative to the output directory).
    pub not_found_page: String,
    /// Cache-Control by path glob; the first match wins, before the defaults.
    pub cache_control: Vec<CacheRule>,
    /// Content-Security-Policy sent with every response; empty: none.
    pub content_security_policy: String,
    /// Referrer-Policy sent with every response; empty: none.
    pub referrer_policy: String,
    /// Strict-Transport-Security, sent only over TLS; empty: none.
    pub hsts: String,
    /// PEM certificate chain; with `tls_key`, serve HTTPS (HTTP/2 by ALPN).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest request head (request line and headers) accepted, in bytes.
    pub max_header_bytes: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Seconds a client may take to send its request head (against slowloris).
    pub header_timeout_secs: u64,
    /// Seconds an idle keep-alive connection stays open.
    pub keep_alive_secs: u64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub shutdown_grace_secs: u64,
    /// More ranges than this in one request get the whole file (status 200).
    pub max_ranges: usize,
    /// Access log on standard output.
    pub access_log: AccessLogFormat,
    /// Who may read `/metrics`.
    pub metrics: MetricsAccess,
    /// A file holding the key that signs CSRF tokens and session cookies
    /// (32 bytes or more; relative to the site root). `KILN_SECRET_KEY`
    /// overrides it; without either, a key is generated on first start.
    pub secret_key_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:8080".into(),
            workers: 0,
            memory_budget: 256 * 1024 * 1024,
            memory_file_limit: 4 * 1024 * 1024,
            pretty_urls: true,
            spa_fallback: String::new(),
            not_found_page: "404.html".into(),
            cache_control: Vec::new(),
            content_security_policy: "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'self'".into(),
            referrer_policy: "strict-origin-when-cross-origin".into(),
            hsts: "max-age=63072000; includeSubDomains".into(),
            tls_cert: None,
            tls_key: None,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            header_timeout_secs: 5,
            keep_alive_secs: 15,
            shutdown_grace_secs: 30,
            max_ranges: 16,
            access_log: AccessLogFormat::Off,
            metrics: MetricsAccess::Loopback,
            secret_key_file: None,
        }
    }
}

/// One `[[server.cache_control]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRule {
    /// A glob over the output path (`downloads/**`, `*.pdf`).
    pub path: String,
    /// The Cache-Control value for matching files.
    pub value: String,
}

/// Access log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    Off,
    /// NCSA Common Log Format.
    Common,
    /// Common plus referrer and user agent, as nginx and Apache write it.
    Combined,
    /// One JSON object per line.
    Json,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Not served at all.
    Off,
    /// Only clients connecting from a loopback address.
    Loopback,
    /// Anyone who can reach the server.
    Public,
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

/// A configuration problem, phrased for the user (it names the file and
/// the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn config_error(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// One `--set key=value` from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: toml::Value,
    /// The text as the user typed it, for error messages.
    pub raw: String,
}

impl std::str::FromStr for Override {
    type Err = ConfigError;

    /// Parses `build.minify=false`. The value is read as TOML; a value that is
    /// not valid TOML is taken as a bare string, so `base_url=https://cdn/`
    /// needs no quoting.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| config_error(format!("--set {raw}: expected KEY=VALUE")))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(config_error(format!(
                "--set {raw}: `{key}` is not a dotted key like build.minify"
            )));
        }
        let value = parse_toml_value(value.trim());
        Ok(Override {
            key: key.to_string(),
            value,
            raw: raw.to_string(),
        })
    }
}

fn parse_toml_value(text: &str) -> toml::Value {
    let document = format!("value = {text}");
    match toml::from_str::<toml::Table>(&document) {
        Ok(mut table) => table.remove("value").unwrap_or_else(|| text.into()),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

impl Config {
    /// Reads `ROOT/build.toml` (a missing file is an empty one) and applies
    /// the overrides in order.
    pub fn load(root: &Path, overrides: &[Override]) -> Result<Config, ConfigError> {
        let path = root.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => {
                return Err(config_error(format!("{}: {err}", path.display())));
            }
        };
        Config::parse(&text, &path, overrides)
    }

    /// `ROOT/build.toml` as a plain table (empty when there is no file).
    fn read_table(root: &Path) -> Result<toml::Table, ConfigError> {
        let path = root.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|err| config_error(format!("{}: {err}", path.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
            Err(err) => Err(config_error(format!("{}: {err}", path.display()))),
        }
    }

    /// Parses configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path, overrides: &[Override]) -> Result<Config, ConfigError> {
        // Deserializing the text itself keeps spans, so errors in the file
        // name their line and column.
        let config: Config = toml::from_str(text)
            .map_err(|err| config_error(format!("{}: {err}", path.display())))?;
        if overrides.is_empty() {
            return Ok(config);
        }
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|err| config_error(format!("{}: {err}", path.display())))?;
        let mut config = config;
        for item in overrides {
            set_dotted(&mut table, item)?;
            // Re-checking after each override pins an error on the one that caused it.
            config =
                toml::Value::Table(table.clone())
                    .try_into()
                    .map_err(|err: toml::de::Error| {
                        config_error(format!("--set {}: {}", item.raw, err.message().trim()))
                    })?;
        }
        Ok(config)
    }

    /// Stage two: checks values and resolves paths against the site root.
    pub fn validate(self, root: &Path) -> Result<Settings, ConfigError> {
        let root = std::path::absolute(root)
            .map_err(|err| config_error(format!("site root {}: {err}", root.display())))?;
        let build = &self.build;
        let out_dir = validate_out_dir(&root, &build.out_dir)?;
        validate_hash_length(build)?;
        validate_base_url(&build.base_url)?;
        validate_precompress(&build.precompress)?;
        let targets = resolve_targets(&build.targets)?;
        let exclude = compile_globs("build.exclude", &build.exclude)?;
        if let Some(entries) = &build.entries {
            validate_entries(entries)?;
        }
        let server = validate_server(&self.server, &root)?;
        validate_images(&self.images)?;
        validate_js(&self.js)?;
        dynamic::validate_database(&self.database)?;
        dynamic::validate_routes(&self.routes)?;
        dynamic::validate_cache(&self.cache)?;
        dynamic::validate_session(&self.session)?;
        Ok(Settings {
            assets_dir: root.join(ASSETS_DIR),
            templates_dir: root.join(TEMPLATES_DIR),
            data_dir: root.join(DATA_DIR),
            cache_dir: root.join(CACHE_DIR),
            out_dir,
            root,
            targets,
            exclude,
            server,
            config: self,
            dev: false,
        })
    }
}

fn validate_server(server: &ServerConfig, root: &Path) -> Result<ServerSettings, ConfigError> {
    let addr = parse_addr("server.addr", &server.addr)?;
    let mut cache_rules = Vec::new();
    for rule in &server.cache_control {
        let glob = Glob::new(&rule.path)
            .map_err(|err| config_error(format!("server.cache_control: {err}")))?
            .compile_matcher();
        check_header_value("server.cache_control", &rule.value)?;
        cache_rules.push((glob, rule.value.clone()));
    }
    check_header_value(
        "server.content_security_policy",
        &server.content_security_policy,
    )?;
    check_header_value("server.referrer_policy", &server.referrer_policy)?;
    check_header_value("server.hsts", &server.hsts)?;
    let tls = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => Some((root.join(cert), root.join(key))),
        (None, None) => None,
        _ => {
            return Err(config_error(
                "server.tls_cert and server.tls_key must be set together",
            ));
        }
    };
    if server.memory_file_limit > server.memory_budget {
        return Err(config_error(format!(
            "server.memory_file_limit ({}) is larger than server.memory_budget ({})",
            server.memory_file_limit, server.memory_budget
        )));
    }
    for (key, value) in [
        ("server.header_timeout_secs", server.header_timeout_secs),
        ("server.keep_alive_secs", server.keep_alive_secs),
    ] {
        if value == 0 {
            return Err(config_error(format!("{key} must be at least 1")));
        }
    }
    if server.max_header_bytes < 1024 {
        return Err(config_error(
            "server.max_header_bytes must be at least 1024",
        ));
    }
    for (key, path) in [
        ("server.spa_fallback", &server.spa_fallback),
        ("server.not_found_page", &server.not_found_page),
    ] {
        if path.starts_with('/') || path.split('/').any(|part| part == "..") {
            return Err(config_error(format!(
                "{key} = {path:?}: expected a path relative to the output directory"
            )));
        }
    }
    Ok(ServerSettings {
        addr,
        cache_rules,
        tls,
    })
}

fn validate_js(js: &JsConfig) -> Result<(), ConfigError> {
    for name in js.define.keys() {
        let valid = !name.is_empty()
            && name.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
                    && !part.starts_with(|c: char| c.is_ascii_digit())
            });
        if !valid {
            return Err(config_error(format!(
                "js.define: {name:?} is not a dotted name like process.env.NODE_ENV"
            )));
        }
    }
    if js.jsx_import_source.is_empty() {
        return Err(config_error("js.jsx_import_source must not be empty"));
    }
    Ok(())
}

fn validate_images(images: &ImagesConfig) -> Result<(), ConfigError> {
    let ranges = [
        ("images.png_level", images.png_level, 0, 6),
        ("images.jpeg_quality", images.jpeg_quality, 1, 100),
        ("images.webp_quality", images.webp_quality, 1, 100),
        ("images.avif_quality", images.avif_quality, 1, 100),
        ("images.avif_speed", images.avif_speed, 1, 10),
    ];
    for (key, value, low, high) in ranges {
        if !(low..=high).contains(&value) {
            return Err(config_error(format!(
                "{key} = {value}: must be between {low} and {high}"
            )));
        }
    }
    if let Some(width) = images
        .widths
        .iter()
        .find(|&&width| width == 0 || width > 16_384)
    {
        return Err(config_error(format!(
            "images.widths: {width} is not a width between 1 and 16384"
        )));
    }
    Ok(())
}

/// Parses `HOST:PORT` (`localhost:8080`, `[::1]:80`, `0.0.0.0:8080`).
pub fn parse_addr(key: &str, text: &str) -> Result<std::net::SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            config_error(format!(
                "{key} = {text:?}: expected HOST:PORT, such as 127.0.0.1:8080"
            ))
        })
}

fn check_header_value(key: &str, value: &str) -> Result<(), ConfigError> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        Ok(())
    } else {
        Err(config_error(format!(
            "{key}: header values may only contain visible ASCII characters and spaces"
        )))
    }
}

/// `[server]` values that needed parsing, resolved once.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub addr: std::net::SocketAddr,
    /// `[[server.cache_control]]` compiled, in order.
    pub cache_rules: Vec<(globset::GlobMatcher, String)>,
    /// Absolute certificate and key paths when TLS is configured.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Walks `a.b.c` into nested tables, creating them as needed, and sets the leaf.
/// Whether `table` holds a value at the dotted `key`.
fn has_dotted(table: &toml::Table, key: &str) -> bool {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        match (current.get(part), parts.peek()) {
            (Some(_), None) => return true,
            (Some(toml::Value::Table(inner)), Some(_)) => current = inner,
            _ => return false,
        }
    }
    false
}

fn set_dotted(table: &mut toml::Table, item: &Override) -> Result<(), ConfigError> {
    let mut parts: Vec<&str> = item.key.split('.').collect();
    let leaf = parts.pop().unwrap_or_default();
    let mut current = table;
    for part in parts {
        let next = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match next {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(config_error(format!(
                    "--set {}: `{part}` is a value, not a table",
                    item.raw
                )));
            }
        };
    }
    current.insert(leaf.to_string(), item.value.clone());
    Ok(())
}

fn validate_out_dir(root: &Path, out_dir: &Path) -> Result<PathBuf, ConfigError> {
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

/// A validated configuration with every path resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration as written (after overrides).
    pub config: Config,
    /// Absolute site root.
    pub root: PathBuf,
    /// Absolute `ROOT/assets`.
    pub assets_dir: PathBuf,
    /// Absolute `ROOT/templates`.
    pub templates_dir: PathBuf,
    /// Absolute `ROOT/data`.
    pub data_dir: PathBuf,
    /// Absolute output directory.
    pub out_dir: PathBuf,
    /// Absolute `ROOT/.kiln-cache`.
    pub cache_dir: PathBuf,
    /// Browser targets resolved from the browserslist query.
    pub targets: Targets,
    /// Compiled `build.exclude`.
    pub exclude: GlobSet,
    /// Parsed `[server]` values.
    pub server: ServerSettings,
    /// Set by `kiln watch`, never by `build.toml`: pages carry the
    /// live-reload client and every response is `no-cache`.
    pub dev: bool,
}

impl Settings {
    /// Loads and validates the configuration of the site at `root`.
    pub fn load(root: &Path, overrides: &[Override]) -> Result<Settings, ConfigError> {
        Config::load(root, overrides)?.validate(root)
    }

    /// The settings `kiln watch` builds and serves with: the development
    /// defaults under the user's choices, and its own output directory.
    pub fn load_for_watch(root: &Path, overrides: &[Override]) -> Result<Settings, ConfigError> {
        let written = Config::read_table(root)?;
        let mut all: Vec<Override> = WATCH_DEFAULTS
            .iter()
            .filter(|(key, _)| {
                !has_dotted(&written, key) && !overrides.iter().any(|item| item.key == *key)
            })
            .map(|(key, value)| format!("{key}={value}").parse())
            .collect::<Result<_, _>>()?;
        all.extend_from_slice(overrides);
        let mut settings = Settings::load(root, &all)?;
        settings.out_dir = settings.root.join(WATCH_OUT_DIR);
        settings.dev = true;
        Ok(settings)
    }

    /// Replaces the output directory (the CLI's `--out`), re-running its checks.
    pub fn with_out_dir(mut self, out_dir: &Path) -> Result<Settings, ConfigError> {
        let cwd_relative = std::path::absolute(out_dir)
            .map_err(|err| config_error(format!("--out {}: {err}", out_dir.display())))?;
        self.out_dir = validate_out_dir(&self.root, &cwd_relative)?;
        Ok(self)
    }

    pub fn build(&self) -> &BuildConfig {
        &self.config.build
    }

    pub fn server(&self) -> &ServerConfig {
        &self.config.server
    }

    pub fn js(&self) -> &JsConfig {
        &self.config.js
    }

    pub fn images(&self) -> &ImagesConfig {
        &self.config.images
    }

    pub fn pages(&self) -> &PagesConfig {
        &self.config.pages
    }

    pub fn database(&self) -> &DatabaseConfig {
        &self.config.database
    }

    pub fn session(&self) -> &SessionConfig {
        &self.config.session
    }

    pub fn cache(&self) -> &CacheConfig {
        &self.config.cache
    }

    pub fn routes(&self) -> &[RouteConfig] {
        &self.config.routes
    }

    /// Whether `kiln serve` opens a database: when routes are declared or
    /// the site has a migrations directory.
    pub fn uses_database(&self) -> bool {
        !self.config.routes.is_empty() || self.root.join(&self.config.database.migrations).is_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsupported_route_method_is_refused_naming_the_key() {
        let text = "[[route]]\npath = \"/x\"\nmethod = \"PUT\"\n";
        let err = Config::parse(text, Path::new("build.toml"), &[]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("build.toml"), "{message}");
        assert!(
            message.contains("PUT") && message.contains("POST"),
            "{message}"
        );
    }

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d.css")),
            PathBuf::from("/a/c/d.css")
        );
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("build.toml"), &[])
    }

    fn overrides(items: &[&str]) -> Vec<Override> {
        items.iter().map(|raw| raw.parse().unwrap()).collect()
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("[build]\nminify = true\nminfy = false\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("minfy"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_type_names_line() {
        let err = parse("[build]\nhash_length = \"eight\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn overrides_apply_as_toml_values() {
        let config = Config::parse(
            "[build]\nminify = true\n",
            Path::new("build.toml"),
            &overrides(&[
                "build.precompress=[]",
                "build.minify=false",
                "build.hash_length=12",
            ]),
        )
        .unwrap();
        assert!(config.build.precompress.is_empty());
        assert!(!config.build.minify);
        assert_eq!(config.build.hash_length, 12);
    }

    #[test]
    fn watch_defaults_apply_only_where_the_user_chose_nothing() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(
            temp.path().join(CONFIG_FILE),
            "[build]\nminify = true\nout_dir = \"public\"\n",
        )
        .unwrap();
        let settings =
            Settings::load_for_watch(temp.path(), &overrides(&["build.sourcemaps=false"])).unwrap();
        assert!(settings.dev);
        assert!(settings.build().minify, "build.toml chose minify");
        assert!(!settings.build().sourcemaps, "--set chose no source maps");
        assert!(settings.build().precompress.is_empty(), "the watch default");
        assert!(settings.out_dir.ends_with(WATCH_OUT_DIR));
        let plain = Settings::load(temp.path(), &[]).unwrap();
        assert!(!plain.dev);
        assert!(plain.out_dir.ends_with("public"));
    }

    #[test]
    fn override_with_bare_string_value() {
        let config = Config::parse(
            "",
            Path::new("build.toml"),
            &overrides(&["build.base_url=https://cdn.example.com/"]),
        )
        .unwrap();
        assert_eq!(config.build.base_url, "https://cdn.example.com/");
    }

    #[test]
    fn override_of_unknown_key_is_named() {
        let err = Config::parse(
            "",
            Path::new("build.toml"),
            &overrides(&["build.minfy=false"]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--set build.minfy=false"), "{err}");
        assert!(err.contains("minfy"), "{err}");
    }

    #[test]
    fn override_with_wrong_type_is_named() {
        let err = Config::parse(
            "",
            Path::new("build.toml"),
            &overrides(&["build.minify=yes"]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--set build.minify=yes"), "{err}");
    }

    #[test]
    fn malformed_override_is_rejected() {
        assert!("build.minify".parse::<Override>().is_err());
        assert!("build..minify=1".parse::<Override>().is_err());
    }

    #[test]
    fn validation_rejects_short_hashes() {
        let mut config = Config::default();
        config.build.hash_length = 6;
        let err = config.validate(Path::new("/site")).unwrap_err().to_string();
        assert!(err.contains("build.hash_length"), "{err}");
    }

    #[test]
    fn validation_rejects_bad_targets() {
        let mut config = Config::default();
        config.build.targets = "no such browser 99".into();
        let err = config.validate(Path::new("/site")).unwrap_err().to_string();
        assert!(err.contains("build.targets"), "{err}");
    }

    #[test]
    fn validation_rejects_out_dir_over_sources() {
        for out in [".", "assets", "..", "assets/dist"] {
            let mut config = Config::default();
            config.build.out_dir = out.into();
            let err = config.validate(Path::new("/site")).unwrap_err().to_string();
            assert!(err.contains("build.out_dir"), "{out}: {err}");
        }
    }

    #[test]
    fn validation_rejects_base_url_without_slash() {
        let mut config = Config::default();
        config.build.base_url = "/static".into();
        assert!(config.validate(Path::new("/site")).is_err());
    }

    #[test]
    fn validation_rejects_duplicate_encodings() {
        let mut config = Config::default();
        config.build.precompress = vec![Encoding::Gzip, Encoding::Gzip];
        assert!(config.validate(Path::new("/site")).is_err());
    }

    #[test]
    fn server_section_parses_with_defaults_and_rules() {
        let config = parse(
            "[server]\naddr = \"0.0.0.0:9000\"\n[[server.cache_control]]\npath = \"downloads/**\"\nvalue = \"public, max-age=60\"\n",
        )
        .unwrap();
        assert_eq!(config.server.cache_control.len(), 1);
        assert_eq!(config.server.max_ranges, 16);
        let settings = config.validate(Path::new("/site")).unwrap();
        assert_eq!(settings.server.addr.port(), 9000);
        assert!(settings.server.cache_rules[0].0.is_match("downloads/a.zip"));
    }

    #[test]
    fn server_validation_names_the_key() {
        for (text, key) in [
            ("[server]\naddr = \"nowhere\"", "server.addr"),
            ("[server]\ntls_cert = \"cert.pem\"", "server.tls_key"),
            ("[server]\nhsts = \"a\\nb\"", "server.hsts"),
            ("[server]\nkeep_alive_secs = 0", "server.keep_alive_secs"),
            (
                "[server]\nmemory_file_limit = 10\nmemory_budget = 5",
                "server.memory_file_limit",
            ),
            (
                "[server]\nspa_fallback = \"../x.html\"",
                "server.spa_fallback",
            ),
        ] {
            let err = parse(text)
                .unwrap()
                .validate(Path::new("/site"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn validation_rejects_escaping_entries() {
        let mut config = Config::default();
        config.build.entries = Some(vec!["../secret.css".into()]);
        assert!(config.validate(Path::new("/site")).is_err());
    }
}
