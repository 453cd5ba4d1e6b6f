//! The `build.toml` model, one file per section: a serde struct tree with a
//! default for every key, `--set key=value` overrides, and the second
//! validation stage that turns the raw values into [`Settings`] every
//! command can use without re-checking them.
//!
//! Stage one (serde) rejects unknown keys and wrong types, naming the key and
//! its line. Stage two ([`Config::validate`]) has each section check what
//! serde cannot: value ranges, browserslist queries, paths that must not
//! overlap, header values, route shapes.

use std::path::Path;

use serde::{Deserialize, Serialize};

mod build;
mod cache;
mod database;
mod images;
mod jobs;
mod js;
mod loadtest;
mod overrides;
mod pages;
mod routes;
mod server;
mod session;
mod settings;

pub(crate) use build::normalize;
pub use build::{BuildConfig, Encoding, HashEncoding};
pub use cache::CacheConfig;
pub use database::{DatabaseConfig, Isolation, QueueOrder};
pub use images::ImagesConfig;
pub(crate) use jobs::status_succeeds;
pub use jobs::{BatchConfig, JobConfig, JobKind, JobsConfig, QueueConfig};
pub use js::{JsConfig, LegalComments};
pub(crate) use loadtest::validate as validate_loadtest;
pub use loadtest::{LoadModel, LoadProtocol, LoadRoute, LoadUrl, LoadtestConfig, MixWeights};
pub use overrides::Override;
pub use pages::PagesConfig;
pub use routes::{
    CacheAdmit, ParamConfig, ParamType, QueryConfig, RouteCacheConfig, RouteConfig,
    RouteEnqueueConfig, RouteMethod, RouteSessionConfig, is_identifier,
};
pub use server::{
    AccessLogFormat, CacheRule, ForwardedHeader, MetricsAccess, ServerConfig, parse_addr,
};
pub use session::{CookieSecure, SameSitePolicy, SessionConfig, SessionStoreKind};
pub use settings::Settings;

use overrides::set_dotted;

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
/// value: no minifying or precompression (fast rebuilds), source maps on,
/// and no earlier builds kept (the page reloads with each one).
const WATCH_DEFAULTS: [(&str, &str); 5] = [
    ("build.minify", "false"),
    ("build.precompress", "[]"),
    ("build.sourcemaps", "true"),
    ("build.keep_builds", "0"),
    ("build.keep_for_secs", "0"),
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
    /// `kiln loadtest`'s traffic, pace and objectives.
    pub loadtest: LoadtestConfig,
    /// Declarative dynamic routes (`[[route]]`).
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// How background jobs run.
    pub jobs: JobsConfig,
    /// Declared background jobs (`[[job]]`).
    #[serde(rename = "job")]
    pub job: Vec<JobConfig>,
}

/// A configuration problem, phrased for the user (it names the file and
/// the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn config_error(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
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

    /// Stage two: each section checks its values; paths are resolved
    /// against the site root.
    pub fn validate(self, root: &Path) -> Result<Settings, ConfigError> {
        let root = std::path::absolute(root)
            .map_err(|err| config_error(format!("site root {}: {err}", root.display())))?;
        let build = build::validate(&self.build, &root)?;
        let server = server::validate(&self.server, &root)?;
        images::validate(&self.images)?;
        pages::validate(&self.pages)?;
        js::validate(&self.js)?;
        database::validate(&self.database)?;
        routes::validate(&self.routes)?;
        cache::validate(&self.cache)?;
        session::validate(&self.session)?;
        loadtest::validate(&self.loadtest)?;
        jobs::validate(&self.jobs, &self.job)?;
        jobs::validate_enqueues(&self.routes, &self.job)?;
        Ok(Settings::new(self, root, build, server))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

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

    /// Regression: these checks ran only when `kiln serve` compiled the
    /// routes, so `kiln build` and `Settings::load` accepted them.
    #[test]
    fn route_paths_and_headers_are_checked_when_the_config_is_validated() {
        let route = |extra: &str| {
            format!(
                "[[route]]\npath = \"/x\"\n{extra}\n[[route.query]]\nname = \"q\"\nsql = \"SELECT 1\"\n"
            )
        };
        for (extra, expected) in [
            ("", None),
            (
                "template = \"../secret.html\"",
                Some("must be a path under templates/"),
            ),
            ("cache_control = \"public\\u0001\"", Some("header values")),
        ] {
            let validated =
                parse(&route(extra)).and_then(|config| config.validate(Path::new("/site")));
            match expected {
                None => assert!(validated.is_ok(), "{extra}: {validated:?}"),
                Some(expected) => {
                    let message = validated.unwrap_err().to_string();
                    assert!(message.contains("route[0] (GET /x)"), "{message}");
                    assert!(message.contains(expected), "{message}");
                }
            }
        }
        let reserved = parse(
            "[[route]]\npath = \"/metrics\"\n[[route.query]]\nname = \"q\"\nsql = \"SELECT 1\"\n",
        )
        .and_then(|config| config.validate(Path::new("/site")))
        .unwrap_err()
        .to_string();
        assert!(
            reserved.contains("answered by the server itself"),
            "{reserved}"
        );
        let redirect = parse("[[route]]\npath = \"/x\"\nmethod = \"POST\"\nexec = [\"DELETE FROM t\"]\nredirect = \"x\"\n")
            .and_then(|config| config.validate(Path::new("/site")))
            .unwrap_err()
            .to_string();
        assert!(
            redirect.contains("must be a path on this site"),
            "{redirect}"
        );
    }

    #[test]
    fn allowed_hosts_entries_that_could_never_match_are_refused() {
        for entry in [
            "example.com:8080",
            "*",
            "*.example.com",
            "::1",
            "[::1",
            "a b",
        ] {
            let text = format!("[server]\nallowed_hosts = [{entry:?}]\n");
            let err = parse(&text)
                .and_then(|config| config.validate(Path::new("/site")))
                .unwrap_err();
            assert!(
                err.to_string().contains("server.allowed_hosts"),
                "{entry}: {err}"
            );
        }
        let text = "[server]\nallowed_hosts = [\"example.com\", \".example.org\", \"[::1]\", \"127.0.0.1\"]\n";
        parse(text)
            .and_then(|config| config.validate(Path::new("/site")))
            .expect("valid entries");
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
        assert_eq!(settings.addr().port(), 9000);
        assert!(settings.cache_rules()[0].0.is_match("downloads/a.zip"));
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
