//! What every worker of the app reads: the current build's file table,
//! the counters, the log, the header policy and limits, and the dynamic
//! app when the site has one.

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;

use crate::config::MetricsAccess;
use crate::dynamic::app::DynamicApp;
use crate::http::forwarded::TrustedProxies;
use crate::http::headers::SecurityHeaders;
use crate::http::hosts::AllowedHosts;
use crate::http::metrics::Metrics;
use crate::http::pipeline::StaticRules;
use crate::http::table::Table;
use crate::server::access_log::AccessLog;

/// Everything the app reads, shared by all workers.
pub(crate) struct AppState {
    /// The current build; replaced whole when a new one is loaded, so each
    /// request sees exactly one build.
    pub table: Arc<ArcSwap<Table>>,
    pub metrics: Arc<Metrics>,
    /// Every subsystem's collector, encoded at `/metrics`.
    pub registry: Registry,
    pub log: AccessLog,
    pub security: SecurityHeaders,
    pub request_limits: RequestLimits,
    pub static_rules: StaticRules,
    pub metrics_access: MetricsAccess,
    /// The bearer token that opens `/metrics` on the public listener.
    pub metrics_token: Option<String>,
    /// Whose forwarded headers are believed, and whether kiln's own
    /// listener is https: together they say where a request came from.
    pub proxies: TrustedProxies,
    /// Hosts answered; others get 421.
    pub allowed_hosts: AllowedHosts,
    pub tls: bool,
    /// Declared routes and their database, when the site has any.
    pub dynamic: Option<Arc<DynamicApp>>,
}

/// Size limits on what a client sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLimits {
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
}
