//! Content negotiation of precompressed variants from `Accept-Encoding`
//! (RFC 9110 §12.5.3), with q-values.

use crate::config::Encoding;

/// Which stored variant answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The variant at this index of the resource's list.
    Variant(usize),
    /// The client refused every coding we have, identity included.
    NotAcceptable,
}

/// Picks the variant to send. `available` lists each variant's coding
/// (`None` = identity). Among the codings the client accepts, the highest
/// q-value wins; ties go to the earlier entry of `available`, which the
/// table orders smallest first. Identity that the client does not mention
/// is acceptable (RFC 9110) but only chosen when no coding the client named
/// is available: a browser that says `gzip` wants gzip.
pub(crate) fn choose(accept_encoding: Option<&[u8]>, available: &[Option<Encoding>]) -> Choice {
    let identity_index = available.iter().position(Option::is_none);
    let Some(header) = accept_encoding else {
        return identity_index.map_or(Choice::NotAcceptable, Choice::Variant);
    };
    let preferences = parse(header);
    let mut best: Option<(u16, usize)> = None;
    for (index, coding) in available.iter().enumerate() {
        let quality = match coding {
            Some(encoding) => quality_of(preferences.clone(), encoding.token()),
            None => identity_quality(preferences.clone()),
        };
        let Some(quality) = quality.filter(|&q| q > 0) else {
            continue;
        };
        if best.is_none_or(|(best_q, _)| quality > best_q) {
            best = Some((quality, index));
        }
    }
    if let Some((_, index)) = best {
        return Choice::Variant(index);
    }
    // Nothing named is available: identity unless explicitly refused.
    match identity_index {
        Some(index) if !identity_refused(preferences) => Choice::Variant(index),
        _ => Choice::NotAcceptable,
    }
}

/// One `coding;q=…` item; q in thousandths.
struct Preference<'a> {
    coding: &'a str,
    quality: u16,
}

/// The items of the header, parsed lazily (no allocation per request).
fn parse(header: &[u8]) -> impl Iterator<Item = Preference<'_>> + Clone {
    let text = std::str::from_utf8(header).unwrap_or("");
    text.split(',').filter_map(|item| {
        let mut parts = item.split(';');
        let coding = parts.next()?.trim();
        if coding.is_empty() {
            return None;
        }
        let mut quality = 1000;
        for parameter in parts {
            let (name, value) = parameter.split_once('=')?;
            if name.trim().eq_ignore_ascii_case("q") {
                quality = parse_qvalue(value.trim())?;
            }
        }
        Some(Preference { coding, quality })
    })
}

/// `0`, `0.5`, `1.000` → thousandths; anything else is invalid.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths = 0u16;
    for (index, digit) in fraction.bytes().enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][index];
    }
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn matches(preference: &Preference, token: &str) -> bool {
    preference.coding.eq_ignore_ascii_case(token)
        || (token == "gzip" && preference.coding.eq_ignore_ascii_case("x-gzip"))
}

/// The q-value of a coding: its own entry, else `*`'s, else not acceptable.
fn quality_of<'a>(
    preferences: impl Iterator<Item = Preference<'a>> + Clone,
    token: &str,
) -> Option<u16> {
    preferences
        .clone()
        .find(|p| matches(p, token))
        .or_else(|| preferences.clone().find(|p| p.coding == "*"))
        .map(|p| p.quality)
}

/// Identity competes only when named (or covered by `*`).
fn identity_quality<'a>(preferences: impl Iterator<Item = Preference<'a>> + Clone) -> Option<u16> {
    quality_of(preferences, "identity")
}

fn identity_refused<'a>(preferences: impl Iterator<Item = Preference<'a>> + Clone) -> bool {
    identity_quality(preferences) == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const ALL: [Option<Encoding>; 4] = [Some(Brotli), Some(Zstd), Some(Gzip), None];

    fn pick(header: Option<&str>, available: &[Option<Encoding>]) -> Option<Option<Encoding>> {
        match choose(header.map(str::as_bytes), available) {
            Choice::Variant(index) => Some(available[index]),
            Choice::NotAcceptable => None,
        }
    }

    #[test]
    fn no_header_means_identity() {
        assert_eq!(pick(None, &ALL), Some(None));
    }

    #[test]
    fn browsers_get_the_smallest_accepted_variant() {
        assert_eq!(
            pick(Some("gzip, deflate, br, zstd"), &ALL),
            Some(Some(Brotli))
        );
        assert_eq!(pick(Some("gzip, deflate"), &ALL), Some(Some(Gzip)));
        assert_eq!(pick(Some("x-gzip"), &ALL), Some(Some(Gzip)));
        assert_eq!(pick(Some("GZIP, ZSTD"), &ALL), Some(Some(Zstd)));
    }

    #[test]
    fn q_values_rank_codings() {
        assert_eq!(pick(Some("br;q=0.5, gzip;q=0.8"), &ALL), Some(Some(Gzip)));
        assert_eq!(pick(Some("br;q=0, gzip"), &ALL), Some(Some(Gzip)));
        assert_eq!(pick(Some("br;q=0.5, identity"), &ALL), Some(None));
        assert_eq!(pick(Some("*;q=0.3, br;q=0.2"), &ALL), Some(Some(Zstd)));
    }

    #[test]
    fn identity_fallback_unless_refused() {
        assert_eq!(pick(Some("deflate"), &ALL), Some(None));
        assert_eq!(pick(Some(""), &ALL), Some(None));
        assert_eq!(pick(Some("deflate, identity;q=0"), &ALL), None);
        assert_eq!(pick(Some("deflate, *;q=0"), &ALL), None);
        assert_eq!(pick(Some("br, *;q=0"), &[None]), None);
    }

    #[test]
    fn malformed_items_are_ignored() {
        assert_eq!(pick(Some("br;q=2, gzip"), &ALL), Some(Some(Gzip)));
        assert_eq!(
            pick(Some("br;q=abc, ,;,gzip;q=0.1"), &ALL),
            Some(Some(Gzip))
        );
    }

    #[test]
    fn qvalues_parse_strictly() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("0.25"), Some(250));
        assert_eq!(parse_qvalue("1.0"), Some(1000));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
    }
}
