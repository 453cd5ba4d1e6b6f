//! The URLs of the site's GET routes, parameters filled: from the rows a
//! `[[loadtest.route]]` gives (its `samples`, and the rows of its `sql`
//! on the site's database), else generated from the route's typed path
//! parameters (an `int` takes 1 to 10; a `str` or `slug` cannot be
//! guessed, and such a route is left out, saying why). Path parameters
//! are taken by name; a row's other values become the query.

use std::collections::BTreeMap;

use crate::config::{LoadRoute, RouteMethod, Settings};
use crate::dynamic::db::{Database, SqlValue};
use crate::dynamic::routes::pattern::{PathPattern, SegmentType};
use crate::site::url::percent_encode_component;

/// How many values an `int` path parameter is generated with.
const GENERATED: i64 = 10;

/// One route's URLs, sharing its weight.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteUrls {
    pub urls: Vec<String>,
    pub weight: f64,
}

/// A route left out of the mix, and why.
pub(crate) type LeftOut = (String, String);

/// The GET routes' URLs, and the routes left out with the reason.
pub(crate) fn route_urls(settings: &Settings) -> Result<(Vec<RouteUrls>, Vec<LeftOut>), String> {
    let declared: Vec<&LoadRoute> = settings
        .loadtest()
        .route
        .iter()
        .filter(|entry| entry.method == RouteMethod::Get)
        .collect();
    if let Some(unknown) = settings.loadtest().route.iter().find(|entry| {
        !settings
            .routes()
            .iter()
            .any(|route| route.path == entry.path && route.method == entry.method)
    }) {
        return Err(format!(
            "loadtest.route {:?}: no {} route has this path (write it as in [[route]])",
            unknown.path,
            unknown.method.as_str()
        ));
    }
    let routes: Vec<_> = settings
        .routes()
        .iter()
        .filter(|route| route.method == RouteMethod::Get)
        .collect();
    let mut found = Vec::new();
    let mut left_out = Vec::new();
    for route in routes {
        let Ok(pattern) = PathPattern::parse(&route.path) else {
            continue;
        };
        let entry = declared
            .iter()
            .find(|entry| entry.path == route.path)
            .copied();
        let rows = match entry {
            Some(entry) => declared_rows(settings, entry)?,
            None => match generated_rows(&pattern) {
                Some(rows) => rows,
                None => {
                    left_out.push((
                        route.path.clone(),
                        "no value for its text parameter: give samples or sql in [[loadtest.route]]"
                            .to_string(),
                    ));
                    continue;
                }
            },
        };
        let urls: Vec<String> = rows.iter().filter_map(|row| url(&pattern, row)).collect();
        if urls.is_empty() {
            left_out.push((
                route.path.clone(),
                "no row gave every parameter".to_string(),
            ));
            continue;
        }
        found.push(RouteUrls {
            urls,
            weight: entry.map_or(1.0, |entry| entry.weight),
        });
    }
    Ok((found, left_out))
}

/// Parameter values by name, as they go into the URL.
pub(crate) type Row = BTreeMap<String, String>;

/// `int` path parameters from 1 to [`GENERATED`]; `None` when a
/// parameter is not an `int`.
fn generated_rows(pattern: &PathPattern) -> Option<Vec<Row>> {
    let names: Vec<&str> = pattern
        .param_types()
        .map(|(name, kind)| (kind == SegmentType::Int).then_some(name))
        .collect::<Option<_>>()?;
    if names.is_empty() {
        return Some(vec![Row::new()]);
    }
    Some(
        (1..=GENERATED)
            .map(|value| {
                names
                    .iter()
                    .map(|name| (name.to_string(), value.to_string()))
                    .collect()
            })
            .collect(),
    )
}

/// The rows of an entry: its samples, then its query's rows.
pub(crate) fn declared_rows(settings: &Settings, entry: &LoadRoute) -> Result<Vec<Row>, String> {
    let mut rows: Vec<Row> = entry
        .samples
        .iter()
        .map(|sample| {
            sample
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), toml_text(value)?)))
                .collect()
        })
        .collect();
    if let Some(sql) = &entry.sql {
        rows.extend(
            query_rows(settings, sql)
                .map_err(|reason| format!("loadtest.route {:?}: sql: {reason}", entry.path))?,
        );
    }
    Ok(rows)
}

fn toml_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        toml::Value::Float(number) => Some(number.to_string()),
        toml::Value::Boolean(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The rows of `sql` on the site's database, as text.
fn query_rows(settings: &Settings, sql: &str) -> Result<Vec<Row>, String> {
    let first_word = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if first_word != "select" && first_word != "with" {
        return Err("must be a query (SELECT or WITH): load tests do not write".to_string());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| err.to_string())?;
    runtime.block_on(async {
        let database =
            Database::open(settings.database(), &settings.root).map_err(|err| err.to_string())?;
        let results = database
            .read(vec![(sql.to_string(), Vec::new())])
            .await
            .map_err(|err| err.to_string())?;
        Ok(results
            .into_iter()
            .flatten()
            .map(|row| {
                row.into_iter()
                    .filter_map(|(name, value)| Some((name, sql_text(value)?)))
                    .collect()
            })
            .collect())
    })
}

fn sql_text(value: SqlValue) -> Option<String> {
    match value {
        SqlValue::Null => None,
        SqlValue::Int(number) => Some(number.to_string()),
        SqlValue::Float(number) => Some(number.to_string()),
        SqlValue::Text(text) => Some(text),
        SqlValue::Bool(flag) => Some(flag.to_string()),
    }
}

/// The URL of `row`: path parameters in the path, the rest as the query.
fn url(pattern: &PathPattern, row: &Row) -> Option<String> {
    let path = pattern.fill(|name| row.get(name).cloned())?;
    let in_path: Vec<&str> = pattern.param_types().map(|(name, _)| name).collect();
    let query: Vec<String> = row
        .iter()
        .filter(|(name, _)| !in_path.contains(&name.as_str()))
        .map(|(name, value)| {
            format!(
                "{}={}",
                percent_encode_component(name),
                percent_encode_component(value)
            )
        })
        .collect();
    Some(if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_fills_the_path_and_the_rest_is_the_query() {
        let pattern = PathPattern::parse("/tags/{name:slug}/{page:int}").unwrap();
        let row: Row = [("name", "rust lang"), ("page", "2"), ("sort", "new&old")]
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        assert_eq!(
            url(&pattern, &row).as_deref(),
            Some("/tags/rust%20lang/2?sort=new%26old")
        );
        let missing: Row = [("page".to_string(), "2".to_string())].into();
        assert_eq!(url(&pattern, &missing), None);
    }

    #[test]
    fn int_parameters_are_generated_and_text_ones_are_not() {
        let ints = PathPattern::parse("/items/{id:int}").unwrap();
        let rows = generated_rows(&ints).unwrap();
        assert_eq!(rows.len(), 10);
        assert_eq!(url(&ints, &rows[2]).as_deref(), Some("/items/3"));
        assert!(generated_rows(&PathPattern::parse("/tags/{name:slug}").unwrap()).is_none());
        assert_eq!(
            generated_rows(&PathPattern::parse("/items/").unwrap()),
            Some(vec![Row::new()])
        );
    }
}
