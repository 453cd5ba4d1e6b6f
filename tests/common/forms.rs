//! Form helpers for dynamic-route tests: the CSRF cookie and token of a
//! rendered form, and urlencoded POSTs.
#![allow(dead_code)]

use std::net::SocketAddr;

use super::http::{self, Response};

/// The CSRF cookie (`kiln_csrf=…`) a form page sets and the token in its form.
pub(crate) fn csrf(page: &Response) -> (String, String) {
    let cookie = page
        .header("set-cookie")
        .expect("the form page sets the CSRF cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body = page.text();
    let start = body
        .find("name=\"csrf_token\" value=\"")
        .expect("csrf field")
        + 25;
    let token = body[start..].split('"').next().unwrap().to_string();
    (cookie, token)
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub(crate) fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish().into_bytes()
}

/// POSTs `pairs` as a form, with extra headers.
pub(crate) fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    pairs: &[(&str, &str)],
) -> Response {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    http::send_body(addr, "POST", path, &all, &encode(pairs))
}

/// The `NAME=value` pair of the cookie `name` a response sets.
pub(crate) fn set_cookie(response: &Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    response
        .headers
        .iter()
        .filter(|(header, _)| header.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, value)| value)
        .find(|value| value.starts_with(&prefix))
        .map(|value| value.split(';').next().unwrap_or_default().to_string())
}
