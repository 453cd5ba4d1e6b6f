//! The contracts every command shares: what the build writes and the
//! server reads ([`manifest`], [`hints`], [`images`], the record of kept
//! builds in [`builds`]), the template
//! environment both render with ([`templates`]) and the rewrites both
//! apply to rendered pages ([`postprocess`]), the content codings both
//! produce ([`codec`]), URL paths ([`url`]), the live-reload endpoints
//! ([`live_reload`]) and human-readable sizes ([`units`]).
//!
//! `build`, the server layers (`http`, `dynamic`, `server`) and `watch`
//! depend on this layer, never on each other (`watch` alone composes build
//! and serve).

pub(crate) mod builds;
pub(crate) mod codec;
pub(crate) mod hints;
pub(crate) mod images;
pub(crate) mod live_reload;
pub(crate) mod manifest;
pub(crate) mod postprocess;
pub(crate) mod templates;
pub(crate) mod units;
pub(crate) mod url;
