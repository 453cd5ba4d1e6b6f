//! The module graph: every module reachable from the entries, parsed in
//! parallel level by level, with each import record resolved to a module,
//! a stylesheet, or an external URL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::build::cache::FileStamp;
use crate::build::js::cache::ModuleCache;
use crate::build::js::module::{ImportKind, ImportRecord, JsContext, JsModule};
use crate::build::js::parse::{self, ParseOptions};
use crate::build::resolve::ModuleResolver;
use crate::diagnostic::Diagnostic;

pub(crate) type ModuleId = usize;

/// A module read and parsed (or taken from the cache), with its contents hash.
type Parsed = Result<(Arc<JsModule>, FileStamp), Vec<Diagnostic>>;

/// What an import record points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Module(ModuleId),
    /// A stylesheet imported from JavaScript: built by the CSS stage.
    Css(PathBuf),
    /// A URL left for the browser to load (`https://…`).
    External(String),
}

/// The parsed modules and how they import each other.
pub(crate) struct Graph {
    pub modules: Vec<Arc<JsModule>>,
    /// Per module, per import record.
    pub targets: Vec<Vec<Target>>,
    /// Per module: whether evaluating it may have side effects (package.json).
    pub side_effects: Vec<bool>,
    /// The configured entries, in order.
    pub entries: Vec<ModuleId>,
    /// Every file read, for cache validation.
    pub inputs: Vec<FileStamp>,
}

impl Graph {
    /// The module a record of `module` points at, if it is one.
    pub(crate) fn module_target(&self, module: ModuleId, record: usize) -> Option<ModuleId> {
        match self.targets[module].get(record) {
            Some(Target::Module(id)) => Some(*id),
            _ => None,
        }
    }
}

/// Reads, parses and resolves everything reachable from `entries`; modules
/// unchanged since the cache saw them are not parsed again.
pub(crate) fn build(
    cache: &ModuleCache,
    entries: &[PathBuf],
    options: &ParseOptions,
) -> Result<Graph, Vec<Diagnostic>> {
    let ctx = cache.ctx();
    let resolver = ModuleResolver::new();
    let ids: Mutex<HashMap<PathBuf, ModuleId>> = Mutex::new(HashMap::new());
    let mut modules: Vec<Option<Arc<JsModule>>> = Vec::new();
    let mut side_effects: Vec<bool> = Vec::new();
    let mut targets: Vec<Vec<Target>> = Vec::new();
    let mut inputs = Vec::new();
    let mut problems = Vec::new();

    let mut frontier: Vec<(ModuleId, PathBuf)> = Vec::new();
    let mut entry_ids = Vec::new();
    for entry in entries {
        let id = intern(
            &ids,
            &mut modules,
            &mut side_effects,
            &mut targets,
            entry,
            true,
        );
        entry_ids.push(id);
        frontier.push((id, entry.clone()));
    }
    while !frontier.is_empty() {
        let parsed: Vec<(ModuleId, Parsed)> = frontier
            .par_iter()
            .map(|(id, path)| (*id, read_and_parse(cache, path, options)))
            .collect();
        let mut next = Vec::new();
        for (id, result) in parsed {
            let (module, stamp) = match result {
                Ok(parsed) => parsed,
                Err(mut found) => {
                    problems.append(&mut found);
                    continue;
                }
            };
            inputs.push(stamp);
            let resolved: Vec<Result<Resolution, Diagnostic>> = module
                .imports
                .par_iter()
                .map(|record| resolve_record(ctx, &resolver, &module.path, record))
                .collect();
            let mut module_targets = Vec::with_capacity(resolved.len());
            for resolution in resolved {
                match resolution {
                    Ok(Resolution::Module {
                        path,
                        side_effects: has_effects,
                    }) => {
                        let known = ids
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(&path)
                            .copied();
                        let target = match known {
                            Some(existing) => existing,
                            None => {
                                let new = intern(
                                    &ids,
                                    &mut modules,
                                    &mut side_effects,
                                    &mut targets,
                                    &path,
                                    has_effects,
                                );
                                next.push((new, path));
                                new
                            }
                        };
                        module_targets.push(Target::Module(target));
                    }
                    Ok(Resolution::Css(path)) => module_targets.push(Target::Css(path)),
                    Ok(Resolution::External(url)) => module_targets.push(Target::External(url)),
                    Err(problem) => {
                        problems.push(problem);
                        module_targets.push(Target::External(String::new()));
                    }
                }
            }
            targets[id] = module_targets;
            modules[id] = Some(module);
        }
        frontier = next;
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let modules: Vec<Arc<JsModule>> = modules
        .into_iter()
        .map(|module| module.expect("every interned module is parsed"))
        .collect();
    cache.retain(&modules);
    Ok(Graph {
        modules,
        targets,
        side_effects,
        entries: entry_ids,
        inputs,
    })
}

fn intern(
    ids: &Mutex<HashMap<PathBuf, ModuleId>>,
    modules: &mut Vec<Option<Arc<JsModule>>>,
    side_effects: &mut Vec<bool>,
    targets: &mut Vec<Vec<Target>>,
    path: &Path,
    has_effects: bool,
) -> ModuleId {
    let mut ids = ids.lock().unwrap_or_else(|p| p.into_inner());
    let id = modules.len();
    ids.insert(path.to_path_buf(), id);
    modules.push(None);
    side_effects.push(has_effects);
    targets.push(Vec::new());
    id
}

fn read_and_parse(cache: &ModuleCache, path: &Path, options: &ParseOptions) -> Parsed {
    let (stamp, bytes) = FileStamp::read(path).map_err(|err| vec![Diagnostic::io(path, &err)])?;
    if let Some(module) = cache.get(path, &stamp.blake3) {
        return Ok((module, stamp));
    }
    let text = String::from_utf8(bytes).map_err(|err| {
        let at = err.utf8_error().valid_up_to();
        vec![Diagnostic::new(format!(
            "{}: not UTF-8 (invalid byte at offset {at})",
            crate::diagnostic::display_path(path)
        ))]
    })?;
    let module = Arc::new(parse::parse(cache.ctx(), path, text, options)?);
    cache.insert(stamp.blake3.clone(), Arc::clone(&module));
    Ok((module, stamp))
}

enum Resolution {
    Module { path: PathBuf, side_effects: bool },
    Css(PathBuf),
    External(String),
}

fn resolve_record(
    ctx: &JsContext,
    resolver: &ModuleResolver,
    from: &Path,
    record: &ImportRecord,
) -> Result<Resolution, Diagnostic> {
    let specifier = record.specifier.as_ref();
    if specifier.starts_with("https://")
        || specifier.starts_with("http://")
        || specifier.starts_with("//")
    {
        if record.kind == ImportKind::Require {
            return Err(ctx.diagnostic(format!("cannot require a URL: {specifier:?}"), record.span));
        }
        return Ok(Resolution::External(specifier.to_string()));
    }
    let resolved = resolver.resolve(from, specifier).map_err(|reason| {
        ctx.diagnostic(
            format!("cannot resolve {specifier:?}: {reason}"),
            record.span,
        )
    })?;
    let extension = resolved
        .path
        .extension()
        .and_then(|ext| ext.to_str())
        .unwrap_or("");
    if extension.eq_ignore_ascii_case("css") {
        return Ok(Resolution::Css(resolved.path));
    }
    let supported = crate::build::resolve::EXTENSIONS
        .iter()
        .any(|ext| ext.trim_start_matches('.').eq_ignore_ascii_case(extension));
    if !supported {
        return Err(ctx.diagnostic(
            format!(
                "{specifier:?} resolves to {}, which is not JavaScript, TypeScript, JSON or CSS",
                resolved.path.display()
            ),
            record.span,
        ));
    }
    Ok(Resolution::Module {
        path: resolved.path,
        side_effects: resolved.side_effects,
    })
}
