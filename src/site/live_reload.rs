//! The contract between `kiln watch`'s pages and its server: where the
//! live-reload client and its event stream are served, and how a page
//! loads the client.

/// The scope every live-reload endpoint is served under.
pub(crate) const SCOPE: &str = "/__kiln";
/// Where the client listens for Server-Sent Events.
pub const EVENTS_PATH: &str = "/__kiln/events";

/// Where `kiln watch` serves its live-reload client.
pub const LIVE_RELOAD_CLIENT: &str = "/__kiln/live.js";

/// `html` with the live-reload client loaded at the end of its head (or,
/// lacking one, its body or document).
pub(crate) fn with_live_reload(html: &str) -> String {
    let tag = format!("<script type=\"module\" src=\"{LIVE_RELOAD_CLIENT}\"></script>");
    let lower = html.to_ascii_lowercase();
    let at = lower
        .find("</head>")
        .or_else(|| lower.rfind("</body>"))
        .unwrap_or(html.len());
    let mut out = String::with_capacity(html.len() + tag.len());
    out.push_str(&html[..at]);
    out.push_str(&tag);
    out.push_str(&html[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoints_are_under_the_scope() {
        assert!(EVENTS_PATH.starts_with(&format!("{SCOPE}/")));
        assert!(LIVE_RELOAD_CLIENT.starts_with(&format!("{SCOPE}/")));
    }
}
