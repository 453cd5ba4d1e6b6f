//! CommonJS: a module that uses `module`/`exports`/`require` and no ES
//! syntax is wrapped in a lazy factory (`__commonJS`), evaluated on first
//! `require`, as Node does. ES code imports it through `__toESM`, and
//! `require` of an ES module returns its namespace through `__toCommonJS`.

use std::collections::HashMap;

use swc_core::common::{DUMMY_SP, Mark, SyntaxContext};
use swc_core::ecma::ast::*;
use swc_core::ecma::visit::{VisitMut, VisitMutWith};

use crate::build::js::ast::{call_expr, var_decl};
use crate::build::js::graph::ModuleId;
use crate::build::js::module::{ExportBinding, ImportKind, ModuleKind, stem_identifier};
use crate::build::js::scan::string_argument;

use super::hoist::{ChunkBuilder, Linker, Rewriter, generated};
use super::runtime::Helper;

impl Linker<'_> {
    /// `require_x`: the lazy factory of CommonJS module `module`.
    pub(super) fn require_ident(&self, module: ModuleId) -> Ident {
        let m = &self.graph.modules[module];
        generated(m, &format!("require_{}", stem_identifier(&m.path)))
    }

    /// `var import_x = __toESM(require_x());` once per importing module.
    pub(super) fn cjs_import(
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
        prelude.push(var_decl(local.clone(), call));
        cjs_imports.insert(target, local.clone());
        local
    }

    /// `var require_x = __commonJS(function (exports, module) { … });`
    pub(super) fn wrap_commonjs(&self, module: ModuleId, mut statements: Vec<Stmt>) -> Stmt {
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
        var_decl(self.require_ident(module), wrapped)
    }
}

impl Rewriter<'_, '_> {
    /// `require("x")`: the factory's exports (CommonJS), the value (JSON),
    /// or the namespace as CommonJS sees it (ES module).
    pub(super) fn rewrite_require(&mut self, call: &CallExpr) -> Option<Expr> {
        let specifier = string_argument(call)?.clone();
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
    pub(super) fn module_value(&mut self, target: ModuleId) -> Option<Expr> {
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
