//! Chunks: which output file each bundled module goes to. Without
//! splitting, every entry gets everything it reaches; with splitting, each
//! entry and each dynamically imported module starts a chunk, and modules
//! reached from several of them go to a chunk shared by exactly that set.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use crate::build::js::graph::{Graph, ModuleId};
use crate::build::js::module::{ImportKind, sanitize};
use crate::diagnostic::Diagnostic;

use super::exports::Resolver;
use super::include::{execution_order, include};

/// One output chunk.
#[derive(Debug, Clone)]
pub(crate) struct ChunkPlan {
    pub kind: ChunkKind,
    /// The module whose exports the chunk exports (entries).
    pub entry: Option<ModuleId>,
    /// Modules in execution order.
    pub modules: Vec<ModuleId>,
    /// Base file name, without hash or extension.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkKind {
    /// A configured entry (index into the entries).
    Entry(usize),
    /// The target of a dynamic `import()`.
    DynamicEntry,
    /// Modules shared by several entries.
    Shared,
}

/// Which modules are bundled and into which chunks.
pub(crate) struct Plan {
    pub included: Vec<bool>,
    pub chunks: Vec<ChunkPlan>,
    /// The chunk that holds each module (with splitting, exactly one).
    pub home: Vec<Option<usize>>,
    /// The entry chunk of each dynamically imported module.
    pub dynamic_chunk: HashMap<ModuleId, usize>,
    pub splitting: bool,
}

/// Decides what is bundled and how it is split.
pub(crate) fn plan(
    graph: &Graph,
    splitting: bool,
    entry_names: &[String],
) -> Result<Plan, Vec<Diagnostic>> {
    let resolver = Resolver { graph };
    let (included, deps, dynamic_targets) = include(graph, &resolver);
    let mut entry_points: Vec<(ModuleId, ChunkKind)> = graph
        .entries
        .iter()
        .enumerate()
        .map(|(index, module)| (*module, ChunkKind::Entry(index)))
        .collect();
    if splitting {
        for target in &dynamic_targets {
            if !entry_points.iter().any(|(module, _)| module == target) {
                entry_points.push((*target, ChunkKind::DynamicEntry));
            }
        }
    }
    // Dynamic imports are followed like static ones when not splitting.
    let edges = |module: ModuleId| -> Vec<ModuleId> {
        let mut next = deps[module].clone();
        if !splitting {
            next.extend(
                dynamic_edges(graph, module)
                    .into_iter()
                    .filter(|t| included[*t]),
            );
        }
        next
    };
    let order = execution_order(
        graph.modules.len(),
        entry_points.iter().map(|(m, _)| *m),
        &edges,
    );
    let position: HashMap<ModuleId, usize> =
        order.iter().enumerate().map(|(i, m)| (*m, i)).collect();

    let mut reached_by: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); graph.modules.len()];
    for (index, (entry, _)) in entry_points.iter().enumerate() {
        let mut stack = vec![*entry];
        let mut seen = HashSet::new();
        while let Some(module) = stack.pop() {
            if !seen.insert(module) {
                continue;
            }
            reached_by[module].insert(index);
            stack.extend(edges(module));
        }
    }

    let mut chunks: Vec<ChunkPlan> = entry_points
        .iter()
        .map(|(module, kind)| ChunkPlan {
            kind: *kind,
            entry: Some(*module),
            modules: Vec::new(),
            name: match kind {
                ChunkKind::Entry(entry) => entry_names[*entry].clone(),
                _ => module_name(&graph.modules[*module].path),
            },
        })
        .collect();
    let mut home = vec![None; graph.modules.len()];
    if splitting {
        let mut shared: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
        for module in &order {
            let set: Vec<usize> = reached_by[*module].iter().copied().collect();
            let chunk = match set.as_slice() {
                [single] => *single,
                _ => *shared.entry(set).or_insert_with(|| {
                    chunks.push(ChunkPlan {
                        kind: ChunkKind::Shared,
                        entry: None,
                        modules: Vec::new(),
                        name: module_name(&graph.modules[*module].path),
                    });
                    chunks.len() - 1
                }),
            };
            chunks[chunk].modules.push(*module);
            home[*module] = Some(chunk);
        }
    } else {
        for module in &order {
            for entry in &reached_by[*module] {
                chunks[*entry].modules.push(*module);
            }
            home[*module] = reached_by[*module].iter().next().copied();
        }
    }
    for chunk in &mut chunks {
        chunk.modules.sort_by_key(|module| position[module]);
    }
    let dynamic_chunk = entry_points
        .iter()
        .enumerate()
        .filter(|_| splitting)
        .map(|(index, (module, _))| (*module, index))
        .collect();
    Ok(Plan {
        included,
        chunks,
        home,
        dynamic_chunk,
        splitting,
    })
}

/// A file's stem as an identifier-ish chunk name.
fn module_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("chunk");
    let stem = stem.split('.').next().unwrap_or(stem);
    let name = sanitize(
        stem,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        '-',
    );
    if name.is_empty() {
        "chunk".into()
    } else {
        name
    }
}

fn dynamic_edges(graph: &Graph, module: ModuleId) -> Vec<ModuleId> {
    graph.modules[module]
        .imports
        .iter()
        .enumerate()
        .filter(|(_, record)| record.kind == ImportKind::Dynamic)
        .filter_map(|(index, _)| graph.module_target(module, index))
        .collect()
}

/// Placeholder for chunk `index`'s file path, as long as the final one.
pub(crate) fn placeholder(index: usize, name: &str, hash_length: usize) -> String {
    let width = hash_length.saturating_sub(2).max(1);
    format!("{name}.~{index:0width$}~.js")
}
