//! Entry points for the fuzz targets (`fuzz/`, run with cargo-fuzz) and for
//! `tests/fuzz_corpus.rs`, which replays the committed corpora on every test
//! run. Each takes arbitrary bytes, drives one parser that reads what a
//! client or a site author wrote, and panics when an invariant the server
//! relies on does not hold; returning is a pass.
//!
//! Not part of kiln's interface: the parsers stay `pub(crate)`, and this
//! module is the one door the harnesses share.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{Config, Encoding, ParamConfig, ParamType};
use crate::dynamic::csrf::Csrf;
use crate::dynamic::db::SqlValue;
use crate::dynamic::routes::params::{self, Input};
use crate::dynamic::routes::pattern::{PathPattern, percent_decode};
use crate::dynamic::secret::SecretKey;
use crate::dynamic::session::record::Record;
use crate::http::conditional::{self, Validators};
use crate::http::negotiate::{self, Choice};
use crate::http::range::{self, RangeOutcome};
use crate::http::resolve::{self, PathRules, Resolved};
use crate::http::table::Table;

/// Splits fuzz input at the first NUL: a selector or a second field.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(0, data) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// `Range`: bytes 0..8 are the representation's length, the rest the
/// header value. Every range sent lies inside the representation, none is
/// empty, and no more are sent than allowed.
pub fn range(data: &[u8]) {
    let (len_bytes, header) = data.split_at(data.len().min(8));
    let mut len = [0u8; 8];
    len[..len_bytes.len()].copy_from_slice(len_bytes);
    // Lengths a file can have, biased small so ranges often overlap it.
    let len = u64::from_le_bytes(len) % (1 << 40);
    let len = if len % 3 == 0 { len % 4096 } else { len };
    let max_ranges = 8;
    if let RangeOutcome::Partial(ranges) = range::evaluate(header, len, max_ranges) {
        assert!(!ranges.is_empty() && ranges.len() <= max_ranges);
        let mut total = 0u64;
        for span in &ranges {
            assert!(
                span.start < span.end && span.end <= len,
                "{span:?} of {len}"
            );
            total += span.end - span.start;
        }
        assert!(total <= len, "ranges add up to more than the whole");
    }
}

/// Conditional requests: the input is header lines (`name: value`), then
/// NUL and the selector byte. A matching `If-None-Match` is never 412 on a
/// safe request, and an unconditional request always proceeds.
pub fn conditional(data: &[u8]) {
    let (lines, rest) = split(data);
    let safe = rest.first().is_none_or(|byte| byte & 1 == 0);
    let headers = header_map(lines);
    let validators = Validators {
        etag: "\"abc\"",
        last_modified: (rest.get(1).is_none_or(|byte| byte & 1 == 0))
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
    };
    let outcome = conditional::evaluate(&headers, safe, validators);
    let conditional_headers = [
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ];
    if !conditional_headers
        .iter()
        .any(|name| headers.contains_key(name))
    {
        assert!(matches!(outcome, conditional::Outcome::Proceed { .. }));
    }
    if !safe {
        assert_ne!(outcome, conditional::Outcome::NotModified);
    }
}

/// `Accept-Encoding`: the choice is one of the variants offered, and a
/// client that sends no header gets identity.
pub fn accept_encoding(data: &[u8]) {
    let offers: [&[Option<Encoding>]; 4] = [
        &[Some(Encoding::Brotli), Some(Encoding::Gzip), None],
        &[Some(Encoding::Zstd), None],
        &[None],
        &[Some(Encoding::Gzip)],
    ];
    for available in offers {
        if let Choice::Variant(index) = negotiate::choose(Some(data), available) {
            assert!(index < available.len());
        }
        let without = negotiate::choose(None, available);
        match available.iter().position(Option::is_none) {
            Some(identity) => assert_eq!(without, Choice::Variant(identity)),
            None => assert_eq!(without, Choice::NotAcceptable),
        }
    }
}

/// Request paths: whatever is accepted names a plain relative path — no
/// `.`/`..` segment, NUL, backslash or hidden segment once decoded — and a
/// redirect stays on this site.
pub fn path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (raw, query) = text.split_once('?').unwrap_or((text, ""));
    if let Ok(decoded) = resolve::decode(raw) {
        let key = decoded
            .strip_prefix('/')
            .expect("accepted paths are absolute");
        assert!(!key.contains(['\0', '\\']), "{key:?}");
        for segment in key.split('/') {
            assert!(segment != "." && segment != "..", "{key:?}");
            assert!(!segment.starts_with('.'), "{key:?}");
        }
    }
    for pretty_urls in [false, true] {
        if let Resolved::Redirect(location) =
            resolve::resolve(empty_table(), raw, query, PathRules { pretty_urls })
        {
            assert!(location.starts_with('/') && !location.starts_with("//"));
        }
    }
}

fn empty_table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::default)
}

/// Route patterns and the paths they match: the input is a pattern, NUL,
/// then a path. Typed segments hold what their type promises.
pub fn route_pattern(data: &[u8]) {
    let (pattern, path) = split(data);
    let (Ok(pattern), Ok(path)) = (std::str::from_utf8(pattern), std::str::from_utf8(path)) else {
        return;
    };
    let _ = percent_decode(path);
    let Ok(pattern) = PathPattern::parse(pattern) else {
        return;
    };
    for (name, kind) in pattern.param_types() {
        let _ = pattern.sample(name);
        let _ = kind.sql_type();
    }
    let Some(values) = pattern.matches(path) else {
        return;
    };
    let kinds: BTreeMap<&str, _> = pattern.param_types().collect();
    for (name, value) in &values {
        use crate::dynamic::routes::pattern::SegmentType;
        match (kinds.get(name.as_str()), value) {
            (Some(SegmentType::Int), SqlValue::Int(_)) => {}
            (Some(SegmentType::Slug), SqlValue::Text(text)) => assert!(
                !text.is_empty()
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            ),
            (Some(SegmentType::Str), SqlValue::Text(text)) => {
                assert!(!text.is_empty() && !text.chars().any(char::is_control));
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Form bodies and query strings against typed inputs: a bound value has
/// its declared type and respects its bounds.
pub fn form(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pairs = params::parse_pairs(text);
    let inputs = form_inputs();
    match params::bind(inputs, &pairs) {
        Ok(values) => {
            for ((name, value), input) in values.iter().zip(inputs) {
                assert_eq!(name, &input.name);
                check_bound(input, value);
            }
        }
        Err(errors) => {
            assert!(
                errors
                    .keys()
                    .all(|name| inputs.iter().any(|i| &i.name == name))
            );
        }
    }
}

fn form_inputs() -> &'static [Input] {
    static INPUTS: OnceLock<Vec<Input>> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let spec = |kind, tune: fn(&mut ParamConfig)| {
            let mut spec = ParamConfig {
                kind,
                ..ParamConfig::default()
            };
            tune(&mut spec);
            spec
        };
        let declared = [
            (
                "page",
                spec(ParamType::Int, |s| {
                    s.min = Some(1.0);
                    s.max = Some(1000.0);
                    s.default = Some(toml::Value::Integer(1));
                }),
            ),
            (
                "price",
                spec(ParamType::Float, |s| {
                    s.min = Some(0.0);
                    s.max = Some(1e6);
                }),
            ),
            ("agree", spec(ParamType::Bool, |_| {})),
            (
                "name",
                spec(ParamType::Str, |s| {
                    s.min_length = Some(1);
                    s.max_length = Some(40);
                    s.required = true;
                }),
            ),
            (
                "sort",
                spec(ParamType::Str, |s| {
                    s.one_of = vec!["name".into(), "price".into()];
                }),
            ),
            ("q", spec(ParamType::Str, |_| {})),
        ];
        declared
            .iter()
            .map(|(name, spec)| Input::new(name, spec).expect("the fuzz inputs are valid"))
            .collect()
    })
}

fn check_bound(input: &Input, value: &SqlValue) {
    let spec = &input.spec;
    match (spec.kind, value) {
        (_, SqlValue::Null) => assert!(!spec.required),
        (ParamType::Int, SqlValue::Int(n)) => {
            let n = *n as f64;
            assert!(spec.min.is_none_or(|min| n >= min) && spec.max.is_none_or(|max| n <= max));
        }
        (ParamType::Float, SqlValue::Float(x)) => {
            assert!(x.is_finite());
            assert!(spec.min.is_none_or(|min| *x >= min) && spec.max.is_none_or(|max| *x <= max));
        }
        (ParamType::Bool, SqlValue::Bool(_)) => {}
        (ParamType::Str, SqlValue::Text(text)) => {
            let chars = text.chars().count();
            assert!(spec.min_length.is_none_or(|min| chars >= min));
            assert!(spec.max_length.is_none_or(|max| chars <= max));
            assert!(spec.one_of.is_empty() || spec.one_of.contains(text));
            assert!(!text.contains('\0'), "{:?}: NUL bound", input.name);
        }
        other => panic!("{}: {other:?}", input.name),
    }
}

/// Cookies and sessions: `Cookie` headers through the CSRF check (a token
/// verifies only with the cookie it was made for; duplicates never pass),
/// and stored session bytes (sled, Redis) and cookie-session JSON through
/// their decoders.
pub fn cookie_session(data: &[u8]) {
    let _ = Record::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::dynamic::session::cookie_record(text);
    }
    let (cookie, submitted) = split(data);
    let Ok(cookie) = HeaderValue::from_bytes(cookie) else {
        return;
    };
    let csrf = fuzz_csrf();
    let req = actix_web::test::TestRequest::default()
        .insert_header((header::COOKIE, cookie))
        .to_http_request();
    let submitted = std::str::from_utf8(submitted).ok();
    if let Some(secret) = csrf.cookie_token(&req) {
        assert!(csrf.is_valid(&secret));
        let token = csrf.form_token(&secret);
        assert!(csrf.verify(&req, Some(&token)).is_ok());
    }
    if csrf.verify(&req, submitted).is_ok() {
        let secret = csrf
            .cookie_token(&req)
            .expect("a verified request has a cookie");
        assert_eq!(submitted, Some(csrf.form_token(&secret).as_str()));
    }
}

fn fuzz_csrf() -> &'static Csrf {
    static CSRF: OnceLock<Csrf> = OnceLock::new();
    CSRF.get_or_init(|| {
        Csrf::new(
            &SecretKey::from_bytes([7; 32]),
            false,
            crate::http::forwarded::TrustedProxies::default(),
        )
    })
}

/// `build.toml`: any text is either a configuration or an error; the
/// validated settings are checked against an empty site directory.
pub fn build_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new("build.toml"), &[]) else {
        return;
    };
    let _ = config.validate(empty_site());
}

fn empty_site() -> &'static Path {
    static SITE: OnceLock<tempfile::TempDir> = OnceLock::new();
    SITE.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
        .path()
}

/// `name: value` lines into a header map (lines that are not headers are
/// skipped, as the HTTP parser would have refused them).
fn header_map(lines: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines.split(|&byte| byte == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}
