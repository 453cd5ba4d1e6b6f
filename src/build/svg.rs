//! Safe SVG minification: drops what never affects rendering — the XML
//! declaration, comments, processing instructions, `<metadata>`, editor
//! (Inkscape, Sodipodi) elements and attributes, and whitespace between
//! tags outside text content — and nothing else. The result is re-parsed;
//! anything that does not round-trip is left unminified.

use quick_xml::Reader;
use quick_xml::Writer;
use quick_xml::events::{BytesStart, Event};

/// Elements whose text is content (whitespace in them can matter).
const TEXT_ELEMENTS: &[&str] = &[
    "text", "tspan", "textPath", "style", "script", "title", "desc", "a",
];

/// Namespaces of editor data.
const EDITOR_PREFIXES: &[&str] = &["sodipodi:", "inkscape:", "sketch:", "serif:"];

/// The minified SVG, or `None` when the input is not well-formed XML.
pub(crate) fn minify(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    let mut writer = Writer::new(Vec::with_capacity(bytes.len()));
    let mut buffer = Vec::new();
    let mut open: Vec<String> = Vec::new();
    // Depth inside an element being dropped (metadata, editor data).
    let mut skipping = 0usize;
    loop {
        let event = reader.read_event_into(&mut buffer).ok()?;
        match event {
            Event::Eof => break,
            Event::Start(start) => {
                if skipping > 0 || is_dropped_element(start.name().as_ref()) {
                    skipping += 1;
                } else {
                    open.push(start.name().as_ref().to_string());
                    writer
                        .write_event(Event::Start(clean_attributes(&start)?))
                        .ok()?;
                }
            }
            Event::End(end) => {
                if skipping > 0 {
                    skipping -= 1;
                } else {
                    open.pop();
                    writer.write_event(Event::End(end)).ok()?;
                }
            }
            Event::Empty(start) => {
                if skipping == 0 && !is_dropped_element(start.name().as_ref()) {
                    writer
                        .write_event(Event::Empty(clean_attributes(&start)?))
                        .ok()?;
                }
            }
            Event::Text(text) => {
                let in_text = open
                    .iter()
                    .any(|name| TEXT_ELEMENTS.contains(&local_name(name)));
                let blank = text.as_ref().chars().all(char::is_whitespace);
                if skipping == 0 && (in_text || !blank) {
                    writer.write_event(Event::Text(text)).ok()?;
                }
            }
            Event::CData(_) | Event::GeneralRef(_) if skipping > 0 => {}
            event @ (Event::CData(_) | Event::GeneralRef(_)) => writer.write_event(event).ok()?,
            // Declaration, comments, processing instructions and doctypes
            // do not affect rendering.
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
        buffer.clear();
    }
    let out = writer.into_inner();
    well_formed(&out).then_some(out)
}

fn local_name(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn is_dropped_element(name: &str) -> bool {
    name == "metadata"
        || EDITOR_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// The start tag without editor attributes and editor namespace declarations.
fn clean_attributes(start: &BytesStart) -> Option<BytesStart<'static>> {
    let mut clean = BytesStart::new(start.name().as_ref().to_string());
    for attribute in start.attributes() {
        let attribute = attribute.ok()?;
        let key = attribute.key.as_ref();
        let editor_attribute = EDITOR_PREFIXES.iter().any(|prefix| key.starts_with(prefix));
        let editor_namespace = key.strip_prefix("xmlns:").is_some_and(|prefix| {
            EDITOR_PREFIXES
                .iter()
                .any(|p| p.strip_suffix(':') == Some(prefix))
        });
        if !editor_attribute && !editor_namespace {
            clean.push_attribute(attribute);
        }
    }
    Some(clean)
}

fn well_formed(bytes: &[u8]) -> bool {
    let mut reader = Reader::from_reader(bytes);
    let mut buffer = Vec::new();
    let mut depth = 0i64;
    loop {
        match reader.read_event_into(&mut buffer) {
            Ok(Event::Eof) => return depth == 0,
            Ok(Event::Start(_)) => depth += 1,
            Ok(Event::End(_)) => depth -= 1,
            Ok(_) => {}
            Err(_) => return false,
        }
        buffer.clear();
    }
}

/// The rendered size from the root's `width`/`height` (plain or `px`
/// numbers), else its `viewBox`.
pub(crate) fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut reader = Reader::from_reader(bytes);
    let mut buffer = Vec::new();
    loop {
        match reader.read_event_into(&mut buffer).ok()? {
            Event::Start(start) | Event::Empty(start)
                if local_name(start.name().as_ref()) == "svg" =>
            {
                let attribute = |key: &str| {
                    start
                        .attributes()
                        .flatten()
                        .find(|attribute| attribute.key.as_ref() == key)
                        .map(|attribute| attribute.value.into_owned())
                };
                let pixels = |text: Option<String>| {
                    let text = text?;
                    let number = text.trim().strip_suffix("px").unwrap_or(text.trim());
                    number
                        .parse::<f64>()
                        .ok()
                        .filter(|n| *n > 0.0)
                        .map(|n| n.round() as u32)
                };
                if let (Some(w), Some(h)) =
                    (pixels(attribute("width")), pixels(attribute("height")))
                {
                    return Some((w, h));
                }
                let view_box = attribute("viewBox")?;
                let numbers: Vec<f64> = view_box
                    .split([' ', ','])
                    .filter(|part| !part.is_empty())
                    .filter_map(|part| part.parse().ok())
                    .collect();
                return match numbers.as_slice() {
                    [_, _, w, h] if *w > 0.0 && *h > 0.0 => {
                        Some((w.round() as u32, h.round() as u32))
                    }
                    _ => None,
                };
            }
            Event::Eof => return None,
            _ => {}
        }
        buffer.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_what_does_not_render() {
        let input = br##"<?xml version="1.0" encoding="UTF-8"?>
<!-- drawn by hand -->
<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" viewBox="0 0 10 10" inkscape:version="1.3">
  <metadata><rdf>stuff</rdf></metadata>
  <sodipodi:namedview pagecolor="#fff"/>
  <title>A square</title>
  <rect width="10" height="10" fill="#c2571a"/>
  <text x="1" y="5">two  spaces &amp; more</text>
</svg>
"##;
        let out = String::from_utf8(minify(input).unwrap()).unwrap();
        assert_eq!(
            out,
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><title>A square</title><rect width="10" height="10" fill="#c2571a"/><text x="1" y="5">two  spaces &amp; more</text></svg>"##
        );
    }

    #[test]
    fn keeps_namespaces_that_are_used() {
        let input = br##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><use xlink:href="#a"/></svg>"##;
        let out = String::from_utf8(minify(input).unwrap()).unwrap();
        assert!(out.contains("xmlns:xlink"), "{out}");
        assert!(out.contains("xlink:href=\"#a\""), "{out}");
    }

    #[test]
    fn malformed_input_is_refused() {
        assert!(minify(b"<svg><g></svg>").is_none());
    }

    #[test]
    fn dimensions_from_attributes_or_viewbox() {
        assert_eq!(
            dimensions(br#"<svg width="64px" height="32"/>"#),
            Some((64, 32))
        );
        assert_eq!(
            dimensions(br#"<svg viewBox="0 0 24 12"></svg>"#),
            Some((24, 12))
        );
        assert_eq!(
            dimensions(br#"<svg width="100%" viewBox="0,0,8,8"></svg>"#),
            Some((8, 8))
        );
        assert_eq!(dimensions(b"<svg></svg>"), None);
    }
}
