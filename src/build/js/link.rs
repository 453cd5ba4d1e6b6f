//! The linker: decides which modules a bundle needs (module-level tree
//! shaking with `sideEffects`), splits them into chunks, and concatenates
//! each chunk's modules into one scope.
//!
//! Scope hoisting works on resolved names: every import binding is replaced
//! by a reference to the binding it finally names (through re-exports and
//! `export *`), so live bindings and cycles keep their ES semantics for free —
//! there is one variable, declared once. Equal names from different modules
//! carry different syntax contexts; swc's hygiene pass renames them apart
//! when the chunk is emitted. Namespace objects are built only when a
//! namespace is used as a value. CommonJS modules are wrapped in a lazy
//! factory (`__commonJS`) and imported through `__toESM`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use indexmap::IndexSet;
use std::path::Path;

use swc_core::common::{DUMMY_SP, Mark, Span, SyntaxContext};
use swc_core::ecma::ast::*;
use swc_core::ecma::atoms::Atom;
use swc_core::ecma::visit::{Visit, VisitMut, VisitMutWith, VisitWith};

use crate::build::js::graph::{Graph, ModuleId, Target};
use crate::build::js::parse::{
    self, ExportBinding, ImportBinding, ImportKind, Imported, JsContext, ModuleKind,
    stem_identifier,
};
use crate::diagnostic::Diagnostic;

/// Where a name a module imports finally lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
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
pub struct Resolver<'g> {
    pub graph: &'g Graph,
}

impl<'g> Resolver<'g> {
    /// What export `name` of `module` refers to; `None` when there is no such export.
    pub fn export(&self, module: ModuleId, name: &Atom) -> Option<Binding> {
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
    pub fn import(&self, module: ModuleId, import: &ImportBinding) -> Option<Binding> {
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
    pub fn export_names(&self, module: ModuleId) -> Vec<Atom> {
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

// ---------------------------------------------------------------------------
// Inclusion and chunks

/// One output chunk.
#[derive(Debug, Clone)]
pub struct ChunkPlan {
    pub kind: ChunkKind,
    /// The module whose exports the chunk exports (entries).
    pub entry: Option<ModuleId>,
    /// Modules in execution order.
    pub modules: Vec<ModuleId>,
    /// Base file name, without hash or extension.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// A configured entry (index into the entries).
    Entry(usize),
    /// The target of a dynamic `import()`.
    DynamicEntry,
    /// Modules shared by several entries.
    Shared,
}

/// Which modules are bundled and into which chunks.
pub struct Plan {
    pub included: Vec<bool>,
    pub chunks: Vec<ChunkPlan>,
    /// The chunk that holds each module (with splitting, exactly one).
    pub home: Vec<Option<usize>>,
    /// The entry chunk of each dynamically imported module.
    pub dynamic_chunk: HashMap<ModuleId, usize>,
    pub splitting: bool,
}

/// Decides what is bundled and how it is split.
pub fn plan(
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
    let name = super::parse::sanitize(
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

/// Module-level tree shaking: a module is bundled when it is an entry, is
/// imported dynamically or by `require`, has side effects and is imported,
/// or declares a binding something bundled uses. Returns the inclusion
/// flags, each module's dependencies (in source order) and the dynamic
/// import targets (in discovery order).
fn include(graph: &Graph, resolver: &Resolver) -> (Vec<bool>, Vec<Vec<ModuleId>>, Vec<ModuleId>) {
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
                    for module in binding_modules(graph, resolver, &binding) {
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
                for used in binding_modules(graph, resolver, &binding) {
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
fn binding_modules(graph: &Graph, resolver: &Resolver, binding: &Binding) -> Vec<ModuleId> {
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
            let _ = graph;
            modules
        }
        Binding::External(..) => Vec::new(),
    }
}

/// Depth-first post-order from the entry points: ES module evaluation order.
fn execution_order(
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

// ---------------------------------------------------------------------------
// Building chunks

/// Runtime helpers the linker can call, defined once per chunk that needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Helper {
    Export,
    CommonJs,
    ToEsm,
    ToCommonJs,
}

impl Helper {
    pub fn name(self) -> &'static str {
        match self {
            Helper::Export => "__export",
            Helper::CommonJs => "__commonJS",
            Helper::ToEsm => "__toESM",
            Helper::ToCommonJs => "__toCommonJS",
        }
    }

    /// The helper's definition (plain ES2015+).
    pub fn source(self) -> &'static str {
        match self {
            Helper::Export => {
                "var __export = (target, all) => { for (var name in all) Object.defineProperty(target, name, { get: all[name], enumerable: true }); };"
            }
            Helper::CommonJs => {
                "var __commonJS = (factory, module) => () => (module || factory.call((module = { exports: {} }).exports, module.exports, module), module.exports);"
            }
            Helper::ToEsm => {
                "var __toESM = (mod) => mod && mod.__esModule ? mod : Object.assign(Object.create(null), mod !== null && (typeof mod === \"object\" || typeof mod === \"function\") ? mod : {}, { default: mod });"
            }
            Helper::ToCommonJs => {
                "var __toCommonJS = (ns) => Object.defineProperties({}, { ...Object.getOwnPropertyDescriptors(ns), __esModule: { value: true } });"
            }
        }
    }
}

/// A linked chunk, ready for hygiene, minification and printing.
pub struct LinkedChunk {
    pub module: Module,
    /// Other chunks this one imports statically (for the manifest).
    pub static_imports: Vec<usize>,
    /// Chunks this one imports dynamically.
    pub dynamic_imports: Vec<usize>,
    /// Stylesheets imported by the chunk's modules.
    pub css: Vec<std::path::PathBuf>,
    /// The context of the runtime helpers' names: top-level bindings, like
    /// those of the modules.
    pub helper_ctxt: SyntaxContext,
}

/// Placeholder for chunk `index`'s file path, as long as the final one.
pub fn placeholder(index: usize, name: &str, hash_length: usize) -> String {
    let width = hash_length.saturating_sub(2).max(1);
    format!("{name}.~{index:0width$}~.js")
}

/// Links every chunk of the plan.
pub fn link(
    ctx: &JsContext,
    graph: &Graph,
    plan: &Plan,
    hash_length: usize,
) -> Result<Vec<LinkedChunk>, Vec<Diagnostic>> {
    swc_core::common::GLOBALS.set(&ctx.globals, || {
        Linker::new(ctx, graph, plan, hash_length).run()
    })
}

/// An identifier for a generated top-level binding of `module`.
fn generated(module: &parse::JsModule, name: &str) -> Ident {
    Ident::new(name.into(), DUMMY_SP, module.top_level_ctxt())
}

struct Linker<'a> {
    ctx: &'a JsContext,
    graph: &'a Graph,
    plan: &'a Plan,
    resolver: Resolver<'a>,
    hash_length: usize,
    /// Modules whose namespace object is used as a value.
    namespaces: HashSet<ModuleId>,
    /// Context of runtime helper names.
    helper_ctxt: SyntaxContext,
    problems: Vec<Diagnostic>,
}

/// What an import binding is replaced with.
#[derive(Debug, Clone)]
enum Replacement {
    Ident(Id),
    Member(Id, Atom),
    /// `ns.prop` may resolve further: the namespace's module.
    Namespace(ModuleId, Id),
    /// Unchanged (externals keep their import).
    Keep,
}

impl<'a> Linker<'a> {
    fn new(ctx: &'a JsContext, graph: &'a Graph, plan: &'a Plan, hash_length: usize) -> Self {
        Linker {
            ctx,
            graph,
            plan,
            resolver: Resolver { graph },
            hash_length,
            namespaces: HashSet::new(),
            helper_ctxt: SyntaxContext::empty().apply_mark(Mark::new()),
            problems: Vec::new(),
        }
    }

    fn namespace_ident(&self, module: ModuleId) -> Ident {
        let m = &self.graph.modules[module];
        generated(m, &format!("{}_exports", stem_identifier(&m.path)))
    }

    fn require_ident(&self, module: ModuleId) -> Ident {
        let m = &self.graph.modules[module];
        generated(m, &format!("require_{}", stem_identifier(&m.path)))
    }

    fn helper(&self, helper: Helper) -> Ident {
        Ident::new(helper.name().into(), DUMMY_SP, self.helper_ctxt)
    }

    fn run(mut self) -> Result<Vec<LinkedChunk>, Vec<Diagnostic>> {
        self.find_namespaces();
        let mut builders: Vec<ChunkBuilder> = Vec::new();
        for index in 0..self.plan.chunks.len() {
            let builder = self.build_chunk(index);
            builders.push(builder);
        }
        if !self.problems.is_empty() {
            return Err(self.problems);
        }
        // Each chunk exports what others import from it, under stable names
        // that clash neither with each other nor with its public exports.
        let mut export_names: Vec<HashMap<Id, Atom>> = vec![HashMap::new(); builders.len()];
        let mut taken: Vec<HashSet<Atom>> = builders
            .iter()
            .map(|builder| {
                builder
                    .public_exports
                    .iter()
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .collect();
        for builder in &builders {
            for (provider, ids) in &builder.cross_imports {
                for id in ids {
                    if export_names[*provider].contains_key(id) {
                        continue;
                    }
                    let mut name: Atom = id.0.clone();
                    let mut n = 1;
                    while taken[*provider].contains(&name) {
                        name = format!("{}${n}", id.0).into();
                        n += 1;
                    }
                    taken[*provider].insert(name.clone());
                    export_names[*provider].insert(id.clone(), name);
                }
            }
        }
        let mut chunks = Vec::new();
        for (index, builder) in builders.into_iter().enumerate() {
            chunks.push(self.assemble(index, builder, &export_names));
        }
        Ok(chunks)
    }

    /// Namespaces used as values (not just `ns.name`) need an object.
    fn find_namespaces(&mut self) {
        let mut needed = HashSet::new();
        for (module, m) in self.graph.modules.iter().enumerate() {
            if !self.plan.included[module] {
                continue;
            }
            let mut namespace_ids: HashMap<Id, ModuleId> = HashMap::new();
            for (id, import) in &m.import_bindings {
                if let Some(Binding::Namespace(target)) = self.resolver.import(module, import) {
                    namespace_ids.insert(id.clone(), target);
                }
            }
            if !namespace_ids.is_empty() {
                let mut uses = BareUses {
                    watched: &namespace_ids,
                    found: HashSet::new(),
                };
                for stmt in &m.body {
                    stmt.visit_with(&mut uses);
                }
                needed.extend(uses.found);
            }
            // Re-exported namespaces, and namespaces that requires and
            // inlined dynamic imports return.
            for (index, record) in m.imports.iter().enumerate() {
                let Some(target) = self.graph.module_target(module, index) else {
                    continue;
                };
                let esm = self.graph.modules[target].kind == ModuleKind::Esm;
                let inlined_dynamic = record.kind == ImportKind::Dynamic && !self.plan.splitting;
                if esm && (record.kind == ImportKind::Require || inlined_dynamic) {
                    needed.insert(target);
                }
            }
        }
        // Entries re-exporting a namespace (`export * as ns from`).
        for chunk in &self.plan.chunks {
            if let Some(entry) = chunk.entry {
                for name in self.resolver.export_names(entry) {
                    if let Some(Binding::Namespace(target)) = self.resolver.export(entry, &name) {
                        needed.insert(target);
                    }
                }
            }
        }
        // A namespace's own re-exported namespaces are values too.
        let mut stack: Vec<ModuleId> = needed.iter().copied().collect();
        while let Some(module) = stack.pop() {
            for name in self.resolver.export_names(module) {
                if let Some(Binding::Namespace(target)) = self.resolver.export(module, &name)
                    && needed.insert(target)
                {
                    stack.push(target);
                }
            }
        }
        self.namespaces = needed;
    }

    /// The chunk that provides `module` to chunk `index`.
    fn provider(&self, index: usize, module: ModuleId) -> usize {
        if self.plan.chunks[index].modules.contains(&module) {
            index
        } else {
            self.plan.home[module].unwrap_or(index)
        }
    }

    fn build_chunk(&mut self, index: usize) -> ChunkBuilder {
        let chunk = &self.plan.chunks[index];
        let mut builder = ChunkBuilder::default();
        for &module in &chunk.modules {
            self.link_module(index, module, &mut builder);
        }
        if let Some(entry) = chunk.entry {
            self.export_entry(index, entry, &mut builder);
        }
        builder
    }

    fn use_binding(&self, index: usize, module: ModuleId, id: &Id, builder: &mut ChunkBuilder) {
        let provider = self.provider(index, module);
        if provider != index {
            builder
                .cross_imports
                .entry(provider)
                .or_default()
                .insert(id.clone());
            builder.depends_on(provider);
        }
    }

    fn link_module(&mut self, index: usize, module: ModuleId, builder: &mut ChunkBuilder) {
        let m = &self.graph.modules[module];
        let mut prelude: Vec<Stmt> = Vec::new();
        let mut replacements: HashMap<Id, Replacement> = HashMap::new();
        let mut cjs_imports: HashMap<ModuleId, Ident> = HashMap::new();
        for (id, import) in &m.import_bindings {
            let replacement = match self.resolver.import(module, import) {
                Some(Binding::Local(target, target_id)) => {
                    self.use_binding(index, target, &target_id, builder);
                    Replacement::Ident(target_id)
                }
                Some(Binding::Namespace(target)) => {
                    let ns = self.namespace_ident(target);
                    if self.namespaces.contains(&target) {
                        self.use_binding(index, target, &ns.to_id(), builder);
                    }
                    Replacement::Namespace(target, ns.to_id())
                }
                Some(Binding::CommonJs(target, property)) => {
                    let local = self.cjs_import(
                        index,
                        module,
                        target,
                        &mut cjs_imports,
                        &mut prelude,
                        builder,
                    );
                    match property {
                        Some(name) => Replacement::Member(local.to_id(), name),
                        None => Replacement::Ident(local.to_id()),
                    }
                }
                Some(Binding::External(url, imported)) => {
                    builder.externals.push((url, imported, id.clone()));
                    Replacement::Keep
                }
                None => {
                    let target = self.graph.targets[module][import.record].clone();
                    let message = match (&import.imported, target) {
                        (Imported::Name(name), Target::Module(t)) => format!(
                            "{} does not export {name:?}",
                            crate::diagnostic::display_path(&self.graph.modules[t].path)
                        ),
                        (_, Target::Css(path)) => format!(
                            "{} is a stylesheet: import it for its side effect (`import \"…\"`), it has no exports",
                            crate::diagnostic::display_path(&path)
                        ),
                        _ => "this import has nothing to refer to".to_string(),
                    };
                    self.problems
                        .push(self.ctx.diagnostic(message, import.span));
                    continue;
                }
            };
            replacements.insert(id.clone(), replacement);
        }
        // Static imports keep their evaluation order across chunks, and
        // stylesheets imported from JavaScript are collected.
        for (record_index, record) in m.imports.iter().enumerate() {
            match &self.graph.targets[module][record_index] {
                Target::Module(target)
                    if record.kind == ImportKind::Static && self.plan.included[*target] =>
                {
                    let provider = self.provider(index, *target);
                    if provider != index {
                        builder.depends_on(provider);
                    }
                }
                Target::Css(path) if !builder.css.contains(path) => {
                    builder.css.push(path.clone());
                }
                Target::External(url)
                    if record.kind == ImportKind::Static
                        && !url.is_empty()
                        && !builder.bare_externals.contains(url) =>
                {
                    builder.bare_externals.push(url.clone());
                }
                _ => {}
            }
        }
        // Cloned even when nothing else needs the original: the clone is
        // laid out compactly by one thread, and the passes after linking
        // run faster over it (three.js: moving the parser's bodies instead
        // measured ~20% slower overall).
        let mut body = m.body.clone();
        let mut rewriter = Rewriter {
            linker: self,
            index,
            module,
            replacements: &replacements,
            builder,
        };
        for stmt in &mut body {
            stmt.visit_mut_with(&mut rewriter);
        }
        if self.namespaces.contains(&module) {
            let namespace = self.namespace_object(index, module, builder);
            builder.items.extend(namespace);
        }
        let mut statements = prelude;
        statements.extend(body);
        if m.kind == ModuleKind::CommonJs {
            builder.helpers.insert(Helper::CommonJs);
            builder.items.push(self.wrap_commonjs(module, statements));
        } else {
            builder.items.extend(statements);
        }
    }

    /// `var import_x = __toESM(require_x());` once per importing module.
    fn cjs_import(
        &self,
        index: usize,
        module: ModuleId,
        target: ModuleId,
        cjs_imports: &mut HashMap<ModuleId, Ident>,
        prelude: &mut Vec<Stmt>,
        builder: &mut ChunkBuilder,
    ) -> Ident {
        if let Some(existing) = cjs_imports.get(&target) {
            return existing.clone();
        }
        let m = &self.graph.modules[module];
        let local = generated(
            m,
            &format!(
                "import_{}",
                stem_identifier(&self.graph.modules[target].path)
            ),
        );
        let require = self.require_ident(target);
        self.use_binding(index, target, &require.to_id(), builder);
        builder.helpers.insert(Helper::ToEsm);
        let call = call_expr(
            self.helper(Helper::ToEsm),
            vec![*call_expr(require, Vec::new())],
        );
        prelude.push(parse::var_decl(local.clone(), call));
        cjs_imports.insert(target, local.clone());
        local
    }

    fn wrap_commonjs(&self, module: ModuleId, mut statements: Vec<Stmt>) -> Stmt {
        // The module's free `exports` and `module` become the factory's
        // parameters: same names, and a context of their own, so they stay
        // bound to them whatever renames the chunk later goes through.
        let unresolved = SyntaxContext::empty().apply_mark(self.ctx.unresolved_mark);
        let params_ctxt = SyntaxContext::empty().apply_mark(Mark::new());
        for stmt in &mut statements {
            stmt.visit_mut_with(&mut BindFree {
                names: &["exports", "module"],
                from: unresolved,
                to: params_ctxt,
            });
        }
        let param = |name: &str| Param {
            span: DUMMY_SP,
            decorators: Vec::new(),
            pat: Pat::Ident(Ident::new(name.into(), DUMMY_SP, params_ctxt).into()),
        };
        let factory = Expr::Fn(FnExpr {
            ident: None,
            function: Box::new(Function {
                params: vec![param("exports"), param("module")],
                body: Some(FunctionBody {
                    stmts: statements,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        });
        let wrapped = call_expr(self.helper(Helper::CommonJs), vec![factory]);
        parse::var_decl(self.require_ident(module), wrapped)
    }

    /// `var x_exports = {}; __export(x_exports, { a: () => a, … });`
    fn namespace_object(
        &self,
        index: usize,
        module: ModuleId,
        builder: &mut ChunkBuilder,
    ) -> Vec<Stmt> {
        builder.helpers.insert(Helper::Export);
        let ns = self.namespace_ident(module);
        let mut props = Vec::new();
        for name in self.resolver.export_names(module) {
            let value = match self.resolver.export(module, &name) {
                Some(Binding::Local(target, id)) => {
                    self.use_binding(index, target, &id, builder);
                    Expr::Ident(Ident::new(id.0.clone(), DUMMY_SP, id.1))
                }
                Some(Binding::Namespace(target)) => {
                    let target_ns = self.namespace_ident(target);
                    self.use_binding(index, target, &target_ns.to_id(), builder);
                    Expr::Ident(target_ns)
                }
                _ => continue,
            };
            let getter = Expr::Arrow(ArrowExpr {
                body: Box::new(ArrowFunctionBody::Expr(Box::new(value))),
                ..Default::default()
            });
            props.push(PropOrSpread::Prop(Box::new(Prop::KeyValue(KeyValueProp {
                key: prop_name(&name),
                value: Box::new(getter),
            }))));
        }
        let object = Expr::Object(ObjectLit {
            span: DUMMY_SP,
            props,
        });
        vec![
            parse::var_decl(ns.clone(), Box::new(Expr::Object(ObjectLit::default()))),
            Stmt::Expr(ExprStmt {
                span: DUMMY_SP,
                expr: call_expr(self.helper(Helper::Export), vec![Expr::Ident(ns), object]),
            }),
        ]
    }

    /// The entry's exports become the chunk's exports.
    fn export_entry(&mut self, index: usize, entry: ModuleId, builder: &mut ChunkBuilder) {
        let m = &self.graph.modules[entry];
        if m.kind == ModuleKind::CommonJs {
            let require = self.require_ident(entry);
            self.use_binding(index, entry, &require.to_id(), builder);
            builder.default_export = Some(call_expr(require, Vec::new()));
            return;
        }
        if self.provider(index, entry) != index {
            builder.depends_on(self.provider(index, entry));
        }
        for name in self.resolver.export_names(entry) {
            let id = match self.resolver.export(entry, &name) {
                Some(Binding::Local(target, id)) => {
                    self.use_binding(index, target, &id, builder);
                    id
                }
                Some(Binding::Namespace(target)) => {
                    let ns = self.namespace_ident(target).to_id();
                    self.use_binding(index, target, &ns, builder);
                    ns
                }
                Some(Binding::CommonJs(target, property)) => {
                    // A snapshot variable: ES exports must name a binding.
                    let mut prelude = Vec::new();
                    let mut cjs = HashMap::new();
                    let local =
                        self.cjs_import(index, entry, target, &mut cjs, &mut prelude, builder);
                    builder.items.extend(prelude);
                    let value: Box<Expr> = match property {
                        Some(property) => member(local, &property),
                        None => Box::new(Expr::Ident(local)),
                    };
                    let alias = generated(
                        m,
                        &format!("export_{}", stem_identifier(Path::new(name.as_ref()))),
                    );
                    builder.items.push(parse::var_decl(alias.clone(), value));
                    alias.to_id()
                }
                Some(Binding::External(..)) | None => {
                    self.problems.push(Diagnostic::new(format!(
                        "{}: cannot re-export {name:?} from an external module",
                        crate::diagnostic::display_path(&m.path)
                    )));
                    continue;
                }
            };
            builder.public_exports.push((name, id));
        }
    }

    /// Puts a chunk together: helpers, imports, code, exports.
    fn assemble(
        &self,
        index: usize,
        builder: ChunkBuilder,
        export_names: &[HashMap<Id, Atom>],
    ) -> LinkedChunk {
        let chunk_name = &self.plan.chunks[index].name;
        let _ = chunk_name;
        let mut body: Vec<ModuleItem> = Vec::new();
        // Imports of other chunks, in first-use order.
        for provider in &builder.chunk_order {
            let specifier = self.relative_chunk(*provider);
            let specifiers: Vec<ImportSpecifier> = builder
                .cross_imports
                .get(provider)
                .map(|ids| {
                    let mut ids: Vec<&Id> = ids.iter().collect();
                    ids.sort_by(|a, b| a.0.cmp(&b.0));
                    ids.into_iter()
                        .map(|id| {
                            ImportSpecifier::Named(ImportNamedSpecifier {
                                span: DUMMY_SP,
                                local: Ident::new(id.0.clone(), DUMMY_SP, id.1),
                                imported: Some(ModuleExportName::Ident(Ident::new_no_ctxt(
                                    export_names[*provider][id].clone(),
                                    DUMMY_SP,
                                ))),
                                is_type_only: false,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            body.push(import_decl(specifier, specifiers));
        }
        for url in &builder.bare_externals {
            if !builder.externals.iter().any(|(u, _, _)| u == url) {
                body.push(import_decl(url.clone(), Vec::new()));
            }
        }
        for (url, imported, local) in &builder.externals {
            let local = Ident::new(local.0.clone(), DUMMY_SP, local.1);
            let specifier = match imported {
                Imported::Namespace => ImportSpecifier::Namespace(ImportStarAsSpecifier {
                    span: DUMMY_SP,
                    local,
                }),
                Imported::Name(name) if name == "default" => {
                    ImportSpecifier::Default(ImportDefaultSpecifier {
                        span: DUMMY_SP,
                        local,
                    })
                }
                Imported::Name(name) => ImportSpecifier::Named(ImportNamedSpecifier {
                    span: DUMMY_SP,
                    local,
                    imported: Some(ModuleExportName::Ident(Ident::new_no_ctxt(
                        name.clone(),
                        DUMMY_SP,
                    ))),
                    is_type_only: false,
                }),
            };
            body.push(import_decl(url.clone(), vec![specifier]));
        }
        for helper in &builder.helpers {
            body.extend(
                self.helper_statements(*helper)
                    .into_iter()
                    .map(ModuleItem::Stmt),
            );
        }
        body.extend(builder.items.into_iter().map(ModuleItem::Stmt));
        // Exports: the entry's public names, then what other chunks import.
        let mut specifiers: Vec<ExportSpecifier> = Vec::new();
        for (name, id) in &builder.public_exports {
            specifiers.push(export_specifier(id, name));
        }
        let mut internal: Vec<(&Id, &Atom)> = export_names[index].iter().collect();
        internal.sort_by(|a, b| a.1.cmp(b.1));
        for (id, name) in internal {
            specifiers.push(export_specifier(id, name));
        }
        if !specifiers.is_empty() {
            body.push(ModuleItem::ModuleDecl(ModuleDecl::ExportNamed(
                NamedExport {
                    span: DUMMY_SP,
                    specifiers,
                    src: None,
                    type_only: false,
                    with: None,
                },
            )));
        }
        if let Some(expr) = builder.default_export {
            body.push(ModuleItem::ModuleDecl(ModuleDecl::ExportDefaultExpr(
                ExportDefaultExpr {
                    span: DUMMY_SP,
                    expr,
                },
            )));
        }
        LinkedChunk {
            module: Module {
                span: DUMMY_SP,
                body,
                shebang: None,
            },
            static_imports: builder.chunk_order.clone(),
            dynamic_imports: builder.dynamic_chunks,
            css: builder.css,
            helper_ctxt: self.helper_ctxt,
        }
    }

    /// The import specifier of chunk `index` from any other chunk (all
    /// chunks share one directory).
    fn relative_chunk(&self, index: usize) -> String {
        format!(
            "./{}",
            placeholder(index, &self.plan.chunks[index].name, self.hash_length)
        )
    }

    fn helper_statements(&self, helper: Helper) -> Vec<Stmt> {
        let mut statements = parse_statements(self.ctx, helper.source());
        // The helper's own name must be the one the linker refers to.
        for stmt in &mut statements {
            stmt.visit_mut_with(&mut Rename {
                name: helper.name(),
                ctxt: self.helper_ctxt,
            });
        }
        statements
    }
}

/// Parses trusted JavaScript (runtime helpers) into resolved statements.
fn parse_statements(ctx: &JsContext, source: &str) -> Vec<Stmt> {
    use swc_core::ecma::parser::lexer::Lexer;
    use swc_core::ecma::parser::{Parser, StringInput, Syntax};
    let file = ctx.cm.new_source_file(
        swc_core::common::FileName::Custom("kiln:runtime".into()).into(),
        source.to_string(),
    );
    let lexer = Lexer::new(
        Syntax::Es(Default::default()),
        EsVersion::latest(),
        StringInput::from(&*file),
        None,
    );
    let mut parser = Parser::new_from(lexer);
    let module = parser
        .parse_module()
        .expect("runtime helpers are valid JavaScript");
    let mut program = Program::Module(module);
    program.mutate(swc_core::ecma::transforms::base::resolver(
        ctx.unresolved_mark,
        Mark::new(),
        false,
    ));
    let Program::Module(module) = program else {
        unreachable!()
    };
    module
        .body
        .into_iter()
        .filter_map(|item| item.stmt())
        .map(strip_spans)
        .collect()
}

/// Helpers have no place in the user's source maps.
fn strip_spans(mut stmt: Stmt) -> Stmt {
    struct Strip;
    impl VisitMut for Strip {
        fn visit_mut_span(&mut self, span: &mut Span) {
            *span = DUMMY_SP;
        }
    }
    stmt.visit_mut_with(&mut Strip);
    stmt
}

/// Gives every declaration and use of `name` at the helper's top level the
/// linker's context.
struct Rename<'a> {
    name: &'a str,
    ctxt: SyntaxContext,
}

impl VisitMut for Rename<'_> {
    fn visit_mut_ident(&mut self, ident: &mut Ident) {
        if ident.sym == self.name {
            ident.ctxt = self.ctxt;
        }
    }
}

/// Gives free references to `names` another context.
struct BindFree<'a> {
    names: &'a [&'a str],
    from: SyntaxContext,
    to: SyntaxContext,
}

impl VisitMut for BindFree<'_> {
    fn visit_mut_ident(&mut self, ident: &mut Ident) {
        if ident.ctxt == self.from && self.names.contains(&ident.sym.as_ref()) {
            ident.ctxt = self.to;
        }
    }
}

#[derive(Default)]
struct ChunkBuilder {
    items: Vec<Stmt>,
    helpers: BTreeSet<Helper>,
    /// Bindings imported from other chunks, by providing chunk.
    /// Insertion-ordered, so export names are assigned the same way every build.
    cross_imports: BTreeMap<usize, IndexSet<Id>>,
    /// Chunks imported, in first-use order.
    chunk_order: Vec<usize>,
    dynamic_chunks: Vec<usize>,
    public_exports: Vec<(Atom, Id)>,
    default_export: Option<Box<Expr>>,
    externals: Vec<(String, Imported, Id)>,
    bare_externals: Vec<String>,
    css: Vec<std::path::PathBuf>,
}

impl ChunkBuilder {
    fn depends_on(&mut self, chunk: usize) {
        if !self.chunk_order.contains(&chunk) {
            self.chunk_order.push(chunk);
        }
    }
}

/// Rewrites one module's body: import bindings, `ns.name`, `import()` and `require()`.
struct Rewriter<'l, 'a> {
    linker: &'l Linker<'a>,
    index: usize,
    module: ModuleId,
    replacements: &'l HashMap<Id, Replacement>,
    builder: &'l mut ChunkBuilder,
}

impl Rewriter<'_, '_> {
    fn replacement_expr(&self, ident: &Ident) -> Option<Expr> {
        match self.replacements.get(&ident.to_id())? {
            Replacement::Ident(id) => Some(Expr::Ident(Ident::new(id.0.clone(), ident.span, id.1))),
            Replacement::Member(id, name) => {
                Some(*member(Ident::new(id.0.clone(), ident.span, id.1), name))
            }
            Replacement::Namespace(_, id) => {
                Some(Expr::Ident(Ident::new(id.0.clone(), ident.span, id.1)))
            }
            Replacement::Keep => None,
        }
    }

    /// `ns.name` on a namespace import: the binding itself.
    fn namespace_member(&mut self, member: &MemberExpr) -> Option<Expr> {
        let Expr::Ident(object) = &*member.obj else {
            return None;
        };
        let Replacement::Namespace(target, _) = self.replacements.get(&object.to_id())? else {
            return None;
        };
        let name: Atom = match &member.prop {
            MemberProp::Ident(prop) => prop.sym.clone(),
            MemberProp::Computed(computed) => match &*computed.expr {
                Expr::Lit(Lit::Str(text)) => text.value.to_atom_lossy().into_owned(),
                _ => return None,
            },
            MemberProp::PrivateName(_) => return None,
        };
        match self.linker.resolver.export(*target, &name) {
            Some(Binding::Local(declaring, id)) => {
                self.linker
                    .use_binding(self.index, declaring, &id, self.builder);
                Some(Expr::Ident(Ident::new(id.0.clone(), member.span, id.1)))
            }
            Some(Binding::Namespace(declaring)) => {
                let ns = self.linker.namespace_ident(declaring);
                self.linker
                    .use_binding(self.index, declaring, &ns.to_id(), self.builder);
                Some(Expr::Ident(ns))
            }
            // A missing export reads as `undefined`, as on a real namespace.
            None => Some(Expr::Unary(UnaryExpr {
                span: member.span,
                op: UnaryOp::Void,
                arg: Box::new(Expr::Lit(Lit::Num(Number {
                    span: DUMMY_SP,
                    value: 0.0,
                    raw: None,
                }))),
            })),
            _ => None,
        }
    }

    fn record_target(&self, kind: ImportKind, specifier: &Str) -> Option<ModuleId> {
        let m = &self.linker.graph.modules[self.module];
        let value = specifier.value.to_atom_lossy();
        m.imports
            .iter()
            .enumerate()
            .find(|(_, record)| record.kind == kind && record.specifier.as_ref() == value.as_ref())
            .and_then(|(index, _)| self.linker.graph.module_target(self.module, index))
    }

    fn rewrite_dynamic_import(&mut self, call: &mut CallExpr) -> Option<Expr> {
        let specifier = parse::string_argument(call)?.clone();
        let target = self.record_target(ImportKind::Dynamic, &specifier)?;
        if let Some(chunk) = self.linker.plan.dynamic_chunk.get(&target) {
            if !self.builder.dynamic_chunks.contains(chunk) {
                self.builder.dynamic_chunks.push(*chunk);
            }
            let path = self.linker.relative_chunk(*chunk);
            *call.args[0].expr = Expr::Lit(Lit::Str(Str {
                span: specifier.span,
                value: path.into(),
                raw: None,
            }));
            return None;
        }
        // Not splitting: the module is in this chunk; resolve to its namespace.
        let value = self.module_value(target)?;
        let resolve = member(Ident::new_no_ctxt("Promise".into(), DUMMY_SP), "resolve");
        Some(Expr::Call(CallExpr {
            span: call.span,
            callee: Callee::Expr(resolve),
            args: vec![ExprOrSpread {
                spread: None,
                expr: Box::new(value),
            }],
            ..Default::default()
        }))
    }

    fn rewrite_require(&mut self, call: &CallExpr) -> Option<Expr> {
        let specifier = parse::string_argument(call)?.clone();
        let target = self.record_target(ImportKind::Require, &specifier)?;
        let target_module = &self.linker.graph.modules[target];
        match target_module.kind {
            ModuleKind::CommonJs => {
                let require = self.linker.require_ident(target);
                self.linker
                    .use_binding(self.index, target, &require.to_id(), self.builder);
                Some(*call_expr(require, Vec::new()))
            }
            ModuleKind::Json => {
                let ExportBinding::Local(id) = target_module.export("default")? else {
                    return None;
                };
                self.linker
                    .use_binding(self.index, target, id, self.builder);
                Some(Expr::Ident(Ident::new(id.0.clone(), call.span, id.1)))
            }
            ModuleKind::Esm => {
                let ns = self.module_value(target)?;
                self.builder.helpers.insert(Helper::ToCommonJs);
                Some(*call_expr(self.linker.helper(Helper::ToCommonJs), vec![ns]))
            }
        }
    }

    /// The namespace object of an ES module, or a CommonJS module's exports.
    fn module_value(&mut self, target: ModuleId) -> Option<Expr> {
        match self.linker.graph.modules[target].kind {
            ModuleKind::CommonJs => {
                let require = self.linker.require_ident(target);
                self.linker
                    .use_binding(self.index, target, &require.to_id(), self.builder);
                self.builder.helpers.insert(Helper::ToEsm);
                Some(*call_expr(
                    self.linker.helper(Helper::ToEsm),
                    vec![*call_expr(require, Vec::new())],
                ))
            }
            _ => {
                let ns = self.linker.namespace_ident(target);
                self.linker
                    .use_binding(self.index, target, &ns.to_id(), self.builder);
                Some(Expr::Ident(ns))
            }
        }
    }
}

impl VisitMut for Rewriter<'_, '_> {
    fn visit_mut_expr(&mut self, expr: &mut Expr) {
        match expr {
            Expr::Ident(ident) => {
                if let Some(replacement) = self.replacement_expr(ident) {
                    *expr = replacement;
                }
                return;
            }
            Expr::Member(member) => {
                if let Some(replacement) = self.namespace_member(member) {
                    *expr = replacement;
                    return;
                }
            }
            Expr::Call(call) => {
                let replacement = match &call.callee {
                    Callee::Import(_) => self.rewrite_dynamic_import(call),
                    Callee::Expr(callee) if matches!(&**callee, Expr::Ident(ident) if ident.sym == "require") => {
                        self.rewrite_require(call)
                    }
                    _ => None,
                };
                if let Some(replacement) = replacement {
                    *expr = replacement;
                    return;
                }
            }
            _ => {}
        }
        expr.visit_mut_children_with(self);
    }

    fn visit_mut_prop(&mut self, prop: &mut Prop) {
        if let Prop::Shorthand(ident) = prop
            && let Some(value) = self.replacement_expr(ident)
        {
            *prop = Prop::KeyValue(KeyValueProp {
                key: PropName::Ident(IdentName::new(ident.sym.clone(), ident.span)),
                value: Box::new(value),
            });
            return;
        }
        prop.visit_mut_children_with(self);
    }
}

/// Finds namespace imports used other than as `ns.name`.
struct BareUses<'a> {
    watched: &'a HashMap<Id, ModuleId>,
    found: HashSet<ModuleId>,
}

impl Visit for BareUses<'_> {
    fn visit_member_expr(&mut self, member: &MemberExpr) {
        let static_property = matches!(&member.prop, MemberProp::Ident(_))
            || matches!(&member.prop, MemberProp::Computed(c) if matches!(&*c.expr, Expr::Lit(Lit::Str(_))));
        if static_property
            && matches!(&*member.obj, Expr::Ident(object) if self.watched.contains_key(&object.to_id()))
        {
            member.prop.visit_with(self);
            return;
        }
        member.visit_children_with(self);
    }

    fn visit_ident(&mut self, ident: &Ident) {
        if let Some(module) = self.watched.get(&ident.to_id()) {
            self.found.insert(*module);
        }
    }
}

fn call_expr(callee: Ident, args: Vec<Expr>) -> Box<Expr> {
    Box::new(Expr::Call(CallExpr {
        span: DUMMY_SP,
        callee: Callee::Expr(Box::new(Expr::Ident(callee))),
        args: args
            .into_iter()
            .map(|expr| ExprOrSpread {
                spread: None,
                expr: Box::new(expr),
            })
            .collect(),
        ..Default::default()
    }))
}

fn member(object: Ident, name: &str) -> Box<Expr> {
    let prop = if is_identifier_name(name) {
        MemberProp::Ident(IdentName::new(name.into(), DUMMY_SP))
    } else {
        MemberProp::Computed(ComputedPropName {
            span: DUMMY_SP,
            expr: Box::new(Expr::Lit(Lit::Str(Str {
                span: DUMMY_SP,
                value: name.into(),
                raw: None,
            }))),
        })
    };
    Box::new(Expr::Member(MemberExpr {
        span: DUMMY_SP,
        obj: Box::new(Expr::Ident(object)),
        prop,
    }))
}

fn prop_name(name: &str) -> PropName {
    if is_identifier_name(name) {
        PropName::Ident(IdentName::new(name.into(), DUMMY_SP))
    } else {
        PropName::Str(Str {
            span: DUMMY_SP,
            value: name.into(),
            raw: None,
        })
    }
}

fn is_identifier_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

fn import_decl(specifier: String, specifiers: Vec<ImportSpecifier>) -> ModuleItem {
    ModuleItem::ModuleDecl(ModuleDecl::Import(ImportDecl {
        span: DUMMY_SP,
        specifiers,
        src: Box::new(Str {
            span: DUMMY_SP,
            value: specifier.into(),
            raw: None,
        }),
        type_only: false,
        with: None,
        phase: Default::default(),
    }))
}

fn export_specifier(id: &Id, name: &Atom) -> ExportSpecifier {
    let exported = if is_identifier_name(name) {
        ModuleExportName::Ident(Ident::new_no_ctxt(name.clone(), DUMMY_SP))
    } else {
        ModuleExportName::Str(Str {
            span: DUMMY_SP,
            value: name.as_ref().into(),
            raw: None,
        })
    };
    ExportSpecifier::Named(ExportNamedSpecifier {
        span: DUMMY_SP,
        orig: ModuleExportName::Ident(Ident::new(id.0.clone(), DUMMY_SP, id.1)),
        exported: Some(exported),
        is_type_only: false,
    })
}
