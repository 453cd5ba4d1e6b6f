//! The invalidation channel over PostgreSQL, for servers that share a
//! database but no Redis: each invalidated tag is sent with `NOTIFY` on a
//! channel named after the site, and every server `LISTEN`s on it over one
//! connection of its own, which also sends. Servers on one database and
//! different sites (different secret keys or `cache.redis_prefix`) use
//! different channels.
//!
//! PostgreSQL delivers a notification to every session listening when it
//! is sent, and to none that connects later: a server whose listening
//! connection dropped may have missed some, so it drops its own levels
//! when it listens again (as with Redis, see `RouteCache::resubscribed`).
//! A notification that could not be sent stays in the cache's outbox.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::PURGE_ALL_TAG;

/// Longest sending one notification may take before it is postponed.
const SEND_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest connecting and starting to listen may take.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// PostgreSQL refuses payloads of 8,000 bytes or more.
const MAX_PAYLOAD: usize = 7999;

/// Why the channel could not be opened or listened to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotifyError {
    #[error("database.url (cache invalidations): {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database.url (cache invalidations): no answer within {0:?}")]
    Timeout(Duration),
}

/// The channel of one site on one PostgreSQL database.
pub(crate) struct PgChannel {
    config: tokio_postgres::Config,
    /// `kiln_cache_` and a digest of the site's identity: a valid
    /// identifier of any site, well under PostgreSQL's 63 bytes.
    channel: String,
    /// The listening connection's client, used to send as well; a sender
    /// of its own when nothing listens (`kiln cache purge` offline).
    client: Mutex<Option<Arc<Client>>>,
    pub errors: AtomicU64,
}

impl PgChannel {
    /// Checks the URL; nothing connects until [`PgChannel::listen`] or the
    /// first [`PgChannel::send`]. `site` names the site (prefix and identity).
    pub(crate) fn new(url: &str, site: &str) -> Result<PgChannel, NotifyError> {
        let mut config: tokio_postgres::Config = url.parse()?;
        config.connect_timeout(LISTEN_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("kiln cache invalidations");
        }
        let digest = blake3::hash(site.as_bytes()).to_hex();
        Ok(PgChannel {
            config,
            channel: format!("kiln_cache_{}", &digest[..24]),
            client: Mutex::default(),
            errors: AtomicU64::new(0),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Client>>> {
        self.client
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Connects, spawning the task that reads the connection's messages;
    /// those that are this channel's notifications go to `tags`.
    async fn connect(
        &self,
        tags: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<Arc<Client>, NotifyError> {
        let (client, mut connection) =
            tokio::time::timeout(LISTEN_TIMEOUT, self.config.connect(NoTls))
                .await
                .map_err(|_| NotifyError::Timeout(LISTEN_TIMEOUT))??;
        let channel = self.channel.clone();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            use futures_util::StreamExt;
            // Ends with the connection (an error or the client dropped), or
            // when nobody reads the tags any more.
            while let Some(Ok(message)) = messages.next().await {
                let AsyncMessage::Notification(notification) = message else {
                    continue;
                };
                let (Some(tags), true) = (&tags, notification.channel() == channel) else {
                    continue;
                };
                if let Ok(tag) = serde_json::from_str::<String>(notification.payload())
                    && tags.send(tag).is_err()
                {
                    break;
                }
            }
        });
        let client = Arc::new(client);
        *self.slot() = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Listens on the channel over a new connection: the tags other servers
    /// (and this one) invalidate, until the connection drops.
    pub(crate) async fn listen(
        &self,
    ) -> Result<impl futures_util::Stream<Item = String> + use<>, NotifyError> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let client = self.connect(Some(sender)).await?;
        tokio::time::timeout(
            LISTEN_TIMEOUT,
            client.batch_execute(&format!("LISTEN {}", self.channel)),
        )
        .await
        .map_err(|_| NotifyError::Timeout(LISTEN_TIMEOUT))??;
        Ok(futures_util::stream::unfold(
            receiver,
            |mut receiver| async {
                let tag = receiver.recv().await?;
                Some((tag, receiver))
            },
        ))
    }

    /// Sends `tag` to every listening server; `false` when PostgreSQL did
    /// not take it in time (the caller postpones it).
    pub(crate) async fn send(&self, tag: &str) -> bool {
        let mut payload = serde_json::Value::from(tag).to_string();
        if payload.len() > MAX_PAYLOAD {
            // Too long to send (a purge of a very long URL): dropping
            // everything is never stale.
            payload = serde_json::Value::from(PURGE_ALL_TAG).to_string();
        }
        let sent = tokio::time::timeout(SEND_TIMEOUT, async {
            let open = self.slot().clone().filter(|client| !client.is_closed());
            let client = match open {
                Some(client) => client,
                None => self.connect(None).await?,
            };
            client
                .execute("SELECT pg_notify($1, $2)", &[&self.channel, &payload])
                .await?;
            Ok::<_, NotifyError>(())
        })
        .await;
        let delivered = matches!(sent, Ok(Ok(())));
        if !delivered {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        delivered
    }
}
