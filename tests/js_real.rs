//! The bundler on real packages from the pinned npm corpus: three.js,
//! lodash-es, preact and Bootstrap (with Popper), run in node and compared
//! with the unbundled sources.

mod common;

use common::{Site, node, npm_corpus, require};

/// A site whose `node_modules` is the corpus's, with the given files.
fn site(test: &str, files: &[(&str, &str)]) -> Option<Site> {
    let node_modules = require(npm_corpus(), test)?;
    let site = Site::empty();
    std::os::unix::fs::symlink(&node_modules, site.path("node_modules")).unwrap();
    for (path, text) in files {
        site.write(path, text);
    }
    Some(site)
}

/// A site whose one entry re-exports all of three.js.
fn three_site(test: &str) -> Option<Site> {
    site(test, &[("assets/js/three.js", "export * from 'three';\n")])
}

#[test]
fn three_bundle_exports_everything_and_computes_the_same() {
    let Some(site) = three_site("three") else {
        return;
    };
    site.build().unwrap();
    let file = site.output_of("js/three.js");
    assert_three_matches_its_source(&site.dist(), &file);
}

/// `kiln watch`'s development build (no compression pass, hygiene only, no
/// comments) of the same bundle runs the same.
#[test]
fn three_development_bundle_computes_the_same() {
    let Some(site) = three_site("three (development)") else {
        return;
    };
    let settings = kiln::Settings::load_for_watch(site.root(), &[]).unwrap();
    kiln::build_in(&kiln::BuildSession::persistent(), &settings, &kiln::Silent).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(settings.out_dir.join("manifest.json")).unwrap())
            .unwrap();
    let file = manifest["js/three.js"]["file"].as_str().unwrap();
    let code = std::fs::read_to_string(settings.out_dir.join(file)).unwrap();
    assert!(code.contains("sourceMappingURL="), "source maps are on");
    assert_three_matches_its_source(&settings.out_dir, file);
}

fn assert_three_matches_its_source(dir: &std::path::Path, file: &str) {
    let script = format!(
        "import * as bundled from './{file}';\n\
         import * as source from 'three';\n\
         const run = (T) => {{\n\
           const v = new T.Vector3(1, 2, 3).applyMatrix4(new T.Matrix4().makeRotationY(Math.PI / 3)).normalize();\n\
           const q = new T.Quaternion().setFromEuler(new T.Euler(0.1, 0.2, 0.3));\n\
           const box = new T.BoxGeometry(2, 3, 4, 2, 2, 2);\n\
           box.computeBoundingSphere();\n\
           const m = new T.Matrix4().compose(new T.Vector3(1, 1, 1), q, new T.Vector3(2, 2, 2)).invert();\n\
           return [v.toArray(), q.toArray(), box.attributes.position.count, box.boundingSphere.radius, m.toArray(), T.MathUtils.clamp(5, 0, 3), T.REVISION];\n\
         }};\n\
         const keys = (ns) => Object.keys(ns).sort();\n\
         console.log(JSON.stringify({{ sameKeys: JSON.stringify(keys(bundled)) === JSON.stringify(keys(source)), count: keys(bundled).length, sameResults: JSON.stringify(run(bundled)) === JSON.stringify(run(source)) }}));\n"
    );
    let result: serde_json::Value = serde_json::from_str(&node(dir, &script)).unwrap();
    assert_eq!(result["sameKeys"], true, "{result}");
    assert_eq!(result["sameResults"], true, "{result}");
    assert!(result["count"].as_u64().unwrap() > 400, "{result}");
}

#[test]
fn lodash_functions_behave_like_the_source_and_the_rest_is_shaken() {
    let Some(site) = site(
        "lodash",
        &[(
            "assets/js/app.js",
            "import { debounce, chunk, merge, groupBy, cloneDeep } from 'lodash-es';\nexport { debounce, chunk, merge, groupBy, cloneDeep };\n",
        )],
    ) else {
        return;
    };
    site.build().unwrap();
    let file = site.output_of("js/app.js");
    let script = format!(
        "import * as bundled from './{file}';\n\
         import * as source from 'lodash-es';\n\
         const run = (_) => [\n\
           _.chunk([1, 2, 3, 4, 5], 2),\n\
           _.merge({{ a: [{{ b: 2 }}] }}, {{ a: [{{ c: 3 }}] }}),\n\
           _.groupBy([6.1, 4.2, 6.3], Math.floor),\n\
           _.cloneDeep({{ d: new Date(0).toISOString(), n: [1, {{ x: 2 }}] }}),\n\
           typeof _.debounce(() => 1, 10).cancel,\n\
         ];\n\
         console.log(JSON.stringify(run(bundled)) === JSON.stringify(run(source)));\n"
    );
    assert_eq!(node(&site.dist(), &script), "true");
    let size = site.read_dist(&file).len();
    assert!(
        size < 40_000,
        "only what the five functions need: {size} bytes"
    );
}

/// A DOM just large enough for preact to render into, in node.
const DOM_SHIM: &str = r#"
class FakeNode {
  constructor(nodeType, name) {
    Object.assign(this, { nodeType, nodeName: name, localName: name.toLowerCase(), childNodes: [], parentNode: null, attributes: {}, style: {}, listeners: {}, onclick: null });
  }
  get firstChild() { return this.childNodes[0] ?? null; }
  get nextSibling() { const p = this.parentNode; return p ? p.childNodes[p.childNodes.indexOf(this) + 1] ?? null : null; }
  appendChild(child) { return this.insertBefore(child, null); }
  insertBefore(child, ref) {
    if (child.parentNode) child.parentNode.removeChild(child);
    const at = ref ? this.childNodes.indexOf(ref) : -1;
    if (at < 0) this.childNodes.push(child); else this.childNodes.splice(at, 0, child);
    child.parentNode = this;
    return child;
  }
  removeChild(child) { const at = this.childNodes.indexOf(child); if (at >= 0) this.childNodes.splice(at, 1); child.parentNode = null; return child; }
  remove() { if (this.parentNode) this.parentNode.removeChild(this); }
  setAttribute(name, value) { this.attributes[name] = String(value); }
  removeAttribute(name) { delete this.attributes[name]; }
  getAttribute(name) { return this.attributes[name] ?? null; }
  addEventListener(type, handler) { this.listeners[type] = handler; }
  removeEventListener(type) { delete this.listeners[type]; }
  get textContent() { return this.nodeType === 3 ? this.data : this.childNodes.map((c) => c.textContent).join(''); }
  get outerHTML() {
    if (this.nodeType === 3) return this.data;
    const attrs = Object.entries(this.attributes).map(([k, v]) => ` ${k}="${v}"`).join('');
    return `<${this.localName}${attrs}>${this.childNodes.map((c) => c.outerHTML).join('')}</${this.localName}>`;
  }
}
globalThis.document = {
  createElement: (name) => new FakeNode(1, name.toUpperCase()),
  createElementNS: (_, name) => new FakeNode(1, name),
  createTextNode: (text) => Object.assign(new FakeNode(3, '#text'), { data: String(text) }),
};
"#;

#[test]
fn a_preact_component_renders_and_updates() {
    let Some(site) = site(
        "preact",
        &[
            ("build.toml", "[js]\njsx_import_source = \"preact\"\n"),
            (
                "assets/js/app.jsx",
                "import { render } from 'preact';\nimport { useState } from 'preact/hooks';\n\
                 function Counter({ start }) {\n  const [count, setCount] = useState(start);\n  \
                 return <button class=\"counter\" onClick={() => setCount(count + 1)}>Clicked {count} times</button>;\n}\n\
                 export function mount(root) { render(<Counter start={2} />, root); }\n",
            ),
        ],
    ) else {
        return;
    };
    site.build().unwrap();
    let file = site.output_of("js/app.jsx");
    let script = format!(
        "{DOM_SHIM}\nconst {{ mount }} = await import('./{file}');\n\
         const root = document.createElement('div');\n\
         mount(root);\n\
         const before = root.outerHTML;\n\
         const button = root.firstChild;\n\
         button.listeners.click.call(button, {{ type: 'click' }});\n\
         await new Promise((resolve) => setTimeout(resolve, 20));\n\
         console.log(JSON.stringify([before, root.outerHTML]));\n"
    );
    assert_eq!(
        node(&site.dist(), &script),
        r#"["<div><button class=\"counter\">Clicked 2 times</button></div>","<div><button class=\"counter\">Clicked 3 times</button></div>"]"#
    );
}

#[test]
fn preact_shared_between_an_entry_and_a_lazy_chunk_is_not_duplicated() {
    let Some(site) = site(
        "preact-split",
        &[
            (
                "assets/js/app.js",
                "import { h } from 'preact';\nexport const vnode = h('p', null, 'app');\nexport const lazy = () => import('./_widget.js').then((m) => m.widget().type);\n",
            ),
            (
                "assets/js/admin.js",
                "import { h } from 'preact';\nexport const vnode = h('p', null, 'admin');\n",
            ),
            (
                "assets/js/_widget.js",
                "import { h } from 'preact';\nexport const widget = () => h('section', null, 'widget');\n",
            ),
        ],
    ) else {
        return;
    };
    site.build().unwrap();
    let manifest = site.manifest();
    let mut preact_copies = 0;
    for chunk in manifest.as_object().unwrap().values() {
        let code = site.read_dist_string(chunk["file"].as_str().unwrap());
        // `__k` is preact's (pre-mangled) children property: only its code has it.
        preact_copies += code.matches("__k").count().min(1);
    }
    assert_eq!(preact_copies, 1, "{manifest}");
    let file = site.output_of("js/app.js");
    let script = format!(
        "const m = await import('./{file}');\nconsole.log(JSON.stringify([m.vnode.type, await m.lazy()]));\n"
    );
    assert_eq!(node(&site.dist(), &script), r#"["p","section"]"#);
}

#[test]
fn bootstrap_bundles_with_popper_and_exports_what_the_source_does() {
    let Some(site) = site(
        "bootstrap",
        &[("assets/js/bootstrap.js", "export * from 'bootstrap';\n")],
    ) else {
        return;
    };
    site.build().unwrap();
    let file = site.output_of("js/bootstrap.js");
    // Bootstrap registers document listeners when it loads: node gets just
    // enough of a DOM for that.
    let script = format!(
        "globalThis.window = globalThis;\nglobalThis.addEventListener = () => {{}};\n\
         globalThis.document = {{ documentElement: {{ dir: 'ltr' }}, readyState: 'complete', addEventListener() {{}}, body: {{}} }};\n\
         const bundled = await import('./dist/{file}');\n\
         const source = await import('./node_modules/bootstrap/dist/js/bootstrap.esm.js');\n\
         const keys = (ns) => Object.keys(ns).sort();\n\
         console.log(JSON.stringify({{ keys: keys(bundled), same: JSON.stringify(keys(bundled)) === JSON.stringify(keys(source)), version: bundled.Tooltip.VERSION === source.Tooltip.VERSION, popper: typeof bundled.Tooltip.Default }}));\n"
    );
    let result: serde_json::Value = serde_json::from_str(&node(&site.path(""), &script)).unwrap();
    assert_eq!(result["same"], true, "{result}");
    assert_eq!(result["version"], true, "{result}");
    let keys = result["keys"].to_string();
    for name in ["Modal", "Tooltip", "Popover", "Dropdown", "Collapse"] {
        assert!(keys.contains(name), "{result}");
    }
    let code = site.read_dist_string(&file);
    assert!(
        code.contains("popper"),
        "Popper is bundled, not left as an import: {}",
        &code[..200]
    );
    assert!(!code.contains("from\"@popperjs"), "{}", &code[..200]);
}
