//! `sitemap.xml` and Atom feeds, as Zola and Hugo write them, when
//! `pages.site_url` gives the absolute address both need. The sitemap
//! lists every page but the 404 page, with its `date` (or `updated`) as
//! `lastmod`. Each directory holding Markdown pages with a `date` gets
//! `DIR/atom.xml`: its newest [`FEED_ENTRIES`] pages, titled by the
//! directory's index page (else the site's home page, else the
//! directory's name), each with its `summary` (or `description`).

use std::collections::BTreeMap;

use super::{Page, Source};
use crate::site::templates::functions::escape;

/// Entries in a feed, newest first.
pub(crate) const FEED_ENTRIES: usize = 20;

/// The sitemap and the feeds of `sources`, as pages of the build.
pub(super) fn pages(site_url: &str, sources: &[Source]) -> Vec<Page> {
    let site_url = site_url.trim_end_matches('/');
    let mut pages = vec![sitemap(site_url, sources)];
    pages.extend(feeds(site_url, sources));
    pages
}

fn sitemap(site_url: &str, sources: &[Source]) -> Page {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    let mut listed: Vec<&Source> = sources
        .iter()
        .filter(|source| !source.output.ends_with("404.html"))
        .collect();
    listed.sort_by(|a, b| a.url.cmp(&b.url));
    for source in listed {
        xml.push_str(&format!(
            "  <url><loc>{}</loc>",
            escape(&format!("{site_url}{}", source.url))
        ));
        if let Some(date) = date_of(source, &["updated", "date"]) {
            xml.push_str(&format!("<lastmod>{date}</lastmod>"));
        }
        xml.push_str("</url>\n");
    }
    xml.push_str("</urlset>\n");
    Page {
        output: "sitemap.xml".into(),
        html: xml,
        hints: Vec::new(),
    }
}

/// The directory of a page's URL: `/posts/hello/` → `posts/`.
fn directory(source: &Source) -> String {
    let trimmed = source.url.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((dir, _)) => format!("{}/", dir.trim_start_matches('/'))
            .trim_start_matches('/')
            .to_string(),
        None => String::new(),
    }
}

fn feeds(site_url: &str, sources: &[Source]) -> Vec<Page> {
    let mut collections: BTreeMap<String, Vec<(&Source, String)>> = BTreeMap::new();
    for source in sources.iter().filter(|source| source.markdown) {
        if let Some(date) = date_of(source, &["date"]) {
            collections
                .entry(directory(source))
                .or_default()
                .push((source, date));
        }
    }
    collections
        .into_iter()
        .map(|(dir, mut entries)| {
            // Newest first; one date's pages by URL, so the order is stable.
            entries.sort_by(|(a, a_date), (b, b_date)| b_date.cmp(a_date).then(a.url.cmp(&b.url)));
            entries.truncate(FEED_ENTRIES);
            feed(site_url, &dir, &entries, sources)
        })
        .collect()
}

fn feed(site_url: &str, dir: &str, entries: &[(&Source, String)], sources: &[Source]) -> Page {
    let index_url = format!("/{dir}");
    let title = [index_url.as_str(), "/"]
        .iter()
        .find_map(|url| {
            let index = sources.iter().find(|source| source.url == *url)?;
            index
                .front_matter
                .get("title")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| dir.trim_end_matches('/').to_string());
    let feed_url = format!("{site_url}/{dir}atom.xml");
    let updated = entries
        .first()
        .map_or_else(String::new, |(_, date)| date.clone());
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         \x20 <title>{}</title>\n\
         \x20 <id>{}</id>\n\
         \x20 <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>\n\
         \x20 <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n\
         \x20 <updated>{updated}</updated>\n",
        escape(&title),
        escape(&feed_url),
        escape(&feed_url),
        escape(&format!("{site_url}{index_url}")),
    );
    for (source, date) in entries {
        let url = escape(&format!("{site_url}{}", source.url));
        let text = |key: &str| {
            source
                .front_matter
                .get(key)
                .and_then(|value| value.as_str())
        };
        xml.push_str(&format!(
            "  <entry>\n    <title>{}</title>\n    <id>{url}</id>\n    <link rel=\"alternate\" type=\"text/html\" href=\"{url}\"/>\n    <updated>{date}</updated>\n",
            escape(text("title").unwrap_or(&source.url)),
        ));
        if let Some(author) = text("author") {
            xml.push_str(&format!(
                "    <author><name>{}</name></author>\n",
                escape(author)
            ));
        }
        if let Some(summary) = text("summary").or_else(|| text("description")) {
            xml.push_str(&format!("    <summary>{}</summary>\n", escape(summary)));
        }
        xml.push_str("  </entry>\n");
    }
    xml.push_str("</feed>\n");
    Page {
        output: format!("{dir}atom.xml"),
        html: xml,
        hints: Vec::new(),
    }
}

/// The first of `keys` in the page's front matter that holds a date, as
/// an RFC 3339 timestamp (a bare date is midnight UTC).
fn date_of(source: &Source, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| {
        let value = source.front_matter.get(*key)?.as_str()?;
        rfc3339(value)
    })
}

fn rfc3339(value: &str) -> Option<String> {
    let date = value.get(..10)?;
    let bytes = date.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && bytes[4] == b'-' && digits(5..7) && bytes[7] == b'-' && digits(8..10)) {
        return None;
    }
    match &value[10..] {
        "" => Some(format!("{date}T00:00:00Z")),
        // A TOML offset date-time is already RFC 3339 (`T` or a space).
        rest if rest.starts_with(['T', ' '])
            && (rest.ends_with('Z') || rest.contains(['+', '-'])) =>
        {
            Some(format!("{date}T{}", &rest[1..]))
        }
        // A local date-time names no zone: read as UTC.
        rest if rest.starts_with(['T', ' ']) => Some(format!("{date}T{}Z", &rest[1..])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn front_matter_dates_become_rfc3339() {
        assert_eq!(
            rfc3339("2026-11-20").as_deref(),
            Some("2026-11-20T00:00:00Z")
        );
        assert_eq!(
            rfc3339("2026-11-20T08:30:00+01:00").as_deref(),
            Some("2026-11-20T08:30:00+01:00")
        );
        assert_eq!(
            rfc3339("2026-11-20 08:30:00").as_deref(),
            Some("2026-11-20T08:30:00Z")
        );
        assert_eq!(rfc3339("soon"), None);
        assert_eq!(rfc3339("2026-1-2"), None);
    }
}
