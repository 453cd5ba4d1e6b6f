//! The image stage: lossless PNG optimisation (oxipng), JPEG re-encoding when
//! it pays (with EXIF orientation applied and metadata stripped), safe SVG
//! minification, and for raster images WebP and AVIF variants and resized
//! copies at the configured widths, each kept only when it is smaller than
//! the original format at the same size.
//!
//! Work inside one image runs on the same rayon pool as the rest of the
//! build (sized to the machine), so many images and many variants of one
//! image share the cores without oversubscribing them.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::build::svg;
use crate::config::ImagesConfig;
pub(crate) use crate::site::images::Format;

/// One extra file made from an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Variant {
    pub width: u32,
    pub height: u32,
    pub format: Format,
    pub bytes: Vec<u8>,
}

/// What the stage made of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Processed {
    /// The optimised image in its own format.
    pub main: Vec<u8>,
    /// Its dimensions (after EXIF orientation); `None` for an SVG without a
    /// usable size.
    pub size: Option<(u32, u32)>,
    /// Modern formats and resized copies, smallest width first.
    pub variants: Vec<Variant>,
}

/// Optimises an image of `format` and makes its variants.
pub(crate) fn process(
    format: Format,
    bytes: &[u8],
    config: &ImagesConfig,
) -> Result<Processed, String> {
    match format {
        Format::Svg => Ok(process_svg(bytes)),
        Format::Png | Format::Jpeg | Format::Webp => process_raster(format, bytes, config),
        // GIFs may be animated, AVIF is already modern: emitted as they are.
        Format::Gif | Format::Avif => Ok(Processed {
            size: image::load_from_memory(bytes)
                .ok()
                .map(|image| (image.width(), image.height())),
            main: bytes.to_vec(),
            variants: Vec::new(),
        }),
    }
}

fn process_svg(bytes: &[u8]) -> Processed {
    let main = match svg::minify(bytes) {
        Some(small) if small.len() < bytes.len() => small,
        _ => bytes.to_vec(),
    };
    Processed {
        size: svg::dimensions(&main),
        main,
        variants: Vec::new(),
    }
}

fn process_raster(
    format: Format,
    bytes: &[u8],
    config: &ImagesConfig,
) -> Result<Processed, String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|err| err.to_string())?;
    let mut decoder = reader.into_decoder().map_err(|err| err.to_string())?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (width, height) = upright_size(decoder.dimensions(), orientation);
    let upright = orientation == Orientation::NoTransforms;
    // Decoding is the expensive part: a PNG that only needs oxipng skips it.
    let needs_pixels = !upright
        || (format == Format::Jpeg && config.strip_metadata)
        || wants_variants(format, width, config);
    if !needs_pixels {
        let main = match format {
            Format::Png => optimise_png(bytes, config).unwrap_or_else(|| bytes.to_vec()),
            _ => bytes.to_vec(),
        };
        return Ok(Processed {
            main,
            size: Some((width, height)),
            variants: Vec::new(),
        });
    }
    let mut image = DynamicImage::from_decoder(decoder).map_err(|err| err.to_string())?;
    image.apply_orientation(orientation);
    let main = optimise_main(format, bytes, &image, orientation, config)?;
    let variants = make_variants(format, &image, &main, config)?;
    Ok(Processed {
        main,
        size: Some((width, height)),
        variants,
    })
}

/// The size after applying the orientation (quarter turns swap the sides).
fn upright_size((width, height): (u32, u32), orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        _ => (width, height),
    }
}

/// Whether any variant could be made: a modern format, or a width below the image's.
fn wants_variants(format: Format, width: u32, config: &ImagesConfig) -> bool {
    (config.webp && format != Format::Webp)
        || config.avif
        || config.widths.iter().any(|&w| w < width)
}

/// The image in its own format, as small as kiln can make it without
/// changing how it looks.
fn optimise_main(
    format: Format,
    original: &[u8],
    image: &DynamicImage,
    orientation: Orientation,
    config: &ImagesConfig,
) -> Result<Vec<u8>, String> {
    let upright = orientation == Orientation::NoTransforms;
    match format {
        Format::Png => {
            // A rotated PNG is re-encoded upright; either way oxipng is lossless.
            let source = if upright {
                original.to_vec()
            } else {
                encode(image, Format::Png, config)?
            };
            Ok(optimise_png(&source, config).unwrap_or(source))
        }
        Format::Jpeg => {
            if !upright {
                // Stripping EXIF would lose the rotation: bake it into the pixels.
                return encode(image, Format::Jpeg, config);
            }
            if !config.strip_metadata {
                return Ok(original.to_vec());
            }
            let stripped = strip_jpeg_metadata(original).unwrap_or_else(|| original.to_vec());
            let reencoded = encode(image, Format::Jpeg, config)?;
            Ok(if reencoded.len() < stripped.len() {
                reencoded
            } else {
                stripped
            })
        }
        _ => Ok(original.to_vec()),
    }
}

fn optimise_png(bytes: &[u8], config: &ImagesConfig) -> Option<Vec<u8>> {
    let mut options = oxipng::Options::from_preset(config.png_level);
    options.strip = if config.strip_metadata {
        oxipng::StripChunks::Safe
    } else {
        oxipng::StripChunks::None
    };
    oxipng::optimize_from_memory(bytes, &options).ok()
}

/// Resized copies (never upscaled) in the original format, and WebP/AVIF at
/// every size; modern formats only where they beat the original format.
fn make_variants(
    format: Format,
    image: &DynamicImage,
    main: &[u8],
    config: &ImagesConfig,
) -> Result<Vec<Variant>, String> {
    let (width, height) = (image.width(), image.height());
    let mut widths: Vec<u32> = config
        .widths
        .iter()
        .copied()
        .filter(|&w| w < width)
        .collect();
    widths.sort_unstable();
    widths.dedup();
    widths.push(width);
    let sizes: Vec<(u32, u32)> = widths
        .into_iter()
        .map(|w| {
            (
                w,
                ((u64::from(height) * u64::from(w) + u64::from(width) / 2) / u64::from(width))
                    .max(1) as u32,
            )
        })
        .collect();
    let results: Vec<Result<Vec<Variant>, String>> = sizes
        .par_iter()
        .map(|&(w, h)| variants_at(format, image, main, (w, h), config))
        .collect();
    let mut variants = Vec::new();
    for result in results {
        variants.extend(result?);
    }
    variants.sort_by_key(|variant| (variant.width, variant.format));
    Ok(variants)
}

fn variants_at(
    format: Format,
    image: &DynamicImage,
    main: &[u8],
    (w, h): (u32, u32),
    config: &ImagesConfig,
) -> Result<Vec<Variant>, String> {
    let full_size = w == image.width();
    let resized = if full_size {
        image.clone()
    } else {
        image.resize_exact(w, h, FilterType::Lanczos3)
    };
    let mut variants = Vec::new();
    // The original format at this size (the full size is `main` itself).
    let baseline = if full_size {
        main.to_vec()
    } else {
        let bytes = encode(&resized, format, config)?;
        let bytes = if format == Format::Png {
            optimise_png(&bytes, config).unwrap_or(bytes)
        } else {
            bytes
        };
        variants.push(Variant {
            width: w,
            height: h,
            format,
            bytes: bytes.clone(),
        });
        bytes
    };
    let mut modern = Vec::new();
    if config.webp && format != Format::Webp {
        modern.push(Format::Webp);
    }
    if config.avif {
        modern.push(Format::Avif);
    }
    for target in modern {
        let bytes = encode(&resized, target, config)?;
        if bytes.len() < baseline.len() {
            variants.push(Variant {
                width: w,
                height: h,
                format: target,
                bytes,
            });
        }
    }
    Ok(variants)
}

/// Encodes pixels in `format` with the configured quality.
fn encode(image: &DynamicImage, format: Format, config: &ImagesConfig) -> Result<Vec<u8>, String> {
    let (width, height) = (image.width(), image.height());
    let opaque = !image.color().has_alpha();
    let mut out = Vec::new();
    match format {
        Format::Png => {
            let pixels = if opaque {
                image.to_rgb8().into_raw()
            } else {
                image.to_rgba8().into_raw()
            };
            let color = if opaque {
                image::ExtendedColorType::Rgb8
            } else {
                image::ExtendedColorType::Rgba8
            };
            PngEncoder::new(&mut out)
                .write_image(&pixels, width, height, color)
                .map_err(|err| err.to_string())?;
        }
        Format::Jpeg => {
            let pixels = image.to_rgb8();
            JpegEncoder::new_with_quality(&mut out, config.jpeg_quality)
                .encode_image(&pixels)
                .map_err(|err| err.to_string())?;
        }
        Format::Webp => {
            let quality = f32::from(config.webp_quality);
            let memory = if opaque {
                let pixels = image.to_rgb8();
                webp::Encoder::from_rgb(&pixels, width, height).encode(quality)
            } else {
                let pixels = image.to_rgba8();
                webp::Encoder::from_rgba(&pixels, width, height).encode(quality)
            };
            out = memory.to_vec();
        }
        Format::Avif => out = encode_avif(image, config)?,
        Format::Gif | Format::Svg => return Err(format!("kiln does not encode {format:?}")),
    }
    Ok(out)
}

fn encode_avif(image: &DynamicImage, config: &ImagesConfig) -> Result<Vec<u8>, String> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let encoder = ravif::Encoder::new()
        .with_quality(f32::from(config.avif_quality))
        .with_alpha_quality(f32::from(config.avif_quality))
        .with_speed(config.avif_speed)
        .with_bit_depth(ravif::BitDepth::Eight);
    let encoded = if image.color().has_alpha() {
        let pixels: Vec<ravif::RGBA8> = image
            .to_rgba8()
            .chunks_exact(4)
            .map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3]))
            .collect();
        encoder.encode_rgba(ravif::Img::new(&pixels[..], width, height))
    } else {
        let pixels: Vec<ravif::RGB8> = image
            .to_rgb8()
            .chunks_exact(3)
            .map(|p| ravif::RGB8::new(p[0], p[1], p[2]))
            .collect();
        encoder.encode_rgb(ravif::Img::new(&pixels[..], width, height))
    };
    encoded
        .map(|image| image.avif_file)
        .map_err(|err| err.to_string())
}

/// Removes metadata segments from a JPEG without touching the image data:
/// APP1 (EXIF/XMP), APP12–APP13 (IPTC/Photoshop), APP15 and comments. JFIF
/// (APP0), ICC profiles (APP2) and Adobe colour info (APP14) stay, because
/// they change how the image looks. `None` when the file does not parse.
fn strip_jpeg_metadata(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..2]);
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        // Start of scan: the rest is entropy-coded data, copied as is.
        if marker == 0xDA {
            out.extend_from_slice(&bytes[at..]);
            return Some(out);
        }
        let length = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let end = at + 2 + length;
        let segment = bytes.get(at..end)?;
        let metadata = matches!(marker, 0xE1 | 0xEC | 0xED | 0xEF | 0xFE);
        if !metadata {
            out.extend_from_slice(segment);
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ImagesConfig {
        ImagesConfig {
            avif_speed: 10,
            ..ImagesConfig::default()
        }
    }

    fn gradient(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 255 / width) as u8,
                (y * 255 / height) as u8,
                ((x + y) % 256) as u8,
            ])
        }))
    }

    #[test]
    fn png_optimisation_is_lossless() {
        let image = gradient(300, 200);
        let png = encode(&image, Format::Png, &config()).unwrap();
        let processed = process(Format::Png, &png, &config()).unwrap();
        assert!(processed.main.len() <= png.len());
        let decoded = image::load_from_memory(&processed.main).unwrap();
        assert_eq!(decoded.to_rgb8(), image.to_rgb8());
    }

    #[test]
    fn variants_are_never_upscaled_and_keep_the_aspect_ratio() {
        let image = gradient(1000, 500);
        let png = encode(&image, Format::Png, &config()).unwrap();
        let processed = process(Format::Png, &png, &config()).unwrap();
        assert_eq!(processed.size, Some((1000, 500)));
        let widths: Vec<u32> = processed.variants.iter().map(|v| v.width).collect();
        assert!(
            widths.iter().all(|&w| w == 480 || w == 960 || w == 1000),
            "{widths:?}"
        );
        assert!(!widths.contains(&1440));
        for variant in &processed.variants {
            assert_eq!(
                variant.height * 2,
                variant.width,
                "{:?}",
                (variant.width, variant.format)
            );
            // kiln encodes AVIF but `image` (as built here) cannot decode it.
            if variant.format != Format::Avif {
                let decoded = image::load_from_memory(&variant.bytes).unwrap();
                assert_eq!(
                    (decoded.width(), decoded.height()),
                    (variant.width, variant.height)
                );
            }
        }
        let formats: Vec<Format> = processed.variants.iter().map(|v| v.format).collect();
        assert!(
            formats.contains(&Format::Webp) && formats.contains(&Format::Avif),
            "{formats:?}"
        );
    }

    #[test]
    fn jpeg_metadata_stripping_keeps_the_image() {
        let image = gradient(64, 64);
        let jpeg = encode(&image, Format::Jpeg, &config()).unwrap();
        // Insert an EXIF segment and a comment after SOI.
        let mut with_metadata = vec![
            0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x08, b'E', b'x', b'i', b'f', 0, 0,
        ];
        with_metadata.extend_from_slice(&[0xFF, 0xFE, 0x00, 0x05, b'h', b'i', b'!']);
        with_metadata.extend_from_slice(&jpeg[2..]);
        let stripped = strip_jpeg_metadata(&with_metadata).unwrap();
        assert_eq!(stripped, jpeg);
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of("a/b.JPG"), Some(Format::Jpeg));
        assert_eq!(Format::of("a/b.svg"), Some(Format::Svg));
        assert_eq!(Format::of("a/b.txt"), None);
    }
}
