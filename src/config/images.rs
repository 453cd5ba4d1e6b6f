//! `[images]`: how raster and SVG images are optimised.

use serde::{Deserialize, Serialize};

use super::{ConfigError, config_error};

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

/// Stage two for `[images]`.
pub(super) fn validate(images: &ImagesConfig) -> Result<(), ConfigError> {
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
