//! One module, from source text to the linker's normal form.
//!
//! Parsing (swc, comments kept for `/*#__PURE__*/` and licences), name
//! resolution (every identifier gets a syntax context; a module's top-level
//! bindings share one mark of their own, so equal names in different modules
//! stay different), TypeScript stripping and the automatic JSX runtime
//! happen here; then [`define`](super::define) replaces configured globals
//! and [`scan`](super::scan) removes import and export syntax, recording
//! what it meant.

use indexmap::IndexMap;
use std::path::Path;

use swc_core::common::comments::{Comment, Comments, SingleThreadedComments};
use swc_core::common::sync::Lrc;
use swc_core::common::{BytePos, FileName, GLOBALS, Mark, SourceFile, Spanned, SyntaxContext};
use swc_core::ecma::ast::*;
use swc_core::ecma::atoms::Atom;
use swc_core::ecma::parser::lexer::Lexer;
use swc_core::ecma::parser::{EsSyntax, Parser, StringInput, Syntax, TsSyntax};
use swc_core::ecma::transforms::base::resolver;

use crate::build::js::ast::var_decl;
use crate::build::js::define;
use crate::build::js::module::{
    ExportBinding, JsContext, JsModule, ModuleComments, ModuleKind, default_name,
};
use crate::build::js::scan::into_normal_form;
use crate::diagnostic::Diagnostic;

/// Options of the per-module transforms.
pub(crate) struct ParseOptions<'a> {
    pub jsx_import_source: &'a str,
    /// `define` entries: dotted path → replacement expression.
    pub define: &'a [(Vec<Atom>, Expr)],
}

/// Parses `text` (the contents of `path`) into normal form. All syntax
/// errors are returned together.
pub(crate) fn parse(
    ctx: &JsContext,
    path: &Path,
    text: String,
    options: &ParseOptions,
) -> Result<JsModule, Vec<Diagnostic>> {
    GLOBALS.set(&ctx.globals, || parse_in_globals(ctx, path, text, options))
}

fn parse_in_globals(
    ctx: &JsContext,
    path: &Path,
    text: String,
    options: &ParseOptions,
) -> Result<JsModule, Vec<Diagnostic>> {
    let file = ctx
        .cm
        .new_source_file(FileName::Real(path.to_path_buf()).into(), text);
    let extension = path
        .extension()
        .and_then(|ext| ext.to_str())
        .unwrap_or("js");
    let comments = SingleThreadedComments::default();
    let top_level_mark = Mark::new();
    if extension == "json" {
        return parse_json(ctx, path, file, top_level_mark);
    }
    let typescript = matches!(extension, "ts" | "tsx" | "mts" | "cts");
    let jsx = matches!(extension, "jsx" | "tsx");
    let syntax = if typescript {
        Syntax::Typescript(TsSyntax {
            tsx: jsx,
            decorators: true,
            ..Default::default()
        })
    } else {
        Syntax::Es(EsSyntax {
            jsx,
            import_attributes: true,
            explicit_resource_management: true,
            ..Default::default()
        })
    };
    let lexer = Lexer::new(
        syntax,
        EsVersion::latest(),
        StringInput::from(&*file),
        Some(&comments),
    );
    let mut parser = Parser::new_from(lexer);
    let parsed = parser.parse_module();
    let mut errors: Vec<Diagnostic> = parser
        .take_errors()
        .into_iter()
        .map(|err| ctx.diagnostic(err.kind().msg(), err.span()))
        .collect();
    let module = match parsed {
        Ok(module) => module,
        Err(err) => {
            errors.push(ctx.diagnostic(err.kind().msg(), err.span()));
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    move_export_annotations(&module, &comments);
    let mut program = Program::Module(module);
    program.mutate(resolver(ctx.unresolved_mark, top_level_mark, typescript));
    if typescript {
        program.mutate(swc_core::ecma::transforms::typescript::strip(
            ctx.unresolved_mark,
            top_level_mark,
        ));
    }
    if jsx {
        let jsx_options = swc_core::ecma::transforms::react::Options {
            runtime: Some(swc_core::ecma::transforms::react::Runtime::Automatic),
            import_source: Some(options.jsx_import_source.into()),
            ..Default::default()
        };
        program.mutate(swc_core::ecma::transforms::react::jsx(
            ctx.cm.clone(),
            Some(&comments),
            jsx_options,
            top_level_mark,
            ctx.unresolved_mark,
        ));
    }
    let unresolved = SyntaxContext::empty().apply_mark(ctx.unresolved_mark);
    if !options.define.is_empty() {
        define::replace(&mut program, unresolved, options.define);
    }
    let Program::Module(module) = program else {
        unreachable!("parsed as a module")
    };
    let mut normal = into_normal_form(ctx, path, module, top_level_mark)?;
    normal.file = file;
    normal.comments = take_comments(comments);
    Ok(normal)
}

/// `/*#__NO_SIDE_EFFECTS__*/ export function f` annotates `f`, as in
/// Rollup and esbuild. swc's minifier looks for the comment at the function
/// (or `const`) itself, and the `export` keyword is about to be removed, so
/// the annotation is copied there.
fn move_export_annotations(module: &Module, comments: &SingleThreadedComments) {
    for item in &module.body {
        let ModuleItem::ModuleDecl(declaration) = item else {
            continue;
        };
        let (export_lo, target_lo) = match declaration {
            ModuleDecl::ExportDecl(export) => match &export.decl {
                Decl::Fn(function) => (export.span.lo, function.function.span.lo),
                Decl::Var(var) => (export.span.lo, var.span.lo),
                _ => continue,
            },
            ModuleDecl::ExportDefaultDecl(export) => match &export.decl {
                DefaultDecl::Fn(function) => (export.span.lo, function.function.span.lo),
                _ => continue,
            },
            _ => continue,
        };
        let Some(leading) = comments.get_leading(export_lo) else {
            continue;
        };
        for comment in leading
            .into_iter()
            .filter(|comment| comment.text.contains("__NO_SIDE_EFFECTS__"))
        {
            comments.add_leading(target_lo, comment);
        }
    }
}

/// A parser of plain JavaScript (no TypeScript or JSX) over `file`: for
/// JSON, `define` values and the linker's runtime helpers.
pub(crate) fn plain_parser(file: &SourceFile) -> Parser<Lexer<'_>> {
    Parser::new_from(Lexer::new(
        Syntax::Es(Default::default()),
        EsVersion::latest(),
        StringInput::from(file),
        None,
    ))
}

/// A JSON file as a module whose default export is its value.
fn parse_json(
    ctx: &JsContext,
    path: &Path,
    file: Lrc<SourceFile>,
    top_level_mark: Mark,
) -> Result<JsModule, Vec<Diagnostic>> {
    let mut parser = plain_parser(&file);
    let expr = parser.parse_expr().map_err(|err| {
        vec![ctx.diagnostic(format!("invalid JSON: {}", err.kind().msg()), err.span())]
    })?;
    let ctxt = SyntaxContext::empty().apply_mark(top_level_mark);
    let name = Ident::new(default_name(path), expr.span(), ctxt);
    let body = vec![var_decl(name.clone(), expr)];
    Ok(JsModule {
        path: path.to_path_buf(),
        file,
        kind: ModuleKind::Json,
        body,
        top_level_mark,
        comments: ModuleComments::default(),
        imports: Vec::new(),
        import_bindings: IndexMap::new(),
        exports: vec![("default".into(), ExportBinding::Local(name.to_id()))],
        star_exports: Vec::new(),
        has_top_level_await: false,
        uses_unresolved: Vec::new(),
        commonjs_exports: Vec::new(),
    })
}

/// `/*! … */`, or a comment saying `@license` or `@preserve`.
pub(crate) fn is_legal(comment: &Comment) -> bool {
    (comment.kind == swc_core::common::comments::CommentKind::Block
        && comment.text.starts_with('!'))
        || comment.text.contains("@license")
        || comment.text.contains("@preserve")
}

fn comment_text(comment: &Comment) -> String {
    match comment.kind {
        swc_core::common::comments::CommentKind::Block => format!("/*{}*/", comment.text),
        swc_core::common::comments::CommentKind::Line => format!("//{}", comment.text),
    }
}

fn take_comments(comments: SingleThreadedComments) -> ModuleComments {
    let (leading, trailing) = comments.take_all();
    let mut legal: Vec<(BytePos, String)> = Vec::new();
    let mut collect = |map: swc_core::common::comments::SingleThreadedCommentsMap| {
        let mut entries: Vec<(BytePos, Vec<Comment>)> = Vec::new();
        for (pos, list) in map.borrow().iter() {
            let (license, other): (Vec<Comment>, Vec<Comment>) =
                list.iter().cloned().partition(is_legal);
            legal.extend(
                license
                    .iter()
                    .map(|comment| (comment.span.lo, comment_text(comment))),
            );
            if !other.is_empty() {
                entries.push((*pos, other));
            }
        }
        entries.sort_by_key(|(pos, _)| *pos);
        entries
    };
    let leading = collect(leading);
    let trailing = collect(trailing);
    legal.sort();
    ModuleComments {
        leading,
        trailing,
        legal: legal.into_iter().map(|(_, text)| text).collect(),
    }
}
