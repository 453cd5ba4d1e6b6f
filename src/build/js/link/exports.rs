//! Export resolution: where a name a module imports finally lives,
//! followed through re-exports and `export *` to the module that declares
//! it. Every later pass asks this one: inclusion (which modules a binding
//! needs), chunking, and scope hoisting (which variable replaces an import).

use std::collections::HashSet;

use swc_core::ecma::ast::Id;
use swc_core::ecma::atoms::Atom;

use crate::build::js::graph::{Graph, ModuleId, Target};
use crate::build::js::module::{ExportBinding, ImportBinding, Imported, ModuleKind};

/// Where a name a module imports finally lives.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Binding {
    /// A top-level binding of an ES module (or JSON module).
    Local(ModuleId, Id),
    /// The namespace object of an ES module.
    Namespace(ModuleId),
    /// A CommonJS module's exports, or one property of them.
    CommonJs(ModuleId, Option<Atom>),
    /// An import from a URL, kept as an import.
    External(String, Imported),
}

/// Export resolution over the graph.
pub(super) struct Resolver<'g> {
    pub(super) graph: &'g Graph,
}

impl<'g> Resolver<'g> {
    /// What export `name` of `module` refers to; `None` when there is no such export.
    pub(super) fn export(&self, module: ModuleId, name: &Atom) -> Option<Binding> {
        self.export_guarded(module, name, &mut Vec::new())
    }

    fn export_guarded(
        &self,
        module: ModuleId,
        name: &Atom,
        seen: &mut Vec<(ModuleId, Atom)>,
    ) -> Option<Binding> {
        if seen.iter().any(|(m, n)| *m == module && n == name) {
            return None;
        }
        seen.push((module, name.clone()));
        let m = &self.graph.modules[module];
        if m.kind == ModuleKind::CommonJs {
            return Some(Binding::CommonJs(module, Some(name.clone())));
        }
        match m.export(name) {
            Some(ExportBinding::Local(id)) => match m.import_bindings.get(id) {
                Some(import) => self.import_guarded(module, import, seen),
                None => Some(Binding::Local(module, id.clone())),
            },
            Some(ExportBinding::ReExport { record, name }) => {
                match &self.graph.targets[module][*record] {
                    Target::Module(target) => self.export_guarded(*target, name, seen),
                    Target::External(url) => {
                        Some(Binding::External(url.clone(), Imported::Name(name.clone())))
                    }
                    Target::Css(_) => None,
                }
            }
            Some(ExportBinding::Namespace { record }) => self.namespace_of(module, *record),
            None if name != "default" => m.star_exports.iter().find_map(|record| {
                match &self.graph.targets[module][*record] {
                    // Through `export *`, a CommonJS module has the names
                    // that can be seen statically, as in Node.
                    Target::Module(target)
                        if self.graph.modules[*target].kind == ModuleKind::CommonJs =>
                    {
                        self.graph.modules[*target]
                            .commonjs_exports
                            .contains(name)
                            .then(|| Binding::CommonJs(*target, Some(name.clone())))
                    }
                    Target::Module(target) => self.export_guarded(*target, name, seen),
                    _ => None,
                }
            }),
            None => None,
        }
    }

    /// What an import binding of `module` refers to.
    pub(super) fn import(&self, module: ModuleId, import: &ImportBinding) -> Option<Binding> {
        self.import_guarded(module, import, &mut Vec::new())
    }

    fn import_guarded(
        &self,
        module: ModuleId,
        import: &ImportBinding,
        seen: &mut Vec<(ModuleId, Atom)>,
    ) -> Option<Binding> {
        match &import.imported {
            Imported::Name(name) => match &self.graph.targets[module][import.record] {
                Target::Module(target) => self.export_guarded(*target, name, seen),
                Target::External(url) => {
                    Some(Binding::External(url.clone(), import.imported.clone()))
                }
                Target::Css(_) => None,
            },
            Imported::Namespace => self.namespace_of(module, import.record),
        }
    }

    fn namespace_of(&self, module: ModuleId, record: usize) -> Option<Binding> {
        match &self.graph.targets[module][record] {
            Target::Module(target) if self.graph.modules[*target].kind == ModuleKind::CommonJs => {
                Some(Binding::CommonJs(*target, None))
            }
            Target::Module(target) => Some(Binding::Namespace(*target)),
            Target::External(url) => Some(Binding::External(url.clone(), Imported::Namespace)),
            Target::Css(_) => None,
        }
    }

    /// Every export name of an ES module, its own first, then those of
    /// `export *` (never `default`), without duplicates.
    pub(super) fn export_names(&self, module: ModuleId) -> Vec<Atom> {
        let mut names = Vec::new();
        self.collect_names(module, &mut names, &mut HashSet::new(), true);
        names
    }

    fn collect_names(
        &self,
        module: ModuleId,
        names: &mut Vec<Atom>,
        seen: &mut HashSet<ModuleId>,
        top: bool,
    ) {
        if !seen.insert(module) {
            return;
        }
        let m = &self.graph.modules[module];
        for (name, _) in &m.exports {
            if (top || name != "default") && !names.contains(name) {
                names.push(name.clone());
            }
        }
        if !top {
            for name in &m.commonjs_exports {
                if name != "default" && !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        for record in &m.star_exports {
            if let Target::Module(target) = &self.graph.targets[module][*record] {
                self.collect_names(*target, names, seen, false);
            }
        }
    }
}
