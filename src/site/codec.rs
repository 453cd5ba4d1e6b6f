//! Precompression: `.br`, `.gz` and `.zst` siblings of every compressible
//! output, at the strongest settings that are still practical, so the server
//! never compresses on the fly.

use std::io::Write;

use crate::config::Encoding;

/// File extensions whose contents compress well (text and uncompressed binary
/// formats). Images, fonts and archives are already compressed.
const COMPRESSIBLE_EXTENSIONS: &[&str] = &[
    "css",
    "js",
    "mjs",
    "html",
    "htm",
    "svg",
    "json",
    "xml",
    "txt",
    "map",
    "wasm",
    "ico",
    "webmanifest",
];

/// Zopfli is tried only on files up to this size. Measured on Bootstrap's
/// CSS (231 KB): zopfli saves 1.9% over libdeflate's level 12 but takes
/// 2.3 s instead of 30 ms, and the `.gz` sibling is only served to the few
/// clients without brotli or zstd. Below 32 KiB it costs at most ~0.3 s, once
/// per content (the result is cached).
const ZOPFLI_MAX_INPUT: usize = 32 * 1024;

/// Whether an output with this path gets precompressed siblings.
pub(crate) fn is_compressible(path: &str) -> bool {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    file_name.rsplit_once('.').is_some_and(|(_, ext)| {
        COMPRESSIBLE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
    })
}

/// A stable description of the settings, so cached results are keyed by them.
pub(crate) fn settings_fingerprint(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Brotli => "br:q11:auto-lgwin",
        Encoding::Gzip => "gzip:libdeflate12+zopfli15<=32k",
        Encoding::Zstd => "zstd:19",
    }
}

/// Compresses `data` with `encoding` at kiln's fixed high settings.
pub(crate) fn compress(encoding: Encoding, data: &[u8]) -> Vec<u8> {
    match encoding {
        Encoding::Brotli => brotli(data),
        Encoding::Gzip => gzip(data),
        Encoding::Zstd => zstd(data),
    }
}

/// Compresses a response generated per request: levels that cost well
/// under a millisecond for a page (brotli 5, gzip 6, zstd 3), as nginx's
/// on-the-fly `gzip` does, instead of the build's best-effort ones.
pub(crate) fn compress_fast(encoding: Encoding, data: &[u8]) -> Vec<u8> {
    match encoding {
        Encoding::Brotli => brotli_at(data, 5),
        Encoding::Gzip => libdeflate_gzip_at(data, 6),
        Encoding::Zstd => {
            zstd::encode_all(data, 3).expect("zstd writes to memory, which cannot fail")
        }
    }
}

fn brotli(data: &[u8]) -> Vec<u8> {
    brotli_at(data, 11)
}

fn brotli_at(data: &[u8], quality: i32) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality,
        lgwin: window_bits(data.len()),
        size_hint: data.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    let mut input = data;
    brotli::BrotliCompress(&mut input, &mut out, &params)
        .expect("brotli writes to memory, which cannot fail");
    out
}

/// The smallest brotli window that covers the input (16 to 24 bits): larger
/// windows only cost decoder memory.
fn window_bits(len: usize) -> i32 {
    let needed = usize::BITS - len.max(1).leading_zeros();
    needed.clamp(16, 24) as i32
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let fast = libdeflate_gzip(data);
    if data.len() > ZOPFLI_MAX_INPUT {
        return fast;
    }
    let mut slow = Vec::with_capacity(fast.len());
    let zopfli_ok = zopfli::compress(
        zopfli::Options::default(),
        zopfli::Format::Gzip,
        data,
        &mut slow,
    )
    .is_ok();
    if zopfli_ok && slow.len() < fast.len() {
        slow
    } else {
        fast
    }
}

fn libdeflate_gzip(data: &[u8]) -> Vec<u8> {
    libdeflate_gzip_at(data, 12)
}

fn libdeflate_gzip_at(data: &[u8], level: i32) -> Vec<u8> {
    let level = libdeflater::CompressionLvl::new(level).expect("levels 1 to 12 are valid");
    let mut compressor = libdeflater::Compressor::new(level);
    let mut out = vec![0; compressor.gzip_compress_bound(data.len())];
    let written = compressor
        .gzip_compress(data, &mut out)
        .expect("the buffer is sized by gzip_compress_bound");
    out.truncate(written);
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    let mut encoder = zstd::Encoder::new(Vec::with_capacity(data.len() / 3 + 64), 19)
        .expect("zstd level 19 is valid");
    // The size in the frame header lets decoders allocate once.
    let _ = encoder.set_pledged_src_size(Some(data.len() as u64));
    let _ = encoder.include_contentsize(true);
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .expect("zstd writes to memory, which cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        (0..2000)
            .map(|i| format!(".rule-{i}{{color:#{:06x};margin:{}px}}\n", i * 77, i % 13))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn every_encoding_round_trips_and_shrinks() {
        let data = sample();
        for encoding in [Encoding::Brotli, Encoding::Gzip, Encoding::Zstd] {
            let packed = compress(encoding, &data);
            assert!(packed.len() < data.len() / 3, "{encoding:?}");
            let mut unpacked = Vec::new();
            match encoding {
                Encoding::Brotli => {
                    brotli::Decompressor::new(&packed[..], 4096)
                        .read_to_end(&mut unpacked)
                        .unwrap();
                }
                Encoding::Gzip => {
                    flate2::read::GzDecoder::new(&packed[..])
                        .read_to_end(&mut unpacked)
                        .unwrap();
                }
                Encoding::Zstd => unpacked = zstd::decode_all(&packed[..]).unwrap(),
            }
            assert_eq!(unpacked, data, "{encoding:?}");
            assert_eq!(
                decode_for_test(encoding, &compress_fast(encoding, &data)),
                data
            );
        }
    }

    fn decode_for_test(encoding: Encoding, packed: &[u8]) -> Vec<u8> {
        let mut unpacked = Vec::new();
        match encoding {
            Encoding::Brotli => {
                brotli::Decompressor::new(packed, 4096)
                    .read_to_end(&mut unpacked)
                    .unwrap();
            }
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(packed)
                    .read_to_end(&mut unpacked)
                    .unwrap();
            }
            Encoding::Zstd => unpacked = zstd::decode_all(packed).unwrap(),
        }
        unpacked
    }

    #[test]
    fn compression_is_deterministic() {
        let data = sample();
        for encoding in [Encoding::Brotli, Encoding::Gzip, Encoding::Zstd] {
            assert_eq!(compress(encoding, &data), compress(encoding, &data));
        }
    }

    #[test]
    fn compressible_by_extension() {
        assert!(is_compressible("css/site.abc.css"));
        assert!(is_compressible("favicon.ICO"));
        assert!(is_compressible("css/site.abc.css.map"));
        assert!(!is_compressible("images/a.png"));
        assert!(!is_compressible("fonts/a.woff2"));
        assert!(!is_compressible("README"));
    }

    #[test]
    fn window_covers_input() {
        assert_eq!(window_bits(0), 16);
        assert_eq!(window_bits(100_000), 17);
        assert_eq!(window_bits(100_000_000), 24);
    }
}
