//! TOML front matter between `+++` lines at the top of a page.

/// A page split into its front matter and body. The body keeps the front
/// matter's lines as blank lines, so template errors report the line
/// numbers of the file as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Split {
    pub front_matter: toml::Table,
    pub body: String,
}

/// Splits `source`; `Err` is the TOML error with the line it refers to in
/// the file.
pub(crate) fn split(source: &str) -> Result<Split, (String, u32)> {
    let Some(rest) = source.strip_prefix("+++") else {
        return Ok(Split {
            front_matter: toml::Table::new(),
            body: source.to_string(),
        });
    };
    let Some(rest) = rest
        .strip_prefix('\n')
        .or_else(|| rest.strip_prefix("\r\n"))
    else {
        return Ok(Split {
            front_matter: toml::Table::new(),
            body: source.to_string(),
        });
    };
    let Some(end) = find_closing(rest) else {
        return Err((
            "front matter starts with +++ but has no closing +++ line".into(),
            1,
        ));
    };
    let toml_text = &rest[..end];
    let after_delimiter = rest[end..].find('\n').map_or(rest.len(), |at| end + at + 1);
    let front_matter: toml::Table = toml::from_str(toml_text).map_err(|err| {
        let line = err
            .span()
            .map(|span| toml_text[..span.start].matches('\n').count() as u32 + 2)
            .unwrap_or(1);
        (err.message().to_string(), line)
    })?;
    let consumed = &source[..source.len() - rest.len() + after_delimiter];
    let mut body = "\n".repeat(consumed.matches('\n').count());
    body.push_str(&rest[after_delimiter..]);
    Ok(Split { front_matter, body })
}

/// Byte offset of the line that is exactly `+++`.
fn find_closing(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "+++" {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

/// TOML → JSON, with datetimes as their RFC 3339 text (serde would turn them
/// into a private wrapper object).
pub(crate) fn to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(text) => text.clone().into(),
        toml::Value::Integer(number) => (*number).into(),
        toml::Value::Float(number) => serde_json::Number::from_f64(*number)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        toml::Value::Boolean(flag) => (*flag).into(),
        toml::Value::Datetime(datetime) => datetime.to_string().into(),
        toml::Value::Array(items) => items.iter().map(to_json).collect(),
        toml::Value::Table(table) => table_to_json(table),
    }
}

pub(crate) fn table_to_json(table: &toml::Table) -> serde_json::Value {
    table
        .iter()
        .map(|(key, value)| (key.clone(), to_json(value)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_keeps_line_numbers() {
        let split =
            split("+++\ntitle = \"About\"\ndate = 2026-11-27\n+++\n<h1>{{ page.title }}</h1>\n")
                .unwrap();
        assert_eq!(split.front_matter["title"].as_str(), Some("About"));
        assert_eq!(split.body, "\n\n\n\n<h1>{{ page.title }}</h1>\n");
        assert_eq!(to_json(&split.front_matter["date"]), "2026-11-27");
    }

    #[test]
    fn no_front_matter_is_fine() {
        let split = split("<p>hi</p>").unwrap();
        assert!(split.front_matter.is_empty());
        assert_eq!(split.body, "<p>hi</p>");
    }

    #[test]
    fn bad_toml_names_its_line() {
        let (message, line) = split("+++\ntitle = \"ok\"\nbroken = \n+++\nbody").unwrap_err();
        assert_eq!(line, 3, "{message}");
        let (message, _) = split("+++\ntitle = 1\n").unwrap_err();
        assert!(message.contains("closing"), "{message}");
    }
}
