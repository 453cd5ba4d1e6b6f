//! The page stage: `templates/pages/**` (HTML templates and Markdown) render
//! through minijinja into HTML pages, which are then post-processed
//! ([`crate::site::postprocess`], shared with the server's route pages)
//! and emitted beside the assets, with a sitemap and Atom feeds
//! ([`feeds`]) when `pages.site_url` is set.
//!
//! Layouts and partials are any other template under `templates/`
//! (`{% extends "layouts/base.html" %}`, `{% include "partials/nav.html" %}`).
//! Every page sees `page` (its front matter plus `url`, `output`, and for
//! Markdown `content` and `toc`), `pages` (every page's metadata, newest
//! first), `data` (files under `data/`) and `site`.

pub(crate) mod feeds;
pub(crate) mod markdown;
pub(crate) mod memo;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use minijinja::Environment;
use minijinja::value::Value;
use rayon::prelude::*;
use syntect::parsing::SyntaxSet;

use crate::build::assets::StaticAsset;
use crate::build::cache::{Cache, Key};
use crate::build::graph::key_of;
use crate::config::Settings;
use crate::diagnostic::{Diagnostic, SourceLocation};
use crate::site::manifest::Manifest;
use crate::site::postprocess::{self, OutputIndex, PageRef, Rewrites};
use crate::site::templates::frontmatter;
use crate::site::templates::functions::{self, Catalog};
use crate::site::templates::{read_data, template_diagnostic};
use memo::{OutputNames, PageMemo, Templates};

/// The layout Markdown pages use when their front matter names none.
pub(crate) const DEFAULT_LAYOUT: &str = "layouts/page.html";

/// A rendered page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Output path relative to the output directory (`about/index.html`).
    pub output: String,
    pub html: String,
    /// `Link` header values for the server.
    pub hints: Vec<String>,
}

/// Every page of the site, and the warnings rendering produced.
#[derive(Debug, Default)]
pub(crate) struct Pages {
    pub pages: Vec<Page>,
    pub warnings: Vec<Diagnostic>,
    /// How many pages were rendered (the rest were reused from the memo).
    pub rendered: usize,
}

/// A page source found under `templates/pages/`.
struct Source {
    path: PathBuf,
    /// Template name, relative to `templates/` (`pages/about.html`).
    name: String,
    markdown: bool,
    front_matter: serde_json::Map<String, serde_json::Value>,
    body: String,
    output: String,
    url: String,
}

/// Renders every page (or reuses what `memo` kept of it), each page a
/// unit of `progress`'s timings. All template errors are reported
/// together.
pub(crate) fn build(
    settings: &Settings,
    cache: &Cache,
    memo: &PageMemo,
    manifest: &Manifest,
    assets: &[Arc<StaticAsset>],
    progress: &dyn crate::build::report::Progress,
) -> Result<Pages, Vec<Diagnostic>> {
    let pages_dir = settings.templates_dir.join("pages");
    if !pages_dir.is_dir() {
        return Ok(Pages::default());
    }
    let sources = read_sources(settings, &pages_dir)?;
    check_collisions(&sources)?;
    let catalog = Arc::new(Catalog {
        base_url: settings.build().base_url.clone(),
        sri: settings.pages().sri,
        manifest: manifest.clone(),
        images: assets
            .iter()
            .filter_map(|asset| Some((asset.key.clone(), asset.image.clone()?)))
            .collect(),
        templates_dir: settings.templates_dir.clone(),
        warnings: Mutex::new(Vec::new()),
    });
    let env = functions::environment(&settings.templates_dir, Arc::clone(&catalog));
    let data = read_data(&settings.data_dir)?;
    let listing = listing(&sources);
    // Loading syntect's grammars takes ~100 ms: only when a Markdown page
    // misses the cache.
    let syntaxes = OnceLock::new();
    let index = OutputIndex::new(manifest);
    let shared = Shared {
        settings,
        env: &env,
        data: &data,
        listing: &listing,
        syntaxes: &syntaxes,
        cache,
        index: &index,
    };
    let remembering = memo.is_enabled().then(|| Remembering {
        memo,
        templates: Templates::read(&settings.templates_dir),
        names: OutputNames::new(&index),
        shared: shared_inputs(&data, &listing),
    });
    let results: Vec<Result<(Page, bool), Diagnostic>> = sources
        .par_iter()
        .map(|source| {
            let started = std::time::Instant::now();
            let result = match &remembering {
                Some(remembering) => remembering.render(&shared, source),
                None => render(&shared, source).map(|page| (page, true)),
            };
            let how = match &result {
                Ok((_, true)) => "rendered",
                Ok((_, false)) => "unchanged",
                Err(_) => "failed",
            };
            progress.timed(&format!("{} ({how})", source.name), started);
            result
        })
        .collect();
    let mut pages = Vec::new();
    let mut problems = Vec::new();
    let mut rendered = 0;
    for result in results {
        match result {
            Ok((page, fresh)) => {
                rendered += usize::from(fresh);
                pages.push(page);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    memo.keep_only(&pages.iter().map(|page| page.output.as_str()).collect());
    let site_url = &settings.pages().site_url;
    if !site_url.is_empty() {
        pages.extend(feeds::pages(site_url, &sources));
    }
    pages.sort_by(|a, b| a.output.cmp(&b.output));
    let warnings = std::mem::take(
        &mut *catalog
            .warnings
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()),
    );
    Ok(Pages {
        pages,
        warnings,
        rendered,
    })
}

/// The page memo with what this build's pages are checked against.
struct Remembering<'a> {
    memo: &'a PageMemo,
    templates: Templates,
    names: OutputNames,
    /// Digest of what every page sees: the data and the page listing.
    shared: blake3::Hash,
}

impl Remembering<'_> {
    /// The remembered page when nothing it was made from changed (`false`),
    /// else a fresh rendering (`true`).
    fn render(&self, shared: &Shared, source: &Source) -> Result<(Page, bool), Diagnostic> {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.shared.as_bytes());
        hasher.update(source.name.as_bytes());
        hasher.update(source.body.as_bytes());
        hasher.update(&serde_json::to_vec(&source.front_matter).unwrap_or_default());
        self.templates
            .hash_closure(&template_of(source), &mut hasher);
        let inputs = hasher.finalize();
        if let Some(page) = self.memo.get(&source.output, &inputs, shared.index) {
            return Ok((page, false));
        }
        let page = render(shared, source)?;
        self.memo.put(inputs, &page, &self.names);
        Ok((page, true))
    }
}

fn shared_inputs(data: &serde_json::Value, listing: &[serde_json::Value]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&serde_json::to_vec(data).unwrap_or_default());
    hasher.update(&serde_json::to_vec(listing).unwrap_or_default());
    hasher.finalize()
}

/// The template a page renders through: its own for HTML pages, its layout
/// for Markdown.
fn template_of(source: &Source) -> String {
    if source.markdown {
        source
            .front_matter
            .get("layout")
            .and_then(|layout| layout.as_str())
            .unwrap_or(DEFAULT_LAYOUT)
            .to_string()
    } else {
        source.name.clone()
    }
}

/// What every page's rendering reads.
struct Shared<'a> {
    settings: &'a Settings,
    env: &'a Environment<'static>,
    data: &'a serde_json::Value,
    listing: &'a [serde_json::Value],
    syntaxes: &'a OnceLock<SyntaxSet>,
    cache: &'a Cache,
    index: &'a OutputIndex,
}

fn read_sources(settings: &Settings, pages_dir: &Path) -> Result<Vec<Source>, Vec<Diagnostic>> {
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    let walker = walkdir::WalkDir::new(pages_dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            let name = entry.file_name().to_string_lossy();
            entry.depth() == 0 || !(name.starts_with('.') || name.starts_with('_'))
        });
    for entry in walker {
        let entry = entry.map_err(|err| vec![Diagnostic::new(err.to_string())])?;
        let relative = key_of(pages_dir, entry.path());
        let markdown = relative.ends_with(".md");
        if !entry.file_type().is_file()
            || !(markdown || relative.ends_with(".html") || relative.ends_with(".htm"))
        {
            continue;
        }
        match read_source(settings, entry.path(), &relative, markdown) {
            Ok(Some(source)) => sources.push(source),
            Ok(None) => {}
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(sources)
    } else {
        Err(problems)
    }
}

/// Reads one page; `None` for a draft when drafts are off.
fn read_source(
    settings: &Settings,
    path: &Path,
    relative: &str,
    markdown: bool,
) -> Result<Option<Source>, Diagnostic> {
    let text = std::fs::read_to_string(path).map_err(|err| Diagnostic::io(path, &err))?;
    let split = frontmatter::split(&text).map_err(|(message, line)| {
        let location = SourceLocation {
            file: path.to_path_buf(),
            line,
            column: 1,
        };
        Diagnostic::at(format!("front matter: {message}"), location, Some(&text))
    })?;
    let serde_json::Value::Object(front_matter) = frontmatter::table_to_json(&split.front_matter)
    else {
        unreachable!("a TOML table converts to a JSON object")
    };
    let draft = front_matter
        .get("draft")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if draft && !settings.pages().drafts {
        return Ok(None);
    }
    let output = output_path(relative, settings.pages().pretty_urls);
    let url = format!("/{}", output.strip_suffix("index.html").unwrap_or(&output));
    Ok(Some(Source {
        path: path.to_path_buf(),
        name: format!("pages/{relative}"),
        markdown,
        front_matter,
        body: split.body,
        output,
        url,
    }))
}

/// `about.html` → `about/index.html` with pretty URLs; `index` pages and
/// `404` stay where they are.
pub(crate) fn output_path(relative: &str, pretty: bool) -> String {
    let stem = relative
        .strip_suffix(".html")
        .or_else(|| relative.strip_suffix(".htm"))
        .or_else(|| relative.strip_suffix(".md"))
        .unwrap_or(relative);
    let name = stem.rsplit('/').next().unwrap_or(stem);
    if name == "index" || name == "404" || !pretty {
        format!("{stem}.html")
    } else {
        format!("{stem}/index.html")
    }
}

/// Two sources rendering to the same output is an error naming both.
fn check_collisions(sources: &[Source]) -> Result<(), Vec<Diagnostic>> {
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    let mut problems = Vec::new();
    for source in sources {
        if let Some(other) = seen.insert(&source.output, &source.path) {
            problems.push(Diagnostic::new(format!(
                "{} and {} both render to {}",
                other.display(),
                source.path.display(),
                source.output
            )));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Every page's front matter with its URL, newest `date` first.
fn listing(sources: &[Source]) -> Vec<serde_json::Value> {
    let mut entries: Vec<(String, String, serde_json::Value)> = sources
        .iter()
        .map(|source| {
            let mut entry = source.front_matter.clone();
            entry.insert("url".into(), source.url.clone().into());
            entry.insert("output".into(), source.output.clone().into());
            let date = entry
                .get("date")
                .and_then(|d| d.as_str())
                .unwrap_or("")
                .to_string();
            (
                date,
                source.output.clone(),
                serde_json::Value::Object(entry),
            )
        })
        .collect();
    entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    entries.into_iter().map(|(_, _, entry)| entry).collect()
}

fn render(shared: &Shared, source: &Source) -> Result<Page, Diagnostic> {
    let mut page = source.front_matter.clone();
    page.insert("url".into(), source.url.clone().into());
    page.insert("output".into(), source.output.clone().into());
    page.insert("path".into(), source.name.clone().into());
    let (template, page_value) = if source.markdown {
        let rendered = render_markdown(shared, &source.body);
        page.insert(
            "toc".into(),
            serde_json::to_value(&rendered.toc).unwrap_or_default(),
        );
        let layout = template_of(source);
        let mut value = Value::from_serialize(&page);
        value = with_content(value, rendered.html);
        (layout, value)
    } else {
        (source.name.clone(), Value::from_serialize(&page))
    };
    let context = minijinja::context! {
        page => page_value,
        pages => Value::from_serialize(shared.listing),
        data => Value::from_serialize(shared.data),
        site => minijinja::context! { base_url => shared.settings.build().base_url.clone() },
    };
    let html = shared
        .env
        .get_template(&template)
        .and_then(|template| template.render(context))
        .map_err(|err| {
            template_diagnostic(
                &shared.settings.templates_dir,
                &source.name,
                &template,
                &err,
            )
        })?;
    let dir = source
        .output
        .rsplit_once('/')
        .map(|(dir, _)| dir)
        .unwrap_or("");
    let page_ref = PageRef {
        index: shared.index,
        base_url: &shared.settings.build().base_url,
        dir,
    };
    let rewrites = Rewrites::of(shared.settings);
    // Whitespace before the doctype (blanked front matter, template tags)
    // means nothing; drop it so the document starts with its doctype.
    let rewritten =
        postprocess::rewrite(html.trim_start(), &page_ref, rewrites).map_err(|err| {
            Diagnostic::new(format!(
                "{}: rewriting the rendered page: {err}",
                source.path.display()
            ))
        })?;
    let html = if shared.settings.dev {
        crate::site::live_reload::with_live_reload(&rewritten.html)
    } else {
        rewritten.html
    };
    Ok(Page {
        output: source.output.clone(),
        html,
        hints: rewritten.hints,
    })
}

/// Markdown to HTML, cached by content (highlighting is the slow part).
fn render_markdown(shared: &Shared, body: &str) -> markdown::Rendered {
    let key = Key::new("markdown", &[body.as_bytes()]);
    let cached = shared
        .cache
        .get_bytes(&key)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if let Some(rendered) = cached {
        return rendered;
    }
    let syntaxes = shared
        .syntaxes
        .get_or_init(SyntaxSet::load_defaults_newlines);
    let rendered = markdown::render(body, syntaxes);
    if let Ok(json) = serde_json::to_vec(&rendered) {
        shared.cache.put_bytes(&key, &json);
    }
    rendered
}

/// `page` with `content` as markup that is not escaped again.
fn with_content(page: Value, content: String) -> Value {
    let mut map: BTreeMap<String, Value> = BTreeMap::new();
    if let Ok(keys) = page.try_iter() {
        for key in keys {
            if let (Some(name), Ok(value)) = (key.as_str(), page.get_item(&key)) {
                map.insert(name.to_string(), value);
            }
        }
    }
    map.insert("content".into(), Value::from_safe_string(content));
    Value::from(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths() {
        assert_eq!(output_path("index.html", true), "index.html");
        assert_eq!(output_path("about.html", true), "about/index.html");
        assert_eq!(output_path("about.html", false), "about.html");
        assert_eq!(
            output_path("blog/first-post.md", true),
            "blog/first-post/index.html"
        );
        assert_eq!(output_path("blog/index.md", true), "blog/index.html");
        assert_eq!(output_path("404.html", true), "404.html");
    }
}
