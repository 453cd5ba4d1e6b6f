//! URL paths: encoding output paths into URLs and decoding request and
//! stylesheet paths, one implementation on `percent-encoding` for the build
//! and the server alike.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// What stays literal in an encoded path: `/` and RFC 3986's unreserved
/// and sub-delimiter characters.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// The public URL of an output file, as referenced from another output in
/// `from_dir` (relative to the output directory). With `base_url = "./"`
/// URLs are relative, so the site works from any directory.
pub(crate) fn public_url(base_url: &str, file: &str, from_dir: &str) -> String {
    let file = percent_encode_path(file);
    if base_url != "./" {
        return format!("{base_url}{file}");
    }
    let depth = from_dir.split('/').filter(|part| !part.is_empty()).count();
    format!("{}{file}", "../".repeat(depth))
}

/// Percent-encodes what may not appear literally in a URL path (spaces,
/// `#`, `?`, `%`, non-ASCII, ...), keeping `/` and RFC 3986's safe characters.
pub(crate) fn percent_encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH).to_string()
}

/// Percent-encodes one path segment or query value: as a path, and `/`,
/// `?`, `&`, `=`, `+` and `#` too.
pub(crate) fn percent_encode_component(text: &str) -> String {
    const COMPONENT: &AsciiSet = &PATH
        .add(b'/')
        .add(b'?')
        .add(b'&')
        .add(b'=')
        .add(b'+')
        .add(b'#');
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Decodes `%XX` escapes strictly: `None` when an escape is malformed or
/// the bytes are not UTF-8. For request paths, where an ambiguous byte must
/// be refused rather than guessed.
pub(crate) fn decode_strict(text: &str) -> Option<Cow<'_, str>> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(at, &byte)| {
        byte != b'%'
            || bytes
                .get(at + 1..at + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(text).decode_utf8().ok()
}

/// Decodes `%XX` escapes leniently: a malformed escape stays as written and
/// bytes that are not UTF-8 become U+FFFD. For references inside sources
/// (`url(my%20photo.png)` names `my photo.png`).
pub(crate) fn decode_lossy(text: &str) -> Cow<'_, str> {
    percent_decode_str(text).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_follow_base_url() {
        assert_eq!(public_url("/", "images/a.png", "css"), "/images/a.png");
        assert_eq!(
            public_url("https://cdn.example.com/site/", "images/a.png", "css"),
            "https://cdn.example.com/site/images/a.png"
        );
        assert_eq!(public_url("./", "images/a.png", "css"), "../images/a.png");
        assert_eq!(
            public_url("./", "images/a.png", "css/deep"),
            "../../images/a.png"
        );
        assert_eq!(public_url("./", "a.png", ""), "a.png");
    }

    #[test]
    fn unsafe_characters_are_percent_encoded() {
        assert_eq!(
            public_url("/", "images/my photo#1.png", "css"),
            "/images/my%20photo%231.png"
        );
        assert_eq!(percent_encode_path("café/ü.svg"), "caf%C3%A9/%C3%BC.svg");
    }

    #[test]
    fn strict_decoding_refuses_malformed_escapes_and_bad_utf8() {
        assert_eq!(
            decode_strict("/my%20photo.svg").as_deref(),
            Some("/my photo.svg")
        );
        assert_eq!(decode_strict("/plain").as_deref(), Some("/plain"));
        assert_eq!(decode_strict("/a%2"), None);
        assert_eq!(decode_strict("/a%zz"), None);
        assert_eq!(decode_strict("/%c0%ae"), None);
    }

    #[test]
    fn lossy_decoding_keeps_what_it_cannot_decode() {
        assert_eq!(decode_lossy("my%20photo.png"), "my photo.png");
        assert_eq!(decode_lossy("100%"), "100%");
        assert_eq!(decode_lossy("a%zzb"), "a%zzb");
    }
}
