//! Precompression: `.br`, `.gz` and `.zst` siblings of every compressible
//! output, in parallel, each from the build cache when the same bytes were
//! compressed before; a variant that is not smaller is not written.

use rayon::prelude::*;

use super::cache::Key;
use super::{Context, OutputFile, Variants};
use crate::config::Encoding;
use crate::site::codec as compress;

/// Compresses every compressible output with every configured encoding, in
/// parallel, largest first so no core idles at the end; results are cached
/// by content.
pub(super) fn all(context: &Context, files: &[OutputFile]) -> Variants {
    let encodings = &context.settings.build().precompress;
    let mut jobs: Vec<(usize, Encoding)> = files
        .iter()
        .enumerate()
        .filter(|(_, file)| compress::is_compressible(&file.path))
        .flat_map(|(index, _)| encodings.iter().map(move |&encoding| (index, encoding)))
        .collect();
    jobs.sort_by_key(|&(index, _)| std::cmp::Reverse(files[index].bytes.len()));
    context.progress.stage("compress", jobs.len());
    let results: Vec<(usize, Encoding, Option<Vec<u8>>)> = jobs
        .par_iter()
        .map(|&(index, encoding)| {
            let started = std::time::Instant::now();
            let packed = compress_cached(context, encoding, &files[index].bytes);
            let what = format!("{}.{}", files[index].path, encoding.extension());
            context.progress.done(&what, started);
            (index, encoding, packed)
        })
        .collect();
    let mut variants: Variants = vec![Vec::new(); files.len()];
    for (index, encoding, packed) in results {
        if let Some(packed) = packed {
            variants[index].push((encoding, packed));
        }
    }
    for list in &mut variants {
        list.sort_by_key(|(encoding, _)| *encoding);
    }
    variants
}

/// The compressed bytes, or `None` when compressing does not make the file smaller.
fn compress_cached(context: &Context, encoding: Encoding, bytes: &[u8]) -> Option<Vec<u8>> {
    let digest = blake3::hash(bytes);
    let key = Key::new(
        "compress",
        &[
            compress::settings_fingerprint(encoding).as_bytes(),
            digest.as_bytes(),
        ],
    );
    let packed = match context.cache.get_bytes(&key) {
        Some(packed) => {
            context.stats.hit();
            packed
        }
        None => {
            context.stats.miss();
            let packed = compress::compress(encoding, bytes);
            // An empty record means "not worth it": compressed output is never empty.
            let worth_it = packed.len() < bytes.len();
            context
                .cache
                .put_bytes(&key, if worth_it { &packed } else { &[] });
            if worth_it { packed } else { Vec::new() }
        }
    };
    (!packed.is_empty()).then_some(packed)
}
