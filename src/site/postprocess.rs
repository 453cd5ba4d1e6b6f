//! Rewrites rendered pages (lol_html, streaming and spec-compliant): lazy
//! loading with dimensions and the first-image exception, Subresource
//! Integrity on scripts and stylesheets, preload/modulepreload hints for the
//! page's entries, and conservative minification that cannot change
//! rendering (comments removed, runs of whitespace in text collapsed,
//! nothing touched inside `<pre>`, `<textarea>`, scripts or styles).
//! Built pages go through it once per build; route pages once per render
//! (once per cache entry for a cached route).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use lol_html::html_content::{ContentType, Element, TextType};
use lol_html::{RewriteStrSettings, doc_comments, doc_text, element, rewrite_str};

use crate::site::manifest::Manifest;
use crate::site::templates::functions::escape;
use crate::site::url::public_url;

/// What the post-processor knows about an output file.
#[derive(Debug, Clone, Default)]
struct FileInfo {
    integrity: Option<String>,
    size: Option<(u32, u32)>,
    /// Output files this one imports statically (JS chunks).
    imports: Vec<String>,
}

/// Output files of the build by path, for resolving `src`/`href`.
#[derive(Debug, Default)]
pub struct OutputIndex {
    files: HashMap<String, FileInfo>,
}

impl OutputIndex {
    pub fn new(manifest: &Manifest) -> OutputIndex {
        let mut files = HashMap::new();
        for chunk in manifest.values() {
            let imports = chunk
                .imports
                .iter()
                .filter_map(|key| manifest.get(key).map(|imported| imported.file.clone()))
                .collect();
            let size = chunk.width.zip(chunk.height);
            files.insert(
                chunk.file.clone(),
                FileInfo {
                    integrity: Some(chunk.integrity.clone()),
                    size,
                    imports,
                },
            );
            for variant in &chunk.variants {
                files.insert(
                    variant.file.clone(),
                    FileInfo {
                        size: Some((variant.width, variant.height)),
                        ..FileInfo::default()
                    },
                );
            }
        }
        OutputIndex { files }
    }
}

impl OutputIndex {
    /// Whether `file` is an output of the build.
    pub fn contains(&self, file: &str) -> bool {
        self.files.contains_key(file)
    }

    /// Every output file of the build.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }
}

/// Which rewrites to apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rewrites {
    pub lazy_loading: bool,
    pub sri: bool,
    pub resource_hints: bool,
    pub minify: bool,
}

impl Rewrites {
    /// The rewrites `[pages]` and `build.minify` ask for.
    pub(crate) fn of(settings: &crate::config::Settings) -> Rewrites {
        let pages = settings.pages();
        Rewrites {
            lazy_loading: pages.lazy_loading,
            sri: pages.sri,
            resource_hints: pages.resource_hints,
            minify: settings.build().minify,
        }
    }
}

/// One page being post-processed.
pub(crate) struct PageRef<'a> {
    pub index: &'a OutputIndex,
    pub base_url: &'a str,
    /// The page's output directory (`about` for `about/index.html`).
    pub dir: &'a str,
}

impl PageRef<'_> {
    /// The output file an `href`/`src` written in this page points at.
    fn output_file(&self, reference: &str) -> Option<String> {
        let path = reference.split(['?', '#']).next()?;
        let relative = if self.base_url == "./" {
            if path.starts_with('/') || path.contains("://") {
                return None;
            }
            join(self.dir, path)?
        } else {
            path.strip_prefix(self.base_url)?.to_string()
        };
        let decoded = crate::site::url::decode_lossy(&relative).into_owned();
        self.index.files.contains_key(&decoded).then_some(decoded)
    }

    fn info(&self, file: &str) -> Option<&FileInfo> {
        self.index.files.get(file)
    }

    fn url(&self, file: &str) -> String {
        public_url(self.base_url, file, self.dir)
    }
}

/// A rewritten page and its `Link` header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewritten {
    pub html: String,
    pub hints: Vec<String>,
}

/// A resource a page references that gets a hint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Hint {
    Style(String),
    Module(String),
    Script(String),
}

pub(crate) fn rewrite(html: &str, page: &PageRef, rewrites: Rewrites) -> Result<Rewritten, String> {
    let hints = if rewrites.resource_hints {
        collect_hints(html, page)?
    } else {
        Vec::new()
    };
    let link_values: Vec<String> = hints
        .iter()
        .map(|hint| link_header(hint, page, rewrites.sri))
        .collect();
    let head_links: String = hints
        .iter()
        .map(|hint| link_element(hint, page, rewrites.sri))
        .collect();
    let html = apply(html, page, rewrites, &head_links)?;
    Ok(Rewritten {
        html,
        hints: link_values,
    })
}

/// Pass one: the stylesheets and scripts the page uses, with the static
/// imports of its module scripts, in document order without repeats.
fn collect_hints(html: &str, page: &PageRef) -> Result<Vec<Hint>, String> {
    let found: RefCell<Vec<Hint>> = RefCell::new(Vec::new());
    rewrite_str(
        html,
        RewriteStrSettings {
            element_content_handlers: vec![
                element!("link[rel][href]", |el| {
                    let stylesheet = el.get_attribute("rel").is_some_and(|rel| {
                        rel.split_ascii_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("stylesheet"))
                    });
                    if stylesheet
                        && let Some(file) = el
                            .get_attribute("href")
                            .and_then(|href| page.output_file(&href))
                    {
                        found.borrow_mut().push(Hint::Style(file));
                    }
                    Ok(())
                }),
                element!("script[src]", |el| {
                    if let Some(file) = el
                        .get_attribute("src")
                        .and_then(|src| page.output_file(&src))
                    {
                        let module = el
                            .get_attribute("type")
                            .is_some_and(|t| t.eq_ignore_ascii_case("module"));
                        if module {
                            let mut stack = vec![file];
                            while let Some(file) = stack.pop() {
                                if let Some(info) = page.info(&file) {
                                    stack.extend(info.imports.iter().rev().cloned());
                                }
                                found.borrow_mut().push(Hint::Module(file));
                            }
                        } else {
                            found.borrow_mut().push(Hint::Script(file));
                        }
                    }
                    Ok(())
                }),
            ],
            ..RewriteStrSettings::new()
        },
    )
    .map_err(|err| err.to_string())?;
    let mut hints = found.into_inner();
    let mut seen = std::collections::HashSet::new();
    hints.retain(|hint| seen.insert(hint.clone()));
    Ok(hints)
}

fn hint_file(hint: &Hint) -> &str {
    match hint {
        Hint::Style(file) | Hint::Module(file) | Hint::Script(file) => file,
    }
}

/// `</css/site.abc.css>; rel=preload; as=style; crossorigin=anonymous`
fn link_header(hint: &Hint, page: &PageRef, sri: bool) -> String {
    let url = page.url(hint_file(hint));
    let cors = if sri { "; crossorigin=anonymous" } else { "" };
    match hint {
        Hint::Style(_) => format!("<{url}>; rel=preload; as=style{cors}"),
        Hint::Module(_) => format!("<{url}>; rel=modulepreload"),
        Hint::Script(_) => format!("<{url}>; rel=preload; as=script{cors}"),
    }
}

/// The same hint as an element for `<head>`; integrity and crossorigin match
/// the tag that uses the file, so the preloaded response is reused.
fn link_element(hint: &Hint, page: &PageRef, sri: bool) -> String {
    let file = hint_file(hint);
    let href = escape(&page.url(file));
    let integrity = page
        .info(file)
        .and_then(|info| info.integrity.as_deref())
        .filter(|_| sri)
        .map(|value| format!(" integrity=\"{value}\" crossorigin=\"anonymous\""))
        .unwrap_or_default();
    match hint {
        Hint::Style(_) => format!("<link rel=\"preload\" as=\"style\" href=\"{href}\"{integrity}>"),
        Hint::Module(_) => format!("<link rel=\"modulepreload\" href=\"{href}\"{integrity}>"),
        Hint::Script(_) => {
            format!("<link rel=\"preload\" as=\"script\" href=\"{href}\"{integrity}>")
        }
    }
}

/// Pass two: every rewrite, streaming.
fn apply(
    html: &str,
    page: &PageRef,
    rewrites: Rewrites,
    head_links: &str,
) -> Result<String, String> {
    let first_image_seen = Cell::new(false);
    let verbatim_depth = Rc::new(Cell::new(0usize));
    let mut handlers = vec![
        element!("head", |el| {
            if !head_links.is_empty() {
                el.append(head_links, ContentType::Html);
            }
            Ok(())
        }),
        element!("link[href], script[src]", |el| {
            if rewrites.sri {
                add_integrity(el, page);
            }
            Ok(())
        }),
        element!("img", |el| {
            let first = !first_image_seen.replace(true);
            tune_image(el, page, rewrites.lazy_loading, first);
            Ok(())
        }),
        element!("iframe", |el| {
            if rewrites.lazy_loading && !el.has_attribute("loading") {
                el.set_attribute("loading", "lazy")?;
            }
            Ok(())
        }),
    ];
    let depth = Rc::clone(&verbatim_depth);
    if rewrites.minify {
        handlers.push(element!("pre, textarea", move |el| {
            depth.set(depth.get() + 1);
            let depth = Rc::clone(&depth);
            // Void or self-closed forms have no end tag to wait for.
            if el
                .on_end_tag(lol_html::end_tag!(move |_| {
                    depth.set(depth.get().saturating_sub(1));
                    Ok(())
                }))
                .is_err()
            {
                // Nothing to undo: no content follows.
            }
            Ok(())
        }));
    }
    let document = if rewrites.minify {
        vec![
            doc_comments!(|comment| {
                // Conditional comments still mean something to old IE.
                if !comment.text().starts_with("[if") {
                    comment.remove();
                }
                Ok(())
            }),
            doc_text!(|text| {
                if verbatim_depth.get() == 0 && text.text_type() == TextType::Data {
                    let collapsed = collapse_whitespace(text.as_str());
                    if collapsed.len() != text.as_str().len() {
                        text.replace(&collapsed, ContentType::Html);
                    }
                }
                Ok(())
            }),
        ]
    } else {
        Vec::new()
    };
    rewrite_str(
        html,
        RewriteStrSettings {
            element_content_handlers: handlers,
            document_content_handlers: document,
            ..RewriteStrSettings::new()
        },
    )
    .map_err(|err| err.to_string())
}

fn add_integrity(el: &mut Element, page: &PageRef) {
    if el.has_attribute("integrity") {
        return;
    }
    let reference = if el.tag_name() == "script" {
        el.get_attribute("src")
    } else {
        let rel = el
            .get_attribute("rel")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let applies = rel
            .split_ascii_whitespace()
            .any(|r| ["stylesheet", "preload", "modulepreload"].contains(&r));
        applies.then(|| el.get_attribute("href")).flatten()
    };
    let integrity = reference
        .and_then(|reference| page.output_file(&reference))
        .and_then(|file| page.info(&file).and_then(|info| info.integrity.clone()));
    if let Some(integrity) = integrity {
        let _ = el.set_attribute("integrity", &integrity);
        if !el.has_attribute("crossorigin") {
            let _ = el.set_attribute("crossorigin", "anonymous");
        }
    }
}

/// Lazy loading, async decoding and intrinsic dimensions; the first image
/// of the page is likely the largest contentful paint, so it loads eagerly
/// with high priority instead.
fn tune_image(el: &mut Element, page: &PageRef, lazy_loading: bool, first: bool) {
    let generated = el.has_attribute("data-kiln-image");
    el.remove_attribute("data-kiln-image");
    if !lazy_loading {
        return;
    }
    if first {
        if generated {
            el.remove_attribute("loading");
        }
        if !el.has_attribute("loading") && !el.has_attribute("fetchpriority") {
            let _ = el.set_attribute("fetchpriority", "high");
        }
    } else if !el.has_attribute("loading") {
        let _ = el.set_attribute("loading", "lazy");
    }
    if !el.has_attribute("decoding") {
        let _ = el.set_attribute("decoding", "async");
    }
    if !el.has_attribute("width") && !el.has_attribute("height") {
        let size = el
            .get_attribute("src")
            .and_then(|src| page.output_file(&src))
            .and_then(|file| page.info(&file).and_then(|info| info.size));
        if let Some((width, height)) = size {
            let _ = el.set_attribute("width", &width.to_string());
            let _ = el.set_attribute("height", &height.to_string());
        }
    }
}

/// Runs of whitespace become one character: a newline if the run had one,
/// else a space. In normal text flow both render as a single space.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run: Option<char> = None;
    for c in text.chars() {
        if c.is_ascii_whitespace() {
            run = Some(match run {
                Some('\n') => '\n',
                _ if c == '\n' => '\n',
                _ => ' ',
            });
        } else {
            if let Some(space) = run.take() {
                out.push(space);
            }
            out.push(c);
        }
    }
    if let Some(space) = run {
        out.push(space);
    }
    out
}

/// `dir` + relative `path`, resolving `.` and `..`; `None` above the root.
fn join(dir: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|part| !part.is_empty()).collect();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_collapses_without_losing_separation() {
        assert_eq!(collapse_whitespace("a  \t b"), "a b");
        assert_eq!(collapse_whitespace("\n\n  <x>"), "\n<x>");
        assert_eq!(collapse_whitespace("   "), " ");
        assert_eq!(collapse_whitespace("ab"), "ab");
    }

    #[test]
    fn relative_references_join_against_the_page() {
        assert_eq!(join("about", "../css/a.css").as_deref(), Some("css/a.css"));
        assert_eq!(join("", "./css/a.css").as_deref(), Some("css/a.css"));
        assert_eq!(join("", "../a.css"), None);
    }
}
