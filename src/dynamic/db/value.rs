//! Values crossing the database boundary: typed inputs bound to statements,
//! and result rows (column name → value, in column order) that templates
//! and JSON read.

use indexmap::IndexMap;
use serde::ser::{Serialize, Serializer};

use time::{Date, OffsetDateTime};

/// One SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

impl SqlValue {
    /// A short rendering for logs and cache keys.
    pub fn describe(&self) -> String {
        match self {
            SqlValue::Null => "null".into(),
            SqlValue::Int(value) => value.to_string(),
            SqlValue::Float(value) => value.to_string(),
            SqlValue::Text(value) => format!("{value:?}"),
            SqlValue::Bool(value) => value.to_string(),
        }
    }
}

impl Serialize for SqlValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SqlValue::Null => serializer.serialize_none(),
            SqlValue::Int(value) => serializer.serialize_i64(*value),
            SqlValue::Float(value) => serializer.serialize_f64(*value),
            SqlValue::Text(value) => serializer.serialize_str(value),
            SqlValue::Bool(value) => serializer.serialize_bool(*value),
        }
    }
}

/// A result row.
pub type Row = IndexMap<String, SqlValue>;

/// Microseconds since the Unix epoch as RFC 3339 UTC
/// (`2026-11-27T18:30:00Z`, with a fraction when there is one); the bare
/// number outside the years 1–9999 (PostgreSQL's `infinity`, say).
pub(crate) fn rfc3339_from_micros(micros: i64) -> String {
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000) else {
        return micros.to_string();
    };
    let (year, month, day) = (at.year(), u8::from(at.month()), at.day());
    let (hour, minute, second) = (at.hour(), at.minute(), at.second());
    let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    let fraction = at.microsecond();
    if fraction != 0 {
        text.push_str(format!(".{fraction:06}").trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Days since the Unix epoch as `YYYY-MM-DD` (the bare number outside the
/// years 1–9999).
pub(crate) fn date_from_days(days: i64) -> String {
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    let date = i32::try_from(days + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|julian| Date::from_julian_day(julian).ok());
    match date {
        Some(date) => format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        ),
        None => days.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps_as_rfc3339() {
        assert_eq!(rfc3339_from_micros(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_from_micros(1_795_804_200_500_000),
            "2026-11-27T18:30:00.5Z"
        );
        assert_eq!(rfc3339_from_micros(-1_000_000), "1969-12-31T23:59:59Z");
        assert_eq!(date_from_days(19_723), "2024-01-01");
        assert_eq!(date_from_days(11_016), "2000-02-29");
    }
}
