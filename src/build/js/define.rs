//! `define`: replaces configured global paths (`process.env.NODE_ENV`)
//! with expressions, before scanning, so a replaced `require` or a branch
//! made dead never reaches the module graph.

use swc_core::common::{FileName, GLOBALS, SyntaxContext};
use swc_core::ecma::ast::*;
use swc_core::ecma::atoms::Atom;
use swc_core::ecma::visit::{VisitMut, VisitMutWith};

use crate::build::js::module::JsContext;
use crate::diagnostic::Diagnostic;

/// Replaces every `define` path in `program` (paths rooted at a global:
/// a local `process` is left alone).
pub(crate) fn replace(
    program: &mut Program,
    unresolved: SyntaxContext,
    define: &[(Vec<Atom>, Expr)],
) {
    program.visit_mut_with(&mut Define { unresolved, define });
}

/// Replaces `define` paths (`process.env.NODE_ENV`) rooted at a global.
struct Define<'a> {
    unresolved: SyntaxContext,
    define: &'a [(Vec<Atom>, Expr)],
}

impl Define<'_> {
    fn path_of(&self, expr: &Expr) -> Option<Vec<Atom>> {
        match expr {
            Expr::Ident(ident) if ident.ctxt == self.unresolved => Some(vec![ident.sym.clone()]),
            Expr::Member(member) => {
                let MemberProp::Ident(prop) = &member.prop else {
                    return None;
                };
                let mut path = self.path_of(&member.obj)?;
                path.push(prop.sym.clone());
                Some(path)
            }
            _ => None,
        }
    }
}

impl VisitMut for Define<'_> {
    fn visit_mut_expr(&mut self, expr: &mut Expr) {
        if matches!(expr, Expr::Ident(_) | Expr::Member(_))
            && let Some(path) = self.path_of(expr)
            && let Some((_, replacement)) = self.define.iter().find(|(key, _)| *key == path)
        {
            *expr = replacement.clone();
            return;
        }
        expr.visit_mut_children_with(self);
    }
}

/// Parses a `define` value as an expression (once per build).
pub(crate) fn parse_define_value(
    ctx: &JsContext,
    key: &str,
    value: &str,
) -> Result<Expr, Diagnostic> {
    GLOBALS.set(&ctx.globals, || {
        let file = ctx.cm.new_source_file(
            FileName::Custom(format!("define:{key}")).into(),
            value.to_string(),
        );
        let mut parser = crate::build::js::parse::plain_parser(&file);
        parser.parse_expr().map(|expr| *expr).map_err(|err| {
            Diagnostic::new(format!(
                "js.define {key:?} = {value:?}: {}",
                err.kind().msg()
            ))
        })
    })
}
