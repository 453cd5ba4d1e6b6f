//! Module resolution: Node's algorithm (oxc_resolver, as rspack and
//! rolldown use it), set up once for scripts (browser conditions) and once
//! for stylesheets (`style` conditions), plus what a bundler needs beside
//! the path — whether the file is free of side effects per its package.json.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use globset::{GlobBuilder, GlobMatcher};
use oxc_resolver::{PackageJson, ResolveOptions, Resolver, Restriction, SideEffects};

/// Extensions tried for extensionless specifiers, in order.
pub(crate) const EXTENSIONS: &[&str] = &[
    ".tsx", ".ts", ".jsx", ".js", ".mjs", ".cjs", ".mts", ".cts", ".json",
];

/// What is importing. The algorithm is the same for both (package.json
/// `exports`, main fields, `node_modules` up the tree); the conditions,
/// fields and extensions differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Importer {
    /// `import`, `import()` and `require` in a script bundled for browsers.
    Script,
    /// `@import` of a package in a stylesheet.
    Stylesheet,
}

/// A Node resolver set up for `importer`: the one place kiln configures
/// oxc_resolver.
pub(crate) fn node_resolver(importer: Importer) -> Resolver {
    let strings = |list: &[&str]| list.iter().map(|item| item.to_string()).collect();
    let options = match importer {
        Importer::Script => ResolveOptions {
            condition_names: strings(&["browser", "import", "module", "default"]),
            main_fields: strings(&["browser", "module", "main"]),
            alias_fields: vec![vec!["browser".to_string()]],
            extensions: strings(EXTENSIONS),
            // `import "./util.js"` may name `util.ts` (TypeScript's convention).
            extension_alias: vec![
                (
                    ".js".into(),
                    vec![".ts".into(), ".tsx".into(), ".js".into()],
                ),
                (".mjs".into(), vec![".mts".into(), ".mjs".into()]),
            ],
            builtin_modules: true,
            ..ResolveOptions::default()
        },
        // `exports` under the `style` condition (as Vite resolves CSS), else
        // the `style` field, a stylesheet `main`, `index.css`.
        Importer::Stylesheet => ResolveOptions {
            condition_names: strings(&["style", "default"]),
            main_fields: strings(&["style", "main"]),
            extensions: strings(&[".css"]),
            // A package's `main` is usually its JavaScript: only a
            // stylesheet counts, and the search goes on past anything else.
            restrictions: vec![Restriction::Fn(Arc::new(|path: &Path| {
                path.extension().is_some_and(|extension| extension == "css")
            }))],
            // Paths stay as written, like those of relative `@import`s, so a
            // symlinked `node_modules` stays under the site root (output
            // names and source map paths are relative to it).
            symlinks: false,
            ..ResolveOptions::default()
        },
    };
    Resolver::new(options)
}

/// A resolved import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub path: PathBuf,
    /// `false` when the package declares this file free of side effects.
    pub side_effects: bool,
}

/// The resolver of scripts, with `sideEffects` for tree shaking.
pub(crate) struct ModuleResolver {
    resolver: Resolver,
    /// Compiled `sideEffects` globs by package directory: compiling a glob
    /// costs far more than matching it.
    side_effect_globs: Mutex<HashMap<PathBuf, Arc<Vec<GlobMatcher>>>>,
}

impl Default for ModuleResolver {
    fn default() -> Self {
        ModuleResolver::new()
    }
}

impl ModuleResolver {
    pub(crate) fn new() -> ModuleResolver {
        ModuleResolver {
            resolver: node_resolver(Importer::Script),
            side_effect_globs: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves `specifier` as written in the file `from`.
    pub(crate) fn resolve(&self, from: &Path, specifier: &str) -> Result<Resolved, String> {
        let dir = from.parent().unwrap_or(Path::new("/"));
        let resolution = self
            .resolver
            .resolve(dir, specifier)
            .map_err(|err| err.to_string())?;
        let path = resolution.path().to_path_buf();
        let side_effects = resolution
            .package_json()
            .map(|package| self.has_side_effects(package, &path))
            .unwrap_or(true);
        Ok(Resolved { path, side_effects })
    }

    /// Applies package.json `sideEffects` (webpack's semantics): `false`
    /// means no file has side effects; a glob or list of globs names the
    /// files that do. Globs without a `/` match at any depth.
    fn has_side_effects(&self, package: &PackageJson, path: &Path) -> bool {
        let Some(declared) = package.side_effects() else {
            return true;
        };
        let patterns: Vec<&str> = match declared {
            SideEffects::Bool(value) => return value,
            SideEffects::String(pattern) => vec![pattern],
            SideEffects::Array(patterns) => patterns,
        };
        let globs = {
            let mut cache = self
                .side_effect_globs
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            Arc::clone(
                cache
                    .entry(package.directory().to_path_buf())
                    .or_insert_with(|| {
                        Arc::new(
                            patterns
                                .iter()
                                .filter_map(|pattern| glob(pattern))
                                .collect(),
                        )
                    }),
            )
        };
        let relative = path.strip_prefix(package.directory()).unwrap_or(path);
        let relative = relative.to_string_lossy().replace('\\', "/");
        globs.iter().any(|glob| glob.is_match(&relative))
    }
}

fn glob(pattern: &str) -> Option<GlobMatcher> {
    let pattern = pattern.trim_start_matches("./");
    let pattern = if pattern.contains('/') {
        pattern.to_string()
    } else {
        format!("**/{pattern}")
    };
    GlobBuilder::new(&pattern)
        .literal_separator(false)
        .build()
        .ok()
        .map(|glob| glob.compile_matcher())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path, json: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("package.json"), json).unwrap();
    }

    #[test]
    fn resolves_packages_with_browser_conditions_and_side_effects() {
        let root = tempfile::tempdir().unwrap();
        let pkg = root.path().join("node_modules/lib");
        package(
            &pkg,
            r#"{"name":"lib","exports":{".":{"browser":"./browser.js","import":"./esm.js","require":"./cjs.js"}},"sideEffects":["*.css","./polyfill.js"]}"#,
        );
        for file in ["browser.js", "esm.js", "cjs.js", "polyfill.js", "style.css"] {
            std::fs::write(pkg.join(file), "").unwrap();
        }
        let from = root.path().join("src/app.js");
        std::fs::create_dir_all(from.parent().unwrap()).unwrap();
        let resolver = ModuleResolver::new();
        let resolved = resolver.resolve(&from, "lib").unwrap();
        assert!(
            resolved.path.ends_with("node_modules/lib/browser.js"),
            "{resolved:?}"
        );
        assert!(!resolved.side_effects);
        let package_json = resolver.resolver.resolve(&pkg, "./polyfill.js").unwrap();
        let package = package_json.package_json().unwrap();
        assert!(resolver.has_side_effects(package, &pkg.join("polyfill.js")));
        assert!(resolver.has_side_effects(package, &pkg.join("style.css")));
        assert!(!resolver.has_side_effects(package, &pkg.join("esm.js")));
    }

    #[test]
    fn stylesheets_resolve_through_style_exports_fields_and_index_css() {
        let root = tempfile::tempdir().unwrap();
        let modules = root.path().join("node_modules");
        let files = [
            (
                "exported/package.json",
                r#"{"exports":{".":{"style":"./dist/x.css","default":"./x.js"}}}"#,
            ),
            ("exported/dist/x.css", ""),
            ("exported/x.js", ""),
            ("styled/package.json", r#"{"main":"x.js","style":"s.css"}"#),
            ("styled/s.css", ""),
            ("styled/x.js", ""),
            // A JavaScript `main` is passed over for `index.css`.
            ("scripted/package.json", r#"{"main":"index.js"}"#),
            ("scripted/index.js", ""),
            ("scripted/index.css", ""),
            ("plain/theme.css", ""),
        ];
        for (file, text) in files {
            let path = modules.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let resolver = node_resolver(Importer::Stylesheet);
        let resolve = |specifier: &str| {
            resolver.resolve(root.path(), specifier).map(|resolution| {
                resolution
                    .path()
                    .strip_prefix(&modules)
                    .unwrap()
                    .to_path_buf()
            })
        };
        assert_eq!(
            resolve("exported").unwrap(),
            Path::new("exported/dist/x.css")
        );
        assert_eq!(resolve("styled").unwrap(), Path::new("styled/s.css"));
        assert_eq!(
            resolve("scripted").unwrap(),
            Path::new("scripted/index.css")
        );
        assert_eq!(
            resolve("plain/theme").unwrap(),
            Path::new("plain/theme.css")
        );
        assert!(resolve("plain/missing").is_err());
    }

    #[test]
    fn typescript_extensions_and_js_aliases() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("util.ts"), "").unwrap();
        let from = root.path().join("app.ts");
        let resolver = ModuleResolver::new();
        assert!(
            resolver
                .resolve(&from, "./util")
                .unwrap()
                .path
                .ends_with("util.ts")
        );
        assert!(
            resolver
                .resolve(&from, "./util.js")
                .unwrap()
                .path
                .ends_with("util.ts")
        );
        assert!(resolver.resolve(&from, "./missing").is_err());
    }
}
