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

/// A Redis server of the test's own on a free port, for tests that stop
/// and restart it (never the machine's). Stopped when dropped.
pub(crate) struct OwnRedis {
    pub port: u16,
    process: Option<std::process::Child>,
}

impl OwnRedis {
    /// `None` (with the reason printed) when `redis-server` is missing.
    pub(crate) fn start(test: &str) -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .ok()?
            .port();
        let mut redis = OwnRedis {
            port,
            process: None,
        };
        let started = redis.spawn();
        super::require(started.map(|()| redis), test)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|err| format!("redis-server: {err}"))?;
        self.process = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err("redis-server did not start".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the server (its data goes with it: nothing is saved).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn().expect("redis-server restarts");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
