//! Image formats, and what the image stage made of an image: the contract
//! between the build's image stage and the template function `image()`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Image formats kiln reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Avif,
    Webp,
    Png,
    Jpeg,
    Gif,
    Svg,
}

impl Format {
    /// The format of a source file, by extension.
    pub fn of(path: &str) -> Option<Format> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "png" => Format::Png,
            "jpg" | "jpeg" => Format::Jpeg,
            "gif" => Format::Gif,
            "webp" => Format::Webp,
            "svg" => Format::Svg,
            "avif" => Format::Avif,
            _ => return None,
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Avif => "avif",
            Format::Webp => "webp",
            Format::Png => "png",
            Format::Jpeg => "jpg",
            Format::Gif => "gif",
            Format::Svg => "svg",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Avif => "image/avif",
            Format::Webp => "image/webp",
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Gif => "image/gif",
            Format::Svg => "image/svg+xml",
        }
    }
}

/// What the image stage added to an image asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageOutputs {
    pub format: Format,
    /// Intrinsic size of the main file, when known.
    pub size: Option<(u32, u32)>,
    /// Resized and modern-format copies, smallest width first.
    pub variants: Vec<EmittedVariant>,
}

/// One emitted image variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EmittedVariant {
    /// Output path relative to the output directory.
    pub file: String,
    pub width: u32,
    pub height: u32,
    pub format: Format,
    pub bytes: Arc<Vec<u8>>,
}
