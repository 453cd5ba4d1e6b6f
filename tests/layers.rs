//! The architecture, checked: each layer imports only the layers before it
//! (docs/design.md), and no two files of the server layers import each
//! other in a circle. Regression for the layout where `build` and `serve`
//! imported each other and the dynamic handlers formed a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers in order; a file may import only its own layer and earlier ones.
/// `client` is the outbound HTTP client (http jobs' requests and the load
/// generator's); `watch` composes build and serve, so it may import everything;
/// `loadtest` drives a server (its own or another) with the site's
/// traffic; `fuzzing`, the fuzz targets' door into the parsers, sits above
/// it all.
const LAYERS: [&str; 11] = [
    "config",
    "diagnostic",
    "site",
    "build",
    "http",
    "client",
    "dynamic",
    "server",
    "watch",
    "loadtest",
    "fuzzing",
];

/// The server layers, which must not import the build, nor it them.
const SERVER: [&str; 3] = ["http", "dynamic", "server"];

type Module = Vec<String>;

/// Every module file under `src/` (lib.rs and main.rs aside), by module path.
fn modules() -> BTreeMap<Module, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Module = relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|last| last == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        // Unit tests may reach anywhere.
        let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
        modules.insert(parts, code);
    }
    modules
}

/// The longest module that `path` (`a::b::Item`) names.
fn module_of<'m>(modules: &'m BTreeMap<Module, String>, path: &[String]) -> Option<&'m Module> {
    (1..=path.len())
        .rev()
        .find_map(|len| modules.get_key_value(&path[..len]).map(|(key, _)| key))
}

/// The `crate::` paths a file names, `use crate::a::{b, c::D}` groups expanded.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let base: Vec<String> = rest[..end]
            .split("::")
            .filter(|part| !part.is_empty())
            .map(str::to_string)
            .collect();
        if rest[end..].starts_with('{') {
            let group = &rest[end + 1..rest[end..].find('}').map_or(end + 1, |close| end + close)];
            for item in group.split(',') {
                let mut path = base.clone();
                path.extend(
                    item.split_whitespace()
                        .next()
                        .unwrap_or("")
                        .split("::")
                        .filter(|part| !part.is_empty() && *part != "self")
                        .map(str::to_string),
                );
                paths.push(path);
            }
        }
        paths.push(base);
    }
    paths
}

/// Which modules each module imports (itself left out).
fn imports(modules: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    modules
        .iter()
        .map(|(module, code)| {
            let targets = crate_paths(code)
                .iter()
                .filter_map(|path| module_of(modules, path))
                .filter(|target| *target != module)
                .cloned()
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

fn rank(layer: &str) -> usize {
    LAYERS
        .iter()
        .position(|known| *known == layer)
        .unwrap_or_else(|| panic!("src/{layer} is in no layer of LAYERS"))
}

#[test]
fn each_layer_imports_only_earlier_layers() {
    let modules = modules();
    let mut violations = Vec::new();
    for (module, targets) in imports(&modules) {
        let layer = module[0].as_str();
        for target in targets {
            let other = target[0].as_str();
            let server_and_build = (SERVER.contains(&layer) && other == "build")
                || (layer == "build" && SERVER.contains(&other));
            if layer != "watch" && (rank(other) > rank(layer) || server_and_build) {
                violations.push(format!(
                    "{} imports {}",
                    module.join("::"),
                    target.join("::")
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn no_circular_imports_between_files_of_the_server_layers() {
    let modules = modules();
    let graph: BTreeMap<Module, BTreeSet<Module>> = imports(&modules)
        .into_iter()
        .filter(|(module, _)| SERVER.contains(&module[0].as_str()))
        .map(|(module, targets)| {
            // A file naming its own parent module is how Rust nests; not a cycle.
            let targets = targets
                .into_iter()
                .filter(|target| SERVER.contains(&target[0].as_str()))
                .filter(|target| !module.starts_with(target))
                .collect();
            (module, targets)
        })
        .collect();
    for start in graph.keys() {
        // Every module reachable from `start`; reaching `start` again is a cycle.
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(&Module, Vec<&Module>)> = vec![(start, vec![start])];
        while let Some((module, trail)) = stack.pop() {
            for target in graph.get(module).into_iter().flatten() {
                let mut next = trail.clone();
                next.push(target);
                assert!(
                    target != start,
                    "circular imports: {}",
                    next.iter()
                        .map(|m| m.join("::"))
                        .collect::<Vec<_>>()
                        .join(" -> ")
                );
                if seen.insert(target) {
                    stack.push((target, next));
                }
            }
        }
    }
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let paths = crate_paths(
        "use crate::http::{pipeline, table::Table};\nlet x = crate::site::url::decode_lossy(y);",
    );
    assert!(paths.contains(&vec!["http".into(), "pipeline".into()]));
    assert!(paths.contains(&vec!["http".into(), "table".into(), "Table".into()]));
    assert!(paths.contains(&vec!["site".into(), "url".into(), "decode_lossy".into()]));
}
