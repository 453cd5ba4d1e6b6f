//! `[pages]`: how templates become HTML pages.

use serde::{Deserialize, Serialize};

use super::{ConfigError, config_error};

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
    /// The site's public address (`https://example.com`): with it the
    /// build writes `sitemap.xml` and an Atom feed per directory of dated
    /// Markdown pages, which need absolute URLs.
    pub site_url: String,
}

impl Default for PagesConfig {
    fn default() -> Self {
        PagesConfig {
            pretty_urls: true,
            lazy_loading: true,
            sri: true,
            resource_hints: true,
            drafts: false,
            site_url: String::new(),
        }
    }
}

/// Stage two for `[pages]`: `site_url` is an absolute http(s) address.
pub(super) fn validate(pages: &PagesConfig) -> Result<(), ConfigError> {
    let url = &pages.site_url;
    if url.is_empty() {
        return Ok(());
    }
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or(""));
    let valid = host.is_some_and(|host| !host.is_empty())
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"<>#?".contains(c));
    if valid {
        Ok(())
    } else {
        Err(config_error(format!(
            "pages.site_url = {url:?}: must be an absolute http:// or https:// address, such as \"https://example.com\""
        )))
    }
}
