//! Route paths: literal segments and typed parameters
//! (`/products/{id:int}`, `/tags/{name:slug}`, `/files/{name}`). A segment
//! that does not fit its type does not match, so `/products/abc` is a 404
//! like any other unknown URL.

use crate::config::is_identifier;
use crate::dynamic::db::SqlValue;

/// The type of a path parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentType {
    /// A signed 64-bit integer.
    Int,
    /// Any non-empty segment (percent-decoded).
    Str,
    /// Lowercase letters, digits and hyphens.
    Slug,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param { name: String, kind: SegmentType },
}

impl SegmentType {
    /// The SQL type the value is bound as.
    pub(crate) fn sql_type(self) -> &'static str {
        match self {
            SegmentType::Int => "int8",
            SegmentType::Str | SegmentType::Slug => "text",
        }
    }
}

/// A parsed route path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Parses `path`; the error says what is wrong with it.
    pub(crate) fn parse(path: &str) -> Result<PathPattern, String> {
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| format!("{path:?} must start with /"))?;
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for part in rest.split('/') {
            if let Some(inner) = part.strip_prefix('{') {
                let inner = inner.strip_suffix('}').ok_or_else(|| {
                    format!("{part:?}: a parameter is a whole segment, {{name}} or {{name:type}}")
                })?;
                let (name, kind) = inner.split_once(':').unwrap_or((inner, "str"));
                let kind = match kind {
                    "int" => SegmentType::Int,
                    "str" => SegmentType::Str,
                    "slug" => SegmentType::Slug,
                    other => {
                        return Err(format!(
                            "{{{inner}}}: unknown type {other:?}; use int, str or slug"
                        ));
                    }
                };
                if !is_identifier(name) {
                    return Err(format!("{{{inner}}}: {name:?} is not an identifier"));
                }
                if names.contains(&name) {
                    return Err(format!("parameter {name:?} appears twice"));
                }
                names.push(name);
                segments.push(Segment::Param {
                    name: name.to_string(),
                    kind,
                });
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "{part:?}: a parameter is a whole segment, {{name}} or {{name:type}}"
                ));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(PathPattern { segments })
    }

    /// The path's parameters and their types.
    pub(crate) fn param_types(&self) -> impl Iterator<Item = (&str, SegmentType)> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Param { name, kind } => Some((name.as_str(), *kind)),
            Segment::Literal(_) => None,
        })
    }

    /// The path with each parameter replaced by its value from
    /// `value_of` (percent-encoded); `None` when one has none.
    pub(crate) fn fill(&self, value_of: impl Fn(&str) -> Option<String>) -> Option<String> {
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            match segment {
                Segment::Literal(text) => {
                    path.push_str(&crate::site::url::percent_encode_path(text));
                }
                Segment::Param { name, .. } => {
                    path.push_str(&crate::site::url::percent_encode_component(&value_of(
                        name,
                    )?));
                }
            }
        }
        Some(path)
    }

    /// A typical value of path parameter `name`, for the plan check.
    pub(crate) fn sample(&self, name: &str) -> Option<SqlValue> {
        self.segments.iter().find_map(|segment| match segment {
            Segment::Param { name: known, kind } if known == name => Some(match kind {
                SegmentType::Int => SqlValue::Int(1),
                SegmentType::Str | SegmentType::Slug => SqlValue::Text("a".into()),
            }),
            _ => None,
        })
    }

    /// The parameters' typed values when `path` matches.
    pub(crate) fn matches(&self, path: &str) -> Option<Vec<(String, SqlValue)>> {
        let rest = path.strip_prefix('/')?;
        let mut values = Vec::new();
        let mut parts = rest.split('/');
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(literal) => {
                    if part != literal {
                        return None;
                    }
                }
                Segment::Param { name, kind } => {
                    values.push((name.clone(), typed(part, *kind)?));
                }
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(values)
    }
}

fn typed(part: &str, kind: SegmentType) -> Option<SqlValue> {
    let decoded = percent_decode(part)?;
    if decoded.is_empty() {
        return None;
    }
    match kind {
        SegmentType::Int => {
            // Digits only: no sign games or leading "+".
            let digits = decoded.strip_prefix('-').unwrap_or(&decoded);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            decoded.parse().ok().map(SqlValue::Int)
        }
        SegmentType::Slug => decoded
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            .then_some(SqlValue::Text(decoded)),
        // A NUL or another control character in a path segment is never a
        // name anyone meant (and `%00` has truncated C strings before).
        SegmentType::Str => {
            (!decoded.chars().any(char::is_control)).then_some(SqlValue::Text(decoded))
        }
    }
}

/// Percent-decodes a path segment; `None` for malformed escapes or
/// bytes that are not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    crate::site::url::decode_strict(text).map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_typed_segments() {
        let pattern = PathPattern::parse("/products/{id:int}").unwrap();
        assert_eq!(
            pattern.matches("/products/42"),
            Some(vec![("id".into(), SqlValue::Int(42))])
        );
        assert_eq!(pattern.matches("/products/abc"), None);
        assert_eq!(pattern.matches("/products/4.2"), None);
        assert_eq!(pattern.matches("/products/99999999999999999999"), None);
        assert_eq!(pattern.matches("/products/42/more"), None);
        assert_eq!(pattern.matches("/products/"), None);
        assert_eq!(pattern.matches("/product/42"), None);
    }

    /// Regression (hardening): `%00` and other control characters reached
    /// route SQL through `{name}` path segments.
    #[test]
    fn control_characters_in_a_path_segment_do_not_match() {
        let pattern = PathPattern::parse("/files/{name}").unwrap();
        for path in ["/files/a%00b", "/files/%0Aname", "/files/x%7F"] {
            assert_eq!(pattern.matches(path), None, "{path}");
        }
        assert_eq!(
            pattern.matches("/files/a%20b"),
            Some(vec![("name".into(), SqlValue::Text("a b".into()))])
        );
    }

    #[test]
    fn decodes_strings_and_checks_slugs() {
        let pattern = PathPattern::parse("/t/{name}/{slug:slug}").unwrap();
        assert_eq!(
            pattern.matches("/t/caf%C3%A9/a-b-1"),
            Some(vec![
                ("name".into(), SqlValue::Text("café".into())),
                ("slug".into(), SqlValue::Text("a-b-1".into()))
            ])
        );
        assert_eq!(pattern.matches("/t/x/A-B"), None);
        assert_eq!(pattern.matches("/t/%ZZ/a"), None);
    }

    #[test]
    fn refuses_malformed_patterns() {
        assert!(PathPattern::parse("products").is_err());
        assert!(PathPattern::parse("/p/{id:uuid}").is_err());
        assert!(PathPattern::parse("/p/x{id}").is_err());
        assert!(PathPattern::parse("/p/{id}/{id}").is_err());
        assert!(PathPattern::parse("/p/{1d}").is_err());
    }
}
