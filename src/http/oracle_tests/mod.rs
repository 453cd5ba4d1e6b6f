//! Property tests of the hand-written header parsers of the static hot path
//! ([`range`](super::range), [`conditional`](super::conditional),
//! [`negotiate`](super::negotiate)) with actix-web's typed headers as the
//! oracle.
//!
//! Each parser gets three kinds of property:
//! - well-formed values generated from a structure and rendered with the
//!   RFC 9110 list syntax (OWS, empty list elements, several field lines):
//!   actix must parse the rendering back to the structure (so the oracle saw
//!   what was meant), and kiln's decision must be the one the RFC derives
//!   from actix's parse;
//! - values with malformed members, where kiln follows the RFC and actix
//!   does not always (each such place cites the RFC);
//! - arbitrary bytes and ASCII, where kiln must not panic and must keep the
//!   invariants the RFC gives any answer.
//!
//! Where kiln deliberately differs from actix the oracle encodes the RFC's
//! answer, with the section in a comment.

mod conditional;
mod negotiate;
mod range;

use actix_web::HttpRequest;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::test::TestRequest;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// 2,000 cases per property: each runs in well under a second in release.
fn config() -> Config {
    Config {
        cases: 2000,
        ..Config::default()
    }
}

/// A request with these field lines, in order (a repeated name stays
/// several field lines, as on the wire).
fn request(lines: &[(HeaderName, HeaderValue)]) -> HttpRequest {
    lines
        .iter()
        .fold(TestRequest::default(), |request, (name, value)| {
            request.append_header((name.clone(), value.clone()))
        })
        .to_http_request()
}

/// `OWS = *( SP / HTAB )` (RFC 9110 §5.6.3).
fn ows() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

/// The separator of a `#rule` list (RFC 9110 §5.6.1): `OWS "," OWS`, and
/// sometimes empty elements, which a recipient must accept and ignore
/// (§5.6.1.2).
fn list_separator() -> impl Strategy<Value = String> {
    (
        ows(),
        prop_oneof![4 => Just(1usize), 1 => 2usize..=3],
        prop::collection::vec(ows(), 3),
    )
        .prop_map(|(mut separator, commas, after)| {
            for space in &after[..commas] {
                separator.push(',');
                separator.push_str(space);
            }
            separator
        })
}

/// Joins rendered list members with generated separators, sometimes with
/// empty elements before the first or after the last member.
fn render_list(members: Vec<String>) -> impl Strategy<Value = String> {
    let count = members.len();
    (
        prop::collection::vec(list_separator(), count.saturating_sub(1)),
        prop_oneof![3 => Just(""), 1 => Just(", "), 1 => Just(",")],
        prop_oneof![3 => Just(""), 1 => Just(" ,"), 1 => Just(",")],
    )
        .prop_map(move |(separators, lead, trail)| {
            let mut text = String::from(lead);
            for (index, member) in members.iter().enumerate() {
                if index > 0 {
                    text.push_str(&separators[index - 1]);
                }
                text.push_str(member);
            }
            text.push_str(trail);
            text
        })
}

/// Text mixing `fragments` relevant to a header with random visible ASCII,
/// SP and HTAB: likelier than uniform noise to come close to valid values.
fn fuzzy_ascii(fragments: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            2 => prop::sample::select(fragments).prop_map(str::to_string),
            1 => "[ -~\t]{1,3}",
        ],
        0..8,
    )
    .prop_map(|pieces| pieces.concat())
}

/// Arbitrary bytes a `HeaderValue` accepts (no controls but HTAB).
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => 0x20u8..=0x7e,
            1 => Just(b'\t'),
            1 => 0x80u8..=0xff,
        ],
        0..32,
    )
}
