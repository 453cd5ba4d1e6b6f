//! Level 3: Redis, shared by several servers. Entries live under
//! `PREFIX e:KEY` with a TTL of their remaining lifetime; each tag is a
//! sorted set `PREFIX tag:TAG` of keys scored by when they expire, so
//! invalidation deletes exactly the tagged keys, and members whose entries
//! have expired are pruned each time the tag gets a new one (a tag on a
//! route with many keys does not grow without bound).
//! Every invalidation is also published on `PREFIX invalidations`, so the
//! other servers drop the tag from their own memory and disk levels.
//! Redis is an optimisation: a slow or missing Redis is a miss (each call is
//! bounded by a timeout), never a failed request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::entry::{Entry, now_ms};
use crate::dynamic::redis::{RedisConnection, StartError};

/// Longest a cache call may take before it counts as a miss.
const TIMEOUT: Duration = Duration::from_millis(250);

/// The Redis level.
pub(crate) struct Redis {
    connection: RedisConnection,
    pub errors: AtomicU64,
}

impl Redis {
    /// Checks the URL; the connection opens on first use (or [`Redis::ping`]).
    pub(crate) fn new(url: &str, prefix: &str) -> Result<Redis, StartError> {
        Ok(Redis {
            connection: RedisConnection::new("cache.redis_url", url, prefix, TIMEOUT)?,
            errors: AtomicU64::new(0),
        })
    }

    /// Connects and pings, so a wrong URL stops start-up.
    pub(crate) async fn ping(&self) -> Result<(), StartError> {
        self.connection.ping().await
    }

    fn channel(&self) -> String {
        self.connection.key("invalidations")
    }

    /// Subscribes to the tags other servers invalidate.
    pub(crate) async fn listen(
        &self,
    ) -> Result<impl futures_util::Stream<Item = String> + use<>, StartError> {
        use futures_util::StreamExt;
        let subscribe = async {
            let mut pubsub = self.connection.client().get_async_pubsub().await?;
            pubsub.subscribe(self.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let setting = "cache.redis_url (subscribing)";
        let timeout = Duration::from_secs(5);
        let pubsub = tokio::time::timeout(timeout, subscribe)
            .await
            .map_err(|_| StartError::Timeout { setting, timeout })?
            .map_err(|error| StartError::Redis { setting, error })?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|message| std::future::ready(message.get_payload::<String>().ok())))
    }

    fn entry_key(&self, key: &str) -> String {
        self.connection.key(&format!("e:{key}"))
    }

    fn tag_key(&self, tag: &str) -> String {
        self.connection.key(&format!("tag:{tag}"))
    }

    /// Runs a call on the connection with the timeout; a failure is
    /// counted and is `None`.
    async fn bounded<T, F, Fut>(&self, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match self.connection.call(call).await {
            Ok(value) => Some(value),
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Entry> {
        let entry_key = self.entry_key(key);
        let value: Option<Vec<u8>> = self
            .bounded(|mut connection| async move { connection.get(entry_key).await })
            .await
            .flatten();
        Entry::decode(&value?)
    }

    pub(crate) async fn put(&self, key: &str, entry: &Entry) {
        let ttl = entry.remaining_ms(now_ms());
        if ttl == 0 {
            return;
        }
        let entry_key = self.entry_key(key);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&entry_key)
            .arg(entry.encode())
            .arg("PX")
            .arg(ttl)
            .ignore();
        let now = now_ms();
        for tag in &entry.tags {
            let tag_key = self.tag_key(tag);
            pipe.cmd("ZADD")
                .arg(&tag_key)
                .arg(entry.stale_until_ms)
                .arg(&entry_key)
                .ignore();
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&tag_key)
                .arg("-inf")
                .arg(now)
                .ignore();
            // The set lives as long as its longest-lived entry.
            pipe.cmd("PEXPIRE")
                .arg(&tag_key)
                .arg(ttl)
                .arg("NX")
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&tag_key)
                .arg(ttl)
                .arg("GT")
                .ignore();
        }
        let _: Option<()> = self
            .bounded(|mut connection| async move { pipe.query_async(&mut connection).await })
            .await;
    }

    /// Deletes every entry tagged `tag` and tells the other servers;
    /// returns how many entries, or `None` when Redis did not acknowledge
    /// (the caller retries: see `RouteCache::retry_invalidations`).
    pub(crate) async fn invalidate(&self, tag: &str) -> Option<usize> {
        let tag_key = self.tag_key(tag);
        let members = tag_key.clone();
        let keys: Vec<String> = self
            .bounded(|mut connection| async move { connection.zrange(members, 0, -1).await })
            .await?;
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("DEL").arg(key).ignore();
        }
        pipe.cmd("DEL").arg(&tag_key).ignore();
        pipe.cmd("PUBLISH").arg(self.channel()).arg(tag).ignore();
        let _: () = self
            .bounded(|mut connection| async move { pipe.query_async(&mut connection).await })
            .await?;
        Some(keys.len())
    }
}
