//! The static HTTP engine: the build's output served from a file table
//! ([`table`]) with every header precomputed. One ordered pipeline
//! ([`pipeline`]): limits and method, path resolution ([`resolve`]),
//! content-coding negotiation ([`negotiate`]), preconditions
//! ([`conditional`]), ranges ([`range`]), then a response with the header
//! policy of [`headers`] and a body from [`body`]. [`metrics`] counts what
//! it answered.

pub(crate) mod body;
pub(crate) mod conditional;
pub(crate) mod forwarded;
pub(crate) mod headers;
pub(crate) mod hosts;
pub(crate) mod metrics;
pub(crate) mod negotiate;
#[cfg(test)]
mod oracle_tests;
pub(crate) mod pipeline;
pub(crate) mod range;
pub(crate) mod request_body;
pub(crate) mod resolve;
pub(crate) mod table;
