//! `Accept-Encoding` (RFC 9110 §12.5.3) against actix's `AcceptEncoding`.
//!
//! Agreement, with `q(c)` a coding's q-value in actix's parse (its own
//! item, else `*`'s, else unrated), checked by [`check`]:
//! - kiln picks a rated coding only if its q is non-zero and maximal among
//!   the available codings, and on ties the earliest one in `available`
//!   (kiln's order, smallest variant first);
//! - kiln picks an unrated coding only if it is identity ("acceptable by
//!   default", §12.5.3) and no available coding has a non-zero q (kiln's
//!   documented choice: a client that names a coding wants it);
//! - 406 only if nothing available has a non-zero q and identity is refused
//!   (`identity;q=0`, or `*;q=0` without an identity item).
//!
//! Codings are case-insensitive (§8.4.1) and `x-gzip` is gzip (§8.4.1.3);
//! actix keeps `x-gzip` as an unknown coding, so the oracle maps it.

use actix_web::http::header::{
    ACCEPT_ENCODING, AcceptEncoding, Encoding, Header, HeaderValue, Preference, Quality,
    QualityItem, q,
};
use proptest::prelude::*;

use super::{config, fuzzy_ascii, header_bytes, ows, request};
use crate::config::Encoding as Coding;
use crate::http::negotiate::{Choice, choose};

type Items = Vec<QualityItem<Preference<Encoding>>>;

/// actix's reading of an `Accept-Encoding` value; `None` when it rejects it.
fn actix(value: &[u8]) -> Option<Items> {
    let value = HeaderValue::from_bytes(value).ok()?;
    AcceptEncoding::parse(&request(&[(ACCEPT_ENCODING, value)]))
        .ok()
        .map(|parsed| parsed.0)
}

fn names(encoding: &Encoding, coding: Option<Coding>) -> bool {
    match coding {
        None => *encoding == Encoding::identity(),
        Some(Coding::Brotli) => *encoding == Encoding::brotli(),
        Some(Coding::Zstd) => *encoding == Encoding::zstd(),
        // RFC 9110 §8.4.1.3: "A recipient SHOULD consider "x-gzip" to be
        // equivalent to "gzip"."
        Some(Coding::Gzip) => {
            *encoding == Encoding::gzip()
                || matches!(encoding, Encoding::Unknown(name) if name.eq_ignore_ascii_case("x-gzip"))
        }
    }
}

/// A coding's q-value: its own item, else `*`'s, else `None` (unrated).
fn quality(items: &Items, coding: Option<Coding>) -> Option<Quality> {
    items
        .iter()
        .find(
            |item| matches!(&item.item, Preference::Specific(encoding) if names(encoding, coding)),
        )
        .or_else(|| items.iter().find(|item| item.item == Preference::Any))
        .map(|item| item.quality)
}

/// Checks kiln's `choice` against the agreement in the module docs.
fn check(choice: Choice, available: &[Option<Coding>], items: &Items) -> Result<(), TestCaseError> {
    let rate = |coding| quality(items, coding);
    let best = available
        .iter()
        .filter_map(|&coding| rate(coding))
        .filter(|&q| q > Quality::ZERO)
        .max();
    match choice {
        Choice::Variant(index) => {
            prop_assert!(index < available.len());
            let coding = available[index];
            match rate(coding) {
                Some(chosen) => {
                    prop_assert!(chosen > Quality::ZERO, "chose {:?} with q=0", coding);
                    prop_assert_eq!(Some(chosen), best, "chose {:?} below the best", coding);
                    prop_assert!(
                        available[..index]
                            .iter()
                            .all(|&earlier| rate(earlier) != Some(chosen)),
                        "tie not given to the earliest"
                    );
                }
                None => {
                    prop_assert!(coding.is_none(), "chose unrated {:?}", coding);
                    prop_assert_eq!(best, None, "chose unrated identity over a rated coding");
                }
            }
        }
        Choice::NotAcceptable => {
            prop_assert_eq!(best, None, "406 with an acceptable coding");
            prop_assert_eq!(
                rate(None),
                Some(Quality::ZERO),
                "406 without identity refused"
            );
        }
    }
    Ok(())
}

/// Each resource has identity plus some precompressed siblings, in any
/// order (the table sorts them by size).
fn available() -> impl Strategy<Value = Vec<Option<Coding>>> {
    (
        prop::sample::subsequence(
            vec![Some(Coding::Brotli), Some(Coding::Zstd), Some(Coding::Gzip)],
            0..=3,
        )
        .prop_shuffle(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut codings, at)| {
            codings.insert(at.index(codings.len() + 1), None);
            codings
        })
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110
/// §12.4.2), with its value in thousandths.
fn qvalue() -> impl Strategy<Value = (String, u16)> {
    prop_oneof![
        prop::sample::select(
            &[
                ("0", 0u16),
                ("1", 1000),
                ("0.", 0),
                ("1.", 1000),
                ("1.0", 1000),
                ("1.00", 1000),
                ("1.000", 1000),
                ("0.000", 0),
                ("0.001", 1),
                ("0.999", 999)
            ][..]
        )
        .prop_map(|(text, value)| (text.to_string(), value)),
        (0u16..10).prop_map(|d| (format!("0.{d}"), d * 100)),
        (0u16..100).prop_map(|d| (format!("0.{d:02}"), d * 10)),
        (0u16..1000).prop_map(|d| (format!("0.{d:03}"), d)),
    ]
}

/// One `codings [ weight ]` item (§12.5.3), `weight = OWS ";" OWS "q="
/// qvalue` (§12.4.2), in one of three spellings of the coding.
#[derive(Debug, Clone)]
struct Item {
    name: String,
    weight: Option<(String, u16)>,
}

fn weight() -> impl Strategy<Value = (String, u16)> {
    (
        ows(),
        ows(),
        prop::sample::select(&["q", "Q"][..]),
        qvalue(),
    )
        .prop_map(|(before, after, q, (value, thousandths))| {
            (format!("{before};{after}{q}={value}"), thousandths)
        })
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    const NAMES: [&str; 9] = [
        "gzip", "x-gzip", "br", "zstd", "identity", "*", "deflate", "compress", "foo",
    ];
    // Distinct codings (gzip and x-gzip being one), so that the RFC's
    // answer does not hang on which of two items counts.
    prop::sample::subsequence(NAMES.to_vec(), 0..=6)
        .prop_shuffle()
        .prop_map(|names| {
            let gzip = names.contains(&"gzip");
            names
                .into_iter()
                .filter(|name| !(gzip && *name == "x-gzip"))
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|names| {
            let count = names.len();
            (
                Just(names),
                prop::collection::vec(0u8..3, count),
                prop::collection::vec(prop::option::weighted(0.6, weight()), count),
            )
        })
        .prop_map(|(names, spellings, weights)| {
            names
                .into_iter()
                .zip(spellings)
                .zip(weights)
                .map(|((name, spelling), weight)| {
                    let name = match spelling {
                        0 => name.to_string(),
                        1 => name.to_ascii_uppercase(),
                        _ => name[..1].to_ascii_uppercase() + &name[1..],
                    };
                    Item { name, weight }
                })
                .collect()
        })
}

impl Item {
    fn render(&self) -> String {
        match &self.weight {
            Some((weight, _)) => format!("{}{weight}", self.name),
            None => self.name.clone(),
        }
    }

    /// What actix must read this item as.
    fn parsed(&self) -> QualityItem<Preference<Encoding>> {
        let item = if self.name == "*" {
            Preference::Any
        } else {
            Preference::Specific(self.name.parse().unwrap())
        };
        let thousandths = self.weight.as_ref().map_or(1000, |(_, value)| *value);
        QualityItem::new(item, q(f32::from(thousandths) / 1000.0))
    }
}

fn pick(header: Option<&str>, available: &[Option<Coding>]) -> Choice {
    choose(header.map(str::as_bytes), available)
}

/// Members both parsers drop: q-values outside the grammar, an empty
/// parameter.
const MALFORMED: [&str; 12] = [
    "br;q=2",
    "gzip;q=abc",
    "zstd;q=0.1234",
    "gzip;q=1.5",
    "br;q=",
    "gzip;",
    "identity;q=-1",
    "*;q=.5",
    "zstd;q=0.5x",
    "gzip;q=1.01",
    "*;q=0.0001",
    "identity;q=1.5",
];

proptest! {
    #![proptest_config(config())]

    /// Well-formed `Accept-Encoding` values: actix reads back the generated
    /// items and kiln's choice satisfies [`check`] on actix's reading.
    #[test]
    fn valid_headers_agree_with_actix(
        (items, text) in items().prop_flat_map(|items| {
            let members = items.iter().map(Item::render).collect();
            (Just(items), super::render_list(members))
        }),
        available in available(),
    ) {
        let parsed = actix(text.as_bytes()).unwrap();
        prop_assert_eq!(&parsed, &items.iter().map(Item::parsed).collect::<Items>(), "{}", text);
        check(pick(Some(&text), &available), &available, &parsed)?;
    }

    /// Malformed members (a q-value outside §12.4.2's grammar) are
    /// dropped by both, and the rest decides as if they were absent.
    #[test]
    fn malformed_members_are_ignored(
        valid in items(),
        bad in prop::collection::vec(prop::sample::select(&MALFORMED[..]), 1..=3),
        seed in any::<prop::sample::Index>(),
        available in available(),
    ) {
        let clean: Vec<String> = valid.iter().map(Item::render).collect();
        let mut members = clean.clone();
        for (offset, member) in bad.iter().enumerate() {
            let at = (seed.index(1000) + offset * 7) % (members.len() + 1);
            members.insert(at, member.to_string());
        }
        let text = members.join(", ");
        let parsed = actix(text.as_bytes()).unwrap();
        prop_assert_eq!(&parsed, &actix(clean.join(", ").as_bytes()).unwrap(), "{}", text);
        let choice = pick(Some(&text), &available);
        prop_assert_eq!(choice, pick(Some(&clean.join(", ")), &available), "{}", text);
        check(choice, &available, &parsed)?;
    }

    /// No header: identity (RFC 9110 §12.5.3: no preference; kiln sends
    /// the representation as stored).
    #[test]
    fn no_header_means_identity(available in available()) {
        let identity = available.iter().position(Option::is_none).unwrap();
        prop_assert_eq!(pick(None, &available), Choice::Variant(identity));
    }

    /// Arbitrary values never panic; kiln only sends a coding the header
    /// names (by token, `x-gzip` or `*`), only answers 406 when the header
    /// names identity or `*`, and never sends a coding actix reads as
    /// refused (q=0).
    #[test]
    fn arbitrary_values(
        value in prop_oneof![
            header_bytes(),
            fuzzy_ascii(&[
                "gzip", "br", "zstd", "identity", "*", "x-gzip", ";q=", ";q=0", ";q=1", "0.5", ",",
                " ", ";", "Q=", "GZIP",
            ])
            .prop_map(String::into_bytes),
        ],
        available in available(),
    ) {
        let choice = choose(Some(&value), &available);
        let text = String::from_utf8_lossy(&value).to_ascii_lowercase();
        match choice {
            Choice::Variant(index) => {
                prop_assert!(index < available.len());
                if let Some(coding) = available[index] {
                    prop_assert!(
                        text.contains(coding.token())
                            || text.contains('*')
                            || (coding == Coding::Gzip && text.contains("x-gzip")),
                        "{:?} chose {:?}", text, coding
                    );
                    if let Some(items) = actix(&value) {
                        prop_assert_ne!(quality(&items, Some(coding)), Some(Quality::ZERO), "{:?}", text);
                    }
                }
            }
            Choice::NotAcceptable => {
                prop_assert!(text.contains("identity") || text.contains('*'), "{:?}", text);
            }
        }
    }
}
