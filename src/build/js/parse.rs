//! One module, from source text to the linker's normal form.
//!
//! Parsing (swc, comments kept for `/*#__PURE__*/` and licences), name
//! resolution (every identifier gets a syntax context; a module's top-level
//! bindings share one mark of their own, so equal names in different modules
//! stay different), TypeScript stripping, the automatic JSX runtime and
//! `define` replacement happen here. Then import and export syntax is
//! removed and recorded: the body that remains is plain statements, and the
//! records say what each import refers to and what each export name means.

use indexmap::IndexMap;
use std::path::{Path, PathBuf};

use swc_core::common::comments::{Comment, Comments, SingleThreadedComments};
use swc_core::common::sync::Lrc;
use swc_core::common::{
    BytePos, FileName, GLOBALS, Globals, Mark, SourceFile, SourceMap, Span, Spanned, SyntaxContext,
};
use swc_core::ecma::ast::*;
use swc_core::ecma::atoms::Atom;
use swc_core::ecma::parser::lexer::Lexer;
use swc_core::ecma::parser::{EsSyntax, Parser, StringInput, Syntax, TsSyntax};
use swc_core::ecma::transforms::base::resolver;
use swc_core::ecma::utils::find_pat_ids;
use swc_core::ecma::visit::{Visit, VisitMut, VisitMutWith, VisitWith};

use crate::diagnostic::{Diagnostic, SourceLocation};

/// State shared by every module of one bundling run: one source map (so
/// spans are global) and one set of hygiene marks.
pub struct JsContext {
    pub cm: Lrc<SourceMap>,
    pub globals: Globals,
    /// The mark of unresolved (global) references in every module.
    pub unresolved_mark: Mark,
}

impl Default for JsContext {
    fn default() -> Self {
        JsContext::new()
    }
}

impl JsContext {
    pub fn new() -> JsContext {
        let globals = Globals::new();
        let unresolved_mark = GLOBALS.set(&globals, Mark::new);
        JsContext {
            cm: Lrc::new(SourceMap::default()),
            globals,
            unresolved_mark,
        }
    }

    /// A diagnostic at `span`, with a code frame from the source map.
    pub fn diagnostic(&self, message: impl Into<String>, span: Span) -> Diagnostic {
        if span.is_dummy() {
            return Diagnostic::new(message);
        }
        let loc = self.cm.lookup_char_pos(span.lo);
        let file = match &*loc.file.name {
            FileName::Real(path) => path.clone(),
            other => PathBuf::from(other.to_string()),
        };
        let location = SourceLocation {
            file,
            line: loc.line as u32,
            column: loc.col.0 as u32 + 1,
        };
        Diagnostic::at(message, location, Some(&loc.file.src))
    }
}

/// How the module shares its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    Esm,
    CommonJs,
    Json,
}

/// How an import is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// `import … from`, `export … from`, `export * from`.
    Static,
    /// `import("…")`.
    Dynamic,
    /// `require("…")`.
    Require,
}

/// One specifier the module asks for.
#[derive(Debug, Clone)]
pub struct ImportRecord {
    pub specifier: Atom,
    pub span: Span,
    pub kind: ImportKind,
}

/// What an imported local name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// A named export (`default` for default imports).
    Name(Atom),
    /// The whole namespace (`import * as ns`).
    Namespace,
}

#[derive(Debug, Clone)]
pub struct ImportBinding {
    pub record: usize,
    pub imported: Imported,
    pub span: Span,
}

/// What an export name means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportBinding {
    /// A binding of this module (possibly itself an import binding).
    Local(Id),
    /// `export { a as b } from "x"`: name `a` of the record's module.
    ReExport { record: usize, name: Atom },
    /// `export * as ns from "x"`.
    Namespace { record: usize },
}

/// Comments of one module, moved out of the parser's single-threaded store.
#[derive(Debug, Clone, Default)]
pub struct ModuleComments {
    pub leading: Vec<(BytePos, Vec<Comment>)>,
    pub trailing: Vec<(BytePos, Vec<Comment>)>,
    /// License comments (`/*! … */`, `@license`, `@preserve`), in source
    /// order: they are not positional, the chunk carries them at its end.
    pub legal: Vec<String>,
}

/// `/*! … */`, or a comment saying `@license` or `@preserve`.
pub fn is_legal(comment: &Comment) -> bool {
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

/// A module in normal form.
#[derive(Debug, Clone)]
pub struct JsModule {
    pub path: PathBuf,
    pub file: Lrc<SourceFile>,
    pub kind: ModuleKind,
    /// Statements only: imports and exports are in the records below.
    pub body: Vec<Stmt>,
    pub top_level_mark: Mark,
    pub comments: ModuleComments,
    pub imports: Vec<ImportRecord>,
    /// In source order (evaluation order and output bytes follow it).
    pub import_bindings: IndexMap<Id, ImportBinding>,
    /// Export names in source order.
    pub exports: Vec<(Atom, ExportBinding)>,
    /// Records of `export * from`.
    pub star_exports: Vec<usize>,
    pub has_top_level_await: bool,
    /// Unresolved names the body uses (`module`, `exports`, `window`, …).
    pub uses_unresolved: Vec<Atom>,
    /// A CommonJS module's export names, as far as they can be seen
    /// statically (what `export * from` it re-exports, as in Node).
    pub commonjs_exports: Vec<Atom>,
}

impl JsModule {
    pub fn export(&self, name: &str) -> Option<&ExportBinding> {
        self.exports
            .iter()
            .find(|(export, _)| export.as_ref() == name)
            .map(|(_, binding)| binding)
    }

    /// The context of this module's top-level bindings.
    pub fn top_level_ctxt(&self) -> SyntaxContext {
        SyntaxContext::empty().apply_mark(self.top_level_mark)
    }
}

/// Options of the per-module transforms.
pub struct ParseOptions<'a> {
    pub jsx_import_source: &'a str,
    /// `define` entries: dotted path → replacement expression.
    pub define: &'a [(Vec<Atom>, Expr)],
}

/// Parses `text` (the contents of `path`) into normal form. All syntax
/// errors are returned together.
pub fn parse(
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
        program.visit_mut_with(&mut Define {
            unresolved,
            define: options.define,
        });
    }
    let Program::Module(module) = program else {
        unreachable!("parsed as a module")
    };
    let mut normal = normalize(ctx, path, module, top_level_mark)?;
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

/// A JSON file as a module whose default export is its value.
fn parse_json(
    ctx: &JsContext,
    path: &Path,
    file: Lrc<SourceFile>,
    top_level_mark: Mark,
) -> Result<JsModule, Vec<Diagnostic>> {
    let lexer = Lexer::new(
        Syntax::Es(Default::default()),
        EsVersion::latest(),
        StringInput::from(&*file),
        None,
    );
    let mut parser = Parser::new_from(lexer);
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

/// `var name = init;`
pub fn var_decl(name: Ident, init: Box<Expr>) -> Stmt {
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

/// `foo_default` for `foo.js`: the local name of an anonymous default export.
fn default_name(path: &Path) -> Atom {
    format!("{}_default", stem_identifier(path)).into()
}

/// A file's stem as an identifier (`three.module` → `three_module`), for
/// generated names.
pub fn stem_identifier(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("module");
    let mut name = sanitize(
        stem,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '$',
        '_',
    );
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// `text` with every character `keep` refuses replaced by `replacement`.
pub fn sanitize(text: &str, keep: impl Fn(char) -> bool, replacement: char) -> String {
    text.chars()
        .map(|c| if keep(c) { c } else { replacement })
        .collect()
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

fn module_export_name(name: &ModuleExportName) -> Atom {
    match name {
        ModuleExportName::Ident(ident) => ident.sym.clone(),
        ModuleExportName::Str(text) => text.value.to_atom_lossy().into_owned(),
    }
}

/// Removes import and export syntax, recording what it meant.
fn normalize(
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
    let mut scan = Scan {
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
struct Scan {
    unresolved: SyntaxContext,
    function_depth: usize,
    dynamic: Vec<Str>,
    requires: Vec<Str>,
    top_level_await: bool,
    unresolved_names: Vec<Atom>,
    commonjs_exports: Vec<Atom>,
}

impl Scan {
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

impl Visit for Scan {
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
pub fn string_argument(call: &CallExpr) -> Option<&Str> {
    match call.args.first().map(|arg| &*arg.expr) {
        Some(Expr::Lit(Lit::Str(text))) if arg_is_plain(call) => Some(text),
        Some(Expr::Tpl(tpl)) if tpl.exprs.is_empty() && tpl.quasis.len() == 1 => None,
        _ => None,
    }
}

fn arg_is_plain(call: &CallExpr) -> bool {
    call.args.first().is_some_and(|arg| arg.spread.is_none())
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
pub fn parse_define_value(ctx: &JsContext, key: &str, value: &str) -> Result<Expr, Diagnostic> {
    GLOBALS.set(&ctx.globals, || {
        let file = ctx.cm.new_source_file(
            FileName::Custom(format!("define:{key}")).into(),
            value.to_string(),
        );
        let lexer = Lexer::new(
            Syntax::Es(Default::default()),
            EsVersion::latest(),
            StringInput::from(&*file),
            None,
        );
        let mut parser = Parser::new_from(lexer);
        parser.parse_expr().map(|expr| *expr).map_err(|err| {
            Diagnostic::new(format!(
                "js.define {key:?} = {value:?}: {}",
                err.kind().msg()
            ))
        })
    })
}

/// Merges the comments of several modules into one store (spans are global,
/// so positions never collide).
pub fn merged_comments<'a>(modules: impl Iterator<Item = &'a JsModule>) -> SingleThreadedComments {
    let comments = SingleThreadedComments::default();
    for module in modules {
        for (pos, list) in &module.comments.leading {
            comments.add_leading_comments(*pos, list.clone());
        }
        for (pos, list) in &module.comments.trailing {
            comments.add_trailing_comments(*pos, list.clone());
        }
    }
    comments
}
