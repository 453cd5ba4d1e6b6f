//! Resource hints: the build finds, for each page, the files it should
//! preload, and writes them beside the output; the server sends them as
//! `Link` headers with the page.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Per-page resource hints written by the build: output path of an HTML
/// page → `Link` header values.
pub(crate) const HINTS_FILE: &str = ".kiln/hints.json";

/// The hints file's bytes, or `None` when no page has hints.
pub(crate) fn to_json(hints: &BTreeMap<&str, &Vec<String>>) -> Option<Vec<u8>> {
    if hints.is_empty() {
        return None;
    }
    serde_json::to_vec_pretty(hints).ok()
}

/// The hints of a loaded output directory (none when it has no file).
pub(crate) fn read(root: &Path) -> HashMap<String, Vec<String>> {
    std::fs::read(root.join(HINTS_FILE))
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok())
        .unwrap_or_default()
}
