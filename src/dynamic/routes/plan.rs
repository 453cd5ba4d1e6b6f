//! The query-plan check: every route query is explained (`EXPLAIN QUERY
//! PLAN` on SQLite, `EXPLAIN (FORMAT JSON)` on PostgreSQL) with typical
//! parameter values, and a query that reads a whole table is reported with
//! its route, so a missing index is found before traffic finds it. A query
//! that must scan (a full count, a substring search) says `allow_scan`.

use super::{Query, Route, Routes};
use crate::dynamic::db::{Database, DbError, SqlValue};

/// One query that scans whole tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanWarning {
    pub route: String,
    pub query: String,
    pub tables: Vec<String>,
}

impl std::fmt::Display for ScanWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "route {}: query {:?} scans every row of {}; add an index that serves its WHERE/ORDER BY, \
             or set allow_scan = true on the query if the scan is intended",
            self.route,
            self.query,
            self.tables.join(", ")
        )
    }
}

/// Explains every route query that has not opted out.
pub(crate) async fn check(
    database: &Database,
    routes: &Routes,
) -> Result<Vec<ScanWarning>, DbError> {
    let mut warnings = Vec::new();
    for route in &routes.routes {
        for query in route.queries.iter().filter(|query| !query.allow_scan) {
            let args = sample_args(route, query);
            let sql = query.statement.text(database.backend()).to_string();
            let tables = database.acquire().await?.scanned_tables(sql, args).await?;
            if !tables.is_empty() {
                warnings.push(ScanWarning {
                    route: route.label.clone(),
                    query: query.name.clone(),
                    tables,
                });
            }
        }
    }
    Ok(warnings)
}

/// Integer inputs a client may set to any value: with no `max`, a query
/// like a recursive CTE or a `LIMIT :n` can be made arbitrarily expensive.
pub(crate) fn unbounded_integers(routes: &Routes) -> Vec<String> {
    let mut warnings = Vec::new();
    for route in &routes.routes {
        for (kind, inputs) in [("params", &route.params), ("fields", &route.fields)] {
            for input in inputs.iter() {
                if input.spec.kind == crate::config::ParamType::Int && input.spec.max.is_none() {
                    warnings.push(format!(
                        "route {}: {kind}.{} is an int without max, so a client can pass any value up to 2^63; set max to what the route needs",
                        route.label, input.name
                    ));
                }
            }
        }
    }
    warnings
}

fn sample_args(route: &Route, query: &Query) -> Vec<SqlValue> {
    query
        .statement
        .params
        .iter()
        .map(|name| {
            route
                .pattern
                .sample(name)
                .or_else(|| {
                    route
                        .params
                        .iter()
                        .chain(&route.fields)
                        .find(|input| &input.name == name)
                        .map(|input| input.sample())
                })
                .unwrap_or(SqlValue::Null)
        })
        .collect()
}
