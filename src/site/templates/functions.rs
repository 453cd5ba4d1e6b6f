//! The template environment: a loader over `templates/` (front matter
//! blanked out so line numbers stay true) and the functions templates use
//! to reach the build's outputs through the manifest — `asset()`,
//! `stylesheet()`, `script()`, `image()` and `url()`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};

use crate::diagnostic::{Diagnostic, SourceLocation};
use crate::site::images::Format;
use crate::site::images::ImageOutputs;
use crate::site::manifest::{Manifest, ManifestChunk};
use crate::site::templates::frontmatter;
use crate::site::url::public_url;

/// What templates can look up: the manifest, image details, and where
/// warnings go. Shared by every page of a build.
pub(crate) struct Catalog {
    pub base_url: String,
    pub sri: bool,
    pub manifest: Manifest,
    /// Image outputs by manifest key.
    pub images: HashMap<String, ImageOutputs>,
    pub templates_dir: PathBuf,
    pub warnings: Mutex<Vec<Diagnostic>>,
}

impl Catalog {
    /// The manifest entry for `key`, or an error naming it (minijinja adds
    /// the template and line).
    fn chunk(&self, key: &str) -> Result<&ManifestChunk, Error> {
        let key = key.trim_start_matches('/');
        self.manifest.get(key).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("unknown asset {key:?}: no file assets/{key} in this build"),
            )
        })
    }

    /// The `css` of a script chunk and of every chunk it imports
    /// statically, in order, without repeats.
    fn imported_css<'a>(&'a self, chunk: &'a ManifestChunk) -> Vec<&'a str> {
        let mut css: Vec<&str> = Vec::new();
        let mut visited: Vec<&str> = Vec::new();
        let mut stack = vec![chunk];
        while let Some(chunk) = stack.pop() {
            if visited.contains(&chunk.file.as_str()) {
                continue;
            }
            visited.push(&chunk.file);
            for file in &chunk.css {
                if !css.contains(&file.as_str()) {
                    css.push(file);
                }
            }
            stack.extend(
                chunk
                    .imports
                    .iter()
                    .rev()
                    .filter_map(|key| self.manifest.get(key)),
            );
        }
        css
    }

    /// The URL of an output file as written in the current page.
    fn url(&self, state: &State, file: &str) -> String {
        public_url(&self.base_url, file, &page_dir(state))
    }

    fn warn(&self, state: &State, message: String, needle: &str) {
        let file = self.templates_dir.join(state.name());
        let source = std::fs::read_to_string(&file).unwrap_or_default();
        let (line, column) = find(&source, needle).unwrap_or((1, 1));
        let location = SourceLocation { file, line, column };
        let diagnostic = Diagnostic::at(message, location, Some(&source));
        self.warnings
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(diagnostic);
    }
}

/// The current page's output directory (`about` for `about/index.html`),
/// from the `page` variable every page is rendered with.
fn page_dir(state: &State) -> String {
    let output = state
        .lookup("page")
        .and_then(|page| page.get_attr("output").ok())
        .and_then(|output| output.as_str().map(str::to_string))
        .unwrap_or_default();
    output
        .rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default()
}

/// 1-based line and column of the first occurrence of `needle`.
fn find(source: &str, needle: &str) -> Option<(u32, u32)> {
    Some(crate::diagnostic::line_column(source, source.find(needle)?))
}

/// A template environment over `templates_dir` with kiln's functions.
pub(crate) fn environment(templates_dir: &Path, catalog: Arc<Catalog>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    let dir = templates_dir.to_path_buf();
    env.set_loader(move |name| load_template(&dir, name));

    let c = Arc::clone(&catalog);
    // URLs come back marked safe (already attribute-escaped) so that
    // auto-escaping does not turn `/` into `&#x2f;`.
    env.add_function(
        "asset",
        move |state: &State, path: String| -> Result<Value, Error> {
            let chunk = c.chunk(&path)?;
            Ok(Value::from_safe_string(escape(&c.url(state, &chunk.file))))
        },
    );
    let c = Arc::clone(&catalog);
    env.add_function(
        "stylesheet",
        move |state: &State, path: String| -> Result<Value, Error> {
            let chunk = c.chunk(&path)?;
            let href = escape(&c.url(state, &chunk.file));
            Ok(Value::from_safe_string(format!(
                "<link rel=\"stylesheet\" href=\"{href}\"{}>",
                integrity_attributes(&c, chunk)
            )))
        },
    );
    let c = Arc::clone(&catalog);
    env.add_function(
        "script",
        move |state: &State, path: String, kwargs: Kwargs| -> Result<Value, Error> {
            let module = kwargs.get::<Option<bool>>("module")?.unwrap_or(true);
            kwargs.assert_all_used()?;
            let chunk = c.chunk(&path)?;
            let src = escape(&c.url(state, &chunk.file));
            let kind = if module { " type=\"module\"" } else { " defer" };
            // Stylesheets the script's modules import, as Vite's backend
            // integration renders them: the page needs them before the script runs.
            let mut html = String::new();
            for css in c.imported_css(chunk) {
                html.push_str(&format!(
                    "<link rel=\"stylesheet\" href=\"{}\">",
                    escape(&c.url(state, css))
                ));
            }
            html.push_str(&format!(
                "<script{kind} src=\"{src}\"{}></script>",
                integrity_attributes(&c, chunk)
            ));
            Ok(Value::from_safe_string(html))
        },
    );
    let c = Arc::clone(&catalog);
    env.add_function(
        "image",
        move |state: &State, path: String, kwargs: Kwargs| -> Result<Value, Error> {
            picture(&c, state, &path, &kwargs).map(Value::from_safe_string)
        },
    );
    let c = Arc::clone(&catalog);
    env.add_function("url", move |state: &State, path: String| -> Value {
        let path = path.trim_start_matches('/');
        Value::from_safe_string(escape(&public_url(&c.base_url, path, &page_dir(state))))
    });
    env
}

/// Reads `templates/NAME`, refusing names that climb out of the directory.
fn load_template(dir: &Path, name: &str) -> Result<Option<String>, Error> {
    if name.split('/').any(|part| part == ".." || part.is_empty()) || name.contains('\\') {
        return Ok(None);
    }
    match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => Ok(Some(match frontmatter::split(&text) {
            Ok(split) => split.body,
            Err(_) => text,
        })),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot read templates/{name}: {err}"),
        )),
    }
}

fn integrity_attributes(catalog: &Catalog, chunk: &ManifestChunk) -> String {
    if catalog.sri {
        format!(
            " integrity=\"{}\" crossorigin=\"anonymous\"",
            chunk.integrity
        )
    } else {
        String::new()
    }
}

/// `<picture>` with AVIF and WebP sources and an `<img>` fallback carrying
/// its intrinsic size, lazy loading and async decoding.
fn picture(catalog: &Catalog, state: &State, path: &str, kwargs: &Kwargs) -> Result<String, Error> {
    let alt = kwargs.get::<Option<String>>("alt")?;
    let sizes = kwargs
        .get::<Option<String>>("sizes")?
        .unwrap_or_else(|| "100vw".into());
    let class = kwargs.get::<Option<String>>("class")?;
    kwargs.assert_all_used()?;
    let chunk = catalog.chunk(path)?;
    let key = path.trim_start_matches('/');
    let image = catalog.images.get(key).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("{key:?} is not an image"),
        )
    })?;
    if alt.is_none() {
        catalog.warn(
            state,
            format!("image({key:?}) has no alt text; pass alt=\"\" for a decorative image"),
            key,
        );
    }
    let srcset = |format: Format| -> Vec<String> {
        let mut entries: Vec<(u32, String)> = image
            .variants
            .iter()
            .filter(|variant| variant.format == format)
            .map(|variant| (variant.width, catalog.url(state, &variant.file)))
            .collect();
        if format == image.format
            && let Some((width, _)) = image.size
        {
            entries.push((width, catalog.url(state, &chunk.file)));
        }
        entries.sort();
        entries.dedup_by_key(|(width, _)| *width);
        entries
            .into_iter()
            .map(|(width, url)| format!("{} {width}w", escape(&url)))
            .collect()
    };
    let mut html = String::from("<picture>");
    for format in [Format::Avif, Format::Webp] {
        let set = srcset(format);
        if format != image.format && !set.is_empty() {
            html.push_str(&format!(
                "<source type=\"{}\" srcset=\"{}\" sizes=\"{}\">",
                format.mime(),
                set.join(", "),
                escape(&sizes)
            ));
        }
    }
    let mut img = format!("<img src=\"{}\"", escape(&catalog.url(state, &chunk.file)));
    let fallback = srcset(image.format);
    if fallback.len() > 1 {
        img.push_str(&format!(
            " srcset=\"{}\" sizes=\"{}\"",
            fallback.join(", "),
            escape(&sizes)
        ));
    }
    if let Some((width, height)) = image.size {
        img.push_str(&format!(" width=\"{width}\" height=\"{height}\""));
    }
    img.push_str(&format!(
        " alt=\"{}\"",
        escape(alt.as_deref().unwrap_or(""))
    ));
    if let Some(class) = class {
        img.push_str(&format!(" class=\"{}\"", escape(&class)));
    }
    // The marker lets the page post-processor lift lazy loading from the
    // first image of the page (the likely LCP element).
    img.push_str(" loading=\"lazy\" decoding=\"async\" data-kiln-image>");
    html.push_str(&img);
    html.push_str("</picture>");
    Ok(html)
}

/// Escapes text for an HTML attribute value or text node.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_reports_line_and_column() {
        assert_eq!(find("a\n  image(\"x\")\n", "image"), Some((2, 3)));
        assert_eq!(find("abc", "z"), None);
    }

    #[test]
    fn loader_refuses_climbing_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.html"), "+++\nx = 1\n+++\nhi").unwrap();
        assert_eq!(
            load_template(dir.path(), "a.html").unwrap().as_deref(),
            Some("\n\n\nhi")
        );
        assert!(load_template(dir.path(), "../a.html").unwrap().is_none());
        assert!(load_template(dir.path(), "missing.html").unwrap().is_none());
    }
}
