//! The CSS stage: bundles an entry's `@import`s (lightningcss), rewrites every
//! local `url()` to the hashed output URL of the file it names, lowers and
//! prefixes for the configured targets, minifies, and produces a source map.
//!
//! Resolution and cycle detection live in [`SiteProvider`], the
//! [`SourceProvider`] lightningcss reads files through; URL rewriting is a
//! visitor over the bundled stylesheet that tracks which source file each
//! rule came from, so relative URLs resolve against the file that wrote them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lightningcss::bundler::{BundleErrorKind, Bundler, ResolveResult, SourceProvider};
use lightningcss::rules::CssRule;
use lightningcss::stylesheet::{MinifyOptions, ParserOptions, PrinterOptions, StyleSheet};
use lightningcss::targets::Targets;
use lightningcss::values::url::Url;
use lightningcss::visit_types;
use lightningcss::visitor::{Visit, VisitTypes, Visitor};
use parcel_sourcemap::SourceMap;
use serde::{Deserialize, Serialize};

use crate::build::resolve::{Importer, node_resolver};
use crate::config::normalize;
use crate::diagnostic::{Diagnostic, SourceLocation, display_path};

/// Options of the CSS stage that change its output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CssOptions<'a> {
    pub targets: Targets,
    pub minify: bool,
    pub sourcemaps: bool,
    /// The site root: source map paths are relative to it.
    pub root: &'a Path,
    /// `url(/x.png)` and `@import "/x.css"` resolve against this directory.
    pub assets_dir: &'a Path,
    /// Relative path from the directory of the output `.map` to the site
    /// root (e.g. `../../`), so source map `sources` resolve.
    pub map_to_root: &'a str,
}

/// Turns a local file named by `url()` into the URL to write instead.
pub(crate) trait UrlResolver: Sync {
    fn url_for(&self, file: &Path) -> Result<String, String>;
}

/// A `url()` that was rewritten, for the manifest and cache validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UrlReference {
    /// The local file the URL named (absolute).
    pub file: PathBuf,
    /// What the URL was rewritten to, without query or fragment.
    pub url: String,
}

/// A file the bundle read, with the hash of what was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InputFile {
    pub path: PathBuf,
    pub blake3: String,
}

/// The result of bundling one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CssBundle {
    /// The stylesheet, without a `sourceMappingURL` comment.
    pub code: String,
    /// The source map JSON, when enabled.
    pub map: Option<String>,
    /// Every file read, entry first.
    pub inputs: Vec<InputFile>,
    /// Every local `url()` rewritten.
    pub references: Vec<UrlReference>,
}

/// Bundles, rewrites, compiles and prints the stylesheet at `entry`.
/// All problems found are returned together.
pub(crate) fn bundle(
    entry: &Path,
    options: &CssOptions,
    urls: &dyn UrlResolver,
) -> Result<CssBundle, Vec<Diagnostic>> {
    if entry.to_str().is_none() {
        return Err(vec![Diagnostic::new(format!(
            "{}: file names must be UTF-8",
            entry.display()
        ))]);
    }
    let provider = SiteProvider::new(options.root, options.assets_dir);
    let root = options.root.to_string_lossy();
    let mut source_map = options.sourcemaps.then(|| SourceMap::new(&root));
    let (code, references) = {
        let mut bundler = Bundler::new(&provider, source_map.as_mut(), ParserOptions::default());
        let mut stylesheet = in_import_order(|| bundler.bundle(entry))
            .map_err(|err| vec![provider.bundle_diagnostic(err)])?;
        let references = rewrite_urls(&mut stylesheet, &provider, options, urls)?;
        stylesheet
            .minify(MinifyOptions {
                targets: options.targets,
                ..MinifyOptions::default()
            })
            .map_err(|err| vec![provider.located_diagnostic(err.kind.to_string(), err.loc)])?;
        let printed = stylesheet
            .to_css(PrinterOptions {
                minify: options.minify,
                source_map: source_map.as_mut(),
                project_root: Some(&root),
                targets: options.targets,
                ..PrinterOptions::default()
            })
            .map_err(|err| vec![provider.located_diagnostic(err.kind.to_string(), err.loc)])?;
        (printed.code, references)
    };
    let map = match source_map.as_mut() {
        Some(map) => Some(source_map_json(map, options.map_to_root).map_err(|err| vec![err])?),
        None => None,
    };
    Ok(CssBundle {
        code,
        map,
        inputs: provider.into_inputs(),
        references,
    })
}

/// Runs the bundler on a one-thread pool. lightningcss loads imports in
/// parallel and numbers files in the order they finish loading, which leaks
/// into source maps and license-comment order; one thread loads them in
/// import order, so the output is byte-identical from build to build.
/// Entries still build in parallel with each other.
fn in_import_order<T: Send>(bundle: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        Ok(pool) => pool.install(bundle),
        // Without a pool of its own the bundle is still correct, only its
        // source numbering may vary.
        Err(_) => bundle(),
    }
}

/// Serialises a source map with `sources` relative to the map's location.
fn source_map_json(map: &mut SourceMap, map_to_root: &str) -> Result<String, Diagnostic> {
    let mut mappings = Vec::new();
    map.write_vlq(&mut mappings)
        .map_err(|err| Diagnostic::new(format!("writing CSS source map: {err:?}")))?;
    let sources: Vec<String> = map
        .get_sources()
        .iter()
        .map(|source| format!("{map_to_root}{}", source.replace('\\', "/")))
        .collect();
    let json = serde_json::json!({
        "version": 3,
        "sources": sources,
        "sourcesContent": map.get_sources_content(),
        "names": map.get_names(),
        "mappings": String::from_utf8_lossy(&mappings),
    });
    Ok(json.to_string())
}

// ---------------------------------------------------------------------------
// Reading and resolving imports

/// Why an `@import` could not be followed.
#[derive(Debug, thiserror::Error)]
enum ImportError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot resolve @import {specifier:?}: no file at {tried}")]
    NotFound { specifier: String, tried: String },
    /// The package is there, but does not lead to a stylesheet (a subpath
    /// its `exports` leave out, a broken package.json).
    #[error("cannot resolve @import {specifier:?}: {reason}")]
    Package { specifier: String, reason: String },
    #[error("circular @import: {chain}")]
    Cycle { chain: String },
    #[error("{path}: file names must be UTF-8")]
    NotUtf8 { path: String },
}

/// The [`SourceProvider`] of one bundle: reads files once, keeps them for
/// code frames and cache validation, resolves specifiers the way CSS tools
/// do, and refuses import cycles.
struct SiteProvider<'a> {
    root: &'a Path,
    assets_dir: &'a Path,
    /// Resolves package imports: the resolver scripts use, with stylesheet
    /// conditions. One per bundle, as it caches what it reads, so a rebuild
    /// sees `node_modules/` as it is now.
    packages: oxc_resolver::Resolver,
    /// Every file read: its path, its text (boxed so its address is stable
    /// while the vector grows) and the hash of its bytes.
    files: Mutex<Vec<(PathBuf, Box<str>, blake3::Hash)>>,
    /// Import edges seen so far, importer to imported.
    imports: Mutex<HashMap<PathBuf, Vec<PathBuf>>>,
}

impl<'a> SiteProvider<'a> {
    fn new(root: &'a Path, assets_dir: &'a Path) -> Self {
        SiteProvider {
            root,
            assets_dir,
            packages: node_resolver(Importer::Stylesheet),
            files: Mutex::new(Vec::new()),
            imports: Mutex::new(HashMap::new()),
        }
    }

    fn into_inputs(self) -> Vec<InputFile> {
        let files = self
            .files
            .into_inner()
            .unwrap_or_else(|poison| poison.into_inner());
        files
            .into_iter()
            .map(|(path, _, hash)| InputFile {
                path,
                blake3: hash.to_hex().to_string(),
            })
            .collect()
    }

    /// The text of a file this provider read, for code frames.
    fn source_of(&self, path: &Path) -> Option<String> {
        let files = self
            .files
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        files
            .iter()
            .find(|(file, _, _)| file == path)
            .map(|(_, text, _)| text.to_string())
    }

    /// A diagnostic at a lightningcss location (0-based line, 1-based column).
    fn located_diagnostic(
        &self,
        message: String,
        loc: Option<lightningcss::error::ErrorLocation>,
    ) -> Diagnostic {
        match loc {
            Some(loc) => {
                let file = PathBuf::from(&loc.filename);
                let source = self.source_of(&file);
                let location = SourceLocation {
                    file,
                    line: loc.line + 1,
                    column: loc.column.max(1),
                };
                Diagnostic::at(message, location, source.as_deref())
            }
            None => Diagnostic::new(message),
        }
    }

    fn bundle_diagnostic(
        &self,
        err: lightningcss::error::Error<BundleErrorKind<'_, ImportError>>,
    ) -> Diagnostic {
        let message = match &err.kind {
            BundleErrorKind::ResolverError(inner) => inner.to_string(),
            other => other.to_string(),
        };
        self.located_diagnostic(message, err.loc)
    }

    /// Finds the file an `@import` specifier names, or says where it looked.
    fn locate(&self, specifier: &str, from: &Path) -> Result<PathBuf, ImportError> {
        let not_found = |tried: &Path| ImportError::NotFound {
            specifier: specifier.to_string(),
            tried: display_path(tried),
        };
        if let Some(package_path) = specifier.strip_prefix('~') {
            return self
                .locate_package(package_path, from)?
                .ok_or_else(|| not_found(Path::new(&format!("node_modules/{package_path}"))));
        }
        let path = if let Some(rooted) = specifier.strip_prefix('/') {
            self.assets_dir.join(rooted)
        } else {
            from.parent().unwrap_or(self.root).join(specifier)
        };
        let path = normalize(&path);
        if path.is_file() {
            return Ok(path);
        }
        // `@import "normalize.css"` may name a package, as in postcss-import and Vite.
        let bare = !specifier.starts_with('.') && !specifier.starts_with('/');
        if bare && let Some(found) = self.locate_package(specifier, from)? {
            return Ok(found);
        }
        Err(not_found(&path))
    }

    /// Resolves `specifier` as a package import from `from`: package.json
    /// `exports` (the `style` condition), the `style` field, a stylesheet
    /// `main`, `index.css`, in `node_modules/` directories up the tree.
    /// `None` when there is no such package or file.
    fn locate_package(&self, specifier: &str, from: &Path) -> Result<Option<PathBuf>, ImportError> {
        let dir = from.parent().unwrap_or(self.root);
        match self.packages.resolve(dir, specifier) {
            Ok(resolution) => Ok(Some(normalize(resolution.path()))),
            Err(oxc_resolver::ResolveError::NotFound(_)) => Ok(None),
            Err(err) => Err(ImportError::Package {
                specifier: specifier.to_string(),
                reason: err.to_string(),
            }),
        }
    }

    /// Records `from → to` unless it closes a cycle.
    fn add_import(&self, from: &Path, to: &Path) -> Result<(), ImportError> {
        let mut imports = self
            .imports
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(mut chain) = path_between(&imports, to, from) {
            chain.push(to.to_path_buf());
            let names: Vec<String> = chain.iter().map(|path| self.short_name(path)).collect();
            return Err(ImportError::Cycle {
                chain: names.join(" → "),
            });
        }
        imports
            .entry(from.to_path_buf())
            .or_default()
            .push(to.to_path_buf());
        Ok(())
    }

    fn short_name(&self, path: &Path) -> String {
        path.strip_prefix(self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// A path from `start` to `goal` through the import edges, both ends included.
fn path_between(
    imports: &HashMap<PathBuf, Vec<PathBuf>>,
    start: &Path,
    goal: &Path,
) -> Option<Vec<PathBuf>> {
    let mut stack = vec![vec![start.to_path_buf()]];
    let mut seen = std::collections::HashSet::new();
    while let Some(chain) = stack.pop() {
        let last = chain.last()?.clone();
        if last == goal {
            return Some(chain);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in imports.get(&last).into_iter().flatten() {
            let mut longer = chain.clone();
            longer.push(next.clone());
            stack.push(longer);
        }
    }
    None
}

fn is_external(specifier: &str) -> bool {
    specifier.starts_with("//") || has_scheme(specifier)
}

/// `https:`, `data:` and the like: a scheme is letters, digits, `+-.`, then `:`.
fn has_scheme(url: &str) -> bool {
    match url.split_once(':') {
        Some((scheme, _)) => {
            scheme.len() > 1
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

impl SourceProvider for SiteProvider<'_> {
    type Error = ImportError;

    fn read<'s>(&'s self, file: &Path) -> Result<&'s str, Self::Error> {
        let text = std::fs::read_to_string(file).map_err(|err| ImportError::Read {
            path: file.display().to_string(),
            message: err.to_string(),
        })?;
        let hash = blake3::hash(text.as_bytes());
        let boxed: Box<str> = text.into_boxed_str();
        let pointer: *const str = &*boxed;
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        files.push((file.to_path_buf(), boxed, hash));
        // SAFETY: the text lives in its own heap allocation, owned by `files`;
        // entries are never removed or mutated while `self` is borrowed, and
        // moving the Box when the vector grows does not move its contents.
        Ok(unsafe { &*pointer })
    }

    fn resolve(&self, specifier: &str, from: &Path) -> Result<ResolveResult, Self::Error> {
        if is_external(specifier) {
            return Ok(ResolveResult::External(specifier.to_string()));
        }
        let target = self.locate(specifier, from)?;
        if target.to_str().is_none() {
            return Err(ImportError::NotUtf8 {
                path: target.display().to_string(),
            });
        }
        self.add_import(from, &target)?;
        Ok(ResolveResult::File(target))
    }
}

// ---------------------------------------------------------------------------
// Rewriting url()

/// Rewrites every local `url()` in the bundled stylesheet, collecting all
/// problems rather than stopping at the first.
fn rewrite_urls(
    stylesheet: &mut StyleSheet,
    provider: &SiteProvider,
    options: &CssOptions,
    urls: &dyn UrlResolver,
) -> Result<Vec<UrlReference>, Vec<Diagnostic>> {
    let sources = stylesheet.sources.iter().map(PathBuf::from).collect();
    let mut rewriter = UrlRewriter {
        sources,
        current: None,
        provider,
        options,
        urls,
        references: Vec::new(),
        problems: Vec::new(),
    };
    let Ok(()) = stylesheet.visit(&mut rewriter);
    if rewriter.problems.is_empty() {
        Ok(rewriter.references)
    } else {
        Err(rewriter.problems)
    }
}

struct UrlRewriter<'r, 'p> {
    /// Source files by source index.
    sources: Vec<PathBuf>,
    /// The source index of the rule being visited.
    current: Option<usize>,
    provider: &'r SiteProvider<'p>,
    options: &'r CssOptions<'r>,
    urls: &'r dyn UrlResolver,
    references: Vec<UrlReference>,
    problems: Vec<Diagnostic>,
}

impl UrlRewriter<'_, '_> {
    fn current_file(&self) -> Option<&Path> {
        self.sources.get(self.current?).map(PathBuf::as_path)
    }

    /// The local file a URL names, if it names one.
    fn local_target(&self, url: &str, from: &Path) -> Option<(PathBuf, String)> {
        if url.is_empty() || url.starts_with('#') || is_external(url) {
            return None;
        }
        let cut = url.find(['?', '#']).unwrap_or(url.len());
        let (path, suffix) = url.split_at(cut);
        let path = crate::site::url::decode_lossy(path);
        let target = match path.strip_prefix('/') {
            Some(rooted) => self.options.assets_dir.join(rooted),
            None => from
                .parent()
                .unwrap_or(self.options.root)
                .join(path.as_ref()),
        };
        Some((normalize(&target), suffix.to_string()))
    }

    fn problem(&mut self, message: String, url: &Url) {
        let file = self
            .current_file()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let source = self.provider.source_of(&file);
        let location = SourceLocation {
            file,
            line: url.loc.line,
            column: url.loc.column,
        };
        self.problems
            .push(Diagnostic::at(message, location, source.as_deref()));
    }
}

impl<'i> Visitor<'i> for UrlRewriter<'_, '_> {
    type Error = Infallible;

    fn visit_types(&self) -> VisitTypes {
        visit_types!(URLS | RULES)
    }

    fn visit_rule(&mut self, rule: &mut CssRule<'i>) -> Result<(), Self::Error> {
        let saved = self.current;
        if let Some(index) = rule_source_index(rule) {
            self.current = Some(index as usize);
        }
        let result = rule.visit_children(self);
        self.current = saved;
        result
    }

    fn visit_url(&mut self, url: &mut Url<'i>) -> Result<(), Self::Error> {
        let Some(from) = self.current_file().map(Path::to_path_buf) else {
            return Ok(());
        };
        let Some((target, suffix)) = self.local_target(&url.url, &from) else {
            return Ok(());
        };
        if !target.is_file() {
            let message = format!(
                "url({}) names a missing file: {}",
                url.url,
                display_path(&target)
            );
            self.problem(message, url);
            return Ok(());
        }
        match self.urls.url_for(&target) {
            Ok(public) => {
                url.url = format!("{public}{suffix}").into();
                self.references.push(UrlReference {
                    file: target,
                    url: public,
                });
            }
            Err(reason) => self.problem(format!("url({}): {reason}", url.url), url),
        }
        Ok(())
    }
}

/// The source file a rule was parsed from; container rules report their own
/// position and their children report theirs.
fn rule_source_index(rule: &CssRule) -> Option<u32> {
    let loc = match rule {
        CssRule::Media(rule) => rule.loc,
        CssRule::Import(rule) => rule.loc,
        CssRule::Style(rule) => rule.loc,
        CssRule::Keyframes(rule) => rule.loc,
        CssRule::FontFace(rule) => rule.loc,
        CssRule::FontPaletteValues(rule) => rule.loc,
        CssRule::FontFeatureValues(rule) => rule.loc,
        CssRule::Page(rule) => rule.loc,
        CssRule::Supports(rule) => rule.loc,
        CssRule::CounterStyle(rule) => rule.loc,
        CssRule::Namespace(rule) => rule.loc,
        CssRule::MozDocument(rule) => rule.loc,
        CssRule::Nesting(rule) => rule.loc,
        CssRule::NestedDeclarations(rule) => rule.loc,
        CssRule::Viewport(rule) => rule.loc,
        CssRule::CustomMedia(rule) => rule.loc,
        CssRule::LayerStatement(rule) => rule.loc,
        CssRule::LayerBlock(rule) => rule.loc,
        CssRule::Property(rule) => rule.loc,
        CssRule::Container(rule) => rule.loc,
        CssRule::Scope(rule) => rule.loc,
        CssRule::StartingStyle(rule) => rule.loc,
        CssRule::ViewTransition(rule) => rule.loc,
        CssRule::PositionTry(rule) => rule.loc,
        CssRule::Unknown(rule) => rule.loc,
        CssRule::Ignored | CssRule::Custom(_) => return None,
    };
    Some(loc.source_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_protocol_relative_urls_are_external() {
        for url in [
            "https://x/y.css",
            "data:image/png;base64,AA",
            "//cdn/x.css",
            "HTTP://x",
        ] {
            assert!(is_external(url), "{url}");
        }
        // `c:/x` has a one-letter "scheme": a Windows path, not a URL.
        for url in ["a.css", "./a.css", "/a.css", "c:/x", "img.png?v=1:2"] {
            assert!(!is_external(url), "{url}");
        }
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(
            crate::site::url::decode_lossy("my%20photo.png"),
            "my photo.png"
        );
        assert_eq!(crate::site::url::decode_lossy("100%"), "100%");
        assert_eq!(crate::site::url::decode_lossy("%zz"), "%zz");
    }

    #[test]
    fn cycles_are_found_through_several_files() {
        let mut imports = HashMap::new();
        imports.insert(PathBuf::from("b"), vec![PathBuf::from("c")]);
        imports.insert(PathBuf::from("c"), vec![PathBuf::from("a")]);
        let chain = path_between(&imports, Path::new("b"), Path::new("a")).unwrap();
        assert_eq!(
            chain,
            vec![PathBuf::from("b"), PathBuf::from("c"), PathBuf::from("a")]
        );
        assert!(path_between(&imports, Path::new("a"), Path::new("b")).is_none());
    }
}
