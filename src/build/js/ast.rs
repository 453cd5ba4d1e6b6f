//! Constructors for the few AST shapes kiln generates: declarations of
//! generated names, helper calls, namespace getters, and a chunk's imports
//! and exports.

use swc_core::common::DUMMY_SP;
use swc_core::ecma::ast::*;
use swc_core::ecma::atoms::Atom;

/// `var name = init;`
pub(crate) fn var_decl(name: Ident, init: Box<Expr>) -> Stmt {
    Stmt::Decl(Decl::Var(Box::new(VarDecl {
        span: name.span,
        kind: VarDeclKind::Var,
        decls: vec![VarDeclarator {
            span: name.span,
            name: Pat::Ident(name.into()),
            init: Some(init),
            definite: false,
        }],
        ..Default::default()
    })))
}

/// `callee(args…)`.
pub(crate) fn call_expr(callee: Ident, args: Vec<Expr>) -> Box<Expr> {
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

/// `object.name`, or `object["name"]` when `name` is no identifier.
pub(crate) fn member(object: Ident, name: &str) -> Box<Expr> {
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

/// An object literal key: `name`, or `"name"` when it is no identifier.
pub(crate) fn prop_name(name: &str) -> PropName {
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

/// Whether `name` can be written as an identifier (`a.name`, `{ name }`).
fn is_identifier_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

/// `import { specifiers… } from "specifier";` (bare when there are none).
pub(crate) fn import_decl(specifier: String, specifiers: Vec<ImportSpecifier>) -> ModuleItem {
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

/// `local as name` in an `export { … }` list (`name` quoted if need be).
pub(crate) fn export_specifier(id: &Id, name: &Atom) -> ExportSpecifier {
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
