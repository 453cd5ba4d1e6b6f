// Runtime helpers the linker adds to a chunk, each defined once in a chunk
// that needs it. Plain ES2015+, kept to one statement each.
//
// A line `// @helper NAME` starts each helper's section, and the comment
// lines right after it describe the helper; `runtime.rs` cuts the file at
// those lines and parses the code that follows.

// @helper __export
// `export * as ns` and namespaces used as values: live getters on an object.
var __export = (target, all) => { for (var name in all) Object.defineProperty(target, name, { get: all[name], enumerable: true }); };

// @helper __commonJS
// A CommonJS module as a lazy factory: evaluated on first `require`, once.
var __commonJS = (factory, module) => () => (module || factory.call((module = { exports: {} }).exports, module.exports, module), module.exports);

// @helper __toESM
// A CommonJS module's exports as an ES namespace (`default` is `module.exports`).
var __toESM = (mod) => mod && mod.__esModule ? mod : Object.assign(Object.create(null), mod !== null && (typeof mod === "object" || typeof mod === "function") ? mod : {}, { default: mod });

// @helper __toCommonJS
// An ES namespace as `require` returns it, marked `__esModule`.
var __toCommonJS = (ns) => Object.defineProperties({}, { ...Object.getOwnPropertyDescriptors(ns), __esModule: { value: true } });
