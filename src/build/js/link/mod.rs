//! The link stage: from the module graph to one scope-hoisted module per
//! output chunk. Its passes, in order, one file each:
//!
//! 1. [`exports`] — export resolution: where each imported name finally
//!    lives, through re-exports and `export *`. Every later pass asks it.
//! 2. [`include`] — module-level tree shaking (package.json `sideEffects`)
//!    and ES evaluation order.
//! 3. [`chunks`] — which chunk each bundled module goes to, splitting on
//!    dynamic imports and on modules shared by several entries.
//! 4. [`hoist`] — each chunk's modules concatenated into one scope: import
//!    bindings replaced by the bindings they name, namespace objects where a
//!    namespace is a value, imports and exports between chunks.
//! 5. [`commonjs`] — within 4, CommonJS modules wrapped in lazy factories,
//!    and `require`/`import` interop between the two module systems.
//! 6. [`runtime`] — the helpers 4 and 5 call, from `runtime.js`.
//!
//! [`plan`] runs passes 1–3 once per bundle; [`link`] runs 4–6.

mod chunks;
mod commonjs;
mod exports;
mod hoist;
mod include;
mod runtime;

pub(crate) use chunks::{ChunkKind, Plan, placeholder, plan};
pub(crate) use hoist::LinkedChunk;

use crate::build::js::graph::Graph;
use crate::build::js::module::JsContext;
use crate::diagnostic::Diagnostic;

use hoist::Linker;

/// Links every chunk of the plan.
pub(crate) fn link(
    ctx: &JsContext,
    graph: &Graph,
    plan: &Plan,
    hash_length: usize,
) -> Result<Vec<LinkedChunk>, Vec<Diagnostic>> {
    // Generated names and helper contexts take marks from the run's globals.
    swc_core::common::GLOBALS.set(&ctx.globals, || {
        Linker::new(ctx, graph, plan, hash_length).run()
    })
}
