//! Markdown to HTML (pulldown-cmark): tables, footnotes, task lists,
//! headings with stable anchors collected into a table of contents, and
//! fenced code highlighted by syntect into CSS classes (no inline styles, so
//! a strict Content-Security-Policy keeps working).

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd, html};
use serde::{Deserialize, Serialize};
use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

use crate::site::templates::functions::escape;

/// Class prefix of highlighted tokens (`hl-keyword`, ...).
pub(crate) const HIGHLIGHT_PREFIX: &str = "hl-";

/// One heading, for the table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TocEntry {
    pub level: u8,
    pub id: String,
    pub title: String,
}

/// A rendered Markdown document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rendered {
    pub html: String,
    pub toc: Vec<TocEntry>,
}

/// Renders Markdown. `syntaxes` highlights fenced code with a language tag.
pub(crate) fn render(source: &str, syntaxes: &SyntaxSet) -> Rendered {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES;
    let mut events = Parser::new_ext(source, options).peekable();
    let mut out: Vec<Event> = Vec::new();
    let mut toc = Vec::new();
    let mut used_ids = std::collections::HashSet::new();
    while let Some(event) = events.next() {
        match event {
            Event::Start(Tag::Heading {
                level, id, classes, ..
            }) => {
                let inner: Vec<Event> = events
                    .by_ref()
                    .take_while(|event| !matches!(event, Event::End(TagEnd::Heading(_))))
                    .collect();
                let title = plain_text(&inner);
                let id = unique_id(
                    id.map(|id| id.to_string()).unwrap_or_else(|| slug(&title)),
                    &mut used_ids,
                );
                toc.push(TocEntry {
                    level: level as u8,
                    id: id.clone(),
                    title: title.clone(),
                });
                out.push(Event::Html(heading_open(level, &id, &classes).into()));
                out.extend(inner);
                out.push(Event::Html(
                    format!(
                        "<a class=\"anchor\" href=\"#{id}\" aria-label=\"Link to this section\">#</a></{}>\n",
                        level
                    )
                    .into(),
                ));
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let code: String = events
                    .by_ref()
                    .take_while(|event| !matches!(event, Event::End(TagEnd::CodeBlock)))
                    .filter_map(|event| match event {
                        Event::Text(text) => Some(text.to_string()),
                        _ => None,
                    })
                    .collect();
                let language = match &kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().unwrap_or("").to_string()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                out.push(Event::Html(code_block(&code, &language, syntaxes).into()));
            }
            other => out.push(other),
        }
    }
    let mut html_out = String::with_capacity(source.len() * 2);
    html::push_html(&mut html_out, out.into_iter());
    Rendered {
        html: html_out,
        toc,
    }
}

fn heading_open(level: HeadingLevel, id: &str, classes: &[pulldown_cmark::CowStr]) -> String {
    let class = if classes.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = classes.iter().map(|c| c.as_ref()).collect();
        format!(" class=\"{}\"", escape(&names.join(" ")))
    };
    format!("<{level} id=\"{id}\"{class}>")
}

/// The text of heading events, without markup.
fn plain_text(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Text(text) | Event::Code(text) => Some(text.as_ref()),
            _ => None,
        })
        .collect()
}

/// `Getting Started!` → `getting-started`.
pub(crate) fn slug(title: &str) -> String {
    let mut slug = String::with_capacity(title.len());
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "section".into()
    } else {
        slug
    }
}

fn unique_id(base: String, used: &mut std::collections::HashSet<String>) -> String {
    let mut id = base.clone();
    let mut n = 1;
    while !used.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

fn code_block(code: &str, language: &str, syntaxes: &SyntaxSet) -> String {
    let syntax = (!language.is_empty())
        .then(|| syntaxes.find_syntax_by_token(language))
        .flatten();
    let Some(syntax) = syntax else {
        return format!("<pre class=\"code\"><code>{}</code></pre>\n", escape(code));
    };
    let mut generator = ClassedHTMLGenerator::new_with_class_style(
        syntax,
        syntaxes,
        ClassStyle::SpacedPrefixed {
            prefix: HIGHLIGHT_PREFIX,
        },
    );
    for line in LinesWithEndings::from(code) {
        if generator
            .parse_html_for_line_which_includes_newline(line)
            .is_err()
        {
            return format!("<pre class=\"code\"><code>{}</code></pre>\n", escape(code));
        }
    }
    format!(
        "<pre class=\"code\" data-lang=\"{}\"><code>{}</code></pre>\n",
        escape(language),
        generator.finalize()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntaxes() -> SyntaxSet {
        SyntaxSet::load_defaults_newlines()
    }

    #[test]
    fn headings_get_anchors_and_a_toc() {
        let rendered = render(
            "# Hello World\n\n## Part *one*\n\n## Part one\n",
            &syntaxes(),
        );
        assert!(
            rendered.html.contains(
                "<h1 id=\"hello-world\">Hello World<a class=\"anchor\" href=\"#hello-world\""
            ),
            "{}",
            rendered.html
        );
        let ids: Vec<&str> = rendered.toc.iter().map(|entry| entry.id.as_str()).collect();
        assert_eq!(ids, ["hello-world", "part-one", "part-one-1"]);
        assert_eq!(rendered.toc[1].title, "Part one");
        assert_eq!(rendered.toc[1].level, 2);
    }

    #[test]
    fn fenced_code_is_highlighted_with_classes() {
        let rendered = render("```rust\nfn main() { let x = 1; }\n```\n", &syntaxes());
        assert!(
            rendered
                .html
                .contains("<pre class=\"code\" data-lang=\"rust\">"),
            "{}",
            rendered.html
        );
        assert!(rendered.html.contains("class=\"hl-"), "{}", rendered.html);
        assert!(!rendered.html.contains("style="), "{}", rendered.html);
    }

    #[test]
    fn unknown_languages_are_escaped_plainly() {
        let rendered = render("```nosuchlang\n<b>&</b>\n```\n", &syntaxes());
        assert!(
            rendered
                .html
                .contains("<pre class=\"code\"><code>&lt;b&gt;&amp;&lt;/b&gt;\n</code></pre>"),
            "{}",
            rendered.html
        );
    }

    #[test]
    fn tables_and_tasks_render() {
        let rendered = render(
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n",
            &syntaxes(),
        );
        assert!(rendered.html.contains("<table>"));
        assert!(rendered.html.contains("checked"));
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Getting Started!"), "getting-started");
        assert_eq!(slug("  Ünïcode — ok "), "ünïcode-ok");
        assert_eq!(slug("!!!"), "section");
    }
}
