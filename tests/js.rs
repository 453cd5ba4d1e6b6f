//! The JavaScript bundler: hand-written fixtures for each semantic rule,
//! checked by running the bundles in node (present on the machine).

mod common;

use common::{Site, node};

/// Imports the built entry `key` and prints `JSON.stringify(EXPR)` where
/// `m` is the module namespace.
fn run_entry(site: &Site, key: &str, expression: &str) -> String {
    let file = site.output_of(key);
    let script = format!(
        "const m = await import('./{file}');\nconsole.log(JSON.stringify(await ({expression})));\n"
    );
    node(&site.dist(), &script)
}

fn site_with(files: &[(&str, &str)]) -> Site {
    let site = Site::empty();
    for (path, text) in files {
        site.write(path, text);
    }
    site
}

#[test]
fn modules_are_concatenated_with_live_bindings() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { count, increment } from './_counter.js';\nincrement(); increment();\nexport const seen = count;\nexport { count, increment };\n",
        ),
        (
            "assets/js/_counter.js",
            "export let count = 0;\nexport function increment() { count += 1; }\n",
        ),
    ]);
    site.build().unwrap();
    assert_eq!(
        run_entry(
            &site,
            "js/app.js",
            "[m.seen, m.count, (m.increment(), m.count)]"
        ),
        "[2,2,3]"
    );
    // One file: the partial is bundled, not emitted.
    let manifest = site.manifest();
    assert_eq!(manifest.as_object().unwrap().len(), 1, "{manifest}");
}

#[test]
fn equal_names_from_different_modules_do_not_collide() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { value as a } from './_a.js';\nimport { value as b } from './_b.js';\nconst value = 'app';\nexport const all = [a, b, value];\n",
        ),
        ("assets/js/_a.js", "const value = 'a';\nexport { value };\n"),
        ("assets/js/_b.js", "const value = 'b';\nexport { value };\n"),
    ]);
    site.build().unwrap();
    assert_eq!(run_entry(&site, "js/app.js", "m.all"), r#"["a","b","app"]"#);
}

#[test]
fn imported_bindings_are_not_captured_by_local_shadows_minified_or_not() {
    let files = [
        (
            "assets/js/app.js",
            "import { value as a, read } from './_a.js';\nconst value = 'app';\nfunction f(value) { const a$1 = 'inner'; return [value, a, a$1, read()]; }\nexport const all = [f('param'), value];\n",
        ),
        (
            "assets/js/_a.js",
            "export const value = 'a';\nlet value$1 = 'a1';\nexport function read() { return value$1; }\n",
        ),
    ];
    for minify in ["true", "false"] {
        let site = site_with(&files);
        site.build_with(&[&format!("build.minify={minify}")])
            .unwrap();
        assert_eq!(
            run_entry(&site, "js/app.js", "m.all"),
            r#"[["param","a","inner","a1"],"app"]"#,
            "minify = {minify}"
        );
    }
}

#[test]
fn circular_imports_keep_their_semantics() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { isEven } from './_even.js';\nexport const result = [isEven(10), isEven(7)];\n",
        ),
        (
            "assets/js/_even.js",
            "import { isOdd } from './_odd.js';\nexport function isEven(n) { return n === 0 ? true : isOdd(n - 1); }\n",
        ),
        (
            "assets/js/_odd.js",
            "import { isEven } from './_even.js';\nexport function isOdd(n) { return n === 0 ? false : isEven(n - 1); }\n",
        ),
    ]);
    site.build().unwrap();
    assert_eq!(run_entry(&site, "js/app.js", "m.result"), "[true,false]");
}

#[test]
fn export_star_namespaces_and_defaults() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "export * from './_math.js';\nexport * as strings from './_strings.js';\nimport greet, * as all from './_strings.js';\nexport const keys = Object.keys(all).sort();\nexport const hello = greet('kiln');\n",
        ),
        (
            "assets/js/_math.js",
            "export const add = (a, b) => a + b;\nexport const PI = 3.14;\nexport default 'not re-exported by export *';\n",
        ),
        (
            "assets/js/_strings.js",
            "export default function greet(name) { return `hello ${name}`; }\nexport const upper = (s) => s.toUpperCase();\n",
        ),
    ]);
    site.build().unwrap();
    assert_eq!(
        run_entry(
            &site,
            "js/app.js",
            "[m.add(2, 3), m.PI, m.strings.upper('x'), m.keys, m.hello, 'default' in m]"
        ),
        r#"[5,3.14,"X",["default","upper"],"hello kiln",false]"#
    );
}

#[test]
fn commonjs_dependencies_interoperate() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import lib, { add } from './_lib.cjs';\nimport data from './_data.json';\nexport const result = [lib.name, add(1, 2), data.version];\n",
        ),
        (
            "assets/js/_lib.cjs",
            "const helper = require('./_helper.cjs');\nmodule.exports = { name: 'lib', add: (a, b) => helper.sum(a, b) };\n",
        ),
        (
            "assets/js/_helper.cjs",
            "exports.sum = function (a, b) { return a + b; };\n",
        ),
        ("assets/js/_data.json", "{\"version\": \"1.2.3\"}"),
    ]);
    site.build().unwrap();
    assert_eq!(
        run_entry(&site, "js/app.js", "m.result"),
        r#"["lib",3,"1.2.3"]"#
    );
}

/// Regression: `export * from` a CommonJS module exported nothing.
#[test]
fn export_star_from_commonjs_re_exports_its_static_names() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "export * from './_lib.cjs';\nexport * from './_object.cjs';\nexport const own = 1;\n",
        ),
        (
            "assets/js/_lib.cjs",
            "exports.a = 1;\nmodule.exports.b = 2;\nObject.defineProperty(exports, 'c', { enumerable: true, get: () => 3 });\nObject.defineProperty(exports, '__esModule', { value: true });\n",
        ),
        (
            "assets/js/_object.cjs",
            "function d() { return 4; }\nmodule.exports = { d, e: 5 };\n",
        ),
    ]);
    site.build().unwrap();
    assert_eq!(
        run_entry(
            &site,
            "js/app.js",
            "[Object.keys(m).sort(), m.a, m.b, m.c, m.d(), m.e, m.own]"
        ),
        r#"[["a","b","c","d","e","own"],1,2,3,4,5,1]"#
    );
}

#[test]
fn top_level_await_works() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { config } from './_config.js';\nexport const port = config.port;\n",
        ),
        (
            "assets/js/_config.js",
            "export const config = await Promise.resolve({ port: 8080 });\n",
        ),
    ]);
    site.build().unwrap();
    assert_eq!(run_entry(&site, "js/app.js", "m.port"), "8080");
}

#[test]
fn unused_exports_and_pure_calls_are_shaken_out() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { used } from './_lib.js';\nexport const value = used();\n",
        ),
        (
            "assets/js/_lib.js",
            "export function used() { return 'USED_MARKER'; }\nexport function unused() { return 'UNUSED_MARKER'; }\nexport const pure = /*#__PURE__*/ makeExpensive('PURE_MARKER');\nfunction makeExpensive(x) { return [x]; }\n",
        ),
    ]);
    site.build().unwrap();
    let code = site.read_dist_string(&site.output_of("js/app.js"));
    assert!(code.contains("USED_MARKER"), "{code}");
    assert!(!code.contains("UNUSED_MARKER"), "{code}");
    assert!(!code.contains("PURE_MARKER"), "{code}");
}

#[test]
fn calls_of_functions_annotated_no_side_effects_are_dropped_when_unused() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { make, makeArrow } from './_lib.js';\nconst unused = make('NSE_MARKER');\nconst unusedToo = makeArrow('ARROW_MARKER');\nexport const used = make('KEPT_MARKER');\n",
        ),
        (
            "assets/js/_lib.js",
            "/*#__NO_SIDE_EFFECTS__*/ export function make(x) { globalThis.calls = (globalThis.calls || 0) + 1; return [x]; }\nexport const makeArrow = /*#__NO_SIDE_EFFECTS__*/ (x) => { globalThis.calls = (globalThis.calls || 0) + 1; return [x]; };\n",
        ),
    ]);
    site.build().unwrap();
    let code = site.read_dist_string(&site.output_of("js/app.js"));
    assert!(code.contains("KEPT_MARKER"), "{code}");
    assert!(!code.contains("NSE_MARKER"), "{code}");
    assert!(!code.contains("ARROW_MARKER"), "{code}");
}

#[test]
fn side_effect_free_packages_are_dropped_when_unused() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { a } from 'pkg';\nexport const value = a;\n",
        ),
        (
            "node_modules/pkg/package.json",
            r#"{"name":"pkg","module":"index.js","sideEffects":false}"#,
        ),
        (
            "node_modules/pkg/index.js",
            "export { a } from './a.js';\nexport { b } from './b.js';\n",
        ),
        ("node_modules/pkg/a.js", "export const a = 'A_MARKER';\n"),
        (
            "node_modules/pkg/b.js",
            "console.log('B_SIDE_EFFECT');\nexport const b = 'B_MARKER';\n",
        ),
    ]);
    site.build().unwrap();
    let code = site.read_dist_string(&site.output_of("js/app.js"));
    assert!(code.contains("A_MARKER"), "{code}");
    assert!(
        !code.contains("B_MARKER") && !code.contains("B_SIDE_EFFECT"),
        "{code}"
    );
    assert_eq!(run_entry(&site, "js/app.js", "m.value"), "\"A_MARKER\"");
}

#[test]
fn modules_with_side_effects_run_even_when_nothing_is_imported() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import './_setup.js';\nexport const value = globalThis.setupRan;\n",
        ),
        ("assets/js/_setup.js", "globalThis.setupRan = 'yes';\n"),
    ]);
    site.build().unwrap();
    assert_eq!(run_entry(&site, "js/app.js", "m.value"), "\"yes\"");
}

#[test]
fn define_replaces_globals_and_dead_branches_fall_away() {
    let site = site_with(&[(
        "assets/js/app.js",
        "export const mode = process.env.NODE_ENV;\nif (process.env.NODE_ENV !== 'production') { console.log('DEV_ONLY_MARKER'); }\n",
    )]);
    site.build().unwrap();
    let code = site.read_dist_string(&site.output_of("js/app.js"));
    assert!(
        !code.contains("DEV_ONLY_MARKER") && !code.contains("process"),
        "{code}"
    );
    assert_eq!(run_entry(&site, "js/app.js", "m.mode"), "\"production\"");
}

#[test]
fn typescript_and_jsx_compile() {
    let site = site_with(&[
        ("build.toml", "[js]\njsx_import_source = \"tiny\"\n"),
        (
            "assets/js/app.tsx",
            "import { double } from './_util';\ninterface Props { n: number }\nconst View = (props: Props) => <p title=\"t\">{double(props.n)}</p>;\nexport const tree = <View n={21} />;\n",
        ),
        (
            "assets/js/_util.ts",
            "export const double = (n: number): number => n * 2;\nexport type Unused = string;\n",
        ),
        (
            "node_modules/tiny/package.json",
            r#"{"name":"tiny","exports":{"./jsx-runtime":"./jsx-runtime.js"}}"#,
        ),
        (
            "node_modules/tiny/jsx-runtime.js",
            "export const jsx = (type, props) => typeof type === 'function' ? type(props) : { type, props };\nexport const jsxs = jsx;\nexport const Fragment = 'fragment';\n",
        ),
    ]);
    site.build().unwrap();
    assert_eq!(
        run_entry(&site, "js/app.tsx", "m.tree"),
        r#"{"type":"p","props":{"title":"t","children":42}}"#
    );
}

#[test]
fn dynamic_imports_become_chunks_that_load() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "export const load = () => import('./_lazy.js').then((lazy) => lazy.message);\n",
        ),
        (
            "assets/js/_lazy.js",
            "export const message = 'LAZY_MARKER loaded';\n",
        ),
    ]);
    site.build().unwrap();
    let app = site.read_dist_string(&site.output_of("js/app.js"));
    assert!(
        !app.contains("LAZY_MARKER"),
        "the lazy module is in its own chunk: {app}"
    );
    assert_eq!(
        run_entry(&site, "js/app.js", "m.load()"),
        "\"LAZY_MARKER loaded\""
    );
    let manifest = site.manifest();
    assert_eq!(
        manifest["js/app.js"]["dynamicImports"],
        serde_json::json!(["js/_lazy.js"])
    );
    assert_eq!(manifest["js/_lazy.js"]["isDynamicEntry"], true);
}

#[test]
fn modules_shared_by_entries_go_to_a_shared_chunk_once() {
    let site = site_with(&[
        (
            "assets/js/a.js",
            "import { shared } from './_shared.js';\nexport const a = shared('a');\n",
        ),
        (
            "assets/js/b.js",
            "import { shared } from './_shared.js';\nexport const b = shared('b');\n",
        ),
        (
            "assets/js/_shared.js",
            "export function shared(x) { return 'SHARED_MARKER ' + x; }\n",
        ),
    ]);
    site.build().unwrap();
    let manifest = site.manifest();
    let shared_key = manifest["js/a.js"]["imports"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(shared_key.starts_with('_'), "{manifest}");
    assert_eq!(
        manifest["js/b.js"]["imports"],
        serde_json::json!([shared_key.clone()])
    );
    let mut copies = 0;
    for key in ["js/a.js", "js/b.js", shared_key.as_str()] {
        let file = manifest[key]["file"].as_str().unwrap();
        copies += site.read_dist_string(file).matches("SHARED_MARKER").count();
    }
    assert_eq!(copies, 1, "the shared module is in exactly one chunk");
    assert_eq!(run_entry(&site, "js/a.js", "m.a"), "\"SHARED_MARKER a\"");
    assert_eq!(run_entry(&site, "js/b.js", "m.b"), "\"SHARED_MARKER b\"");
}

#[test]
fn splitting_off_inlines_dynamic_imports() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "export const load = () => import('./_lazy.js').then((lazy) => lazy.message);\n",
        ),
        ("assets/js/_lazy.js", "export const message = 'inline';\n"),
    ]);
    site.build_with(&["js.splitting=false"]).unwrap();
    assert_eq!(site.manifest().as_object().unwrap().len(), 1);
    assert_eq!(run_entry(&site, "js/app.js", "m.load()"), "\"inline\"");
}

#[test]
fn source_maps_point_into_the_original_files() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { greet } from './_greet.js';\nexport const message = greet('map');\n",
        ),
        (
            "assets/js/_greet.js",
            "export function greet(name) {\n  return 'hi ' + name;\n}\n",
        ),
    ]);
    site.build_with(&["build.sourcemaps=true"]).unwrap();
    let file = site.output_of("js/app.js");
    let code = site.read_dist_string(&file);
    let name = file.rsplit('/').next().unwrap();
    assert!(
        code.ends_with(&format!("//# sourceMappingURL={name}.map\n")),
        "{code}"
    );
    let map: serde_json::Value =
        serde_json::from_slice(&site.read_dist(&format!("{file}.map"))).unwrap();
    let sources: Vec<&str> = map["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        sources.contains(&"../../assets/js/_greet.js"),
        "{sources:?}"
    );
    // Where is `'hi '` in the bundle, and what does the map say?
    let script = format!(
        "import {{ SourceMap }} from 'node:module';\nimport {{ readFileSync }} from 'node:fs';\n\
         const code = readFileSync('./{file}', 'utf8');\n\
         const map = new SourceMap(JSON.parse(readFileSync('./{file}.map', 'utf8')));\n\
         const at = code.indexOf(\"'hi '\") >= 0 ? code.indexOf(\"'hi '\") : code.indexOf('\"hi \"');\n\
         const line = code.slice(0, at).split('\\n').length - 1;\n\
         const column = at - code.lastIndexOf('\\n', at - 1) - 1;\n\
         const entry = map.findEntry(line, column);\n\
         console.log(JSON.stringify([entry.originalSource, entry.originalLine]));\n"
    );
    let found = node(&site.dist(), &script);
    assert_eq!(found, r#"["../../assets/js/_greet.js",1]"#);
}

#[test]
fn license_comments_are_kept_or_extracted() {
    let site = site_with(&[(
        "assets/js/app.js",
        "/*! app v1 | MIT */\n// an ordinary comment\nexport const x = 1;\n",
    )]);
    site.build().unwrap();
    let code = site.read_dist_string(&site.output_of("js/app.js"));
    assert!(
        code.contains("/*! app v1 | MIT */") && !code.contains("ordinary"),
        "{code}"
    );

    site.build_with(&["js.legal_comments=\"external\""])
        .unwrap();
    let file = site.output_of("js/app.js");
    let code = site.read_dist_string(&file);
    assert!(!code.contains("app v1"), "{code}");
    assert!(
        site.read_dist_string(&format!("{file}.LICENSE.txt"))
            .contains("/*! app v1 | MIT */")
    );
}

#[test]
fn syntax_errors_and_bad_imports_are_reported_together_with_locations() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { missing } from './_lib.js';\nimport './_broken.js';\nimport x from './nowhere.js';\nexport { missing, x };\n",
        ),
        ("assets/js/_lib.js", "export const present = 1;\n"),
        ("assets/js/_broken.js", "export const a = ;\n"),
    ]);
    let err = site.build().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("_broken.js:1:"), "{text}");
    assert!(text.contains("nowhere.js"), "{text}");
    assert!(text.contains("app.js:3:"), "{text}");
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { missing } from './_lib.js';\nexport { missing };\n",
        ),
        ("assets/js/_lib.js", "export const present = 1;\n"),
    ]);
    let err = site.build().unwrap_err().to_string();
    assert!(err.contains("does not export \"missing\""), "{err}");
    assert!(err.contains("app.js:1:10"), "{err}");
}

#[test]
fn css_imported_from_javascript_is_built_and_listed() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import './_app.css';\nexport const x = 1;\n",
        ),
        ("assets/js/_app.css", ".app { color: red }\n"),
    ]);
    site.build().unwrap();
    let manifest = site.manifest();
    let css = manifest["js/app.js"]["css"][0].as_str().unwrap();
    assert!(site.read_dist_string(css).contains(".app{color:red}"));
}

/// Regression: a stylesheet entry also imported from a script was emitted
/// twice, and its manifest entry lost `isEntry`.
#[test]
fn a_stylesheet_entry_imported_from_a_script_stays_an_entry() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import '../css/site.css';\nexport const x = 1;\n",
        ),
        ("assets/css/site.css", ".site { color: red }\n"),
    ]);
    site.build().unwrap();
    let manifest = site.manifest();
    assert_eq!(manifest["css/site.css"]["isEntry"], true, "{manifest}");
    assert_eq!(
        manifest["js/app.js"]["css"][0], manifest["css/site.css"]["file"],
        "{manifest}"
    );
}

#[test]
fn pages_using_a_script_link_the_css_its_modules_import() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { widget } from './_widget.js';\nimport './_app.css';\nwidget();\n",
        ),
        (
            "assets/js/admin.js",
            "import { widget } from './_widget.js';\nwidget();\n",
        ),
        (
            "assets/js/_widget.js",
            "import './_widget.css';\nexport function widget() { globalThis.done = true; }\n",
        ),
        ("assets/js/_app.css", ".app { color: red }\n"),
        ("assets/js/_widget.css", ".widget { color: blue }\n"),
        (
            "templates/pages/index.html",
            "<!doctype html><html><head><title>t</title>{{ script('js/app.js') }}</head><body></body></html>",
        ),
    ]);
    site.build().unwrap();
    let manifest = site.manifest();
    // The widget is shared by both entries: its stylesheet belongs to the
    // shared chunk, and is listed in the manifest once, with integrity.
    let widget_css = manifest["js/_widget.css"]["file"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        manifest["js/_widget.css"]["integrity"]
            .as_str()
            .unwrap()
            .starts_with("sha384-")
    );
    let app_css = manifest["js/_app.css"]["file"]
        .as_str()
        .unwrap()
        .to_string();
    let html = site.read_dist_string("index.html");
    let widget_at = html
        .find(&format!("href=\"/{widget_css}\""))
        .unwrap_or_else(|| panic!("{html}"));
    let app_at = html
        .find(&format!("href=\"/{app_css}\""))
        .unwrap_or_else(|| panic!("{html}"));
    let script_at = html.find("<script").unwrap();
    assert!(app_at < script_at && widget_at < script_at, "{html}");
    let widget_link = &html[html[..widget_at].rfind('<').unwrap()..];
    assert!(
        widget_link[..widget_link.find('>').unwrap()].contains("integrity=\"sha384-"),
        "{html}"
    );
}

#[test]
fn no_change_rebuild_reuses_the_bundle() {
    let site = site_with(&[("assets/js/app.js", "export const x = 1;\n")]);
    site.build().unwrap();
    let report = site.build().unwrap();
    assert_eq!(report.cache_misses, 0);
    site.write("assets/js/app.js", "export const x = 2;\n");
    let report = site.build().unwrap();
    assert!(report.cache_misses > 0);
    assert_eq!(run_entry(&site, "js/app.js", "m.x"), "2");
}

#[test]
fn a_rebuild_in_the_same_session_parses_only_the_changed_module() {
    let site = site_with(&[
        (
            "assets/js/app.js",
            "import { a } from './_a.js';\nimport { b } from './_b.js';\nexport const sum = a + b;\n",
        ),
        ("assets/js/_a.js", "export const a = 1;\n"),
        ("assets/js/_b.js", "export const b = 10;\n"),
    ]);
    let session = kiln::BuildSession::default();
    site.build_in(&session).unwrap();
    assert_eq!(session.js_modules.parses(), 3);
    site.write("assets/js/_b.js", "export const b = 20;\n");
    site.build_in(&session).unwrap();
    assert_eq!(session.js_modules.parses(), 4, "only _b.js is parsed again");
    assert_eq!(run_entry(&site, "js/app.js", "m.sum"), "21");
    // A changed define re-parses everything: it is applied while parsing.
    site.write("build.toml", "[js.define]\nDEBUG = \"false\"\n");
    site.build_in(&session).unwrap();
    assert_eq!(session.js_modules.parses(), 7);
}

/// Regression: modules of a side-effect-free package were ordered by a hash
/// map's iteration, so every build of three.js came out different.
#[test]
fn builds_of_the_same_input_are_byte_identical() {
    let mut files: Vec<(String, String)> = vec![(
        "node_modules/pkg/package.json".into(),
        r#"{"name":"pkg","module":"index.js","sideEffects":false}"#.into(),
    )];
    let mut index = String::new();
    let mut entry = String::new();
    for n in 0..12 {
        files.push((
            format!("node_modules/pkg/m{n}.js"),
            format!(
                "export const v{n} = {{ id: {n} }};\nexport function f{n}() {{ return v{n}.id; }}\n"
            ),
        ));
        index.push_str(&format!("export * from './m{n}.js';\n"));
        entry.push_str(&format!("import {{ f{n} }} from 'pkg';\n"));
    }
    entry.push_str(&format!(
        "export const all = [{}];\n",
        (0..12)
            .map(|n| format!("f{n}()"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    files.push(("node_modules/pkg/index.js".into(), index));
    files.push(("assets/js/app.js".into(), entry));
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let site = site_with(&borrowed);
    let mut outputs = std::collections::BTreeSet::new();
    for _ in 0..4 {
        std::fs::remove_dir_all(site.path(".kiln-cache")).ok();
        site.build().unwrap();
        outputs.insert(site.read_dist_string(&site.output_of("js/app.js")));
    }
    assert_eq!(outputs.len(), 1, "{outputs:#?}");
    assert_eq!(
        run_entry(&site, "js/app.js", "m.all"),
        "[0,1,2,3,4,5,6,7,8,9,10,11]"
    );
}
