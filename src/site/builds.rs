//! The record of the builds an output directory holds
//! (`.kiln-builds.json`): the current build's content-hashed files and
//! those of earlier builds still kept (see `build::retain`). The server
//! reads it to serve every kept file as immutable.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The record's name in the output directory (a dot file: never served).
pub(crate) const RECORD_FILE: &str = ".kiln-builds.json";

/// The builds whose hashed files the output holds.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Record {
    pub current: Build,
    /// Newest first.
    #[serde(default)]
    pub previous: Vec<Replaced>,
    /// The last write staged a build (`kiln build --stage`) beside the
    /// current one: the pages, manifest and route templates served stay
    /// as they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staged: bool,
}

/// One build's identity and hashed files (with their precompressed siblings).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Build {
    pub id: String,
    pub files: Vec<String>,
}

/// An earlier build, with when a newer one replaced it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Replaced {
    #[serde(flatten)]
    pub build: Build,
    pub replaced_unix_ms: u64,
}

/// The record of the output now in place, if it has a readable one.
pub(crate) fn read(out_dir: &Path) -> Option<Record> {
    let text = std::fs::read(out_dir.join(RECORD_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}
