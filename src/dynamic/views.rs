//! Templates of dynamic routes: the same minijinja environment and
//! functions pages are built with (`asset()`, `script()`, `image()`…),
//! resolved against the manifest of the build being served, plus
//! `csrf_field()` and `csrf_token()` for forms. Rebuilt whenever a new
//! build is loaded, so hashed URLs always point at files that exist.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use minijinja::value::{Object, Value};
use minijinja::{Environment, Error, ErrorKind, State};

use crate::config::Settings;
use crate::diagnostic::Diagnostic;
use crate::dynamic::csrf::Csrf;
use crate::site::images::Format;
use crate::site::images::{EmittedVariant, ImageOutputs};
use crate::site::manifest::Manifest;
use crate::site::postprocess::{self, OutputIndex, PageRef, Rewrites};
use crate::site::templates::functions::{self, Catalog, escape};
use crate::site::templates::template_diagnostic;

/// The variable holding the request's CSRF slot.
const CSRF_VARIABLE: &str = "__kiln_csrf";

/// A compiled set of route templates.
pub(crate) struct Views {
    env: Environment<'static>,
    /// The files under `data/`, as pages see them.
    pub data: Value,
    /// What a page rendered with these views depends on besides its route
    /// and inputs (see [`generation`]); part of every route cache key.
    pub generation: Arc<str>,
    /// What rendered pages get, as built pages do: the build's outputs,
    /// for SRI, image sizes and hints, and which rewrites apply.
    pub outputs: OutputIndex,
    pub rewrites: Rewrites,
    pub base_url: String,
}

/// The request's CSRF token: the valid one its cookie carries, or a new
/// one issued the first time the page asks. Whether the page used it
/// decides whether the response sets the cookie and may be shared by caches.
#[derive(Debug)]
pub(crate) struct CsrfSlot {
    csrf: Csrf,
    /// The visitor's secret from their cookie.
    existing: Option<String>,
    /// A secret issued for this response, when the visitor had none.
    issued: OnceLock<String>,
    /// Rendering for the cache: the page gets this text, which is replaced
    /// by each visitor's token when served.
    placeholder: Option<String>,
    /// The form token, made once per response.
    token: OnceLock<String>,
    used: AtomicBool,
}

impl CsrfSlot {
    /// A slot for a visitor's response; `existing` is their cookie's secret.
    pub(crate) fn new(csrf: &Csrf, existing: Option<String>) -> Arc<CsrfSlot> {
        Arc::new(CsrfSlot {
            csrf: csrf.clone(),
            existing,
            issued: OnceLock::new(),
            placeholder: None,
            token: OnceLock::new(),
            used: AtomicBool::new(false),
        })
    }

    /// A slot for a page rendered into the cache: it renders `placeholder`.
    pub(crate) fn placeholder(csrf: &Csrf, placeholder: &str) -> Arc<CsrfSlot> {
        Arc::new(CsrfSlot {
            csrf: csrf.clone(),
            existing: None,
            issued: OnceLock::new(),
            placeholder: Some(placeholder.to_string()),
            token: OnceLock::new(),
            used: AtomicBool::new(false),
        })
    }

    /// The page rendered a token.
    pub(crate) fn used(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// A secret issued for this response, which the cookie must carry.
    pub(crate) fn issued(&self) -> Option<&str> {
        self.issued.get().map(String::as_str)
    }

    /// The token the page embeds: made from the visitor's secret (issuing
    /// one when they have none), or the cache's placeholder.
    fn take(&self) -> &str {
        self.used.store(true, Ordering::Relaxed);
        if let Some(placeholder) = &self.placeholder {
            return placeholder;
        }
        self.token.get_or_init(|| {
            let secret = match &self.existing {
                Some(secret) => secret,
                None => self.issued.get_or_init(|| self.csrf.issue()),
            };
            self.csrf.form_token(secret)
        })
    }
}

impl Object for CsrfSlot {}

impl Views {
    /// Loads the served build's manifest and compiles `templates`, so a
    /// template error stops start-up with its file, line and column.
    pub(crate) fn load(settings: &Settings, templates: &[&str]) -> Result<Views, Diagnostic> {
        let data = crate::site::templates::read_data(&settings.data_dir).map_err(|problems| {
            problems
                .into_iter()
                .next()
                .unwrap_or_else(|| Diagnostic::new("reading data/ failed"))
        })?;
        // Serving without a build: templates can still render, but asset()
        // will name the missing file.
        let manifest = crate::site::manifest::read(&settings.out_dir)?;
        let generation = generation(&manifest, &data, &settings.templates_dir);
        let images = image_outputs(&manifest);
        let outputs = OutputIndex::new(&manifest);
        let catalog = Arc::new(Catalog {
            base_url: settings.build().base_url.clone(),
            sri: settings.pages().sri,
            manifest,
            images,
            templates_dir: settings.templates_dir.clone(),
            warnings: Default::default(),
        });
        let mut env = functions::environment(&settings.templates_dir, catalog);
        env.add_function("csrf_field", |state: &State| -> Result<Value, Error> {
            let token = csrf_token(state)?;
            Ok(Value::from_safe_string(format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                crate::dynamic::csrf::FIELD,
                escape(&token)
            )))
        });
        env.add_function("csrf_token", |state: &State| -> Result<Value, Error> {
            csrf_token(state).map(Value::from)
        });
        for name in templates {
            if let Err(err) = env.get_template(name) {
                return Err(template_diagnostic(
                    &settings.templates_dir,
                    name,
                    name,
                    &err,
                ));
            }
        }
        Ok(Views {
            env,
            data: Value::from_serialize(data),
            generation,
            outputs,
            rewrites: Rewrites::of(settings),
            base_url: settings.build().base_url.clone(),
        })
    }

    /// Renders `name` with `context` (which should carry the CSRF slot).
    pub(crate) fn render(&self, name: &str, context: Value) -> Result<String, Error> {
        self.env.get_template(name)?.render(context)
    }
}

/// The identity of what route templates render with: the build (its
/// manifest names every hashed URL a page may link to), the data files and
/// every template (a route's template and whatever it includes or extends,
/// which only rendering would reveal). Eight hex digits of their digest: a
/// cache entry rendered under another generation links to assets this
/// build may not serve, so its key never matches.
fn generation(manifest: &Manifest, data: &serde_json::Value, templates_dir: &Path) -> Arc<str> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&crate::site::manifest::to_json(manifest));
    hasher.update(b"\0data\0");
    hasher.update(data.to_string().as_bytes());
    for entry in walkdir::WalkDir::new(templates_dir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|entry| entry.file_type().is_file())
    {
        // An unreadable template fails when rendered, whatever its digest.
        let contents = std::fs::read(entry.path()).unwrap_or_default();
        hasher.update(b"\0template\0");
        // Relative: servers deployed to different directories agree.
        let name = entry
            .path()
            .strip_prefix(templates_dir)
            .unwrap_or(entry.path());
        hasher.update(name.as_os_str().as_encoded_bytes());
        hasher.update(b"\0");
        hasher.update(&contents);
    }
    hasher.finalize().to_hex()[..8].into()
}

impl Views {
    /// `html`, rendered for the page at `path`, through the rewrites built
    /// pages get (minification, lazy loading, SRI, hints); with its `Link`
    /// header values. A page the rewriter cannot read is served as
    /// rendered, and logged.
    pub(crate) fn post_process(&self, html: String, path: &str) -> (String, Vec<String>) {
        let output = path.trim_start_matches('/');
        let page = PageRef {
            index: &self.outputs,
            base_url: &self.base_url,
            dir: output.rsplit_once('/').map_or("", |(dir, _)| dir),
        };
        match postprocess::rewrite(html.trim_start(), &page, self.rewrites) {
            Ok(rewritten) => (rewritten.html, rewritten.hints),
            Err(err) => {
                tracing::warn!("{path}: rewriting the rendered page: {err}");
                (html, Vec::new())
            }
        }
    }
}

/// Adds the CSRF slot to a template context.
pub(crate) fn csrf_variable(slot: &Arc<CsrfSlot>) -> (&'static str, Value) {
    (CSRF_VARIABLE, Value::from_dyn_object(Arc::clone(slot)))
}

fn csrf_token(state: &State) -> Result<String, Error> {
    let slot = state
        .lookup(CSRF_VARIABLE)
        .and_then(|value| value.downcast_object::<CsrfSlot>())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "csrf_field() is only available in templates of dynamic routes",
            )
        })?;
    Ok(slot.take().to_string())
}

/// What `image()` needs, rebuilt from the manifest's kiln extension.
fn image_outputs(manifest: &Manifest) -> HashMap<String, ImageOutputs> {
    manifest
        .iter()
        .filter_map(|(key, chunk)| {
            let format = Format::of(&chunk.file)?;
            let variants = chunk
                .variants
                .iter()
                .map(|variant| EmittedVariant {
                    file: variant.file.clone(),
                    width: variant.width,
                    height: variant.height,
                    format: variant.format,
                    bytes: Arc::default(),
                })
                .collect();
            let size = chunk.width.zip(chunk.height);
            Some((
                key.clone(),
                ImageOutputs {
                    format,
                    size,
                    variants,
                },
            ))
        })
        .collect()
}
