//! Named SQL parameters. Route SQL names its inputs (`WHERE id = :id`);
//! this module finds those names, skipping string literals, quoted
//! identifiers, comments and PostgreSQL's `::` casts, and rewrites them into
//! each backend's numbered placeholders (`?1` for SQLite, `$1` for
//! PostgreSQL). Values are always bound, never spliced into the text, so no
//! input can change what a statement does.

/// A statement with its parameters in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL as written.
    pub source: String,
    /// Distinct parameter names; placeholder `N` binds `params[N - 1]`.
    pub params: Vec<String>,
    /// The text for SQLite (`?N`).
    pub sqlite: String,
    /// The text for PostgreSQL (`$N`).
    pub postgres: String,
}

/// Parses `sql` (the error says what is wrong and at which byte), casting
/// each PostgreSQL placeholder to the SQL type `cast` gives for its name (`$1::int8`): PostgreSQL cannot infer a type
/// for a parameter used only in `:q IS NULL` or `'%' || :q`, and the
/// declared input type is the one the value is bound with.
pub(crate) fn parse_typed(
    sql: &str,
    cast: &dyn Fn(&str) -> Option<&'static str>,
) -> Result<Statement, String> {
    let bytes = sql.as_bytes();
    let mut params: Vec<String> = Vec::new();
    let mut sqlite = String::with_capacity(sql.len());
    let mut postgres = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            quote @ (b'\'' | b'"' | b'`') => at = skip_quoted(bytes, at, quote)?,
            b'-' if bytes.get(at + 1) == Some(&b'-') => {
                at = memchr(bytes, at, b'\n').unwrap_or(bytes.len());
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                at = sql[at + 2..]
                    .find("*/")
                    .map(|end| at + 2 + end + 2)
                    .ok_or_else(|| format!("unterminated /* comment at byte {at}"))?;
            }
            b':' if bytes.get(at + 1) == Some(&b':') => at += 2,
            b':' if bytes.get(at + 1).is_some_and(|&b| is_name_start(b)) => {
                let end = (at + 1..bytes.len())
                    .find(|&i| !is_name_byte(bytes[i]))
                    .unwrap_or(bytes.len());
                let name = &sql[at + 1..end];
                let number = match params.iter().position(|known| known == name) {
                    Some(index) => index + 1,
                    None => {
                        params.push(name.to_string());
                        params.len()
                    }
                };
                sqlite.push_str(&sql[copied..at]);
                postgres.push_str(&sql[copied..at]);
                sqlite.push_str(&format!("?{number}"));
                postgres.push_str(&format!("${number}"));
                if let Some(sql_type) = cast(name) {
                    postgres.push_str("::");
                    postgres.push_str(sql_type);
                }
                copied = end;
                at = end;
            }
            b'?' => {
                return Err(format!(
                    "positional parameter `?` at byte {at}: name every parameter (`:name`)"
                ));
            }
            b'$' if bytes.get(at + 1).is_some_and(u8::is_ascii_digit) => {
                return Err(format!(
                    "positional parameter `$` at byte {at}: name every parameter (`:name`)"
                ));
            }
            _ => at += 1,
        }
    }
    sqlite.push_str(&sql[copied..]);
    postgres.push_str(&sql[copied..]);
    Ok(Statement {
        source: sql.to_string(),
        params,
        sqlite,
        postgres,
    })
}

/// The index just past a quoted run starting at `start`; a doubled quote
/// inside is an escaped one.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8) -> Result<usize, String> {
    let mut at = start + 1;
    loop {
        match memchr(bytes, at, quote) {
            Some(end) if bytes.get(end + 1) == Some(&quote) => at = end + 2,
            Some(end) => return Ok(end + 1),
            None => {
                return Err(format!(
                    "unterminated {} at byte {start}",
                    if quote == b'\'' {
                        "string"
                    } else {
                        "quoted name"
                    }
                ));
            }
        }
    }
}

fn memchr(bytes: &[u8], from: usize, needle: u8) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|&b| b == needle)
        .map(|i| from + i)
}

fn is_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses with no declared types.
    fn parse(sql: &str) -> Result<Statement, String> {
        parse_typed(sql, &|_| None)
    }

    #[test]
    fn numbers_each_distinct_name_once() {
        let statement = parse("SELECT * FROM t WHERE a = :a OR b = :b OR c = :a").unwrap();
        assert_eq!(statement.params, ["a", "b"]);
        assert_eq!(
            statement.sqlite,
            "SELECT * FROM t WHERE a = ?1 OR b = ?2 OR c = ?1"
        );
        assert_eq!(
            statement.postgres,
            "SELECT * FROM t WHERE a = $1 OR b = $2 OR c = $1"
        );
    }

    #[test]
    fn names_inside_strings_comments_and_casts_are_text() {
        let sql = "SELECT ':x', \":y\", a::text -- :z\n/* :w */ FROM t WHERE id = :id";
        let statement = parse(sql).unwrap();
        assert_eq!(statement.params, ["id"]);
        assert!(
            statement
                .sqlite
                .starts_with("SELECT ':x', \":y\", a::text -- :z\n")
        );
        assert!(statement.sqlite.ends_with("id = ?1"));
    }

    #[test]
    fn escaped_quotes_stay_inside_the_string() {
        let statement = parse("SELECT 'it''s :not' WHERE a = :yes").unwrap();
        assert_eq!(statement.params, ["yes"]);
    }

    #[test]
    fn positional_parameters_are_refused() {
        assert!(parse("SELECT * FROM t WHERE a = ?").is_err());
        assert!(parse("SELECT * FROM t WHERE a = $1").is_err());
        assert!(parse("SELECT 'unterminated").is_err());
    }

    #[test]
    fn postgres_placeholders_carry_declared_types() {
        let cast = |name: &str| (name == "q").then_some("text");
        let statement = parse_typed("SELECT :q IS NULL OR a LIKE '%' || :q, :n", &cast).unwrap();
        assert_eq!(
            statement.postgres,
            "SELECT $1::text IS NULL OR a LIKE '%' || $1::text, $2"
        );
        assert_eq!(
            statement.sqlite,
            "SELECT ?1 IS NULL OR a LIKE '%' || ?1, ?2"
        );
    }

    #[test]
    fn dotted_names_are_one_parameter() {
        let statement = parse("SELECT :session.name").unwrap();
        assert_eq!(statement.params, ["session.name"]);
    }
}
