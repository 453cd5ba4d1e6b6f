//! Scanning: removes a parsed module's import and export syntax and records
//! what it meant (import records, import bindings, export names), then
//! walks the body for what the linker must know besides — dynamic
//! `import()`, `require()`, top-level `await`, the globals it uses, and the
//! names a CommonJS module exports.

use indexmap::IndexMap;
use std::path::Path;

use swc_core::common::{FileName, Mark, Spanned, SyntaxContext};
use swc_core::ecma::ast::*;
use swc_core::ecma::atoms::Atom;
use swc_core::ecma::utils::find_pat_ids;
use swc_core::ecma::visit::{Visit, VisitWith};

use crate::build::js::ast::var_decl;
use crate::build::js::module::{
    ExportBinding, ImportBinding, ImportKind, ImportRecord, Imported, JsContext, JsModule,
    ModuleComments, ModuleKind, default_name,
};
use crate::diagnostic::Diagnostic;

fn module_export_name(name: &ModuleExportName) -> Atom {
    match name {
        ModuleExportName::Ident(ident) => ident.sym.clone(),
        ModuleExportName::Str(text) => text.value.to_atom_lossy().into_owned(),
    }
}

/// Removes import and export syntax, recording what it meant.
pub(crate) fn into_normal_form(
    ctx: &JsContext,
    path: &Path,
    module: Module,
    top_level_mark: Mark,
) -> Result<JsModule, Vec<Diagnostic>> {
    let ctxt = SyntaxContext::empty().apply_mark(top_level_mark);
    let mut imports = Vec::new();
    let mut import_bindings = IndexMap::new();
    let mut exports: Vec<(Atom, ExportBinding)> = Vec::new();
    let mut star_exports = Vec::new();
    let mut body = Vec::new();
    let mut problems = Vec::new();
    let mut has_module_syntax = false;
    let mut record = |specifier: &Str, kind: ImportKind| -> usize {
        imports.push(ImportRecord {
            specifier: specifier.value.to_atom_lossy().into_owned(),
            span: specifier.span,
            kind,
        });
        imports.len() - 1
    };
    for item in module.body {
        let declaration = match item {
            ModuleItem::Stmt(stmt) => {
                body.push(stmt);
                continue;
            }
            ModuleItem::ModuleDecl(declaration) => declaration,
        };
        has_module_syntax = true;
        match declaration {
            ModuleDecl::Import(import) => {
                if import.type_only {
                    continue;
                }
                let index = record(&import.src, ImportKind::Static);
                for specifier in import.specifiers {
                    let (local, imported) = match specifier {
                        ImportSpecifier::Named(named) => {
                            let name = named
                                .imported
                                .as_ref()
                                .map(module_export_name)
                                .unwrap_or_else(|| named.local.sym.clone());
                            (named.local, Imported::Name(name))
                        }
                        ImportSpecifier::Default(default) => {
                            (default.local, Imported::Name("default".into()))
                        }
                        ImportSpecifier::Namespace(namespace) => {
                            (namespace.local, Imported::Namespace)
                        }
                    };
                    import_bindings.insert(
                        local.to_id(),
                        ImportBinding {
                            record: index,
                            imported,
                            span: local.span,
                        },
                    );
                }
            }
            ModuleDecl::ExportDecl(export) => {
                let names: Vec<Ident> = declared_names(&export.decl);
                for name in names {
                    exports.push((name.sym.clone(), ExportBinding::Local(name.to_id())));
                }
                body.push(Stmt::Decl(export.decl));
            }
            ModuleDecl::ExportNamed(named) => {
                let source = named
                    .src
                    .as_deref()
                    .map(|src| record(src, ImportKind::Static));
                for specifier in named.specifiers {
                    match (specifier, source) {
                        (ExportSpecifier::Named(spec), None) => {
                            let ModuleExportName::Ident(orig) = &spec.orig else {
                                problems.push(ctx.diagnostic(
                                    "cannot export a string name without `from`",
                                    spec.span,
                                ));
                                continue;
                            };
                            let exported = spec
                                .exported
                                .as_ref()
                                .map(module_export_name)
                                .unwrap_or_else(|| orig.sym.clone());
                            exports.push((exported, ExportBinding::Local(orig.to_id())));
                        }
                        (ExportSpecifier::Named(spec), Some(index)) => {
                            let orig = module_export_name(&spec.orig);
                            let exported = spec
                                .exported
                                .as_ref()
                                .map(module_export_name)
                                .unwrap_or_else(|| orig.clone());
                            exports.push((
                                exported,
                                ExportBinding::ReExport {
                                    record: index,
                                    name: orig,
                                },
                            ));
                        }
                        (ExportSpecifier::Namespace(spec), Some(index)) => {
                            exports.push((
                                module_export_name(&spec.name),
                                ExportBinding::Namespace { record: index },
                            ));
                        }
                        (ExportSpecifier::Default(spec), Some(index)) => {
                            exports.push((
                                spec.exported.sym.clone(),
                                ExportBinding::ReExport {
                                    record: index,
                                    name: "default".into(),
                                },
                            ));
                        }
                        (spec, None) => problems
                            .push(ctx.diagnostic("this export form needs `from`", spec.span())),
                    }
                }
            }
            ModuleDecl::ExportAll(all) => {
                let index = record(&all.src, ImportKind::Static);
                star_exports.push(index);
            }
            ModuleDecl::ExportDefaultDecl(default) => {
                // An anonymous default declaration gets a name of its own.
                let named = |ident: Option<Ident>| {
                    ident.unwrap_or_else(|| Ident::new(default_name(path), default.span, ctxt))
                };
                let name = match default.decl {
                    DefaultDecl::Fn(function) => {
                        let ident = named(function.ident);
                        body.push(Stmt::Decl(Decl::Fn(FnDecl {
                            ident: ident.clone(),
                            declare: false,
                            function: function.function,
                        })));
                        ident
                    }
                    DefaultDecl::Class(class) => {
                        let ident = named(class.ident);
                        body.push(Stmt::Decl(Decl::Class(ClassDecl {
                            ident: ident.clone(),
                            declare: false,
                            class: class.class,
                        })));
                        ident
                    }
                    DefaultDecl::TsInterfaceDecl(_) => continue,
                };
                exports.push(("default".into(), ExportBinding::Local(name.to_id())));
            }
            ModuleDecl::ExportDefaultExpr(default) => {
                let name = Ident::new(default_name(path), default.span, ctxt);
                body.push(var_decl(name.clone(), default.expr));
                exports.push(("default".into(), ExportBinding::Local(name.to_id())));
            }
            other => problems.push(ctx.diagnostic(
                "TypeScript `import =`/`export =` is not supported; use ES module syntax",
                other.span(),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let unresolved = SyntaxContext::empty().apply_mark(ctx.unresolved_mark);
    let mut scan = BodyScan {
        unresolved,
        function_depth: 0,
        dynamic: Vec::new(),
        requires: Vec::new(),
        top_level_await: false,
        unresolved_names: Vec::new(),
        commonjs_exports: Vec::new(),
    };
    for stmt in &body {
        stmt.visit_with(&mut scan);
    }
    for specifier in &scan.dynamic {
        record(specifier, ImportKind::Dynamic);
    }
    for specifier in &scan.requires {
        record(specifier, ImportKind::Require);
    }
    let uses_cjs = scan
        .unresolved_names
        .iter()
        .any(|name| matches!(name.as_ref(), "module" | "exports"))
        || !scan.requires.is_empty();
    let kind = if !has_module_syntax && uses_cjs {
        ModuleKind::CommonJs
    } else {
        ModuleKind::Esm
    };
    Ok(JsModule {
        path: path.to_path_buf(),
        file: ctx.cm.new_source_file(FileName::Anon.into(), String::new()),
        kind,
        body,
        top_level_mark,
        comments: ModuleComments::default(),
        imports,
        import_bindings,
        exports,
        star_exports,
        has_top_level_await: scan.top_level_await,
        uses_unresolved: scan.unresolved_names,
        commonjs_exports: if kind == ModuleKind::CommonJs {
            scan.commonjs_exports
        } else {
            Vec::new()
        },
    })
}

fn declared_names(decl: &Decl) -> Vec<Ident> {
    match decl {
        Decl::Class(class) => vec![class.ident.clone()],
        Decl::Fn(function) => vec![function.ident.clone()],
        Decl::Var(var) => find_pat_ids(&var.decls),
        Decl::Using(using) => find_pat_ids(&using.decls),
        _ => Vec::new(),
    }
}

/// Finds dynamic imports, `require` calls, top-level `await` and the
/// unresolved names a module uses.
struct BodyScan {
    unresolved: SyntaxContext,
    function_depth: usize,
    dynamic: Vec<Str>,
    requires: Vec<Str>,
    top_level_await: bool,
    unresolved_names: Vec<Atom>,
    commonjs_exports: Vec<Atom>,
}

impl BodyScan {
    fn is_global(&self, expr: &Expr, name: &str) -> bool {
        matches!(expr, Expr::Ident(ident) if ident.sym == name && ident.ctxt == self.unresolved)
    }

    /// `exports` or `module.exports`.
    fn is_exports_object(&self, expr: &Expr) -> bool {
        self.is_global(expr, "exports")
            || matches!(expr, Expr::Member(member)
                if self.is_global(&member.obj, "module") && static_property(&member.prop).is_some_and(|p| p == "exports"))
    }

    fn add_commonjs_export(&mut self, name: Atom) {
        if name != "__esModule" && !self.commonjs_exports.contains(&name) {
            self.commonjs_exports.push(name);
        }
    }
}

/// `.name` or `["name"]`.
fn static_property(prop: &MemberProp) -> Option<Atom> {
    match prop {
        MemberProp::Ident(ident) => Some(ident.sym.clone()),
        MemberProp::Computed(computed) => match &*computed.expr {
            Expr::Lit(Lit::Str(s)) => s.value.as_atom().cloned(),
            _ => None,
        },
        MemberProp::PrivateName(_) => None,
    }
}

impl Visit for BodyScan {
    /// Named exports of a CommonJS module, found as Node's
    /// cjs-module-lexer finds them: `exports.x = …`, `module.exports.x = …`,
    /// `module.exports = { x, y: … }`.
    fn visit_assign_expr(&mut self, node: &AssignExpr) {
        if let AssignTarget::Simple(SimpleAssignTarget::Member(member)) = &node.left {
            if self.is_exports_object(&member.obj)
                && let Some(name) = static_property(&member.prop)
            {
                self.add_commonjs_export(name);
            } else if self.is_global(&member.obj, "module")
                && static_property(&member.prop).is_some_and(|p| p == "exports")
                && let Expr::Object(object) = &*node.right
            {
                for prop in &object.props {
                    let key = match prop {
                        PropOrSpread::Prop(prop) => match &**prop {
                            Prop::Shorthand(ident) => Some(ident.sym.clone()),
                            Prop::KeyValue(kv) => prop_name(&kv.key),
                            Prop::Method(method) => prop_name(&method.key),
                            Prop::Getter(getter) => prop_name(&getter.key),
                            _ => None,
                        },
                        PropOrSpread::Spread(_) => None,
                    };
                    if let Some(key) = key {
                        self.add_commonjs_export(key);
                    }
                }
            }
        }
        node.visit_children_with(self);
    }

    fn visit_function(&mut self, node: &Function) {
        self.function_depth += 1;
        node.visit_children_with(self);
        self.function_depth -= 1;
    }

    fn visit_arrow_expr(&mut self, node: &ArrowExpr) {
        self.function_depth += 1;
        node.visit_children_with(self);
        self.function_depth -= 1;
    }

    fn visit_class_member(&mut self, node: &ClassMember) {
        self.function_depth += 1;
        node.visit_children_with(self);
        self.function_depth -= 1;
    }

    fn visit_await_expr(&mut self, node: &AwaitExpr) {
        if self.function_depth == 0 {
            self.top_level_await = true;
        }
        node.visit_children_with(self);
    }

    fn visit_for_of_stmt(&mut self, node: &ForOfStmt) {
        if node.is_await && self.function_depth == 0 {
            self.top_level_await = true;
        }
        node.visit_children_with(self);
    }

    fn visit_call_expr(&mut self, call: &CallExpr) {
        // `Object.defineProperty(exports, "x", …)`.
        if let Callee::Expr(callee) = &call.callee
            && let Expr::Member(member) = &**callee
            && self.is_global(&member.obj, "Object")
            && static_property(&member.prop).is_some_and(|p| p == "defineProperty")
            && let [target, name, ..] = call.args.as_slice()
            && self.is_exports_object(&target.expr)
            && let Expr::Lit(Lit::Str(name)) = &*name.expr
            && let Some(name) = name.value.as_atom()
        {
            self.add_commonjs_export(name.clone());
        }
        if let Some(specifier) = string_argument(call) {
            match &call.callee {
                Callee::Import(_) => self.dynamic.push(specifier.clone()),
                Callee::Expr(callee) => {
                    if let Expr::Ident(ident) = &**callee
                        && ident.sym == "require"
                        && ident.ctxt == self.unresolved
                        && call.args.len() == 1
                    {
                        self.requires.push(specifier.clone());
                    }
                }
                Callee::Super(_) => {}
            }
        }
        call.visit_children_with(self);
    }

    fn visit_ident(&mut self, ident: &Ident) {
        if ident.ctxt == self.unresolved && !self.unresolved_names.contains(&ident.sym) {
            self.unresolved_names.push(ident.sym.clone());
        }
    }
}

fn prop_name(key: &PropName) -> Option<Atom> {
    match key {
        PropName::Ident(ident) => Some(ident.sym.clone()),
        PropName::Str(s) => s.value.as_atom().cloned(),
        _ => None,
    }
}

/// The string literal first argument of `import("x")` or `require("x")`.
pub(crate) fn string_argument(call: &CallExpr) -> Option<&Str> {
    match call.args.first().map(|arg| &*arg.expr) {
        Some(Expr::Lit(Lit::Str(text))) if arg_is_plain(call) => Some(text),
        Some(Expr::Tpl(tpl)) if tpl.exprs.is_empty() && tpl.quasis.len() == 1 => None,
        _ => None,
    }
}

fn arg_is_plain(call: &CallExpr) -> bool {
    call.args.first().is_some_and(|arg| arg.spread.is_none())
}
