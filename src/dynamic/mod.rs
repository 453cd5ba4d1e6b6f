//! The dynamic application: declared `[[route]]`s answered over a pooled
//! database, with forms, sessions and a response cache.
//!
//! [`app`] holds its state, opened once. A request selected for a route
//! goes through [`handle`]: a form to [`form`], a GET to [`cached`] (the
//! [`response_cache`]) or straight to [`produce`] (queries, then [`page`]
//! renders the template), and [`response`] makes the HTTP response
//! (entity tag, preconditions, coding). [`routes`] compiles the
//! declarations, [`views`] the route templates, [`csrf`] guards forms,
//! [`session`] stores sessions and [`session_use`] applies them, [`db`]
//! pools connections, [`redis`] holds the Redis connection the cache and
//! sessions share the code of, [`secret`] keeps the key that signs cookies,
//! [`purge`] resolves what an operator drops from the cache, and [`jobs`]
//! keeps the background jobs' queue and runs its workers.

pub(crate) mod admission;
pub(crate) mod app;
pub(crate) mod cached;
pub(crate) mod csrf;
pub mod db;
pub(crate) mod form;
pub(crate) mod handle;
pub mod jobs;
mod maintenance;
pub(crate) mod page;
pub(crate) mod produce;
pub mod purge;
pub(crate) mod redis;
pub(crate) mod response;
pub(crate) mod response_cache;
pub(crate) mod routes;
pub(crate) mod secret;
pub mod session;
pub(crate) mod session_use;
pub(crate) mod views;
