//! Level 3: Redis, shared by several servers. Entries live under
//! `PREFIX e:KEY` with a TTL of their remaining lifetime; each tag is a set
//! `PREFIX t:TAG` of keys, so invalidation deletes exactly the tagged keys.
//! Every invalidation is also published on `PREFIX invalidations`, so the
//! other servers drop the tag from their own memory and disk levels.
//! Redis is an optimisation: a slow or missing Redis is a miss (each call is
//! bounded by a timeout), never a failed request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::entry::{Entry, now_ms};

/// Longest a cache call may take before it counts as a miss.
const TIMEOUT: Duration = Duration::from_millis(250);

/// The Redis level.
pub struct Redis {
    client: redis::Client,
    /// Opened on first use; it reconnects by itself afterwards.
    connection: tokio::sync::OnceCell<ConnectionManager>,
    prefix: String,
    pub errors: AtomicU64,
}

impl Redis {
    /// Checks the URL; the connection opens on first use (or [`Redis::ping`]).
    pub fn new(url: &str, prefix: &str) -> Result<Redis, String> {
        let client = redis::Client::open(url).map_err(|err| format!("cache.redis_url: {err}"))?;
        Ok(Redis {
            client,
            connection: tokio::sync::OnceCell::new(),
            prefix: prefix.to_string(),
            errors: AtomicU64::new(0),
        })
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        self.connection
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()))
            .await
            .cloned()
    }

    /// Connects and pings, so a wrong URL stops start-up.
    pub async fn ping(&self) -> Result<(), String> {
        let call = async {
            let mut connection = self.connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("cache.redis_url: {err}")),
            Err(_) => Err("cache.redis_url: no answer within 5 s".into()),
        }
    }

    fn channel(&self) -> String {
        format!("{}invalidations", self.prefix)
    }

    /// Subscribes to the tags other servers invalidate.
    pub async fn listen(&self) -> Result<impl futures_util::Stream<Item = String> + use<>, String> {
        use futures_util::StreamExt;
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(self.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(Duration::from_secs(5), subscribe)
            .await
            .map_err(|_| "cache.redis_url: subscribing timed out".to_string())?
            .map_err(|err| format!("cache.redis_url: subscribing: {err}"))?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|message| std::future::ready(message.get_payload::<String>().ok())))
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}e:{key}", self.prefix)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}t:{tag}", self.prefix)
    }

    /// Runs a call on the connection with the timeout; a failure is
    /// counted and is `None`.
    async fn bounded<T, F, Fut>(&self, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async { call(self.connection().await?).await };
        match tokio::time::timeout(TIMEOUT, attempt).await {
            Ok(Ok(value)) => Some(value),
            _ => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub async fn get(&self, key: &str) -> Option<Entry> {
        let entry_key = self.entry_key(key);
        let value: Option<Vec<u8>> = self
            .bounded(|mut connection| async move { connection.get(entry_key).await })
            .await
            .flatten();
        Entry::decode(&value?)
    }

    pub async fn put(&self, key: &str, entry: &Entry) {
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
        for tag in &entry.tags {
            let tag_key = self.tag_key(tag);
            pipe.cmd("SADD").arg(&tag_key).arg(&entry_key).ignore();
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

    /// Deletes every entry tagged `tag`; returns how many.
    pub async fn invalidate(&self, tag: &str) -> usize {
        let tag_key = self.tag_key(tag);
        let members = tag_key.clone();
        let keys: Vec<String> = self
            .bounded(|mut connection| async move { connection.smembers(members).await })
            .await
            .unwrap_or_default();
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("DEL").arg(key).ignore();
        }
        pipe.cmd("DEL").arg(&tag_key).ignore();
        pipe.cmd("PUBLISH").arg(self.channel()).arg(tag).ignore();
        let _: Option<()> = self
            .bounded(|mut connection| async move { pipe.query_async(&mut connection).await })
            .await;
        keys.len()
    }
}
