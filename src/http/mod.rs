//! The static HTTP engine: the build's output served from a file table
//! ([`table`]) with every header precomputed. One ordered pipeline
//! ([`pipeline`]): limits and method, path resolution ([`resolve`]),
//! content-coding negotiation ([`negotiate`]), preconditions
//! ([`conditional`]), ranges ([`range`]), then a response with the header
//! policy of [`headers`] and a body from [`body`]. [`metrics`] counts what
//! it answered.

pub mod body;
pub mod conditional;
pub mod headers;
pub mod metrics;
pub mod negotiate;
pub mod pipeline;
pub mod range;
pub mod resolve;
pub mod table;
