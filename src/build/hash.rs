//! Content hashes: the short hash in output file names, and the SRI
//! `integrity` value of each output.

use base64::Engine;
use sha2::{Digest, Sha384};

use crate::build::cache::{Cache, Key};
use crate::config::HashEncoding;

/// How output names are hashed: the alphabet and the number of characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashStyle {
    pub encoding: HashEncoding,
    pub length: usize,
}

impl HashStyle {
    /// The file-name hash of `bytes`.
    pub fn of(&self, bytes: &[u8]) -> String {
        self.of_digest(blake3::hash(bytes))
    }

    /// The file-name hash of an already computed blake3 digest.
    pub fn of_digest(&self, digest: blake3::Hash) -> String {
        let mut text = match self.encoding {
            HashEncoding::Hex => digest.to_hex().to_string(),
            HashEncoding::Base32 => base32_lower(digest.as_bytes()),
        };
        text.truncate(self.length);
        text
    }
}

/// Inserts `hash` before the extension: `site.css` → `site.HASH.css`.
/// Multi-part extensions keep their tail: `app.css.map` is not produced here.
pub fn hashed_name(file_name: &str, hash: &str) -> String {
    match file_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{hash}.{ext}"),
        _ => format!("{file_name}.{hash}"),
    }
}

/// Inserts the hash into the last component of a `/`-separated path.
pub fn hashed_path(path: &str, hash: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{}", hashed_name(name, hash)),
        None => hashed_name(path, hash),
    }
}

/// The SRI value of `bytes`, whose blake3 is `digest`, from the cache when
/// known: SHA-384 costs ten times blake3, and most files do not change
/// between builds.
pub fn cached_integrity(cache: &Cache, bytes: &[u8], digest: &blake3::Hash) -> String {
    let key = Key::new("integrity", &[digest.as_bytes()]);
    let text = cache.memoize(&key, || integrity(bytes).into_bytes());
    String::from_utf8(text).unwrap_or_else(|_| integrity(bytes))
}

/// The Subresource Integrity value (`sha384-…`) of `bytes`.
pub fn integrity(bytes: &[u8]) -> String {
    let digest = Sha384::digest(bytes);
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// RFC 4648 base32 in lowercase, without padding (file-name safe and
/// case-insensitive-filesystem safe).
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32_lower(b"f"), "my");
        assert_eq!(base32_lower(b""), "");
    }

    #[test]
    fn hash_has_requested_length_and_alphabet() {
        for (encoding, length) in [(HashEncoding::Base32, 8), (HashEncoding::Hex, 20)] {
            let hash = HashStyle { encoding, length }.of(b"body{}");
            assert_eq!(hash.len(), length);
            assert!(
                hash.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            );
        }
    }

    #[test]
    fn hashed_names_keep_extension() {
        assert_eq!(hashed_name("site.css", "abc"), "site.abc.css");
        assert_eq!(hashed_name("jquery.min.js", "abc"), "jquery.min.abc.js");
        assert_eq!(hashed_name("LICENSE", "abc"), "LICENSE.abc");
        assert_eq!(hashed_name(".hidden", "abc"), ".hidden.abc");
        assert_eq!(hashed_path("css/site.css", "abc"), "css/site.abc.css");
    }

    #[test]
    fn integrity_is_sha384_base64() {
        // echo -n "alert('Hello, world.');" | openssl dgst -sha384 -binary | base64
        assert_eq!(
            integrity(b"alert('Hello, world.');"),
            "sha384-H8BRh8j48O9oYatfu5AZzq6A9RINhZO5H16dQZngK7T62em8MUt1FLm52t+eX6xO"
        );
    }
}
