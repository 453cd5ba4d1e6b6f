//! A Redis key prefix per test run, on the machine's Redis
//! (`KILN_TEST_REDIS_URL`), for servers sharing a cache.
#![allow(dead_code)]

/// Keys under a prefix of the test's own, dropped when it ends.
pub(crate) struct RedisPrefix {
    pub url: String,
    pub prefix: String,
}

impl RedisPrefix {
    pub(crate) fn new(test: &str) -> Option<RedisPrefix> {
        let url = super::require(
            std::env::var("KILN_TEST_REDIS_URL")
                .map_err(|_| "KILN_TEST_REDIS_URL is not set".to_string()),
            test,
        )?;
        Some(RedisPrefix {
            url,
            prefix: format!("kiln-test-{}-{test}:", std::process::id()),
        })
    }

    /// The overrides that put a server's cache on this Redis and prefix.
    pub(crate) fn overrides(&self) -> Vec<String> {
        vec![
            format!("cache.redis_url={:?}", self.url),
            format!("cache.redis_prefix={:?}", self.prefix),
            "cache.disk=false".into(),
        ]
    }
}

impl RedisPrefix {
    /// Members of a tag's set, under whatever site identity the server used.
    pub(crate) fn tag_members(&self, tag: &str) -> usize {
        let (url, pattern) = (self.url.clone(), format!("{}*:tag:{tag}", self.prefix));
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let client = redis::Client::open(url).unwrap();
                let mut connection = client.get_multiplexed_async_connection().await.unwrap();
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                let mut members = 0;
                for key in keys {
                    let count: usize = redis::cmd("ZCARD")
                        .arg(&key)
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                    members += count;
                }
                members
            })
        })
        .join()
        .unwrap()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let (url, pattern) = (self.url.clone(), format!("{}*", self.prefix));
        let _ = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let client = redis::Client::open(url).unwrap();
                let mut connection = client.get_multiplexed_async_connection().await.unwrap();
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                if !keys.is_empty() {
                    let _: () = redis::cmd("DEL")
                        .arg(keys)
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                }
            })
        })
        .join();
    }
}
