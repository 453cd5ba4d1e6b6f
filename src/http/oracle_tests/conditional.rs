//! Preconditions (RFC 9110 §13) against actix's `IfMatch`, `IfNoneMatch`,
//! `IfModifiedSince`, `IfUnmodifiedSince` and `IfRange`.
//!
//! Agreement: kiln's [`Outcome`] is the one [`expected`] derives from
//! actix's typed headers by the evaluation order of RFC 9110 §13.2.2, with
//! `If-Match` compared strongly and `If-None-Match` weakly (§13.1.1,
//! §13.1.2, through actix's `EntityTag::strong_eq` / `weak_eq`), and with
//! the two date fields ignored unless they hold exactly one valid
//! HTTP-date (§13.1.3, §13.1.4).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use actix_web::http::header::{
    EntityTag, Header, HeaderMap, HeaderName, HeaderValue, HttpDate, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, IfMatch, IfModifiedSince, IfNoneMatch, IfRange,
    IfUnmodifiedSince,
};
use proptest::prelude::*;

use super::{config, fuzzy_ascii, header_bytes, list_separator, request};
use crate::http::conditional::{Outcome, Validators, evaluate};

/// The representation's Last-Modified, when it has one.
const LAST_MODIFIED: u64 = 1_700_000_000;

fn at(offset: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(LAST_MODIFIED.checked_add_signed(offset).unwrap())
}

fn http_date(offset: i64) -> String {
    HttpDate::from(at(offset)).to_string()
}

/// An entity tag as generated: `opaque` is what goes between the quotes.
#[derive(Debug, Clone)]
struct Tag {
    weak: bool,
    opaque: String,
}

impl Tag {
    fn render(&self) -> String {
        let weak = if self.weak { "W/" } else { "" };
        format!("{weak}\"{}\"", self.opaque)
    }

    fn actix(&self) -> EntityTag {
        EntityTag::new(self.weak, self.opaque.clone())
    }
}

/// Opaque tags from a small pool (so lists often name the current tag)
/// or random `etagc` without the comma, which actix cannot read inside a
/// tag (see `entity_tags_with_commas_and_obs_text`).
fn opaque() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&["abc", "abd", "v1", ""][..]).prop_map(str::to_string),
        1 => r"[!#-+\--~]{0,3}",
    ]
}

fn tag() -> impl Strategy<Value = Tag> {
    (any::<bool>(), opaque()).prop_map(|(weak, opaque)| Tag { weak, opaque })
}

/// One field line of an entity-tag list, rendered with list syntax.
#[derive(Debug, Clone)]
struct Line {
    lead: &'static str,
    members: Vec<(String, Tag)>,
}

impl Line {
    fn render(&self) -> String {
        let mut text = self.lead.to_string();
        for (index, (separator, tag)) in self.members.iter().enumerate() {
            if index > 0 {
                text.push_str(separator);
            }
            text.push_str(&tag.render());
        }
        text
    }
}

/// `If-Match` / `If-None-Match`: `"*"` or a list of entity tags, which may
/// arrive as several field lines (RFC 9110 §5.3: they combine into one
/// list, in order).
#[derive(Debug, Clone)]
enum TagList {
    Absent,
    Any,
    Lines(Vec<Line>),
}

/// `absent` weighs the field's absence against 1 for `*` and 4 for a list.
fn tag_list(absent: u32) -> impl Strategy<Value = TagList> {
    let line = (
        prop::sample::select(&["", ",", ", "][..]),
        prop::collection::vec((list_separator(), tag()), 0..=3),
    )
        .prop_map(|(lead, members)| Line { lead, members });
    prop_oneof![
        absent => Just(TagList::Absent),
        1 => Just(TagList::Any),
        4 => prop::collection::vec(line, 1..=3).prop_map(TagList::Lines),
    ]
}

/// `If-Modified-Since` / `If-Unmodified-Since`, by offset in seconds from
/// the representation's Last-Modified; more than one offset is more than
/// one field line.
#[derive(Debug, Clone)]
enum DateField {
    Absent,
    Lines(Vec<i64>),
    Junk(String),
}

fn date_field() -> impl Strategy<Value = DateField> {
    prop_oneof![
        2 => Just(DateField::Absent),
        4 => prop::collection::vec(-2i64..=2, 1..=1).prop_map(DateField::Lines),
        1 => prop::collection::vec(-2i64..=2, 2..=2).prop_map(DateField::Lines),
        1 => prop_oneof![
            Just("not a date".to_string()),
            Just("0".to_string()),
            Just(String::new()),
            // A list of dates (§13.1.4: "appears to be a list of dates").
            Just(format!("{}, {}", http_date(1), http_date(1))),
            "[ -~]{0,12}",
        ]
        .prop_map(DateField::Junk),
    ]
}

#[derive(Debug, Clone)]
enum IfRangeField {
    Absent,
    Tag(Tag),
    Date(i64),
    Junk(String),
}

fn if_range_field() -> impl Strategy<Value = IfRangeField> {
    prop_oneof![
        2 => Just(IfRangeField::Absent),
        2 => tag().prop_map(IfRangeField::Tag),
        2 => (-2i64..=2).prop_map(IfRangeField::Date),
        1 => "[ -~]{0,12}".prop_map(IfRangeField::Junk),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    safe: bool,
    current: String,
    has_last_modified: bool,
    if_match: TagList,
    if_none_match: TagList,
    if_unmodified_since: DateField,
    if_modified_since: DateField,
    if_range: IfRangeField,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        prop::sample::select(&["abc", "abd", "v1"][..]),
        prop_oneof![4 => Just(true), 1 => Just(false)],
        // If-Match rarely holds; present less often, it leaves room for
        // the later steps.
        tag_list(6),
        tag_list(2),
        date_field(),
        date_field(),
        if_range_field(),
    )
        .prop_map(
            |(
                safe,
                current,
                has_last_modified,
                if_match,
                if_none_match,
                if_unmodified_since,
                if_modified_since,
                if_range,
            )| Case {
                safe,
                current: current.to_string(),
                has_last_modified,
                if_match,
                if_none_match,
                if_unmodified_since,
                if_modified_since,
                if_range,
            },
        )
}

fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("generated values are visible ASCII")
}

impl Case {
    fn lines(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut lines = Vec::new();
        for (name, list) in [
            (IF_MATCH, &self.if_match),
            (IF_NONE_MATCH, &self.if_none_match),
        ] {
            match list {
                TagList::Absent => {}
                TagList::Any => lines.push((name, value("*"))),
                TagList::Lines(each) => {
                    lines.extend(
                        each.iter()
                            .map(|line| (name.clone(), value(&line.render()))),
                    );
                }
            }
        }
        for (name, field) in [
            (IF_UNMODIFIED_SINCE, &self.if_unmodified_since),
            (IF_MODIFIED_SINCE, &self.if_modified_since),
        ] {
            match field {
                DateField::Absent => {}
                DateField::Lines(offsets) => lines.extend(
                    offsets
                        .iter()
                        .map(|&offset| (name.clone(), value(&http_date(offset)))),
                ),
                DateField::Junk(text) => lines.push((name, value(text))),
            }
        }
        match &self.if_range {
            IfRangeField::Absent => {}
            IfRangeField::Tag(tag) => lines.push((IF_RANGE, value(&tag.render()))),
            IfRangeField::Date(offset) => lines.push((IF_RANGE, value(&http_date(*offset)))),
            IfRangeField::Junk(text) => lines.push((IF_RANGE, value(text))),
        }
        lines
    }

    fn current_tag(&self) -> String {
        format!("\"{}\"", self.current)
    }

    fn last_modified(&self) -> Option<SystemTime> {
        self.has_last_modified.then(|| at(0))
    }
}

/// The date of a date field, or `None` where RFC 9110 says to ignore it:
/// "A recipient MUST ignore the If-Modified-Since header field if the
/// received field value is not a valid HTTP-date, the field value has more
/// than one member, ..." (§13.1.3), and "A recipient MUST ignore the
/// If-Unmodified-Since header field if the received field value is not a
/// valid HTTP-date (including when the field value appears to be a list of
/// dates)" (§13.1.4). actix reads the first field line only, so the count
/// of lines is the oracle's.
fn single_date<H: Header>(req: &HttpRequest, date: fn(H) -> HttpDate) -> Option<SystemTime> {
    if req.headers().get_all(H::name()).count() != 1 {
        return None;
    }
    H::parse(req)
        .ok()
        .map(|field| SystemTime::from(date(field)))
}

/// `If-Range` (§13.1.5): true for a strongly matching entity tag or a date
/// equal to Last-Modified; anything else, a weak tag or an invalid value
/// included, voids the Range.
fn if_range_holds(
    req: &HttpRequest,
    current: &EntityTag,
    last_modified: Option<SystemTime>,
) -> bool {
    match IfRange::parse(req) {
        Ok(IfRange::EntityTag(tag)) => tag.strong_eq(current),
        Ok(IfRange::Date(date)) => last_modified == Some(SystemTime::from(date)),
        Err(_) => false,
    }
}

/// RFC 9110 §13.2.2 on actix's typed headers.
fn expected(
    req: &HttpRequest,
    safe: bool,
    current: &EntityTag,
    last_modified: Option<SystemTime>,
) -> Outcome {
    let headers = req.headers();
    // 1. If-Match: true for "*" or a strongly matching tag (§13.1.1).
    if headers.contains_key(IF_MATCH) {
        let holds = match IfMatch::parse(req) {
            Ok(IfMatch::Any) => true,
            Ok(IfMatch::Items(tags)) => tags.iter().any(|tag| tag.strong_eq(current)),
            Err(_) => false,
        };
        if !holds {
            return Outcome::PreconditionFailed;
        }
    // 2. Else If-Unmodified-Since: false when modified after the date.
    } else if let Some(since) = single_date(req, |field: IfUnmodifiedSince| field.0)
        && last_modified.is_some_and(|modified| modified > since)
    {
        return Outcome::PreconditionFailed;
    }
    // 3. If-None-Match: false for "*" or a weakly matching tag (§13.1.2);
    // 304 for GET/HEAD, else 412.
    if headers.contains_key(IF_NONE_MATCH) {
        let matched = match IfNoneMatch::parse(req) {
            Ok(IfNoneMatch::Any) => true,
            Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|tag| tag.weak_eq(current)),
            Err(_) => false,
        };
        if matched {
            return if safe {
                Outcome::NotModified
            } else {
                Outcome::PreconditionFailed
            };
        }
    // 4. Else If-Modified-Since, GET/HEAD only: 304 when not modified since.
    } else if safe
        && let Some(since) = single_date(req, |field: IfModifiedSince| field.0)
        && last_modified.is_some_and(|modified| modified <= since)
    {
        return Outcome::NotModified;
    }
    // 5. If-Range decides whether Range applies.
    let honour_range =
        !headers.contains_key(IF_RANGE) || if_range_holds(req, current, last_modified);
    Outcome::Proceed { honour_range }
}

fn kiln(headers: &HeaderMap, safe: bool, etag: &str, last_modified: Option<SystemTime>) -> Outcome {
    evaluate(
        headers,
        safe,
        Validators {
            etag,
            last_modified,
        },
    )
}

/// An entity tag of any `etagc` bytes (RFC 9110 §8.8.3: `etagc = %x21 /
/// %x23-7E / obs-text`), commas and bytes past ASCII included.
fn raw_opaque() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::sample::select(&["abc", "abd", "a,b", ","][..]).prop_map(|text| text.as_bytes().to_vec()),
        3 => prop::collection::vec(
            prop_oneof![
                Just(b'!'),
                0x23u8..=0x7e,
                Just(b','),
                0x80u8..=0xff,
            ],
            0..4,
        ),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Well-formed preconditions: actix reads back the generated tag lists,
    /// and kiln decides what §13.2.2 decides on actix's reading.
    #[test]
    fn valid_preconditions_agree_with_actix(case in case()) {
        let req = request(&case.lines());
        for (list, parsed) in [
            (&case.if_match, IfMatch::parse(&req).ok().map(|parsed| match parsed {
                IfMatch::Any => None,
                IfMatch::Items(tags) => Some(tags),
            })),
            (&case.if_none_match, IfNoneMatch::parse(&req).ok().map(|parsed| match parsed {
                IfNoneMatch::Any => None,
                IfNoneMatch::Items(tags) => Some(tags),
            })),
        ] {
            match list {
                TagList::Absent => {}
                TagList::Any => prop_assert_eq!(parsed, Some(None)),
                TagList::Lines(lines) => {
                    let tags: Vec<EntityTag> = lines
                        .iter()
                        .flat_map(|line| line.members.iter().map(|(_, tag)| tag.actix()))
                        .collect();
                    prop_assert_eq!(parsed, Some(Some(tags)));
                }
            }
        }
        let current = EntityTag::new_strong(case.current.clone());
        let etag = case.current_tag();
        prop_assert_eq!(
            kiln(req.headers(), case.safe, &etag, case.last_modified()),
            expected(&req, case.safe, &current, case.last_modified()),
            "{:?}", case.lines()
        );
    }

    /// Entity tags may hold commas and obs-text (RFC 9110 §8.8.3), which
    /// actix cannot read (it splits the list at every comma and refuses
    /// values that are not visible ASCII), so the generated list itself is
    /// the oracle here, compared with actix's `strong_eq` / `weak_eq`.
    #[test]
    fn entity_tags_with_commas_and_obs_text(
        tags in prop::collection::vec((any::<bool>(), raw_opaque()), 0..=4),
        current in prop::sample::select(&["abc", "abd", "a,b"][..]),
    ) {
        let mut list = Vec::new();
        for (index, (weak, opaque)) in tags.iter().enumerate() {
            if index > 0 {
                list.extend_from_slice(b", ");
            }
            if *weak {
                list.extend_from_slice(b"W/");
            }
            list.push(b'"');
            list.extend_from_slice(opaque);
            list.push(b'"');
        }
        let current_tag = EntityTag::new_strong(current.to_string());
        let compare = |eq: fn(&EntityTag, &EntityTag) -> bool| {
            tags.iter().any(|(weak, opaque)| {
                // A tag that is not UTF-8 cannot equal the (ASCII) current one.
                std::str::from_utf8(opaque)
                    .is_ok_and(|opaque| eq(&EntityTag::new(*weak, opaque.to_string()), &current_tag))
            })
        };
        let etag = format!("\"{current}\"");
        let value = HeaderValue::from_bytes(&list).unwrap();

        let headers = request(&[(IF_MATCH, value.clone())]).headers().clone();
        let want = if compare(EntityTag::strong_eq) {
            Outcome::Proceed { honour_range: true }
        } else {
            Outcome::PreconditionFailed
        };
        prop_assert_eq!(kiln(&headers, true, &etag, None), want, "If-Match: {:?}", value);

        let headers = request(&[(IF_NONE_MATCH, value.clone())]).headers().clone();
        let want = if compare(EntityTag::weak_eq) {
            Outcome::NotModified
        } else {
            Outcome::Proceed { honour_range: true }
        };
        prop_assert_eq!(kiln(&headers, true, &etag, None), want, "If-None-Match: {:?}", value);
    }

    /// Arbitrary values never panic, and every answer has a cause §13.2.2
    /// allows: 304 needs GET/HEAD and If-None-Match or If-Modified-Since,
    /// 412 needs If-Match, If-Unmodified-Since or an unsafe If-None-Match,
    /// a voided Range needs If-Range. A date actix cannot read is ignored,
    /// and If-Range holds exactly when actix's reading of it does.
    #[test]
    fn arbitrary_values(
        fields in prop::collection::vec(
            (
                prop::sample::select(vec![IF_MATCH, IF_NONE_MATCH, IF_MODIFIED_SINCE, IF_UNMODIFIED_SINCE, IF_RANGE]),
                prop_oneof![
                    header_bytes(),
                    fuzzy_ascii(&[
                        "\"abc\"", "W/", "*", ",", " ", "\"", "abc", "Tue, 14 Nov 2023 22:13:20 GMT",
                        "Tue, 14 Nov 2023 22:13:21 GMT", "GMT", "Nov",
                    ])
                    .prop_map(String::into_bytes),
                ],
            ),
            0..=5,
        ),
        safe in any::<bool>(),
        has_last_modified in any::<bool>(),
    ) {
        let mut seen = Vec::new();
        let mut lines = Vec::new();
        for (name, bytes) in fields {
            // One field line per name: §5.3 combination is the structured
            // property's business.
            if !seen.contains(&name) {
                seen.push(name.clone());
                lines.push((name, HeaderValue::from_bytes(&bytes).unwrap()));
            }
        }
        let req = request(&lines);
        let headers = req.headers();
        let last_modified = has_last_modified.then(|| at(0));
        let outcome = kiln(headers, safe, "\"abc\"", last_modified);
        let has = |name: HeaderName| headers.contains_key(name);
        match outcome {
            Outcome::NotModified => prop_assert!(safe && (has(IF_NONE_MATCH) || has(IF_MODIFIED_SINCE))),
            Outcome::PreconditionFailed => prop_assert!(
                has(IF_MATCH) || has(IF_UNMODIFIED_SINCE) || (has(IF_NONE_MATCH) && !safe)
            ),
            Outcome::Proceed { honour_range } => prop_assert!(honour_range || has(IF_RANGE)),
        }
        for (name, readable) in [
            (IF_MODIFIED_SINCE, IfModifiedSince::parse(&req).is_ok()),
            (IF_UNMODIFIED_SINCE, IfUnmodifiedSince::parse(&req).is_ok()),
        ] {
            if has(name.clone()) && !readable {
                let mut without = headers.clone();
                without.remove(name);
                prop_assert_eq!(outcome, kiln(&without, safe, "\"abc\"", last_modified));
            }
        }
        if let Some(value) = headers.get(IF_RANGE)
            && value.as_bytes().is_ascii()
            && let Outcome::Proceed { honour_range } = outcome
        {
            // A field value excludes leading and trailing whitespace
            // (RFC 9110 §5.5); actix does not trim it, kiln does.
            let trimmed = value.to_str().unwrap().trim_matches([' ', '\t']);
            let req = request(&[(IF_RANGE, HeaderValue::from_str(trimmed).unwrap())]);
            let current = EntityTag::new_strong("abc".to_string());
            prop_assert_eq!(honour_range, if_range_holds(&req, &current, last_modified), "{:?}", value);
        }
    }
}

fn headers(lines: &[(HeaderName, &[u8])]) -> HeaderMap {
    let lines: Vec<_> = lines
        .iter()
        .map(|(name, value)| (name.clone(), HeaderValue::from_bytes(value).unwrap()))
        .collect();
    request(&lines).headers().clone()
}

/// Regression (found by `valid_preconditions_agree_with_actix`): kiln read
/// only the first field line of If-Match / If-None-Match, though several
/// lines make one list (RFC 9110 §5.3).
#[test]
fn entity_tag_lists_split_across_field_lines() {
    let etag = "\"abc\"";
    let split = |name: &HeaderName| {
        headers(&[
            (name.clone(), "\"x\"".as_bytes()),
            (name.clone(), "\"abc\"".as_bytes()),
        ])
    };
    assert_eq!(
        kiln(&split(&IF_MATCH), true, etag, None),
        Outcome::Proceed { honour_range: true }
    );
    assert_eq!(
        kiln(&split(&IF_NONE_MATCH), true, etag, None),
        Outcome::NotModified
    );
}

/// Regression (found by `valid_preconditions_agree_with_actix`): kiln used
/// the first of two If-Modified-Since / If-Unmodified-Since lines, which
/// RFC 9110 §13.1.3 and §13.1.4 say to ignore.
#[test]
fn date_conditions_with_two_field_lines_are_ignored() {
    let (later, earlier) = (http_date(1), http_date(-1));
    let two = |name: &HeaderName, date: &str| {
        headers(&[
            (name.clone(), date.as_bytes()),
            (name.clone(), date.as_bytes()),
        ])
    };
    let proceed = Outcome::Proceed { honour_range: true };
    assert_eq!(
        kiln(
            &two(&IF_MODIFIED_SINCE, &later),
            true,
            "\"abc\"",
            Some(at(0))
        ),
        proceed
    );
    assert_eq!(
        kiln(
            &two(&IF_UNMODIFIED_SINCE, &earlier),
            true,
            "\"abc\"",
            Some(at(0))
        ),
        proceed
    );
}

/// Regression (found by `entity_tags_with_commas_and_obs_text`): one tag
/// with obs-text that is not UTF-8 hid every other tag of the list.
#[test]
fn entity_tag_lists_with_obs_text() {
    let value: &[u8] = b"\"\xff\", \"abc\"";
    assert_eq!(
        kiln(&headers(&[(IF_MATCH, value)]), true, "\"abc\"", None),
        Outcome::Proceed { honour_range: true }
    );
    assert_eq!(
        kiln(&headers(&[(IF_NONE_MATCH, value)]), true, "\"abc\"", None),
        Outcome::NotModified
    );
}
