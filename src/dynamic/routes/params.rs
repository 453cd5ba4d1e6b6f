//! Typed inputs: query-string parameters and form fields, checked against
//! their `[route.params]` / `[route.fields]` declarations. Every problem is
//! collected per input, so a form can show all its errors at once.

use std::collections::BTreeMap;

use crate::config::{ParamConfig, ParamType};
use crate::dynamic::db::SqlValue;

/// A declared input with its default already converted.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub name: String,
    pub spec: ParamConfig,
    /// The value when the input is absent or empty.
    pub default: Option<SqlValue>,
}

impl Input {
    /// Compiles a declaration; the error names what is wrong with the default.
    pub(crate) fn new(name: &str, spec: &ParamConfig) -> Result<Input, String> {
        let default = match &spec.default {
            None => None,
            Some(value) => {
                let text = match value {
                    toml::Value::String(text) => text.clone(),
                    toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                        value.to_string()
                    }
                    other => return Err(format!("{name}: default {other} is not a scalar")),
                };
                let value = convert(&text, spec).map_err(|err| format!("{name}: default {err}"))?;
                Some(value)
            }
        };
        Ok(Input {
            name: name.to_string(),
            spec: spec.clone(),
            default,
        })
    }

    /// A value the plan check can bind: the default, or a typical one.
    pub(crate) fn sample(&self) -> SqlValue {
        self.default.clone().unwrap_or(match self.spec.kind {
            ParamType::Int => SqlValue::Int(1),
            ParamType::Float => SqlValue::Float(1.0),
            ParamType::Bool => SqlValue::Bool(true),
            ParamType::Str => SqlValue::Text(
                self.spec
                    .one_of
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "a".into()),
            ),
        })
    }
}

/// Field name → what is wrong with it.
pub(crate) type FieldErrors = BTreeMap<String, String>;

/// Parses `application/x-www-form-urlencoded` text (a query string or a
/// form body); the first occurrence of a name wins.
pub(crate) fn parse_pairs(text: &str) -> BTreeMap<String, String> {
    let mut pairs = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(text.as_bytes()) {
        pairs
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    pairs
}

/// Checks each declared input against the submitted pairs.
pub(crate) fn bind(
    inputs: &[Input],
    pairs: &BTreeMap<String, String>,
) -> Result<Vec<(String, SqlValue)>, FieldErrors> {
    let mut values = Vec::with_capacity(inputs.len());
    let mut errors = FieldErrors::new();
    for input in inputs {
        match value_of(input, pairs.get(&input.name).map(String::as_str)) {
            Ok(value) => values.push((input.name.clone(), value)),
            Err(message) => {
                errors.insert(input.name.clone(), message);
            }
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

fn value_of(input: &Input, submitted: Option<&str>) -> Result<SqlValue, String> {
    let spec = &input.spec;
    let text = submitted.map(str::trim).unwrap_or("");
    if text.is_empty() {
        if spec.kind == ParamType::Bool && submitted.is_none() && input.default.is_none() {
            // An unticked checkbox is not sent at all.
            return Ok(SqlValue::Bool(false));
        }
        return match (&input.default, spec.required) {
            (Some(default), _) => Ok(default.clone()),
            (None, true) => Err("is required".into()),
            (None, false) => Ok(SqlValue::Null),
        };
    }
    convert(text, spec)
}

/// Converts and checks one non-empty value.
fn convert(text: &str, spec: &ParamConfig) -> Result<SqlValue, String> {
    if !spec.one_of.is_empty() && !spec.one_of.iter().any(|allowed| allowed == text) {
        return Err(format!("must be one of {}", spec.one_of.join(", ")));
    }
    match spec.kind {
        ParamType::Int => {
            let value: i64 = text
                .parse()
                .map_err(|_| "must be a whole number".to_string())?;
            check_bounds(value as f64, spec)?;
            Ok(SqlValue::Int(value))
        }
        ParamType::Float => {
            let value: f64 = text
                .parse()
                .ok()
                .filter(|value: &f64| value.is_finite())
                .ok_or_else(|| "must be a number".to_string())?;
            check_bounds(value, spec)?;
            Ok(SqlValue::Float(value))
        }
        ParamType::Bool => match text {
            "true" | "1" | "on" | "yes" => Ok(SqlValue::Bool(true)),
            "false" | "0" | "off" | "no" => Ok(SqlValue::Bool(false)),
            _ => Err("must be true or false".into()),
        },
        ParamType::Str => {
            let length = text.chars().count();
            if let Some(min) = spec.min_length
                && length < min
            {
                return Err(format!("must be at least {min} characters"));
            }
            if let Some(max) = spec.max_length
                && length > max
            {
                return Err(format!("must be at most {max} characters"));
            }
            if text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
            {
                return Err("must not contain control characters".into());
            }
            Ok(SqlValue::Text(text.to_string()))
        }
    }
}

fn check_bounds(value: f64, spec: &ParamConfig) -> Result<(), String> {
    if let Some(min) = spec.min
        && value < min
    {
        return Err(format!("must be at least {min}"));
    }
    if let Some(max) = spec.max
        && value > max
    {
        return Err(format!("must be at most {max}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ParamType) -> ParamConfig {
        ParamConfig {
            kind,
            ..ParamConfig::default()
        }
    }

    #[test]
    fn applies_defaults_bounds_and_types() {
        let page = Input::new(
            "page",
            &ParamConfig {
                default: Some(toml::Value::Integer(1)),
                min: Some(1.0),
                max: Some(100.0),
                ..spec(ParamType::Int)
            },
        )
        .unwrap();
        let inputs = [page];
        let bound = |query: &str| bind(&inputs, &parse_pairs(query));
        assert_eq!(bound("").unwrap(), [("page".into(), SqlValue::Int(1))]);
        assert_eq!(
            bound("page=7&page=8").unwrap(),
            [("page".into(), SqlValue::Int(7))]
        );
        assert_eq!(bound("page=0").unwrap_err()["page"], "must be at least 1");
        assert_eq!(
            bound("page=x").unwrap_err()["page"],
            "must be a whole number"
        );
        assert_eq!(
            bound("page=1%27%20OR%201=1").unwrap_err()["page"],
            "must be a whole number"
        );
    }

    #[test]
    fn strings_are_trimmed_and_measured_in_characters() {
        let name = Input::new(
            "name",
            &ParamConfig {
                required: true,
                max_length: Some(3),
                ..spec(ParamType::Str)
            },
        )
        .unwrap();
        let inputs = [name];
        let bound = |query: &str| bind(&inputs, &parse_pairs(query));
        assert_eq!(
            bound("name=+%C3%A9t%C3%A9+").unwrap(),
            [("name".into(), SqlValue::Text("été".into()))]
        );
        assert_eq!(
            bound("name=abcd").unwrap_err()["name"],
            "must be at most 3 characters"
        );
        assert_eq!(bound("name=").unwrap_err()["name"], "is required");
    }

    #[test]
    fn a_missing_checkbox_is_false() {
        let inputs = [Input::new("agree", &spec(ParamType::Bool)).unwrap()];
        assert_eq!(
            bind(&inputs, &parse_pairs("")).unwrap(),
            [("agree".into(), SqlValue::Bool(false))]
        );
        assert_eq!(
            bind(&inputs, &parse_pairs("agree=on")).unwrap(),
            [("agree".into(), SqlValue::Bool(true))]
        );
    }

    #[test]
    fn defaults_are_checked_like_input() {
        let bad = ParamConfig {
            default: Some(toml::Value::String("x".into())),
            ..spec(ParamType::Int)
        };
        assert!(Input::new("n", &bad).is_err());
    }
}
