//! kiln builds a website's assets and serves them in production.
//!
//! The library is organised by pipeline stage: [`config`] reads `build.toml`,
//! [`build`] turns `assets/` into `dist/`, [`serve`] serves it, [`watch`]
//! rebuilds and live-reloads during development, and
//! [`diagnostic`] is how every stage reports a problem.

pub mod build;
pub mod config;
pub mod diagnostic;
pub mod serve;
pub mod watch;

pub use build::report::{BuildReport, Progress, Silent};
pub use build::{BuildSession, build, build_in};
pub use config::{Config, Override, Settings};
pub use diagnostic::{BuildError, Diagnostic};
