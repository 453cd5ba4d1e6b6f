//! From a linked chunk to code and source map, all on the AST: hygiene
//! (names from different modules renamed apart), fresh name resolution over
//! the whole chunk, target lowering (swc's preset-env), tree shaking and
//! minification (swc's minifier: one compress pass, then mangling), and
//! printing with a source map that points into the original files.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use swc_core::common::comments::{Comments, SingleThreadedComments};
use swc_core::common::source_map::SourceMapGenConfig;
use swc_core::common::{BytePos, FileName, GLOBALS, LineCol, Mark, SyntaxContext};
use swc_core::ecma::ast::*;
use swc_core::ecma::atoms::Atom;
use swc_core::ecma::codegen::text_writer::{JsWriter, WriteJs, omit_trailing_semi};
use swc_core::ecma::codegen::{Config as CodegenConfig, Emitter};
use swc_core::ecma::minifier::option::terser::{TerserCompressorOptions, TerserTopLevelOptions};
use swc_core::ecma::minifier::option::{ExtraOptions, MangleOptions, MinifyOptions};
use swc_core::ecma::transforms::base::{fixer::fixer, hygiene::hygiene, resolver};
use swc_core::ecma::visit::{Visit, VisitMut, VisitMutWith, VisitWith};

use crate::build::js::module::{JsContext, JsModule, ModuleKind, merged_comments};
use crate::config::LegalComments;
use crate::diagnostic::Diagnostic;

/// How chunks are printed.
#[derive(Debug, Clone)]
pub(crate) struct EmitOptions {
    pub minify: bool,
    /// Run swc's compressor (dead code, constant folding). Off under
    /// `kiln watch` unless minifying: a development build wants speed, and
    /// the linker has already dropped unused modules and statements.
    pub compress: bool,
    pub sourcemaps: bool,
    /// Browserslist query to lower syntax for.
    pub targets: String,
    pub legal_comments: LegalComments,
    /// The site root: source map paths are relative to it...
    pub root: PathBuf,
    /// ...through this prefix from the map's directory (`../../`).
    pub map_to_root: String,
}

/// A printed chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Emitted {
    pub code: String,
    pub map: Option<String>,
    /// License comments taken out of the code (`legal_comments = "external"`).
    pub legal: Vec<String>,
}

/// Hygiene, lowering, tree shaking, minification and printing of one chunk.
pub(crate) fn emit(
    ctx: &JsContext,
    module: Module,
    helper_ctxt: SyntaxContext,
    modules: &[&JsModule],
    options: &EmitOptions,
) -> Result<Emitted, Diagnostic> {
    GLOBALS.set(&ctx.globals, || {
        emit_in_globals(ctx, module, helper_ctxt, modules, options)
    })
}

fn emit_in_globals(
    ctx: &JsContext,
    module: Module,
    helper_ctxt: SyntaxContext,
    modules: &[&JsModule],
    options: &EmitOptions,
) -> Result<Emitted, Diagnostic> {
    let comments = merged_comments(modules.iter().copied());
    let mut program = Program::Module(module);
    // Direct `eval` keeps the mangler from renaming the scopes it can see.
    let uses_eval = modules
        .iter()
        .any(|m| m.uses_unresolved.iter().any(|name| name == "eval"));
    let (unresolved_mark, top_level_mark) = if options.minify && !uses_eval {
        // The mangler will rename every binding apart by its syntax
        // context, so a full hygiene pass would be wasted: the modules'
        // top levels only need merging into one (the minifier's).
        let top_level_mark = Mark::new();
        // A CommonJS module's top level is its factory function's scope.
        let mut top_levels: HashSet<SyntaxContext> = modules
            .iter()
            .filter(|m| m.kind != ModuleKind::CommonJs)
            .map(|m| m.top_level_ctxt())
            .collect();
        top_levels.insert(helper_ctxt);
        merge_top_levels(&mut program, &top_levels, top_level_mark);
        (ctx.unresolved_mark, top_level_mark)
    } else if !options.compress {
        // Printed as is: hygiene makes every name unique, and the contexts
        // the parser gave stay valid for lowering.
        program.mutate(hygiene());
        (ctx.unresolved_mark, Mark::new())
    } else {
        program.mutate(hygiene());
        // Names are unique now; resolve the chunk afresh as one module, so
        // the minifier sees one top level.
        program.visit_mut_with(&mut ClearContexts);
        let unresolved_mark = Mark::new();
        let top_level_mark = Mark::new();
        program.mutate(resolver(unresolved_mark, top_level_mark, false));
        (unresolved_mark, top_level_mark)
    };
    program = lower(program, unresolved_mark, &comments, &options.targets)?;
    if options.compress || options.minify {
        program = optimize(
            ctx,
            program,
            &comments,
            unresolved_mark,
            top_level_mark,
            options,
        );
    }
    program.mutate(fixer(Some(&comments)));
    program.visit_mut_with(&mut ShortExports);
    let (printed_comments, legal) = select_comments(&comments, modules, options);
    let (mut code, mappings) = print(ctx, &program, &printed_comments, options)?;
    let map = options
        .sourcemaps
        .then(|| source_map(ctx, &mappings, options))
        .transpose()?;
    // Appended after printing, so the source map is unaffected.
    let legal = if options.legal_comments == LegalComments::Inline {
        for text in &legal {
            code.push_str(text);
            code.push('\n');
        }
        Vec::new()
    } else {
        legal
    };
    // Freeing a large AST takes milliseconds that nobody needs to wait for.
    std::thread::spawn(move || drop(program));
    Ok(Emitted { code, map, legal })
}

/// swc's minifier: one compress pass, and mangling when minifying.
fn optimize(
    ctx: &JsContext,
    program: Program,
    comments: &SingleThreadedComments,
    unresolved_mark: Mark,
    top_level_mark: Mark,
    options: &EmitOptions,
) -> Program {
    let minify_options = MinifyOptions {
        compress: Some(
            TerserCompressorOptions {
                passes: 1,
                module: true,
                toplevel: Some(TerserTopLevelOptions::Bool(true)),
                ..Default::default()
            }
            .into_config(ctx.cm.clone()),
        ),
        mangle: options.minify.then(|| MangleOptions {
            top_level: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let extra = ExtraOptions {
        unresolved_mark,
        top_level_mark,
        mangle_name_cache: None,
    };
    swc_core::ecma::minifier::optimize(
        program,
        ctx.cm.clone(),
        Some(comments),
        None,
        &minify_options,
        &extra,
    )
}

/// Syntax lowering for the configured browsers.
fn lower(
    program: Program,
    unresolved_mark: Mark,
    comments: &SingleThreadedComments,
    targets: &str,
) -> Result<Program, Diagnostic> {
    let config: swc_core::ecma::preset_env::Config =
        serde_json::from_value(serde_json::json!({ "targets": targets, "bugfixes": true }))
            .map_err(|err| Diagnostic::new(format!("build.targets = {targets:?}: {err}")))?;
    // preset-env panics on queries its browserslist does not know.
    let env = std::panic::catch_unwind(|| swc_core::ecma::preset_env::EnvConfig::from(config))
        .map_err(|_| {
            Diagnostic::new(format!(
                "build.targets = {targets:?}: not a query swc's browserslist understands"
            ))
        })?;
    let pass = swc_core::ecma::preset_env::transform_from_env(
        unresolved_mark,
        Some(comments),
        env,
        Default::default(),
    );
    Ok(program.apply(pass))
}

/// Which comments are printed: all but license comments in an unminified
/// production build; none minified, nor in a development build (`kiln
/// watch`), whose source maps carry the originals and which must print fast. License comments are not positional: the chunk carries those
/// of its modules at its end (`inline`), in a separate file (`external`),
/// or not at all.
fn select_comments(
    comments: &SingleThreadedComments,
    modules: &[&JsModule],
    options: &EmitOptions,
) -> (SingleThreadedComments, Vec<String>) {
    let printed = SingleThreadedComments::default();
    if !options.minify && options.compress {
        let (leading, trailing) = comments.borrow_all();
        for (pos, list) in leading.iter() {
            printed.add_leading_comments(*pos, list.clone());
        }
        for (pos, list) in trailing.iter() {
            printed.add_trailing_comments(*pos, list.clone());
        }
    }
    let mut legal: Vec<String> = Vec::new();
    if options.legal_comments != LegalComments::None {
        for module in modules {
            for text in &module.comments.legal {
                if !legal.contains(text) {
                    legal.push(text.clone());
                }
            }
        }
    }
    (printed, legal)
}

/// Prints the program; source map entries and comments cost time, so they
/// are only collected when wanted.
fn print(
    ctx: &JsContext,
    program: &Program,
    comments: &SingleThreadedComments,
    options: &EmitOptions,
) -> Result<(String, Vec<(BytePos, LineCol)>), Diagnostic> {
    let minify = options.minify;
    let mut buffer = Vec::new();
    let mut mappings = Vec::new();
    {
        let mappings = options.sourcemaps.then_some(&mut mappings);
        let writer = JsWriter::new(ctx.cm.clone(), "\n", &mut buffer, mappings);
        let writer: Box<dyn WriteJs> = if minify {
            Box::new(omit_trailing_semi(writer))
        } else {
            Box::new(writer)
        };
        let mut emitter = Emitter {
            cfg: CodegenConfig::default()
                .with_minify(minify)
                .with_target(EsVersion::latest()),
            cm: ctx.cm.clone(),
            comments: (!minify).then_some(comments as &dyn Comments),
            wr: writer,
        };
        emitter
            .emit_program(program)
            .map_err(|err| Diagnostic::new(format!("printing JavaScript: {err}")))?;
    }
    let mut code = String::from_utf8(buffer)
        .map_err(|err| Diagnostic::new(format!("printing JavaScript: {err}")))?;
    if !code.ends_with('\n') {
        code.push('\n');
    }
    Ok((code, mappings))
}

struct MapConfig<'a> {
    root: &'a Path,
    prefix: &'a str,
}

impl SourceMapGenConfig for MapConfig<'_> {
    fn file_name_to_source(&self, name: &FileName) -> String {
        match name {
            FileName::Real(path) => {
                let relative = path.strip_prefix(self.root).unwrap_or(path);
                format!(
                    "{}{}",
                    self.prefix,
                    relative.to_string_lossy().replace('\\', "/")
                )
            }
            other => other.to_string(),
        }
    }

    fn inline_sources_content(&self, _: &FileName) -> bool {
        true
    }
}

fn source_map(
    ctx: &JsContext,
    mappings: &[(BytePos, LineCol)],
    options: &EmitOptions,
) -> Result<String, Diagnostic> {
    let config = MapConfig {
        root: &options.root,
        prefix: &options.map_to_root,
    };
    let map = ctx.cm.build_source_map(mappings, None, config);
    let mut out = Vec::new();
    map.to_writer(&mut out)
        .map_err(|err| Diagnostic::new(format!("writing a JavaScript source map: {err}")))?;
    String::from_utf8(out)
        .map_err(|err| Diagnostic::new(format!("writing a JavaScript source map: {err}")))
}

/// `export { a as a }` → `export { a }` once names are final.
struct ShortExports;

impl VisitMut for ShortExports {
    fn visit_mut_export_named_specifier(&mut self, specifier: &mut ExportNamedSpecifier) {
        if let (ModuleExportName::Ident(orig), Some(ModuleExportName::Ident(exported))) =
            (&specifier.orig, &specifier.exported)
            && orig.sym == exported.sym
        {
            specifier.exported = None;
        }
    }
}

/// Forgets every syntax context, once hygiene has made names unique.
/// Puts the top-level bindings of every module of a chunk in one top-level
/// context, renaming (`name$1`) where two modules declare the same name.
fn merge_top_levels(
    program: &mut Program,
    top_levels: &HashSet<SyntaxContext>,
    top_level_mark: Mark,
) {
    let mut names = TopLevelNames {
        top_levels,
        by_name: IndexMap::new(),
        all: HashSet::new(),
    };
    program.visit_with(&mut names);
    let mut renames: HashMap<Id, Atom> = HashMap::new();
    for (name, contexts) in &names.by_name {
        for ctxt in contexts.iter().skip(1) {
            let mut n = 1;
            let renamed: Atom = loop {
                let candidate: Atom = format!("{name}${n}").into();
                if !names.all.contains(&candidate) {
                    break candidate;
                }
                n += 1;
            };
            names.all.insert(renamed.clone());
            renames.insert((name.clone(), *ctxt), renamed);
        }
    }
    program.visit_mut_with(&mut MergeTopLevels {
        top_levels,
        renames,
        ctxt: SyntaxContext::empty().apply_mark(top_level_mark),
    });
}

/// Every name in the program, and the top-level contexts each top-level
/// name is bound in, in order of appearance.
struct TopLevelNames<'a> {
    top_levels: &'a HashSet<SyntaxContext>,
    by_name: IndexMap<Atom, Vec<SyntaxContext>>,
    all: HashSet<Atom>,
}

impl Visit for TopLevelNames<'_> {
    fn visit_ident(&mut self, ident: &Ident) {
        if self.top_levels.contains(&ident.ctxt) {
            let contexts = self.by_name.entry(ident.sym.clone()).or_default();
            if !contexts.contains(&ident.ctxt) {
                contexts.push(ident.ctxt);
            }
        }
        if !self.all.contains(&ident.sym) {
            self.all.insert(ident.sym.clone());
        }
    }
}

struct MergeTopLevels<'a> {
    top_levels: &'a HashSet<SyntaxContext>,
    renames: HashMap<Id, Atom>,
    ctxt: SyntaxContext,
}

impl VisitMut for MergeTopLevels<'_> {
    fn visit_mut_ident(&mut self, ident: &mut Ident) {
        if self.top_levels.contains(&ident.ctxt) {
            if let Some(renamed) = self.renames.get(&(ident.sym.clone(), ident.ctxt)) {
                ident.sym = renamed.clone();
            }
            ident.ctxt = self.ctxt;
        }
    }
}

struct ClearContexts;

impl VisitMut for ClearContexts {
    fn visit_mut_syntax_context(&mut self, ctxt: &mut SyntaxContext) {
        *ctxt = SyntaxContext::empty();
    }
}
