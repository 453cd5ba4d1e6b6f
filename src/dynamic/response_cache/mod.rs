//! The route cache: rendered responses of cached routes kept in up to three
//! levels. L1 is memory (moka: bounded by bytes, per-entry TTL, TinyLFU
//! admission), L2 is disk (sled, survives restarts, bounded by bytes), L3
//! is Redis (optional, shared by several servers). A lookup falls through
//! L1 → L2 → L3, and what a lower level finds fills the levels above it;
//! a miss everywhere runs the route once however many requests are waiting
//! for the same key ([`RouteCache::get_or_fill`]). Write routes drop
//! entries by tag, through a tag index on every level (never a scan).

pub(crate) mod disk;
pub(crate) mod entry;
pub(crate) mod redis;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use tokio::sync::OnceCell;

use crate::config::CacheConfig;
use crate::dynamic::redis::StartError;
use crate::http::metrics::{Exposition, Histogram};
use disk::Disk;
use entry::{Entry, Freshness, now_ms};

/// A cache level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Memory,
    Disk,
    Redis,
}

const LEVELS: [Level; 3] = [Level::Memory, Level::Disk, Level::Redis];

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Memory => "memory",
            Level::Disk => "disk",
            Level::Redis => "redis",
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct CacheMetrics {
    hits: [AtomicU64; 3],
    misses: [AtomicU64; 3],
    memory_evictions: Arc<AtomicU64>,
    fills: Histogram,
    stale_served: AtomicU64,
    invalidated: AtomicU64,
}

impl CacheMetrics {
    fn hit(&self, level: Level) {
        self.hits[level as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn miss(&self, level: Level) {
        self.misses[level as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stale_served(&self) {
        self.stale_served.fetch_add(1, Ordering::Relaxed);
    }
}

type Tags = Arc<Mutex<HashMap<String, HashSet<Arc<str>>>>>;

/// Fills in progress, by key: later requests for the key wait on the cell.
type Inflight = Mutex<HashMap<Arc<str>, Arc<OnceCell<Arc<Entry>>>>>;

/// Every level, the in-flight fills and the memory level's tag index.
pub(crate) struct RouteCache {
    memory: moka::sync::Cache<Arc<str>, Arc<Entry>>,
    memory_tags: Tags,
    memory_bytes: u64,
    pub disk: Option<Disk>,
    redis: Option<redis::Redis>,
    inflight: Inflight,
    refreshing: Mutex<HashSet<Arc<str>>>,
    pub metrics: CacheMetrics,
}

/// Entries leave memory when they can no longer be served at all.
struct UntilUnservable;

impl moka::Expiry<Arc<str>, Arc<Entry>> for UntilUnservable {
    fn expire_after_create(
        &self,
        _: &Arc<str>,
        entry: &Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(entry.remaining_ms(now_ms())))
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        entry: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(Duration::from_millis(entry.remaining_ms(now_ms())))
    }
}

/// Why a level of the route cache could not be opened or reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    #[error("cache.disk_dir {}: {error}", dir.display())]
    Disk { dir: PathBuf, error: sled::Error },
    #[error("{0}")]
    Redis(StartError),
}

impl RouteCache {
    /// Opens the levels `config` asks for (`root` resolves the disk level's
    /// directory). Redis connects on first use; see [`RouteCache::check`].
    /// `site` (the site identity) follows `cache.redis_prefix` in every
    /// Redis key and channel.
    pub(crate) fn open(
        config: &CacheConfig,
        root: &Path,
        site: &str,
    ) -> Result<RouteCache, CacheError> {
        let metrics = CacheMetrics::default();
        let memory_tags: Tags = Arc::default();
        let evictions = Arc::clone(&metrics.memory_evictions);
        let listener_tags = Arc::clone(&memory_tags);
        let memory = moka::sync::Cache::builder()
            .max_capacity(config.memory_bytes)
            .weigher(|_: &Arc<str>, entry: &Arc<Entry>| {
                entry.weight().min(u64::from(u32::MAX)) as u32
            })
            .expire_after(UntilUnservable)
            .eviction_listener(move |key: Arc<Arc<str>>, entry: Arc<Entry>, cause| {
                if cause == RemovalCause::Size {
                    evictions.fetch_add(1, Ordering::Relaxed);
                }
                if cause != RemovalCause::Replaced {
                    untag(&listener_tags, &key, &entry.tags);
                }
            })
            .build();
        let disk = if config.disk {
            Some(Disk::open(&root.join(&config.disk_dir), config.disk_bytes)?)
        } else {
            None
        };
        let redis = if config.redis_url.is_empty() {
            None
        } else {
            Some(
                redis::Redis::new(
                    &config.redis_url,
                    &format!("{}{site}:", config.redis_prefix),
                )
                .map_err(CacheError::Redis)?,
            )
        };
        Ok(RouteCache {
            memory,
            memory_tags,
            memory_bytes: config.memory_bytes,
            disk,
            redis,
            inflight: Mutex::default(),
            refreshing: Mutex::default(),
            metrics,
        })
    }

    /// Reaches Redis, when configured, so a wrong URL stops start-up.
    pub(crate) async fn check(&self) -> Result<(), CacheError> {
        match &self.redis {
            Some(redis) => redis.ping().await.map_err(CacheError::Redis),
            None => Ok(()),
        }
    }

    /// The entry under `key` from the highest level that has a servable
    /// one; levels above the one that had it are filled.
    pub(crate) async fn lookup(&self, key: &Arc<str>) -> Option<Arc<Entry>> {
        let now = now_ms();
        if let Some(entry) = self.memory.get(key)
            && entry.freshness(now) != Freshness::Expired
        {
            self.metrics.hit(Level::Memory);
            return Some(entry);
        }
        self.metrics.miss(Level::Memory);
        if let Some(disk) = &self.disk {
            if let Some(entry) = disk.get(key) {
                self.metrics.hit(Level::Disk);
                let entry = Arc::new(entry);
                self.remember(key, &entry);
                return Some(entry);
            }
            self.metrics.miss(Level::Disk);
        }
        if let Some(redis) = &self.redis {
            if let Some(entry) = redis
                .get(key)
                .await
                .filter(|entry| entry.freshness(now) != Freshness::Expired)
            {
                self.metrics.hit(Level::Redis);
                let entry = Arc::new(entry);
                self.remember(key, &entry);
                if let Some(disk) = &self.disk {
                    disk.put(key, &entry);
                }
                return Some(entry);
            }
            self.metrics.miss(Level::Redis);
        }
        None
    }

    /// Stores `entry` in every level.
    pub(crate) async fn store(&self, key: &Arc<str>, entry: &Arc<Entry>) {
        self.remember(key, entry);
        if let Some(disk) = &self.disk {
            disk.put(key, entry);
        }
        if let Some(redis) = &self.redis {
            redis.put(key, entry).await;
        }
    }

    /// The entry under `key`, or the one `fill` makes. Concurrent misses
    /// for one key wait for a single `fill`; when it fails, the next waiter
    /// tries its own.
    pub(crate) async fn get_or_fill<F, Fut, E>(
        &self,
        key: &Arc<str>,
        fill: F,
    ) -> Result<Arc<Entry>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Entry, E>>,
    {
        if let Some(entry) = self.lookup(key).await {
            return Ok(entry);
        }
        let cell = {
            let mut inflight = self
                .inflight
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            Arc::clone(inflight.entry(Arc::clone(key)).or_default())
        };
        let result = cell
            .get_or_try_init(|| async {
                // A fill that finished between our lookup and this cell.
                if let Some(entry) = self.memory.get(key)
                    && entry.freshness(now_ms()) == Freshness::Fresh
                {
                    return Ok(entry);
                }
                let entry = self.fill(key, fill).await?;
                Ok(entry)
            })
            .await
            .cloned();
        let mut inflight = self
            .inflight
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if inflight
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            inflight.remove(key);
        }
        result
    }

    /// Runs `fill`, times it, and stores what it made.
    pub(crate) async fn fill<F, Fut, E>(&self, key: &Arc<str>, fill: F) -> Result<Arc<Entry>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Entry, E>>,
    {
        let started = Instant::now();
        let entry = Arc::new(fill().await?);
        self.metrics.fills.observe(started.elapsed());
        self.store(key, &entry).await;
        Ok(entry)
    }

    /// Claims the background refresh of a stale `key`; `false` when one
    /// is already running.
    pub(crate) fn begin_refresh(&self, key: &Arc<str>) -> bool {
        self.refreshing
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(Arc::clone(key))
    }

    pub(crate) fn end_refresh(&self, key: &Arc<str>) {
        self.refreshing
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(key);
    }

    /// Drops every entry carrying one of `tags`, on every level (and, through
    /// Redis, on every other server's memory and disk levels).
    pub(crate) async fn invalidate(&self, tags: &[String]) {
        for tag in tags {
            let mut dropped = self.invalidate_local(tag);
            if let Some(redis) = &self.redis {
                dropped = dropped.max(redis.invalidate(tag).await);
            }
            self.metrics
                .invalidated
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    /// Drops `tag` from this server's memory and disk levels.
    pub(crate) fn invalidate_local(&self, tag: &str) -> usize {
        let keys = self
            .memory_tags
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(tag)
            .unwrap_or_default();
        let mut dropped = keys.len();
        for key in keys {
            self.memory.invalidate(&key);
        }
        if let Some(disk) = &self.disk {
            dropped = dropped.max(disk.invalidate(tag));
        }
        dropped
    }

    /// The tags other servers invalidate, when the cache uses Redis.
    pub(crate) async fn listen(
        &self,
    ) -> Option<Result<impl futures_util::Stream<Item = String> + use<>, CacheError>> {
        Some(
            self.redis
                .as_ref()?
                .listen()
                .await
                .map_err(CacheError::Redis),
        )
    }

    /// Puts an entry in memory and indexes its tags.
    fn remember(&self, key: &Arc<str>, entry: &Arc<Entry>) {
        {
            let mut tags = self
                .memory_tags
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for tag in &entry.tags {
                tags.entry(tag.clone()).or_default().insert(Arc::clone(key));
            }
        }
        self.memory.insert(Arc::clone(key), Arc::clone(entry));
    }

    /// Applies moka's pending evictions (so sizes are exact), for metrics and tests.
    pub(crate) fn settle(&self) {
        self.memory.run_pending_tasks();
    }

    /// The route cache's series, for the levels that are open.
    pub(crate) fn encode_metrics(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        self.settle();
        let levels: Vec<Level> = LEVELS
            .into_iter()
            .filter(|level| match level {
                Level::Memory => true,
                Level::Disk => self.disk.is_some(),
                Level::Redis => self.redis.is_some(),
            })
            .collect();
        for (name, help, counters) in [
            (
                "kiln_cache_hits",
                "Route cache lookups answered by each level.",
                &self.metrics.hits,
            ),
            (
                "kiln_cache_misses",
                "Route cache lookups each level could not answer.",
                &self.metrics.misses,
            ),
        ] {
            out.counters(
                name,
                help,
                levels.iter().map(|level| {
                    let count = counters[*level as usize].load(Ordering::Relaxed);
                    ([("level", level.name())], count)
                }),
            )?;
        }
        let disk = self.disk.as_ref();
        out.gauges(
            "kiln_cache_bytes",
            "Bytes each route cache level holds.",
            std::iter::once(([("level", "memory")], self.memory.weighted_size()))
                .chain(disk.map(|disk| ([("level", "disk")], disk.bytes()))),
        )?;
        out.gauges(
            "kiln_cache_bytes_limit",
            "The byte bound of each route cache level.",
            std::iter::once(([("level", "memory")], self.memory_bytes))
                .chain(disk.map(|disk| ([("level", "disk")], disk.limit()))),
        )?;
        let memory_evictions = self.metrics.memory_evictions.load(Ordering::Relaxed);
        out.counters(
            "kiln_cache_evictions",
            "Entries evicted to stay within a level's bytes.",
            std::iter::once(([("level", "memory")], memory_evictions)).chain(
                disk.map(|disk| ([("level", "disk")], disk.evictions.load(Ordering::Relaxed))),
            ),
        )?;
        out.histogram(
            "kiln_cache_fill_seconds",
            "Time to render a route cache miss (queries, template, compression).",
            &self.metrics.fills,
        )?;
        out.counter(
            "kiln_cache_stale_served",
            "Stale entries served while a refresh ran.",
            self.metrics.stale_served.load(Ordering::Relaxed),
        )?;
        out.counter(
            "kiln_cache_invalidated",
            "Entries dropped by write routes' tags.",
            self.metrics.invalidated.load(Ordering::Relaxed),
        )?;
        if let Some(redis) = &self.redis {
            out.counter(
                "kiln_cache_redis_errors",
                "Redis calls that failed or timed out (answered as misses).",
                redis.errors.load(Ordering::Relaxed),
            )?;
        }
        Ok(())
    }
}

fn untag(tags: &Tags, key: &Arc<str>, entry_tags: &[String]) {
    let mut tags = tags.lock().unwrap_or_else(|poison| poison.into_inner());
    for tag in entry_tags {
        if let Some(keys) = tags.get_mut(tag) {
            keys.remove(key);
            if keys.is_empty() {
                tags.remove(tag);
            }
        }
    }
}
