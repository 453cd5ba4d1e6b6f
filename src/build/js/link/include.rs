//! Inclusion: which modules a bundle needs (module-level tree shaking with
//! package.json `sideEffects`), and the order ES semantics evaluate them in.

use std::collections::HashSet;

use crate::build::js::graph::{Graph, ModuleId};
use crate::build::js::module::{ImportKind, ModuleKind};

use super::exports::{Binding, Resolver};

/// Module-level tree shaking: a module is bundled when it is an entry, is
/// imported dynamically or by `require`, has side effects and is imported,
/// or declares a binding something bundled uses. Returns the inclusion
/// flags, each module's dependencies (in source order) and the dynamic
/// import targets (in discovery order).
pub(super) fn include(
    graph: &Graph,
    resolver: &Resolver,
) -> (Vec<bool>, Vec<Vec<ModuleId>>, Vec<ModuleId>) {
    let count = graph.modules.len();
    let mut included = vec![false; count];
    let mut deps: Vec<Vec<ModuleId>> = vec![Vec::new(); count];
    let mut dynamic = Vec::new();
    let mut queue: Vec<ModuleId> = Vec::new();
    let activate = |module: ModuleId, included: &mut Vec<bool>, queue: &mut Vec<ModuleId>| {
        if !included[module] {
            included[module] = true;
            queue.push(module);
        }
    };
    // Every export of an entry is used.
    for entry in &graph.entries {
        activate(*entry, &mut included, &mut queue);
    }
    let mut exported_roots: Vec<ModuleId> = graph.entries.clone();
    while !queue.is_empty() || !exported_roots.is_empty() {
        for root in std::mem::take(&mut exported_roots) {
            if graph.modules[root].kind == ModuleKind::CommonJs {
                continue;
            }
            for name in resolver.export_names(root) {
                if let Some(binding) = resolver.export(root, &name) {
                    for module in binding_modules(resolver, &binding) {
                        activate(module, &mut included, &mut queue);
                        if !deps[root].contains(&module) && module != root {
                            deps[root].push(module);
                        }
                    }
                }
            }
        }
        let Some(module) = queue.pop() else { continue };
        let m = &graph.modules[module];
        let mut module_deps = Vec::new();
        for (index, record) in m.imports.iter().enumerate() {
            let Some(target) = graph.module_target(module, index) else {
                continue;
            };
            match record.kind {
                ImportKind::Dynamic => {
                    activate(target, &mut included, &mut queue);
                    if !dynamic.contains(&target) {
                        dynamic.push(target);
                        exported_roots.push(target);
                    }
                }
                ImportKind::Require => {
                    activate(target, &mut included, &mut queue);
                    module_deps.push(target);
                    if graph.modules[target].kind != ModuleKind::CommonJs {
                        exported_roots.push(target);
                    }
                }
                ImportKind::Static => {
                    let effects = graph.side_effects[target]
                        || graph.modules[target].kind == ModuleKind::CommonJs;
                    if effects {
                        activate(target, &mut included, &mut queue);
                        module_deps.push(target);
                    }
                }
            }
        }
        for import in m.import_bindings.values() {
            if let Some(binding) = resolver.import(module, import) {
                if let Binding::Namespace(target) = binding {
                    exported_roots.push(target);
                }
                for used in binding_modules(resolver, &binding) {
                    activate(used, &mut included, &mut queue);
                    module_deps.push(used);
                }
            }
        }
        // Source order of first appearance keeps evaluation order faithful.
        let mut seen = HashSet::new();
        module_deps.retain(|dep| *dep != module && seen.insert(*dep));
        let existing = std::mem::take(&mut deps[module]);
        deps[module] = module_deps;
        for dep in existing {
            if !deps[module].contains(&dep) {
                deps[module].push(dep);
            }
        }
    }
    (included, deps, dynamic)
}

/// The modules a binding needs bundled.
fn binding_modules(resolver: &Resolver, binding: &Binding) -> Vec<ModuleId> {
    match binding {
        Binding::Local(module, _) | Binding::CommonJs(module, _) => vec![*module],
        Binding::Namespace(module) => {
            let mut modules = vec![*module];
            for name in resolver.export_names(*module) {
                if let Some(Binding::Local(declaring, _)) = resolver.export(*module, &name)
                    && !modules.contains(&declaring)
                {
                    modules.push(declaring);
                }
            }
            modules
        }
        Binding::External(..) => Vec::new(),
    }
}

/// Depth-first post-order from the entry points: ES module evaluation order.
pub(super) fn execution_order(
    count: usize,
    roots: impl Iterator<Item = ModuleId>,
    edges: &dyn Fn(ModuleId) -> Vec<ModuleId>,
) -> Vec<ModuleId> {
    let mut order = Vec::new();
    let mut state = vec![0u8; count];
    for root in roots {
        // Iterative DFS: (module, next child index).
        let mut stack: Vec<(ModuleId, Vec<ModuleId>, usize)> = Vec::new();
        if state[root] != 0 {
            continue;
        }
        state[root] = 1;
        stack.push((root, edges(root), 0));
        while let Some((module, children, next)) = stack.last_mut() {
            if *next < children.len() {
                let child = children[*next];
                *next += 1;
                if state[child] == 0 {
                    state[child] = 1;
                    let grandchildren = edges(child);
                    stack.push((child, grandchildren, 0));
                }
            } else {
                state[*module] = 2;
                order.push(*module);
                stack.pop();
            }
        }
    }
    order
}
