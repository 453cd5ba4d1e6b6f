//! Runtime helpers: the few functions linked code calls (`__export`,
//! `__commonJS`, `__toESM`, `__toCommonJS`). Their JavaScript lives in
//! `runtime.js`, one section per helper; each chunk that needs one gets its
//! definition, parsed once per chunk, with its name in the linker's context.

use swc_core::common::{DUMMY_SP, Mark, Span, SyntaxContext};
use swc_core::ecma::ast::*;
use swc_core::ecma::visit::{VisitMut, VisitMutWith};

use crate::build::js::module::JsContext;

/// The helpers' JavaScript, one section per helper.
const RUNTIME_JS: &str = include_str!("runtime.js");

/// What starts a helper's section: a line `// @helper __export`.
const SECTION_MARKER: &str = "\n// @helper ";

/// Runtime helpers the linker can call, defined once per chunk that needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Helper {
    Export,
    CommonJs,
    ToEsm,
    ToCommonJs,
}

impl Helper {
    pub(super) fn name(self) -> &'static str {
        match self {
            Helper::Export => "__export",
            Helper::CommonJs => "__commonJS",
            Helper::ToEsm => "__toESM",
            Helper::ToCommonJs => "__toCommonJS",
        }
    }

    /// The helper's definition (plain ES2015+): its section of
    /// `runtime.js`, without the description comments.
    pub(super) fn source(self) -> &'static str {
        section(RUNTIME_JS, self.name())
            .expect("runtime.js has a section for every helper (checked by a test)")
    }
}

/// The code of section `name` of `text`: the lines after its marker and
/// its description comments, up to the next marker, trimmed.
fn section<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.split(SECTION_MARKER).skip(1).find_map(|section| {
        let (header, mut code) = section.split_once('\n')?;
        if header.trim() != name {
            return None;
        }
        while let Some(rest) = code.strip_prefix("//") {
            code = rest.split_once('\n').map_or("", |(_, after)| after);
        }
        Some(code.trim())
    })
}

/// The statements that define `helper`, its name in context `ctxt`.
pub(super) fn helper_statements(ctx: &JsContext, helper: Helper, ctxt: SyntaxContext) -> Vec<Stmt> {
    let mut statements = parse_statements(ctx, helper.source());
    // The helper's own name must be the one the linker refers to.
    for stmt in &mut statements {
        stmt.visit_mut_with(&mut Rename {
            name: helper.name(),
            ctxt,
        });
    }
    statements
}

/// Parses trusted JavaScript (runtime helpers) into resolved statements.
fn parse_statements(ctx: &JsContext, source: &str) -> Vec<Stmt> {
    let file = ctx.cm.new_source_file(
        swc_core::common::FileName::Custom("kiln:runtime".into()).into(),
        source.to_string(),
    );
    let mut parser = crate::build::js::parse::plain_parser(&file);
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Helper; 4] = [
        Helper::Export,
        Helper::CommonJs,
        Helper::ToEsm,
        Helper::ToCommonJs,
    ];

    #[test]
    fn every_helper_has_one_declaration_in_runtime_js() {
        for helper in ALL {
            let source = helper.source();
            assert!(
                source.starts_with(&format!("var {} = ", helper.name())),
                "{source}"
            );
            assert_eq!(source.lines().count(), 1, "{source}");
            assert!(!source.contains("@helper"), "{source}");
        }
    }

    #[test]
    fn helpers_parse_and_define_their_name_in_the_linkers_context() {
        let ctx = JsContext::new();
        swc_core::common::GLOBALS.set(&ctx.globals, || {
            let ctxt = SyntaxContext::empty().apply_mark(Mark::new());
            for helper in ALL {
                let statements = helper_statements(&ctx, helper, ctxt);
                let [Stmt::Decl(Decl::Var(var))] = statements.as_slice() else {
                    panic!("{}: one `var` statement", helper.name());
                };
                let Pat::Ident(name) = &var.decls[0].name else {
                    panic!("{}: a plain name", helper.name());
                };
                assert_eq!((name.sym.as_ref(), name.ctxt), (helper.name(), ctxt));
            }
        });
    }

    #[test]
    fn sections_end_at_the_next_marker() {
        let text = "// intro, not `// @helper x`\n\n// @helper a\n// about a\nvar a = 1;\n\n// @helper b\nvar b = 2;\n";
        assert_eq!(section(text, "a"), Some("var a = 1;"));
        assert_eq!(section(text, "b"), Some("var b = 2;"));
        assert_eq!(section(text, "c"), None);
    }
}
