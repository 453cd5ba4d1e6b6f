//! Conditional requests (RFC 9110 §13): `If-Match`, `If-None-Match`,
//! `If-Modified-Since`, `If-Unmodified-Since` and `If-Range`, evaluated in
//! the order §13.2.2 prescribes.

use std::time::SystemTime;

use actix_web::http::header::{self, HeaderMap, HttpDate};

/// The validators of the selected representation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validators<'a> {
    /// The strong entity tag, quotes included (`"abc"`).
    pub etag: &'a str,
    /// Last modification, whole seconds; `None` for generated responses,
    /// where only the entity tag validates.
    pub last_modified: Option<SystemTime>,
}

/// What the preconditions decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Serve the representation; `honour_range` says whether a `Range`
    /// header still applies (`If-Range` may have voided it).
    Proceed { honour_range: bool },
    /// 304: the client's copy is current.
    NotModified,
    /// 412: a precondition the client set does not hold.
    PreconditionFailed,
}

/// Evaluates the request's preconditions. `safe` is true for GET and HEAD.
pub(crate) fn evaluate(headers: &HeaderMap, safe: bool, validators: Validators) -> Outcome {
    // Step 1 and 2: If-Match, else If-Unmodified-Since.
    if headers.contains_key(header::IF_MATCH) {
        if !list_matches(
            headers,
            header::IF_MATCH,
            validators.etag,
            Comparison::Strong,
        ) {
            return Outcome::PreconditionFailed;
        }
    } else if let Some(since) = date(headers, header::IF_UNMODIFIED_SINCE)
        && validators
            .last_modified
            .is_some_and(|modified| modified > since)
    {
        return Outcome::PreconditionFailed;
    }
    // Step 3 and 4: If-None-Match, else If-Modified-Since (GET/HEAD only).
    if headers.contains_key(header::IF_NONE_MATCH) {
        if list_matches(
            headers,
            header::IF_NONE_MATCH,
            validators.etag,
            Comparison::Weak,
        ) {
            return if safe {
                Outcome::NotModified
            } else {
                Outcome::PreconditionFailed
            };
        }
    } else if safe
        && let Some(since) = date(headers, header::IF_MODIFIED_SINCE)
        && validators
            .last_modified
            .is_some_and(|modified| modified <= since)
    {
        return Outcome::NotModified;
    }
    // Step 5: If-Range decides whether Range applies.
    let honour_range = match headers.get(header::IF_RANGE) {
        None => true,
        Some(value) => if_range_holds(value.as_bytes(), validators),
    };
    Outcome::Proceed { honour_range }
}

/// The date of `If-Modified-Since` / `If-Unmodified-Since`; `None` when it
/// is to be ignored: not a valid HTTP-date, or more than one field line
/// (RFC 9110 §13.1.3, §13.1.4).
fn date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    let mut lines = headers.get_all(name);
    let text = lines.next()?.to_str().ok()?;
    if lines.next().is_some() {
        return None;
    }
    text.parse::<HttpDate>().ok().map(SystemTime::from)
}

/// `If-Range` holds for a strongly matching entity tag, or a date equal to
/// the last modification. Weak tags never match.
fn if_range_holds(value: &[u8], validators: Validators) -> bool {
    let text = std::str::from_utf8(value).unwrap_or("").trim();
    if text.starts_with('"') {
        return text == validators.etag;
    }
    if text.starts_with("W/") {
        return false;
    }
    text.parse::<HttpDate>()
        .map(|date| Some(SystemTime::from(date)) == validators.last_modified)
        .unwrap_or(false)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether a list field matches `current`; several field lines make one
/// list (RFC 9110 §5.3).
fn list_matches(
    headers: &HeaderMap,
    name: header::HeaderName,
    current: &str,
    comparison: Comparison,
) -> bool {
    headers
        .get_all(name)
        .any(|value| matches_any(value.as_bytes(), current, comparison))
}

/// Whether a list of entity tags (or `*`) matches `current`.
fn matches_any(list: &[u8], current: &str, comparison: Comparison) -> bool {
    if list.trim_ascii() == b"*" {
        return true;
    }
    entity_tags(list)
        .any(|(weak, tag)| tag == current.as_bytes() && (comparison == Comparison::Weak || !weak))
}

/// Splits `W/"a", "b,c"` into `(weak, "\"tag\"")` items; commas inside
/// quotes belong to the tag. Bytes, not text: a tag may hold obs-text
/// (RFC 9110 §8.8.3), which need not be UTF-8.
fn entity_tags(list: &[u8]) -> impl Iterator<Item = (bool, &[u8])> {
    let mut rest = list;
    std::iter::from_fn(move || {
        loop {
            while let [b' ' | b'\t' | b',', tail @ ..] = rest {
                rest = tail;
            }
            if rest.is_empty() {
                return None;
            }
            let weak = rest.starts_with(b"W/");
            let body = if weak { &rest[2..] } else { rest };
            if !body.starts_with(b"\"") {
                // Not an entity tag: skip to the next comma.
                rest = rest
                    .iter()
                    .position(|&byte| byte == b',')
                    .map_or(&[][..], |at| &rest[at + 1..]);
                continue;
            }
            let Some(close) = body[1..].iter().position(|&byte| byte == b'"') else {
                rest = &[];
                return None;
            };
            let tag = &body[..close + 2];
            rest = &body[close + 2..];
            return Some((weak, tag));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};
    use std::time::{Duration, UNIX_EPOCH};

    const ETAG: &str = "\"abc\"";

    fn validators() -> Validators<'static> {
        Validators {
            etag: ETAG,
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        }
    }

    fn http_date(secs: u64) -> String {
        HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
    }

    fn eval(pairs: &[(&str, &str)], safe: bool) -> Outcome {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        evaluate(&headers, safe, validators())
    }

    const PROCEED: Outcome = Outcome::Proceed { honour_range: true };

    #[test]
    fn if_none_match() {
        assert_eq!(eval(&[("if-none-match", ETAG)], true), Outcome::NotModified);
        assert_eq!(
            eval(&[("if-none-match", "W/\"abc\"")], true),
            Outcome::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "\"x\", \"abc\"")], true),
            Outcome::NotModified
        );
        assert_eq!(eval(&[("if-none-match", "*")], true), Outcome::NotModified);
        assert_eq!(eval(&[("if-none-match", "\"other\"")], true), PROCEED);
        assert_eq!(
            eval(&[("if-none-match", ETAG)], false),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let later = http_date(1_800_000_000);
        assert_eq!(
            eval(
                &[("if-none-match", "\"x\""), ("if-modified-since", &later)],
                true
            ),
            PROCEED
        );
    }

    #[test]
    fn if_modified_since() {
        assert_eq!(
            eval(&[("if-modified-since", &http_date(1_700_000_000))], true),
            Outcome::NotModified
        );
        assert_eq!(
            eval(&[("if-modified-since", &http_date(1_600_000_000))], true),
            PROCEED
        );
        assert_eq!(eval(&[("if-modified-since", "not a date")], true), PROCEED);
        assert_eq!(
            eval(&[("if-modified-since", &http_date(1_800_000_000))], false),
            PROCEED
        );
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        assert_eq!(eval(&[("if-match", ETAG)], true), PROCEED);
        assert_eq!(eval(&[("if-match", "*")], true), PROCEED);
        assert_eq!(
            eval(&[("if-match", "W/\"abc\"")], true),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(&[("if-match", "\"other\"")], true),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn if_unmodified_since() {
        assert_eq!(
            eval(&[("if-unmodified-since", &http_date(1_600_000_000))], true),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(&[("if-unmodified-since", &http_date(1_700_000_000))], true),
            PROCEED
        );
        // If-Match present: If-Unmodified-Since is not evaluated.
        assert_eq!(
            eval(
                &[("if-match", ETAG), ("if-unmodified-since", &http_date(1))],
                true
            ),
            PROCEED
        );
    }

    #[test]
    fn if_range() {
        let skip = Outcome::Proceed {
            honour_range: false,
        };
        assert_eq!(eval(&[("if-range", ETAG)], true), PROCEED);
        assert_eq!(eval(&[("if-range", "\"old\"")], true), skip);
        assert_eq!(eval(&[("if-range", "W/\"abc\"")], true), skip);
        assert_eq!(
            eval(&[("if-range", &http_date(1_700_000_000))], true),
            PROCEED
        );
        assert_eq!(eval(&[("if-range", &http_date(1_700_000_001))], true), skip);
    }

    #[test]
    fn entity_tag_lists_parse_with_commas_in_tags() {
        let tags: Vec<_> = entity_tags(b"W/\"a\", \"b,c\" ,junk, \"d\"").collect();
        assert_eq!(
            tags,
            [
                (true, &b"\"a\""[..]),
                (false, &b"\"b,c\""[..]),
                (false, &b"\"d\""[..])
            ]
        );
    }
}
