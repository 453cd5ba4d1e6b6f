//! [`Settings`]: the validated configuration every command reads.

use std::path::{Path, PathBuf};

use globset::GlobSet;
use lightningcss::targets::Targets;

use super::build::{BuildSettings, validate_out_dir};
use super::overrides::has_dotted;
use super::server::ServerSettings;
use super::{
    ASSETS_DIR, BuildConfig, CACHE_DIR, CacheConfig, Config, ConfigError, DATA_DIR, DatabaseConfig,
    ImagesConfig, JsConfig, Override, PagesConfig, RouteConfig, ServerConfig, SessionConfig,
    TEMPLATES_DIR, WATCH_DEFAULTS, WATCH_OUT_DIR, config_error,
};

/// A validated configuration with every path resolved. Sections are read
/// through accessors (`settings.server()`), which exist only once every
/// section has passed its checks.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration as written (after overrides), validated.
    config: Config,
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
    /// `[server]` values that needed parsing.
    parsed_server: ServerSettings,
    /// Set by `kiln watch`, never by `build.toml`: pages carry the
    /// live-reload client and every response is `no-cache`.
    pub dev: bool,
}

impl Settings {
    pub(super) fn new(
        config: Config,
        root: PathBuf,
        build: BuildSettings,
        parsed_server: ServerSettings,
    ) -> Settings {
        Settings {
            assets_dir: root.join(ASSETS_DIR),
            templates_dir: root.join(TEMPLATES_DIR),
            data_dir: root.join(DATA_DIR),
            cache_dir: root.join(CACHE_DIR),
            out_dir: build.out_dir,
            root,
            targets: build.targets,
            exclude: build.exclude,
            parsed_server,
            config,
            dev: false,
        }
    }

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

    /// `server.addr`, resolved.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.parsed_server.addr
    }

    /// `[[server.cache_control]]` compiled, in order.
    pub fn cache_rules(&self) -> &[(globset::GlobMatcher, String)] {
        &self.parsed_server.cache_rules
    }

    /// `server.admin_addr`, parsed.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.parsed_server.admin_addr
    }

    /// `server.trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.parsed_server.trusted_proxies
    }

    /// The absolute certificate and key files, when TLS is configured.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        self.parsed_server
            .tls
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()))
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

    pub fn loadtest(&self) -> &crate::config::LoadtestConfig {
        &self.config.loadtest
    }

    pub fn jobs(&self) -> &crate::config::JobsConfig {
        &self.config.jobs
    }

    /// The declared `[[job]]`s.
    pub fn declared_jobs(&self) -> &[crate::config::JobConfig] {
        &self.config.job
    }

    pub fn routes(&self) -> &[RouteConfig] {
        &self.config.routes
    }

    /// Whether `kiln serve` opens a database: when routes are declared or
    /// the site has a migrations directory.
    pub fn uses_database(&self) -> bool {
        !self.config.routes.is_empty()
            || !self.config.job.is_empty()
            || self.root.join(&self.config.database.migrations).is_dir()
    }
}
