//! Scope hoisting: each chunk's modules concatenated into one module.
//!
//! Every import binding is replaced by a reference to the binding it
//! finally names ([`exports`](super::exports)), so live bindings and cycles
//! keep their ES semantics for free — there is one variable, declared once.
//! Equal names from different modules carry different syntax contexts;
//! swc's hygiene pass renames them apart when the chunk is emitted.
//! Namespace objects are built only when a namespace is used as a value.
//! Bindings another chunk provides become imports of that chunk, under
//! export names assigned here; `Linker::assemble` then puts imports,
//! helpers, code and exports together.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use indexmap::IndexSet;
use swc_core::common::{DUMMY_SP, Mark, SyntaxContext};
use swc_core::ecma::ast::*;
use swc_core::ecma::atoms::Atom;
use swc_core::ecma::visit::{Visit, VisitMut, VisitMutWith, VisitWith};

use crate::build::js::ast::{
    call_expr, export_specifier, import_decl, member, prop_name, var_decl,
};
use crate::build::js::graph::{Graph, ModuleId, Target};
use crate::build::js::module::{
    ImportKind, Imported, JsContext, JsModule, ModuleKind, stem_identifier,
};
use crate::build::js::scan::string_argument;
use crate::diagnostic::{Diagnostic, display_path};

use super::chunks::{Plan, placeholder};
use super::exports::{Binding, Resolver};
use super::runtime::{Helper, helper_statements};

/// A linked chunk, ready for hygiene, minification and printing.
pub(crate) struct LinkedChunk {
    pub module: Module,
    /// Other chunks this one imports statically (for the manifest).
    pub static_imports: Vec<usize>,
    /// Chunks this one imports dynamically.
    pub dynamic_imports: Vec<usize>,
    /// Stylesheets imported by the chunk's modules.
    pub css: Vec<PathBuf>,
    /// The context of the runtime helpers' names: top-level bindings, like
    /// those of the modules.
    pub helper_ctxt: SyntaxContext,
}

/// An identifier for a generated top-level binding of `module`.
pub(super) fn generated(module: &JsModule, name: &str) -> Ident {
    Ident::new(name.into(), DUMMY_SP, module.top_level_ctxt())
}

/// Links the chunks of one plan; CommonJS interop is in
/// [`commonjs`](super::commonjs), the helpers in [`runtime`](super::runtime).
pub(super) struct Linker<'a> {
    pub(super) ctx: &'a JsContext,
    pub(super) graph: &'a Graph,
    pub(super) plan: &'a Plan,
    pub(super) resolver: Resolver<'a>,
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
    pub(super) fn new(
        ctx: &'a JsContext,
        graph: &'a Graph,
        plan: &'a Plan,
        hash_length: usize,
    ) -> Self {
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

    pub(super) fn namespace_ident(&self, module: ModuleId) -> Ident {
        let m = &self.graph.modules[module];
        generated(m, &format!("{}_exports", stem_identifier(&m.path)))
    }

    pub(super) fn helper(&self, helper: Helper) -> Ident {
        Ident::new(helper.name().into(), DUMMY_SP, self.helper_ctxt)
    }

    pub(super) fn run(mut self) -> Result<Vec<LinkedChunk>, Vec<Diagnostic>> {
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

    /// Notes that chunk `index` uses binding `id` of `module`: an import
    /// when another chunk provides it.
    pub(super) fn use_binding(
        &self,
        index: usize,
        module: ModuleId,
        id: &Id,
        builder: &mut ChunkBuilder,
    ) {
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
                            display_path(&self.graph.modules[t].path)
                        ),
                        (_, Target::Css(path)) => format!(
                            "{} is a stylesheet: import it for its side effect (`import \"…\"`), it has no exports",
                            display_path(&path)
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
            var_decl(ns.clone(), Box::new(Expr::Object(ObjectLit::default()))),
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
                    builder.items.push(var_decl(alias.clone(), value));
                    alias.to_id()
                }
                Some(Binding::External(..)) | None => {
                    self.problems.push(Diagnostic::new(format!(
                        "{}: cannot re-export {name:?} from an external module",
                        display_path(&m.path)
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
                helper_statements(self.ctx, *helper, self.helper_ctxt)
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
    pub(super) fn relative_chunk(&self, index: usize) -> String {
        format!(
            "./{}",
            placeholder(index, &self.plan.chunks[index].name, self.hash_length)
        )
    }
}

#[derive(Default)]
/// One chunk in the making: its statements and what it needs around them.
pub(super) struct ChunkBuilder {
    items: Vec<Stmt>,
    /// Runtime helpers the chunk calls (in a fixed order, for stable output).
    pub(super) helpers: BTreeSet<Helper>,
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
    css: Vec<PathBuf>,
}

impl ChunkBuilder {
    fn depends_on(&mut self, chunk: usize) {
        if !self.chunk_order.contains(&chunk) {
            self.chunk_order.push(chunk);
        }
    }
}

/// Rewrites one module's body: import bindings, `ns.name`, `import()` and `require()`.
pub(super) struct Rewriter<'l, 'a> {
    pub(super) linker: &'l Linker<'a>,
    /// The chunk being built.
    pub(super) index: usize,
    /// The module whose body is rewritten.
    module: ModuleId,
    replacements: &'l HashMap<Id, Replacement>,
    pub(super) builder: &'l mut ChunkBuilder,
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

    /// The module this module's `kind` import of `specifier` resolved to.
    pub(super) fn record_target(&self, kind: ImportKind, specifier: &Str) -> Option<ModuleId> {
        let m = &self.linker.graph.modules[self.module];
        let value = specifier.value.to_atom_lossy();
        m.imports
            .iter()
            .enumerate()
            .find(|(_, record)| record.kind == kind && record.specifier.as_ref() == value.as_ref())
            .and_then(|(index, _)| self.linker.graph.module_target(self.module, index))
    }

    fn rewrite_dynamic_import(&mut self, call: &mut CallExpr) -> Option<Expr> {
        let specifier = string_argument(call)?.clone();
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
