//! Reading a request body within its limits: no more than
//! `server.max_body_bytes`, and no slower than `server.min_body_rate` on
//! average once `server.body_timeout_secs` have passed (Kestrel's minimum
//! data rate; nginx's `client_body_timeout` only bounds the gap between
//! two reads, which a client sending a byte a second never exceeds).
//!
//! The rate is checked while the handler waits for the body, and only
//! then, so a slow handler is never mistaken for a slow client.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::http::pipeline::text;

/// `[server]`'s bounds on a request body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub(crate) max_bytes: u64,
    /// Any body may take this long.
    pub(crate) grace: Duration,
    /// Bytes per second a body must average past the grace period.
    pub(crate) min_rate: u64,
}

impl BodyLimits {
    /// When a body that has delivered `received` bytes since `started`
    /// falls below the minimum rate.
    fn deadline(&self, started: Instant, received: u64) -> Instant {
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate.max(1) as f64);
        started + self.grace.max(earned)
    }
}

/// Reads the whole body, or answers why not: 413 over the size limit,
/// 408 (closing the connection) below the rate, 400 if the client broke
/// off.
pub(crate) async fn read(
    mut payload: Payload,
    limits: BodyLimits,
) -> Result<Vec<u8>, HttpResponse> {
    let started = Instant::now();
    let mut body = Vec::new();
    loop {
        let deadline = limits.deadline(started, body.len() as u64);
        let chunk = match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(body),
            Err(_) => return Err(too_slow()),
        };
        let chunk = chunk.map_err(|_| {
            text(
                StatusCode::BAD_REQUEST,
                "The request body could not be read\n",
            )
        })?;
        if (body.len() + chunk.len()) as u64 > limits.max_bytes {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large\n",
            ));
        }
        body.extend_from_slice(&chunk);
    }
}

/// 408, and the connection closed: the rest of the body may still come.
fn too_slow() -> HttpResponse {
    let mut response = text(
        StatusCode::REQUEST_TIMEOUT,
        "The request body arrived too slowly (server.min_body_rate)\n",
    );
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_earns_time_at_the_minimum_rate_after_the_grace_period() {
        let limits = BodyLimits {
            max_bytes: 1 << 20,
            grace: Duration::from_secs(10),
            min_rate: 1000,
        };
        let started = Instant::now();
        assert_eq!(
            limits.deadline(started, 0),
            started + Duration::from_secs(10)
        );
        assert_eq!(
            limits.deadline(started, 5_000),
            started + Duration::from_secs(10)
        );
        assert_eq!(
            limits.deadline(started, 30_000),
            started + Duration::from_secs(30)
        );
    }
}
