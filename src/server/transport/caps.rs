//! How many connections may be open at once, in all and from one client
//! address (`server.max_connections`, `server.max_connections_per_ip`).
//!
//! A connection over a cap is closed as soon as it is accepted, before
//! TLS or HTTP spend anything on it; over plain HTTP it is first told so
//! with a 503 and `Retry-After`, written without waiting. The deadlines of
//! [`super::guard`] make every connection give its place back in bounded
//! time, so a cap holds an attacker to a few seconds of a bounded share.
//! The trusted proxies are exempt from the per-address cap: every client
//! behind them shares their address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::http::forwarded::TrustedProxies;
use crate::http::metrics::{ConnectionGuard, ConnectionRefused, Metrics};

/// The caps, shared by every worker.
pub(crate) struct ConnectionCaps {
    max_connections: usize,
    /// 0: no per-address cap.
    max_per_address: usize,
    open: AtomicUsize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
    exempt: TrustedProxies,
    metrics: Arc<Metrics>,
}

impl ConnectionCaps {
    pub(crate) fn new(
        max_connections: usize,
        max_per_address: usize,
        exempt: TrustedProxies,
        metrics: Arc<Metrics>,
    ) -> ConnectionCaps {
        ConnectionCaps {
            max_connections,
            max_per_address,
            open: AtomicUsize::new(0),
            by_address: Mutex::new(HashMap::new()),
            exempt,
            metrics,
        }
    }

    /// A place for a connection from `peer`, or the cap it would exceed.
    pub(crate) fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Slot, ConnectionRefused> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refused(ConnectionRefused::MaxConnections));
        }
        let counted = match peer.map(|ip| ip.to_canonical()) {
            Some(ip) if self.max_per_address > 0 && !self.exempt.trusts(ip) => {
                let mut by_address = self
                    .by_address
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let open = by_address.entry(ip).or_insert(0);
                if *open >= self.max_per_address {
                    drop(by_address);
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    return Err(self.refused(ConnectionRefused::MaxConnectionsPerIp));
                }
                *open += 1;
                Some(ip)
            }
            _ => None,
        };
        Ok(Slot {
            caps: Arc::clone(self),
            counted,
            _open: self.metrics.connection(),
        })
    }

    fn refused(&self, why: ConnectionRefused) -> ConnectionRefused {
        self.metrics.connection_refused(why);
        why
    }
}

/// A connection's place under the caps, given back when it is dropped.
pub(crate) struct Slot {
    caps: Arc<ConnectionCaps>,
    /// The address counted under the per-address cap.
    counted: Option<IpAddr>,
    _open: ConnectionGuard,
}

impl Slot {
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.caps.metrics
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.caps.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.counted {
            let mut by_address = self
                .caps
                .by_address
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(open) = by_address.get_mut(&ip) {
                *open -= 1;
                if *open == 0 {
                    by_address.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ForwardedHeader;

    fn caps(max: usize, per_address: usize, exempt: &[&str]) -> Arc<ConnectionCaps> {
        let exempt = exempt.iter().map(|net| net.parse().unwrap()).collect();
        Arc::new(ConnectionCaps::new(
            max,
            per_address,
            TrustedProxies::new(exempt, ForwardedHeader::XForwarded),
            Arc::new(Metrics::default()),
        ))
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn one_address_gets_its_share_and_others_still_get_in() {
        let caps = caps(10, 2, &[]);
        let first = caps.admit(ip("192.0.2.1")).unwrap();
        let _second = caps.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            caps.admit(ip("192.0.2.1")).err(),
            Some(ConnectionRefused::MaxConnectionsPerIp)
        );
        // The same client over IPv4-mapped IPv6 is the same address.
        assert!(caps.admit(ip("::ffff:192.0.2.1")).is_err());
        let _other = caps.admit(ip("192.0.2.2")).unwrap();
        drop(first);
        let _again = caps.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(caps.open.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_global_cap_refuses_everyone_until_a_place_is_given_back() {
        let caps = caps(2, 0, &[]);
        let first = caps.admit(ip("192.0.2.1")).unwrap();
        let _second = caps.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(
            caps.admit(ip("192.0.2.3")).err(),
            Some(ConnectionRefused::MaxConnections)
        );
        drop(first);
        assert!(caps.admit(ip("192.0.2.3")).is_ok());
    }

    #[test]
    fn trusted_proxies_are_not_held_to_the_per_address_cap() {
        let caps = caps(10, 1, &["10.0.0.0/8"]);
        let _one = caps.admit(ip("10.1.2.3")).unwrap();
        let _two = caps.admit(ip("10.1.2.3")).unwrap();
        assert!(caps.by_address.lock().unwrap().is_empty());
    }
}
