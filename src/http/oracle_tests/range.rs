//! `Range` (RFC 9110 §14) against actix's `Range` / `ByteRangeSpec`.
//!
//! Agreement: when the value is a valid `bytes` ranges-specifier, actix
//! parses it to `Range::Bytes(specs)` and kiln answers [`expected`]: the
//! satisfiable specs by `ByteRangeSpec::to_satisfiable_range`, in request
//! order and not coalesced, or 416 when none is satisfiable; except where
//! kiln's documented policy answers 200 with the whole representation
//! instead of amplifying the response (more than `max_ranges` ranges,
//! overlapping ranges, more bytes than the whole), which RFC 9110 §14.2
//! allows ("A server MAY ignore the Range header field").

#![allow(clippy::single_range_in_vec_init)]

use std::ops::Range as Span;

use actix_web::http::header::{ByteRangeSpec, Header, HeaderValue, RANGE, Range};
use proptest::prelude::*;

use super::{config, fuzzy_ascii, header_bytes, ows, render_list, request};
use crate::http::range::{RangeOutcome, evaluate};

/// actix's reading of a `Range` value; `None` when it rejects it.
fn actix(value: &[u8]) -> Option<Range> {
    let value = HeaderValue::from_bytes(value).ok()?;
    Range::parse(&request(&[(RANGE, value)])).ok()
}

/// What kiln must answer for a valid byte-range-set of `specs`.
fn expected(specs: &[ByteRangeSpec], len: u64, max_ranges: usize) -> RangeOutcome {
    // Policy: too many ranges are served as a whole (RFC 9110 §14.2: a
    // server MAY ignore a Range header field).
    if specs.len() > max_ranges {
        return RangeOutcome::Full;
    }
    let ranges: Vec<Span<u64>> = specs
        .iter()
        .filter_map(|spec| spec.to_satisfiable_range(len))
        .map(|(first, last)| first..last + 1)
        .collect();
    if ranges.is_empty() {
        // RFC 9110 §14.1.2: "When a selected representation has zero
        // length, the only satisfiable form of range-spec in a GET request
        // is a suffix-range with a non-zero suffix-length." Such a set is
        // satisfiable, so 416 would be wrong, and no Content-Range can
        // describe the nothing a 206 would carry: the server takes §14.2's
        // "MAY ignore a Range header field when the selected representation
        // has no content". (actix's `to_satisfiable_range` says `None` for
        // any spec on an empty representation.)
        let empty_but_satisfiable = len == 0
            && specs
                .iter()
                .any(|spec| matches!(spec, ByteRangeSpec::Last(suffix) if *suffix > 0));
        return if empty_but_satisfiable {
            RangeOutcome::Full
        } else {
            RangeOutcome::Unsatisfiable
        };
    }
    // Policy: overlapping ranges, or more bytes than the whole, only make
    // the response larger than the file (§14.2 lets the server ignore them;
    // kiln ignores any overlap, not only "more than two").
    let total: u64 = ranges.iter().map(|range| range.end - range.start).sum();
    let overlap = ranges.iter().enumerate().any(|(index, a)| {
        ranges[index + 1..]
            .iter()
            .any(|b| a.start < b.end && b.start < a.end)
    });
    if total > len || overlap {
        return RangeOutcome::Full;
    }
    RangeOutcome::Partial(ranges)
}

/// Checks what any `Partial` answer must be: between one and `max_ranges`
/// non-empty, disjoint ranges inside the representation.
fn check_partial(outcome: &RangeOutcome, len: u64, max_ranges: usize) -> Result<(), TestCaseError> {
    if let RangeOutcome::Partial(ranges) = outcome {
        prop_assert!(!ranges.is_empty() && ranges.len() <= max_ranges);
        for (index, range) in ranges.iter().enumerate() {
            prop_assert!(range.start < range.end && range.end <= len, "{range:?}");
            for other in &ranges[index + 1..] {
                prop_assert!(range.end <= other.start || other.end <= range.start);
            }
        }
    }
    Ok(())
}

fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        1 => Just(1u64),
        4 => 0..64u64,
        2 => 0..100_000u64,
        1 => 0..(1u64 << 40),
    ]
}

/// A byte position near the interesting places for `len`.
fn position(len: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0..=len.saturating_add(4),
        1 => Just(len.saturating_sub(1)),
        1 => Just(len),
        1 => any::<u64>(),
        1 => Just(u64::MAX),
    ]
}

fn spec(len: u64) -> impl Strategy<Value = ByteRangeSpec> {
    prop_oneof![
        (position(len), position(len)).prop_map(|(a, b)| ByteRangeSpec::FromTo(a.min(b), a.max(b))),
        position(len).prop_map(ByteRangeSpec::From),
        prop_oneof![4 => position(len), 1 => Just(0u64)].prop_map(ByteRangeSpec::Last),
    ]
}

/// Ascending, disjoint `first-last` ranges (then shuffled): the shape a
/// media player or PDF reader sends, likelier to be served as 206 than
/// independent random specs.
fn disjoint_specs(len: u64) -> impl Strategy<Value = Vec<ByteRangeSpec>> {
    let step = (len / 16).max(1);
    prop::collection::vec((0..=step, 0..step), 1..=6)
        .prop_map(|pieces| {
            let mut next = 0u64;
            pieces
                .into_iter()
                .map(|(gap, width)| {
                    let first = next + gap;
                    next = first + width + 1;
                    ByteRangeSpec::FromTo(first, first + width)
                })
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

/// Renders a byte-range-set the way RFC 9110 §14.1.2 spells it, with the
/// list syntax of §5.6.1 and the `OWS` after `=` of Erratum 7306
/// (`ranges-specifier = range-unit "=" OWS range-set`).
fn render(specs: &[ByteRangeSpec]) -> impl Strategy<Value = String> + use<> {
    let members = specs.iter().map(ToString::to_string).collect();
    (ows(), render_list(members)).prop_map(|(space, set)| format!("bytes={space}{set}"))
}

fn valid_case() -> impl Strategy<Value = (u64, usize, Vec<ByteRangeSpec>, String)> {
    (length(), 1usize..=8)
        .prop_flat_map(|(len, max_ranges)| {
            let specs = prop_oneof![
                prop::collection::vec(spec(len), 1..=10),
                disjoint_specs(len),
            ];
            (Just(len), Just(max_ranges), specs)
        })
        .prop_flat_map(|(len, max_ranges, specs)| {
            let text = render(&specs);
            (Just(len), Just(max_ranges), Just(specs), text)
        })
}

/// A range-spec RFC 9110 §14.1.1/§14.1.2 calls invalid.
fn invalid_member() -> impl Strategy<Value = String> {
    prop_oneof![
        // last-pos < first-pos.
        (1..=u64::MAX)
            .prop_flat_map(|first| (Just(first), 0..first))
            .prop_map(|(first, last)| format!("{first}-{last}")),
        // Not 1*DIGIT: actix takes `+5` (Rust's `u64::from_str` accepts a
        // plus sign); the RFC's grammar does not.
        Just("+5-10".to_string()),
        Just("5-+10".to_string()),
        Just("-+5".to_string()),
        Just("0x10-".to_string()),
        Just("a-b".to_string()),
        Just("-".to_string()),
        Just("7".to_string()),
        Just("1-2-3".to_string()),
        Just("1 2-3".to_string()),
        // 1*DIGIT but past u64: valid grammar, yet kiln ignores the header
        // (§14.2 "MAY ignore"); actix drops the member.
        Just("18446744073709551616-".to_string()),
        Just("0-18446744073709551616".to_string()),
        Just("-18446744073709551616".to_string()),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// A valid `bytes` header: actix reads back exactly the generated specs
    /// and kiln answers what the oracle derives from them.
    #[test]
    fn valid_headers_agree_with_actix((len, max_ranges, specs, text) in valid_case()) {
        prop_assert_eq!(actix(text.as_bytes()), Some(Range::Bytes(specs.clone())), "{}", text);
        let outcome = evaluate(text.as_bytes(), len, max_ranges);
        prop_assert_eq!(&outcome, &expected(&specs, len, max_ranges), "{} len={}", text, len);
        check_partial(&outcome, len, max_ranges)?;
    }

    /// One invalid range-spec makes the ranges-specifier invalid (RFC 9110
    /// §14.1.1: "A ranges-specifier is invalid if it contains any
    /// range-spec that is invalid or undefined for the indicated
    /// range-unit"), and kiln ignores it (§14.2: "A server that supports
    /// range requests MAY ignore or reject a Range header field that
    /// contains an invalid ranges-specifier"): 200, the whole. actix
    /// differs by design: it drops the invalid member and serves the rest.
    #[test]
    fn one_invalid_member_voids_the_header(
        (len, max_ranges, specs, _) in valid_case(),
        bad in invalid_member(),
        at in any::<prop::sample::Index>(),
    ) {
        let mut members: Vec<String> = specs.iter().map(ToString::to_string).collect();
        members.insert(at.index(members.len() + 1), bad);
        let text = format!("bytes={}", members.join(", "));
        prop_assert_eq!(evaluate(text.as_bytes(), len, max_ranges), RangeOutcome::Full, "{}", text);
    }

    /// Units other than `bytes` are ignored (RFC 9110 §14.2: "An origin
    /// server MUST ignore a Range header field that contains a range unit it
    /// does not understand"), and so is a malformed specifier. Unit names
    /// are case-insensitive (§14.1), but kiln, like actix, only takes the
    /// lowercase spelling every client sends; ignoring `BYTES=` is allowed
    /// (§14.2: "A server MAY ignore the Range header field").
    #[test]
    fn other_units_are_ignored(
        unit in prop_oneof![
            Just("BYTES"), Just("Bytes"), Just("items"), Just("byte"), Just("bytes "),
            Just("none"), Just(""),
        ],
        (len, max_ranges, specs, _) in valid_case(),
        space in ows(),
    ) {
        let set: Vec<String> = specs.iter().map(ToString::to_string).collect();
        let text = format!("{unit}={space}{}", set.join(","));
        if let Some(Range::Bytes(parsed)) = actix(text.as_bytes()) {
            prop_assert!(false, "actix read {:?} as bytes: {:?}", text, parsed);
        }
        prop_assert_eq!(evaluate(text.as_bytes(), len, max_ranges), RangeOutcome::Full, "{}", text);
    }

    /// Arbitrary values never panic; whenever kiln does not ignore one, it
    /// is a `bytes` specifier that actix parses without dropping a member
    /// once whitespace is removed (kiln's one leniency: whitespace around
    /// `-` and members), and kiln's answer is the oracle's for it.
    #[test]
    fn arbitrary_values(
        value in prop_oneof![
            header_bytes(),
            fuzzy_ascii(&["bytes=", "bytes=", "-", "-", ",", " ", "0", "1", "9", "10", "99", "+", "=", "BYTES="])
                .prop_map(String::into_bytes),
            // Near-valid specifiers, with whitespace where the RFC has none
            // and the odd sign or letter.
            r"[ \t]?bytes=[ \t]?(([0-9]{1,3}|[0-9]{0,2}[+a \u{a0}])?[ \t]?-[ \t]?[0-9]{0,3}[ \t]?,[ \t]?){0,3}[0-9]{0,3}-[0-9]{0,3}"
                .prop_map(String::into_bytes),
        ],
        len in length(),
        max_ranges in 1usize..=8,
    ) {
        let outcome = evaluate(&value, len, max_ranges);
        check_partial(&outcome, len, max_ranges)?;
        if outcome != RangeOutcome::Full {
            let text = std::str::from_utf8(&value).expect("kiln answered a non-UTF-8 value");
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let members = compact
                .strip_prefix("bytes=")
                .expect("kiln answered a unit other than bytes")
                .split(',')
                .filter(|member| !member.is_empty())
                .count();
            let Some(Range::Bytes(specs)) = actix(compact.as_bytes()) else {
                return Err(TestCaseError::fail(format!("actix rejects {compact:?}, kiln said {outcome:?}")));
            };
            prop_assert_eq!(specs.len(), members, "actix dropped a member of {:?}", compact);
            prop_assert_eq!(outcome, expected(&specs, len, max_ranges), "{:?}", text);
        }
    }
}

/// Regression (found by `valid_headers_agree_with_actix`): kiln answered 416
/// to `bytes=-5` on an empty representation, whose suffix-range RFC 9110
/// §14.1.2 calls satisfiable.
#[test]
fn suffix_range_of_an_empty_representation_is_not_416() {
    assert_eq!(evaluate(b"bytes=-5", 0, 16), RangeOutcome::Full);
    assert_eq!(evaluate(b"bytes=0-, -1", 0, 16), RangeOutcome::Full);
    // Nothing satisfiable: still 416.
    assert_eq!(evaluate(b"bytes=0-", 0, 16), RangeOutcome::Unsatisfiable);
    assert_eq!(evaluate(b"bytes=-0", 0, 16), RangeOutcome::Unsatisfiable);
}
