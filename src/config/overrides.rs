//! `--set key=value`: dotted keys applied to the parsed table before
//! deserializing, so an override is checked exactly like the file.

use super::{ConfigError, config_error};

/// One `--set key=value` from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: toml::Value,
    /// The text as the user typed it, for error messages.
    pub raw: String,
}

impl std::str::FromStr for Override {
    type Err = ConfigError;

    /// Parses `build.minify=false`. The value is read as TOML; a value that is
    /// not valid TOML is taken as a bare string, so `base_url=https://cdn/`
    /// needs no quoting.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| config_error(format!("--set {raw}: expected KEY=VALUE")))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(config_error(format!(
                "--set {raw}: `{key}` is not a dotted key like build.minify"
            )));
        }
        let value = parse_toml_value(value.trim());
        Ok(Override {
            key: key.to_string(),
            value,
            raw: raw.to_string(),
        })
    }
}

fn parse_toml_value(text: &str) -> toml::Value {
    let document = format!("value = {text}");
    match toml::from_str::<toml::Table>(&document) {
        Ok(mut table) => table.remove("value").unwrap_or_else(|| text.into()),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

/// Whether `table` holds a value at the dotted `key`.
pub(super) fn has_dotted(table: &toml::Table, key: &str) -> bool {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        match (current.get(part), parts.peek()) {
            (Some(_), None) => return true,
            (Some(toml::Value::Table(inner)), Some(_)) => current = inner,
            _ => return false,
        }
    }
    false
}

/// Walks `a.b.c` into nested tables, creating them as needed, and sets the leaf.
pub(super) fn set_dotted(table: &mut toml::Table, item: &Override) -> Result<(), ConfigError> {
    let mut parts: Vec<&str> = item.key.split('.').collect();
    let leaf = parts.pop().unwrap_or_default();
    let mut current = table;
    for part in parts {
        let next = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match next {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(config_error(format!(
                    "--set {}: `{part}` is a value, not a table",
                    item.raw
                )));
            }
        };
    }
    current.insert(leaf.to_string(), item.value.clone());
    Ok(())
}
