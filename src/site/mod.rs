//! The contracts every command shares: what the build writes and the
//! server reads ([`manifest`], [`hints`], [`images`]), the template
//! environment both render with ([`templates`]), the content codings both
//! produce ([`codec`]), URL paths ([`url`]), the live-reload endpoints
//! ([`live_reload`]) and human-readable sizes ([`units`]).
//!
//! `build`, the server layers (`http`, `dynamic`, `server`) and `watch`
//! depend on this layer, never on each other (`watch` alone composes build
//! and serve).

pub mod codec;
pub mod hints;
pub mod images;
pub mod live_reload;
pub mod manifest;
pub mod templates;
pub mod units;
pub mod url;
