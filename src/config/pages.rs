//! `[pages]`: how templates become HTML pages.

use serde::{Deserialize, Serialize};

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
