//! `dist/manifest.json`, in the shape of Vite's build manifest so existing
//! backend integrations can read it: keyed by source path relative to
//! `assets/`, with `file`, `src`, `name`, `isEntry`, `imports`,
//! `dynamicImports`, `css` and `assets` as Vite defines them, plus
//! `integrity` (SRI) for every file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest's file name in the output directory.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// Reads `OUT_DIR/manifest.json`; a directory with no build has an empty one.
pub(crate) fn read(out_dir: &std::path::Path) -> Result<Manifest, crate::diagnostic::Diagnostic> {
    let path = out_dir.join(MANIFEST_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
            crate::diagnostic::Diagnostic::new(format!("{}: {err}", path.display()))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::new()),
        Err(err) => Err(crate::diagnostic::Diagnostic::io(&path, &err)),
    }
}

/// One manifest entry ("chunk" in Vite's terms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestChunk {
    /// Output path relative to the output directory.
    pub file: String,
    /// Source path relative to `assets/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// The entry's name (its file stem), for entries and chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_entry: bool,
    /// A chunk loaded by `import()`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_dynamic_entry: bool,
    /// Keys of chunks this one imports statically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
    /// Keys of chunks this one imports dynamically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dynamic_imports: Vec<String>,
    /// Output paths of stylesheets this chunk needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub css: Vec<String>,
    /// Output paths of assets this chunk references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<String>,
    /// `sha384-…` of the output file, for Subresource Integrity.
    pub integrity: String,
    /// kiln extension: intrinsic width of an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// kiln extension: intrinsic height of an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// kiln extension: an image's resized and modern-format copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<ImageVariant>,
}

/// One entry of an image's `variants` (kiln's manifest extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVariant {
    pub file: String,
    pub width: u32,
    pub height: u32,
    pub format: crate::site::images::Format,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// The whole manifest; a sorted map so the JSON is byte-identical across builds.
pub(crate) type Manifest = BTreeMap<String, ManifestChunk>;

/// Serialises the manifest as pretty JSON with a trailing newline.
pub(crate) fn to_json(manifest: &Manifest) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(manifest).expect("manifest values are plain strings");
    json.push(b'\n');
    json
}

/// `path` relative to `base`, `/`-separated (manifest keys look the same on every OS).
pub(crate) fn key_of(base: &std::path::Path, path: &std::path::Path) -> String {
    let relative = path.strip_prefix(base).unwrap_or(path);
    relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_omitted_like_vite() {
        let mut manifest = Manifest::new();
        manifest.insert(
            "images/a.png".into(),
            ManifestChunk {
                file: "images/a.abc.png".into(),
                src: Some("images/a.png".into()),
                integrity: "sha384-x".into(),
                ..Default::default()
            },
        );
        let json = String::from_utf8(to_json(&manifest)).unwrap();
        assert!(!json.contains("isEntry"), "{json}");
        assert!(!json.contains("imports"), "{json}");
        assert!(json.contains("\"file\": \"images/a.abc.png\""), "{json}");
    }

    #[test]
    fn entries_use_camel_case() {
        let chunk = ManifestChunk {
            is_entry: true,
            dynamic_imports: vec!["x".into()],
            ..Default::default()
        };
        let json = serde_json::to_string(&chunk).unwrap();
        assert!(json.contains("\"isEntry\":true"), "{json}");
        assert!(json.contains("\"dynamicImports\":[\"x\"]"), "{json}");
    }
}
