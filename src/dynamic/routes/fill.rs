//! Templates of redirects, cache tags and session values: `{name}` filled
//! from a request's inputs or a write's RETURNING columns.

use crate::dynamic::db::{Row, SqlValue};

/// `template` (a redirect or a cache tag) with each `{name}` replaced by an
/// input or a RETURNING column (percent-encoded for a URL); the error names
/// the placeholder it could not fill.
pub(crate) fn fill_template(
    template: &str,
    values: &[(String, SqlValue)],
    returned: &Row,
    url: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|at| open + at)
            .ok_or_else(|| rest[open..].to_string())?;
        let name = &rest[open + 1..close];
        let value = returned
            .get(name)
            .or_else(|| {
                values
                    .iter()
                    .find(|(known, _)| known == name)
                    .map(|(_, value)| value)
            })
            .ok_or_else(|| name.to_string())?;
        let text = match value {
            SqlValue::Text(text) => text.clone(),
            other => other.describe(),
        };
        if url {
            out.push_str(&crate::site::url::percent_encode_path(&text).replace('/', "%2F"));
        } else {
            out.push_str(&text);
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `{name}` placeholders of a template string.
pub(crate) fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_fill_inputs_and_returning_columns() {
        let values = vec![("slug".to_string(), SqlValue::Text("a b/c".into()))];
        let mut returned = Row::new();
        returned.insert("id".into(), SqlValue::Int(42));
        assert_eq!(
            fill_template("/p/{id}/{slug}?ok=1", &values, &returned, true).unwrap(),
            "/p/42/a%20b%2Fc?ok=1"
        );
        assert_eq!(
            fill_template("/p/{nope}", &values, &returned, true).unwrap_err(),
            "nope"
        );
        assert_eq!(
            fill_template("item:{slug}", &values, &returned, false).unwrap(),
            "item:a b/c"
        );
    }
}
