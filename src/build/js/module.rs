//! The module IR every pass shares: a module in normal form (plain
//! statements, with what its import and export syntax meant kept in
//! records beside the body), and the context its spans and syntax contexts
//! belong to.

use indexmap::IndexMap;
use std::path::{Path, PathBuf};

use swc_core::common::comments::{Comment, Comments, SingleThreadedComments};
use swc_core::common::sync::Lrc;
use swc_core::common::{
    BytePos, FileName, GLOBALS, Globals, Mark, SourceFile, SourceMap, Span, SyntaxContext,
};
use swc_core::ecma::ast::*;
use swc_core::ecma::atoms::Atom;

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

/// `foo_default` for `foo.js`: the local name of an anonymous default export.
pub(crate) fn default_name(path: &Path) -> Atom {
    format!("{}_default", stem_identifier(path)).into()
}

/// A file's stem as an identifier (`three.module` → `three_module`), for
/// generated names.
pub(crate) fn stem_identifier(path: &Path) -> String {
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
pub(crate) fn sanitize(text: &str, keep: impl Fn(char) -> bool, replacement: char) -> String {
    text.chars()
        .map(|c| if keep(c) { c } else { replacement })
        .collect()
}

/// Merges the comments of several modules into one store (spans are global,
/// so positions never collide).
pub(crate) fn merged_comments<'a>(
    modules: impl Iterator<Item = &'a JsModule>,
) -> SingleThreadedComments {
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
