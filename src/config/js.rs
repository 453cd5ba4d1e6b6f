//! `[js]`: how JavaScript and TypeScript entries are bundled.

use serde::{Deserialize, Serialize};

use super::{ConfigError, config_error};

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

/// Stage two for `[js]`.
pub(super) fn validate(js: &JsConfig) -> Result<(), ConfigError> {
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
