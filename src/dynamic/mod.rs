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
//! pools connections, [`secret`] keeps the key that signs cookies.

pub mod app;
pub mod cached;
pub mod csrf;
pub mod db;
pub mod form;
pub mod handle;
pub mod page;
pub mod produce;
pub mod response;
pub mod response_cache;
pub mod routes;
pub mod secret;
pub mod session;
pub mod session_use;
pub mod views;
