//! Form posts as a visitor makes them: GET the page with the form, take
//! its CSRF token and the cookies it set, POST the fields, and follow the
//! redirect (303) to the page it names. One flow is one request of the
//! schedule, timed from its first byte to the last of the page it ends
//! on. The path parameters and fields take the values of the route's
//! `[[loadtest.route]]` rows (`method = "POST"`: samples, or a query's
//! rows), one form per row; without rows, or for a field a row does not
//! name, valid values come from the route's declared inputs (the first of
//! `one_of`, a number within `min`/`max`, text within
//! `min_length`/`max_length`), and an `int` path parameter is 1.
//!
//! Posts write to the site's database, so the `forms` class weighs 0
//! unless `[loadtest.weights]` gives it a weight.

use crate::config::{ParamConfig, ParamType, RouteConfig, RouteMethod, Settings};
use crate::dynamic::routes::pattern::{PathPattern, SegmentType};
use crate::site::url::percent_encode_component;

use super::params::{self, LeftOut, Row};
use crate::client::{Answer, ClientError, Connection, Dialer};

/// One form: where it is shown, where it posts, what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Form {
    /// The page showing the form (its GET gives the token and cookie).
    pub page: String,
    /// The route's path, parameters filled.
    pub action: String,
    /// The fields, `application/x-www-form-urlencoded`, without the token.
    pub fields: String,
    /// The `Host` the requests name.
    pub host: String,
}

/// A form and its share of the `forms` class.
pub(crate) type WeightedForm = (Form, f64);

/// The site's forms, each with its share of the `forms` class (a route's
/// share is its weight, spread over its rows), and the POST routes left
/// out with the reason.
pub(crate) fn of_site(
    settings: &Settings,
    host: &str,
) -> Result<(Vec<WeightedForm>, Vec<LeftOut>), String> {
    let mut routes = Vec::new();
    let mut left_out = Vec::new();
    let gets: Vec<&str> = settings
        .routes()
        .iter()
        .filter(|route| route.method == RouteMethod::Get)
        .map(|route| route.path.as_str())
        .collect();
    for route in settings
        .routes()
        .iter()
        .filter(|route| route.method == RouteMethod::Post)
    {
        let entry = settings
            .loadtest()
            .route
            .iter()
            .find(|entry| entry.method == RouteMethod::Post && entry.path == route.path);
        let rows = match entry {
            Some(entry) => params::declared_rows(settings, entry)?,
            // One form with generated values.
            None => vec![Row::new()],
        };
        let generated = entry.is_none();
        match forms_of(route, &gets, host, &rows, generated) {
            Ok(forms) => routes.push((forms, entry.map_or(1.0, |entry| entry.weight))),
            Err(reason) => left_out.push((format!("POST {}", route.path), reason)),
        }
    }
    let total: f64 = routes.iter().map(|(_, weight)| weight).sum();
    let forms = routes
        .into_iter()
        .flat_map(|(forms, weight)| {
            let each = weight / total.max(f64::EPSILON) / forms.len() as f64;
            forms.into_iter().map(move |form| (form, each))
        })
        .collect();
    Ok((forms, left_out))
}

/// The forms of `route`, one per row: a row's values fill the path
/// parameters, the fields and the redirect by name; the other fields get
/// valid generated values. Without declared rows (`generated`), an `int`
/// path parameter is 1.
fn forms_of(
    route: &RouteConfig,
    gets: &[&str],
    host: &str,
    rows: &[Row],
    generated: bool,
) -> Result<Vec<Form>, String> {
    let pattern = PathPattern::parse(&route.path)?;
    let mut forms = Vec::new();
    for row in rows {
        let mut values = row.clone();
        for (name, kind) in pattern.param_types() {
            if values.contains_key(name) {
                continue;
            }
            if !generated {
                // This row lacks a path parameter: it cannot be posted.
                break;
            }
            if kind != SegmentType::Int {
                return Err(
                    "no value for its text path parameter: give samples or sql in [[loadtest.route]] with method = \"POST\""
                        .to_string(),
                );
            }
            values.insert(name.to_string(), "1".to_string());
        }
        let Some(action) = pattern.fill(|name| values.get(name).cloned()) else {
            continue;
        };
        for (name, field) in &route.fields {
            values.entry(name.clone()).or_insert_with(|| value(field));
        }
        // The form is on the page of the same path, else on the page the
        // post redirects to (an item's page for its price form, say).
        let page = if gets.contains(&route.path.as_str()) {
            action.clone()
        } else {
            let redirect = route
                .redirect
                .as_deref()
                .ok_or("no GET page at its path and no redirect to find its form on")?;
            let page = redirect.split('#').next().unwrap_or(redirect);
            fill_placeholders(page, &values)
                .ok_or("its redirect names values only the post gives (RETURNING columns)")?
        };
        let fields = route
            .fields
            .keys()
            .filter_map(|name| {
                Some(format!(
                    "{}={}",
                    percent_encode_component(name),
                    percent_encode_component(values.get(name)?)
                ))
            })
            .collect::<Vec<_>>()
            .join("&");
        forms.push(Form {
            page,
            action,
            fields,
            host: host.to_string(),
        });
    }
    if forms.is_empty() {
        return Err("no row of its [[loadtest.route]] gave every path parameter".to_string());
    }
    Ok(forms)
}

/// A redirect template's `{name}` placeholders filled from `values` (path
/// parameters and fields); `None` when it names another value.
fn fill_placeholders(template: &str, values: &Row) -> Option<String> {
    let mut filled = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        filled.push_str(&rest[..open]);
        let close = open + rest[open..].find('}')?;
        let value = values.get(&rest[open + 1..close])?;
        filled.push_str(&percent_encode_component(value));
        rest = &rest[close + 1..];
    }
    filled.push_str(rest);
    Some(filled)
}

/// A valid value for `field`.
fn value(field: &ParamConfig) -> String {
    if let Some(first) = field.one_of.first() {
        return first.clone();
    }
    match field.kind {
        ParamType::Int | ParamType::Float => {
            let low = field.min.unwrap_or(1.0).max(1.0);
            let number = field.max.map_or(low, |high| low.min(high));
            format!("{}", number.round() as i64)
        }
        ParamType::Bool => "true".to_string(),
        ParamType::Str => {
            let mut text = "kiln loadtest".to_string();
            if let Some(max) = field.max_length {
                text = text.chars().take(max).collect();
            }
            let min = field.min_length.unwrap_or(0).max(1);
            while text.chars().count() < min {
                text.push('x');
            }
            text
        }
    }
}

/// How a flow ended: the answer it ended on, or where it broke.
pub(crate) enum Ended {
    Answered {
        status: u16,
        bytes: u64,
    },
    /// The form page had no CSRF token.
    NoToken,
}

/// Runs one flow, on `connection` while the server keeps it open (it is
/// reopened when an answer closes it; the caller drops it on an error).
pub(crate) async fn post(
    connection: &mut Option<Connection>,
    dialer: &Dialer,
    form: &Form,
) -> Result<Ended, ClientError> {
    let host = form.host.as_str();
    // Asked without Accept-Encoding: the token is read from the body.
    let page = exchange(connection, dialer, &get(&form.page, host, &[], false)).await?;
    let mut bytes = page.body_bytes;
    if page.status >= 400 {
        return Ok(Ended::Answered {
            status: page.status,
            bytes,
        });
    }
    let Some(token) = csrf_token(&page.body) else {
        return Ok(Ended::NoToken);
    };
    let mut cookies = cookie_pairs(&page);
    let token = percent_encode_component(&token);
    let body = if form.fields.is_empty() {
        format!("csrf_token={token}")
    } else {
        format!("{}&csrf_token={token}", form.fields)
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kiln-loadtest\r\nAccept: text/html\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{}\r\n{body}",
        form.action,
        body.len(),
        cookie_line(&cookies)
    );
    let posted = exchange(connection, dialer, request.as_bytes()).await?;
    bytes += posted.body_bytes;
    let location = match (posted.status, posted.location.as_deref()) {
        (300..=399, Some(location)) => path_of(location).to_string(),
        (status, _) => return Ok(Ended::Answered { status, bytes }),
    };
    merge(&mut cookies, cookie_pairs(&posted));
    let followed = exchange(connection, dialer, &get(&location, host, &cookies, true)).await?;
    Ok(Ended::Answered {
        status: followed.status,
        bytes: bytes + followed.body_bytes,
    })
}

/// One exchange keeping headers and body, on a connection opened when
/// there is none and forgotten when the server closes it.
async fn exchange(
    connection: &mut Option<Connection>,
    dialer: &Dialer,
    request: &[u8],
) -> Result<Answer, ClientError> {
    let answer = dialer.exchange(connection, request, true).await?;
    if answer.closes {
        *connection = None;
    }
    Ok(answer)
}

fn get(path: &str, host: &str, cookies: &[(String, String)], compressed: bool) -> Vec<u8> {
    let encodings = if compressed {
        "Accept-Encoding: br, gzip\r\n"
    } else {
        ""
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kiln-loadtest\r\nAccept: text/html\r\n\
         {encodings}{}\r\n",
        cookie_line(cookies)
    )
    .into_bytes()
}

/// The path (and query) of a `Location`, absolute or not; the fragment
/// is the browser's.
fn path_of(location: &str) -> &str {
    let rest = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
        .map_or(location, |rest| {
            rest.find('/').map_or("/", |at| &rest[at..])
        });
    rest.split('#').next().unwrap_or(rest)
}

fn cookie_pairs(answer: &Answer) -> Vec<(String, String)> {
    answer
        .cookies
        .iter()
        .filter_map(|cookie| {
            let pair = cookie.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            Some((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

fn merge(cookies: &mut Vec<(String, String)>, newer: Vec<(String, String)>) {
    for (name, value) in newer {
        match cookies.iter_mut().find(|(known, _)| *known == name) {
            Some(cookie) => cookie.1 = value,
            None => cookies.push((name, value)),
        }
    }
}

fn cookie_line(cookies: &[(String, String)]) -> String {
    if cookies.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = cookies
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!("Cookie: {}\r\n", pairs.join("; "))
}

/// The value of the first `<input name="csrf_token" value="…">`.
fn csrf_token(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let field = format!("name=\"{}\"", crate::dynamic::csrf::FIELD);
    let at = text.find(&field)?;
    let tag_start = text[..at].rfind('<')?;
    let tag_end = at + text[at..].find('>')?;
    let tag = &text[tag_start..tag_end];
    let value = tag.split("value=\"").nth(1)?;
    Some(value.split('"').next()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: ParamType) -> ParamConfig {
        ParamConfig {
            kind,
            default: None,
            required: true,
            min: None,
            max: None,
            min_length: None,
            max_length: None,
            one_of: Vec::new(),
        }
    }

    #[test]
    fn values_fit_the_declared_inputs() {
        let mut short = field(ParamType::Str);
        short.max_length = Some(4);
        assert_eq!(value(&short), "kiln");
        let mut long = field(ParamType::Str);
        long.min_length = Some(15);
        assert_eq!(value(&long), "kiln loadtestxx");
        let mut bounded = field(ParamType::Int);
        bounded.min = Some(5.0);
        bounded.max = Some(9.0);
        assert_eq!(value(&bounded), "5");
        let mut choice = field(ParamType::Str);
        choice.one_of = vec!["red".into(), "blue".into()];
        assert_eq!(value(&choice), "red");
    }

    #[test]
    fn the_token_the_location_and_the_redirects_page_are_read() {
        let page = b"<form><input type=\"hidden\" name=\"csrf_token\" value=\"abc-123\"><input name=\"x\"></form>";
        assert_eq!(csrf_token(page).as_deref(), Some("abc-123"));
        assert_eq!(csrf_token(b"<form></form>"), None);
        assert_eq!(path_of("http://h:8080/notes/?a=1#note-4"), "/notes/?a=1");
        assert_eq!(path_of("/notes/#note-4"), "/notes/");
        let values: Row = [("id".to_string(), "1".to_string())].into();
        assert_eq!(
            fill_placeholders("/items/{id}", &values).as_deref(),
            Some("/items/1")
        );
        assert_eq!(fill_placeholders("/notes/{slug}", &values), None);
    }

    fn post_route(text: &str) -> RouteConfig {
        toml::from_str(text).expect("a route")
    }

    #[test]
    fn rows_fill_text_path_parameters_fields_and_the_redirect() {
        let route = post_route(
            r#"
            path = "/tags/{name:slug}/rename"
            method = "POST"
            exec = ["UPDATE tags SET label = :label WHERE name = :name"]
            redirect = "/tags/{name}"
            [fields.label]
            type = "str"
            [fields.note]
            type = "str"
            max_length = 4
            "#,
        );
        let rows: Vec<Row> = vec![
            [("name", "red mug"), ("label", "Red")]
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            // No value for the path parameter: not posted.
            [("label".to_string(), "Blue".to_string())].into(),
        ];
        let forms = forms_of(&route, &[], "h", &rows, false).expect("forms");
        assert_eq!(forms.len(), 1);
        assert_eq!(forms[0].action, "/tags/red%20mug/rename");
        assert_eq!(forms[0].page, "/tags/red%20mug");
        assert_eq!(forms[0].fields, "label=Red&note=kiln");
        // Without rows, a text path parameter cannot be guessed.
        let refused = forms_of(&route, &[], "h", &[Row::new()], true);
        assert!(refused.is_err_and(|reason| reason.contains("[[loadtest.route]]")));
    }
}
