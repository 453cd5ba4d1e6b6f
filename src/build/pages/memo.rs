//! What a long-running session (`kiln watch`) keeps of each rendered page,
//! so that a rebuild renders again only the pages a change reaches.
//!
//! A page is reused while the digest of what it was made from is the same
//! (its source, every template it extends, includes or imports, however
//! deep, the site data, the page listing and the settings) and every output
//! file its HTML names is still part of the build. Output names carry their
//! content hash, so a stylesheet or image that changed has a new name and
//! the pages linking its old one are rendered again; the others are not.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use aho_corasick::AhoCorasick;

use super::Page;
use crate::build::graph::key_of;
use crate::site::postprocess::OutputIndex;
use crate::site::url::percent_encode_path;

/// Rendered pages by output path; disabled (keeping nothing) for one-shot builds.
#[derive(Default)]
pub struct PageMemo {
    enabled: bool,
    pages: Mutex<HashMap<String, Remembered>>,
}

struct Remembered {
    inputs: blake3::Hash,
    /// Output files the page's HTML names.
    references: Vec<String>,
    page: Page,
}

impl PageMemo {
    /// A memo that remembers pages between builds.
    pub fn enabled() -> PageMemo {
        PageMemo {
            enabled: true,
            pages: Mutex::default(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The page rendered last time, if nothing it was made from changed.
    pub fn get(&self, output: &str, inputs: &blake3::Hash, index: &OutputIndex) -> Option<Page> {
        let pages = self
            .pages
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let remembered = pages.get(output)?;
        let current = remembered.inputs == *inputs
            && remembered
                .references
                .iter()
                .all(|file| index.contains(file));
        current.then(|| remembered.page.clone())
    }

    /// Remembers a freshly rendered page.
    pub fn put(&self, inputs: blake3::Hash, page: &Page, files: &OutputNames) {
        if !self.enabled {
            return;
        }
        let remembered = Remembered {
            inputs,
            references: files.named_in(&page.html),
            page: page.clone(),
        };
        self.pages
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(page.output.clone(), remembered);
    }

    /// Forgets pages that are no longer part of the site.
    pub fn keep_only(&self, outputs: &BTreeSet<&str>) {
        self.pages
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .retain(|output, _| outputs.contains(output.as_str()));
    }
}

/// Finds which output files a page names, in one pass over its HTML.
pub struct OutputNames {
    files: Vec<String>,
    searcher: Option<AhoCorasick>,
}

impl OutputNames {
    /// Every output file of `index`, as written and percent-encoded.
    pub fn new(index: &OutputIndex) -> OutputNames {
        let files: Vec<String> = index.files().map(str::to_string).collect();
        let mut patterns: Vec<String> = files.clone();
        patterns.extend(files.iter().map(|file| percent_encode_path(file)));
        OutputNames {
            searcher: AhoCorasick::new(&patterns).ok(),
            files,
        }
    }

    fn named_in(&self, html: &str) -> Vec<String> {
        let Some(searcher) = self.searcher.as_ref().filter(|_| !self.files.is_empty()) else {
            return Vec::new();
        };
        let found: BTreeSet<usize> = searcher
            .find_overlapping_iter(html)
            .map(|found| found.pattern().as_usize() % self.files.len())
            .collect();
        found.into_iter().map(|at| self.files[at].clone()).collect()
    }
}

/// Every template under `templates/` with the templates it names, for the
/// digest of a page's template closure.
pub(crate) struct Templates {
    digests: BTreeMap<String, blake3::Hash>,
    names: HashMap<String, Named>,
}

/// The templates one template refers to.
enum Named {
    Listed(Vec<String>),
    /// A reference by expression (`{% include widget %}`): any template.
    Any,
}

impl Templates {
    pub(crate) fn read(templates_dir: &Path) -> Templates {
        let mut digests = BTreeMap::new();
        let mut names = HashMap::new();
        for entry in walkdir::WalkDir::new(templates_dir)
            .sort_by_file_name()
            .into_iter()
            .flatten()
            .filter(|entry| entry.file_type().is_file())
        {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let name = key_of(templates_dir, entry.path());
            digests.insert(name.clone(), blake3::hash(text.as_bytes()));
            names.insert(name, referenced_templates(&text));
        }
        Templates { digests, names }
    }

    /// Adds the names and contents of `root` and every template it reaches
    /// to `hasher`.
    pub(crate) fn hash_closure(&self, root: &str, hasher: &mut blake3::Hasher) {
        let mut seen = BTreeSet::new();
        let mut stack = vec![root.to_string()];
        while let Some(name) = stack.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            match self.names.get(&name) {
                Some(Named::Listed(listed)) => stack.extend(listed.iter().cloned()),
                Some(Named::Any) => stack.extend(self.digests.keys().cloned()),
                None => {}
            }
        }
        for name in seen {
            hasher.update(name.as_bytes());
            match self.digests.get(&name) {
                Some(digest) => hasher.update(digest.as_bytes()),
                None => hasher.update(b"\0missing"),
            };
        }
    }
}

/// The template names in `{% extends %}`, `{% include %}`, `{% import %}`
/// and `{% from %}` tags.
fn referenced_templates(text: &str) -> Named {
    let mut listed = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{%") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("%}") else { break };
        let tag = after[..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        rest = &after[end + 2..];
        let keyword = tag.split_whitespace().next().unwrap_or("");
        if !matches!(keyword, "extends" | "include" | "import" | "from") {
            continue;
        }
        let literals = string_literals(&tag[keyword.len()..]);
        if literals.is_empty() {
            return Named::Any;
        }
        listed.extend(literals);
    }
    Named::Listed(listed)
}

/// The quoted strings in a tag's arguments.
fn string_literals(arguments: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut chars = arguments.char_indices();
    while let Some((_, c)) = chars.next() {
        if c != '"' && c != '\'' {
            continue;
        }
        let mut literal = String::new();
        for (_, inner) in chars.by_ref() {
            if inner == c {
                break;
            }
            literal.push(inner);
        }
        found.push(literal);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(text: &str) -> Vec<String> {
        match referenced_templates(text) {
            Named::Listed(names) => names,
            Named::Any => panic!("expected literal names in {text}"),
        }
    }

    #[test]
    fn finds_every_kind_of_template_reference() {
        let text = r#"{% extends "layouts/base.html" %}
{%- include 'partials/nav.html' -%}
{% import "macros.html" as m %}{% from "forms.html" import field %}
{% include ["a.html", "b.html"] ignore missing %}
{% block title %}{{ page.title }}{% endblock %}"#;
        assert_eq!(
            listed(text),
            [
                "layouts/base.html",
                "partials/nav.html",
                "macros.html",
                "forms.html",
                "a.html",
                "b.html"
            ]
        );
    }

    #[test]
    fn a_reference_by_expression_reaches_every_template() {
        assert!(matches!(
            referenced_templates("{% include page.widget %}"),
            Named::Any
        ));
    }

    #[test]
    fn closure_digest_changes_only_with_reached_templates() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        std::fs::create_dir_all(dir.join("pages")).unwrap();
        std::fs::create_dir_all(dir.join("layouts")).unwrap();
        std::fs::write(dir.join("layouts/base.html"), "{% block b %}{% endblock %}").unwrap();
        std::fs::write(dir.join("other.html"), "other").unwrap();
        std::fs::write(
            dir.join("pages/a.html"),
            r#"{% extends "layouts/base.html" %}"#,
        )
        .unwrap();
        let digest = |templates: &Templates| {
            let mut hasher = blake3::Hasher::new();
            templates.hash_closure("pages/a.html", &mut hasher);
            hasher.finalize()
        };
        let before = digest(&Templates::read(dir));
        std::fs::write(dir.join("other.html"), "changed").unwrap();
        assert_eq!(digest(&Templates::read(dir)), before);
        std::fs::write(dir.join("layouts/base.html"), "changed").unwrap();
        assert_ne!(digest(&Templates::read(dir)), before);
    }
}
