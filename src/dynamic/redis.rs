//! One Redis connection holder for every part of the dynamic app that uses
//! Redis (the response cache's shared level, the session store): the URL
//! checked once, a connection opened on first use that reconnects by
//! itself, every call bounded by a timeout, and keys under a prefix.

use std::time::Duration;

use redis::aio::ConnectionManager;

/// How long start-up waits for Redis to answer.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a bounded call gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// A Redis server, its key prefix and its call timeout.
/// Why a Redis store could not be opened or reached at start-up; names the
/// setting that holds the URL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("{setting}: {error}")]
    Redis {
        setting: &'static str,
        error: redis::RedisError,
    },
    #[error("{setting}: no answer within {timeout:?}")]
    Timeout {
        setting: &'static str,
        timeout: Duration,
    },
}

pub(crate) struct RedisConnection {
    client: redis::Client,
    /// Opened on first use; it reconnects by itself afterwards.
    connection: tokio::sync::OnceCell<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    /// The setting the URL came from, for messages (`cache.redis_url`).
    setting: &'static str,
}

impl RedisConnection {
    /// Checks the URL; the connection opens on first use (or [`Self::ping`]).
    pub(crate) fn new(
        setting: &'static str,
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<RedisConnection, StartError> {
        let client =
            redis::Client::open(url).map_err(|error| StartError::Redis { setting, error })?;
        Ok(RedisConnection {
            client,
            connection: tokio::sync::OnceCell::new(),
            prefix: prefix.to_string(),
            timeout,
            setting,
        })
    }

    /// `name` under this connection's prefix.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The client, for what a multiplexed connection cannot do (pub/sub).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        self.connection
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()))
            .await
            .cloned()
    }

    /// Connects and pings, so a wrong URL stops start-up.
    pub(crate) async fn ping(&self) -> Result<(), StartError> {
        let setting = self.setting;
        let call = async {
            let mut connection = self.connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(START_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(StartError::Redis { setting, error }),
            Err(_) => Err(StartError::Timeout {
                setting,
                timeout: START_TIMEOUT,
            }),
        }
    }

    /// Runs `call` on the connection within the timeout.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Result<T, CallError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async { call(self.connection().await?).await };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CallError::Timeout(self.timeout)),
        }
    }
}
