//! `kiln check`: compiles routes and their templates, applies pending
//! migrations and explains every route query, without serving.

use crate::config::Settings;
use crate::dynamic::app::{DynamicApp, Stores};
use crate::dynamic::{db, routes, session};
use crate::server::error::{Cause, ServeError};

/// What `kiln check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub routes: usize,
    pub applied: Vec<String>,
    pub warnings: Vec<String>,
}

/// `kiln check`: compiles routes and their templates, applies pending
/// migrations and explains every route query, without serving.
pub fn check(settings: &Settings) -> Result<CheckReport, ServeError> {
    if !settings.uses_database() {
        return Ok(CheckReport::default());
    }
    let dynamic = DynamicApp::open(settings, false, Stores::Closed, session::Clock::default())
        .map_err(Cause::Open)?;
    actix_web::rt::System::new().block_on(async {
        let migrations = settings.root.join(&settings.database().migrations);
        let applied = db::migrate::run(&dynamic.database, &migrations)
            .await
            .map_err(Cause::Migrations)?;
        let scans = routes::plan::check(&dynamic.database, &dynamic.routes)
            .await
            .map_err(Cause::PlanCheck)?;
        let mut warnings = routes::plan::unbounded_integers(&dynamic.routes);
        warnings.extend(scans.iter().map(ToString::to_string));
        Ok(CheckReport {
            routes: dynamic.routes.routes.len(),
            applied,
            warnings,
        })
    })
}
