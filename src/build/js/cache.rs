//! Parsed modules kept between bundling runs of one process.
//!
//! `kiln watch` rebuilds many times in one process: a module whose file
//! contents (blake3) and parse options are unchanged is taken from here
//! instead of being read through swc again, so an edit re-parses only the
//! files it touched. All runs share one [`JsContext`], because a parsed
//! module's spans and syntax contexts belong to the source map and hygiene
//! marks it was parsed with. (Separate `kiln build` processes reuse a whole
//! bundle from the on-disk build cache instead: swc parses faster than an
//! AST could be deserialised.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::build::js::module::{JsContext, JsModule};

/// Path → (blake3 hex of the contents, the parsed module).
type Entries = HashMap<PathBuf, (String, Arc<JsModule>)>;

/// Parse results by path, valid while the contents hash matches.
#[derive(Default)]
pub struct ModuleCache {
    ctx: JsContext,
    state: Mutex<CacheState>,
    parses: AtomicUsize,
}

#[derive(Default)]
struct CacheState {
    /// Parse options the cached modules were parsed with.
    options: Vec<u8>,
    modules: Entries,
}

impl ModuleCache {
    pub fn new() -> ModuleCache {
        ModuleCache::default()
    }

    /// The source map and hygiene marks every cached module belongs to.
    pub fn ctx(&self) -> &JsContext {
        &self.ctx
    }

    /// Forgets everything when the parse options differ from last time's
    /// (`define`, the JSX import source).
    pub fn use_options(&self, fingerprint: Vec<u8>) {
        let mut state = self.lock();
        if state.options != fingerprint {
            state.modules.clear();
            state.options = fingerprint;
        }
    }

    /// The module parsed from `path` when its contents hashed to `hash`.
    pub fn get(&self, path: &Path, hash: &str) -> Option<Arc<JsModule>> {
        let state = self.lock();
        let (cached_hash, module) = state.modules.get(path)?;
        (cached_hash == hash).then(|| Arc::clone(module))
    }

    pub fn insert(&self, hash: String, module: Arc<JsModule>) {
        self.parses.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .modules
            .insert(module.path.clone(), (hash, module));
    }

    /// Drops modules the last graph did not reach (deleted or no longer imported).
    pub fn retain(&self, reached: &[Arc<JsModule>]) {
        let keep: std::collections::HashSet<&Path> =
            reached.iter().map(|m| m.path.as_path()).collect();
        self.lock()
            .modules
            .retain(|path, _| keep.contains(path.as_path()));
    }

    /// How many modules have been parsed through this cache (for tests and
    /// the rebuild summary).
    pub fn parses(&self) -> usize {
        self.parses.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
