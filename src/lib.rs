//! kiln builds a website's assets and serves them in production.
//!
//! The library is organised in layers, each importing only those before it:
//! [`config`] and [`diagnostic`] (settings and how problems are reported),
//! [`site`] (the contracts build and serve share: manifest, hints,
//! templates, codecs, URLs), [`build`] (`assets/` into `dist/`), then the
//! server — [`http`] (the static engine), [`dynamic`] (declared routes over
//! a database, with [`client`] for the requests its jobs send) and
//! [`server`] (the process: assembly, concerns, tasks,
//! reload) — and, above them, [`watch`] (composes build and serve) and
//! [`loadtest`] (drives a server with the site's own traffic).
//! `docs/design.md` explains the layers.

pub mod build;
pub(crate) mod client;
pub mod config;
pub mod diagnostic;
pub mod dynamic;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http;
pub mod init;
pub mod loadtest;
pub mod server;
pub(crate) mod site;
pub mod watch;

pub use build::report::{BuildReport, Progress, Silent};
pub use build::{BuildSession, build, build_in, stage};
pub use config::{Config, Override, Settings};
pub use diagnostic::{BuildError, Diagnostic};
