//! The route cache: rendered responses of cached routes kept in up to three
//! levels. L1 is memory (moka: bounded by bytes, per-entry TTL, TinyLFU
//! admission), L2 is disk (sled, survives restarts, bounded by bytes), L3
//! is Redis (optional, shared by several servers). A lookup falls through
//! L1 → L2 → L3, and what a lower level finds fills the levels above it;
//! a miss everywhere runs the route once however many requests are waiting
//! for the same key ([`RouteCache::get_or_fill`]). Write routes drop
//! entries by tag, through a tag index on every level (never a scan).
//!
//! What a route may keep is bounded ([`Admit`]): at most `max_entries` of
//! its entries at once (a full route serves new responses without storing
//! them, so a flood of one-off keys cannot push out the pages people
//! read), and under `admit = "repeat"` an entry stays in memory until its
//! second use before it costs a disk or Redis write.

pub(crate) mod disk;
pub(crate) mod entry;
pub(crate) mod notify;
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
    heard: AtomicU64,
    route_full: AtomicU64,
    promoted: AtomicU64,
    bypassed: AtomicU64,
    retired: AtomicU64,
    redelivered: AtomicU64,
    overtaken: AtomicU64,
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

    pub(crate) fn bypassed(&self) {
        self.bypassed.fetch_add(1, Ordering::Relaxed);
    }
}

fn by_level(counts: &[AtomicU64; 3]) -> std::collections::BTreeMap<String, u64> {
    LEVELS
        .iter()
        .map(|level| {
            let count = counts[*level as usize].load(Ordering::Relaxed);
            (level.name().to_string(), count)
        })
        .collect()
}

/// What the levels hold, and how they were used (`kiln cache stats`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Stats {
    pub memory_entries: u64,
    pub memory_bytes: u64,
    /// `None`: no disk level.
    pub disk_entries: Option<u64>,
    pub disk_bytes: Option<u64>,
    pub redis: bool,
    /// Hits and misses by level (`memory`, `disk`, `redis`).
    pub hits: std::collections::BTreeMap<String, u64>,
    pub misses: std::collections::BTreeMap<String, u64>,
}

/// What the cache may keep of one route, from its `[route.cache]`.
#[derive(Debug, Clone)]
pub(crate) struct Admit {
    /// The route's key prefix: 8 hex digits of its declaration's digest.
    pub route: Arc<str>,
    /// Most entries of the route in memory at once; 0: no limit.
    pub max_entries: usize,
    /// Below memory only from an entry's second use (`admit = "repeat"`).
    pub repeat: bool,
}

impl Admit {
    /// Everything at once, without a limit: for `cache.warm`, whose URLs
    /// the site's author listed.
    pub(crate) fn always(&self) -> Admit {
        Admit {
            route: Arc::clone(&self.route),
            max_entries: 0,
            repeat: false,
        }
    }
}

/// What the memory level holds, besides the entries: each tag's keys, each
/// route's count, and the keys not yet stored below memory.
#[derive(Default)]
struct MemoryIndex {
    tags: HashMap<String, HashSet<Arc<str>>>,
    /// Which entry (by address) each key's tag records belong to.
    indexed: HashMap<Arc<str>, usize>,
    per_route: HashMap<Arc<str>, usize>,
    awaiting_use: HashSet<Arc<str>>,
}

impl MemoryIndex {
    fn per_route(&self, route: &str) -> usize {
        self.per_route.get(route).copied().unwrap_or(0)
    }

    /// Forgets `key` when memory let go of `entry` (a replacement keeps
    /// its tags and waiting state, but was counted twice). moka calls this
    /// after the entry left the map, so a request may already have filled
    /// and indexed a new entry under the key: its records stay.
    fn removed(&mut self, key: &Arc<str>, entry: &Arc<Entry>, replaced: bool) {
        if let Some((route, _)) = key.split_once('.')
            && let Some(count) = self.per_route.get_mut(route)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_route.remove(route);
            }
        }
        if replaced || self.indexed.get(key) != Some(&address(entry)) {
            return;
        }
        self.indexed.remove(key);
        self.awaiting_use.remove(key);
        for tag in &entry.tags {
            if let Some(keys) = self.tags.get_mut(tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.tags.remove(tag);
                }
            }
        }
    }
}

type Index = Arc<Mutex<MemoryIndex>>;

/// An entry's identity in memory: its allocation's address, unique while
/// the entry lives (and moka's listener holds it while it runs).
fn address(entry: &Arc<Entry>) -> usize {
    Arc::as_ptr(entry) as usize
}

/// Tags of the cache's own on every entry (`CachePolicy::implicit_tags`
/// in the routes); a NUL cannot start a tag declared in `build.toml`.
pub(crate) const PURGE_ALL_TAG: &str = "\0kiln:all";
pub(crate) const PURGE_ROUTE_TAG: &str = "\0kiln:route:";
pub(crate) const PURGE_URL_TAG: &str = "\0kiln:url:";

/// The generation of a key (`ROUTE.GENERATION.INPUTS`, made by the
/// routes' cache policy).
pub(crate) fn generation_of(key: &str) -> Option<&str> {
    key.split('.').nth(1)
}

fn lock(index: &Index) -> std::sync::MutexGuard<'_, MemoryIndex> {
    index.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Most invalidations the outbox keeps before it replaces them all with
/// one purge of everything.
const OUTBOX_LIMIT: usize = 1000;

/// The tags other servers invalidate, as they arrive.
pub(crate) type TagStream = futures_util::stream::LocalBoxStream<'static, String>;

/// The entries of other generations still to drop, after a build was
/// loaded (see [`RouteCache::start_retiring`]).
pub(crate) struct Retirement {
    /// The generation loaded: its entries stay.
    pub current: Arc<str>,
    memory: Vec<Arc<str>>,
    /// Where the disk level's walk goes on; `None` once it is done.
    disk_from: Option<Vec<u8>>,
}

/// What telling the other servers of an invalidation came to.
enum Told {
    /// Acknowledged; the shared level (Redis) dropped this many entries.
    Dropped(usize),
    /// Not acknowledged in time: kept in the outbox.
    Postponed,
    /// No other server to tell (no channel).
    Nobody,
}

/// Fills in progress, by key: later requests for the key wait on the cell.
type Inflight = Mutex<HashMap<Arc<str>, Arc<OnceCell<Arc<Entry>>>>>;

/// Every level, the in-flight fills and the memory level's tag index.
pub(crate) struct RouteCache {
    memory: moka::sync::Cache<Arc<str>, Arc<Entry>>,
    index: Index,
    memory_bytes: u64,
    pub disk: Option<Disk>,
    redis: Option<redis::Redis>,
    /// The invalidation channel when there is no Redis and the database is
    /// PostgreSQL (`cache.postgres_notify`).
    postgres: Option<notify::PgChannel>,
    inflight: Inflight,
    refreshing: Mutex<HashSet<Arc<str>>>,
    /// Tags whose Redis invalidation was not acknowledged, retried until
    /// it is: an invalidation is delivered at least once.
    outbox: Mutex<Vec<String>>,
    /// Counts local invalidations; with `recently`, tells a fill whether
    /// one of its tags was invalidated while it rendered.
    epoch: AtomicU64,
    recently: Mutex<Recently>,
    fence: std::sync::RwLock<()>,
    pub metrics: CacheMetrics,
}

/// The epoch at which each tag was last invalidated, and a floor below
/// which every fill counts as overtaken (the map is cleared at
/// [`RECENT_TAGS`] tags, so it stays bounded).
#[derive(Default)]
struct Recently {
    tags: HashMap<String, u64>,
    floor: u64,
}

/// Most tags whose last invalidation is remembered.
const RECENT_TAGS: usize = 100_000;

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
    #[error("{0}")]
    Postgres(#[from] notify::NotifyError),
}

impl RouteCache {
    /// Opens the levels `config` asks for (`root` resolves the disk level's
    /// directory). Redis connects on first use; see [`RouteCache::check`].
    /// `site` (the site identity) follows `cache.redis_prefix` in every
    /// Redis key and channel. Without Redis, invalidations travel over
    /// `database_url` when it is PostgreSQL's.
    pub(crate) fn open(
        config: &CacheConfig,
        root: &Path,
        site: &str,
        database_url: &str,
    ) -> Result<RouteCache, CacheError> {
        let metrics = CacheMetrics::default();
        let index: Index = Arc::default();
        let evictions = Arc::clone(&metrics.memory_evictions);
        let listener_index = Arc::clone(&index);
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
                lock(&listener_index).removed(&key, &entry, cause == RemovalCause::Replaced);
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
        let on_postgres = !database_url.starts_with("sqlite://");
        let postgres = if redis.is_none() && on_postgres && config.postgres_notify {
            let site = format!("{}{site}", config.redis_prefix);
            Some(notify::PgChannel::new(database_url, &site)?)
        } else {
            None
        };
        Ok(RouteCache {
            memory,
            index,
            memory_bytes: config.memory_bytes,
            disk,
            redis,
            postgres,
            inflight: Mutex::default(),
            refreshing: Mutex::default(),
            outbox: Mutex::default(),
            epoch: AtomicU64::new(0),
            recently: Mutex::default(),
            fence: std::sync::RwLock::default(),
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
        // A lower level's entry read while an invalidation of its tags runs
        // must not refill memory after the invalidation cleared it.
        let epoch = self.epoch.load(Ordering::SeqCst);
        if let Some(entry) = self.memory.get(key)
            && entry.freshness(now) != Freshness::Expired
        {
            self.metrics.hit(Level::Memory);
            if lock(&self.index).awaiting_use.remove(key) {
                // Its second use: now it is worth a disk and Redis write.
                self.metrics.promoted.fetch_add(1, Ordering::Relaxed);
                self.store_below(key, &entry).await;
            }
            return Some(entry);
        }
        self.metrics.miss(Level::Memory);
        if let Some(disk) = &self.disk {
            if let Some(mut entry) = disk.get(key) {
                entry.epoch = epoch;
                let entry = Arc::new(entry);
                let _fence = self.fence_shared();
                if !self.overtaken(&entry) {
                    self.metrics.hit(Level::Disk);
                    self.remember(key, &entry);
                    return Some(entry);
                }
            }
            self.metrics.miss(Level::Disk);
        }
        if let Some(redis) = &self.redis {
            if let Some(mut entry) = redis
                .get(key)
                .await
                .filter(|entry| entry.freshness(now) != Freshness::Expired)
            {
                entry.epoch = epoch;
                let entry = Arc::new(entry);
                let _fence = self.fence_shared();
                if !self.overtaken(&entry) {
                    self.metrics.hit(Level::Redis);
                    self.remember(key, &entry);
                    if let Some(disk) = &self.disk {
                        disk.put(key, &entry);
                    }
                    return Some(entry);
                }
            }
            self.metrics.miss(Level::Redis);
        }
        None
    }

    /// Stores `entry` as `admit` allows: not at all when its route is full,
    /// in memory only until its second use under `repeat` (a key that was
    /// already below memory is refreshed there at once), else everywhere.
    pub(crate) async fn store(&self, key: &Arc<str>, entry: &Arc<Entry>, admit: &Admit) {
        // Asked before the locks: memory's housekeeping may call the
        // listener, which takes the index's.
        let held = self.memory.contains_key(key);
        {
            let _fence = self.fence_shared();
            if self.overtaken(entry) {
                self.metrics.overtaken.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let below_now = {
                let mut index = lock(&self.index);
                if !held
                    && admit.max_entries > 0
                    && index.per_route(&admit.route) >= admit.max_entries
                {
                    self.metrics.route_full.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let wait = admit.repeat && (!held || index.awaiting_use.contains(key));
                if wait {
                    index.awaiting_use.insert(Arc::clone(key));
                }
                !wait
            };
            self.remember(key, entry);
            if !below_now {
                return;
            }
            if let Some(disk) = &self.disk {
                disk.put(key, entry);
            }
        }
        if let Some(redis) = &self.redis {
            redis.put(key, entry).await;
        }
    }

    /// Stores `entry` on the disk and Redis levels (its second use).
    async fn store_below(&self, key: &Arc<str>, entry: &Arc<Entry>) {
        {
            let _fence = self.fence_shared();
            // Read from memory just before an invalidation dropped it.
            if self.overtaken(entry) {
                return;
            }
            if let Some(disk) = &self.disk {
                disk.put(key, entry);
            }
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
        admit: &Admit,
        fill: F,
    ) -> Result<Arc<Entry>, E>
    where
        F: Fn() -> Fut,
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
        let mut filled_here = false;
        let result = cell
            .get_or_try_init(|| async {
                // A fill that finished between our lookup and this cell.
                if let Some(entry) = self.memory.get(key)
                    && entry.freshness(now_ms()) == Freshness::Fresh
                {
                    return Ok(entry);
                }
                filled_here = true;
                self.fill(key, admit, &fill).await
            })
            .await
            .cloned();
        {
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
        }
        match result {
            // The shared fill read its rows before an invalidation of its
            // tags, and this request may have begun after the write: it
            // renders its own page (another's fill is no answer to it).
            Ok(entry) if !filled_here && self.overtaken(&entry) => {
                self.fill(key, admit, &fill).await
            }
            result => result,
        }
    }

    /// Runs `fill`, times it, and stores what it made.
    pub(crate) async fn fill<F, Fut, E>(
        &self,
        key: &Arc<str>,
        admit: &Admit,
        fill: F,
    ) -> Result<Arc<Entry>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Entry, E>>,
    {
        let started = Instant::now();
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut entry = fill().await?;
        entry.epoch = epoch;
        let entry = Arc::new(entry);
        self.metrics.fills.observe(started.elapsed());
        self.store(key, &entry, admit).await;
        Ok(entry)
    }

    /// Whether one of `entry`'s tags was invalidated after its rows were
    /// read: it may show what a write changed since, so it is served to
    /// the requests that waited for it but never stored.
    fn overtaken(&self, entry: &Entry) -> bool {
        let recently = self
            .recently
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        entry.epoch < recently.floor
            || entry
                .tags
                .iter()
                .any(|tag| recently.tags.get(tag).is_some_and(|&at| at > entry.epoch))
    }

    /// Held (shared) while an entry is checked with [`Self::overtaken`]
    /// and stored in memory or on disk, and (exclusively) while an
    /// invalidation runs: an entry is either stored before an
    /// invalidation, which then drops it, or checked after it, and refused.
    fn fence_shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.fence
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
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
    /// Returns how many entries the level that held most of them dropped.
    pub(crate) async fn invalidate(&self, tags: &[String]) -> usize {
        let mut total = 0;
        for tag in tags {
            let mut dropped = self.invalidate_local(tag);
            match self.tell_others(tag).await {
                Told::Dropped(shared) => dropped = dropped.max(shared),
                Told::Postponed => self.postpone(tag),
                Told::Nobody => {}
            }
            self.metrics
                .invalidated
                .fetch_add(dropped as u64, Ordering::Relaxed);
            total += dropped;
        }
        total
    }

    fn postpone(&self, tag: &str) {
        let mut outbox = self
            .outbox
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if outbox
            .iter()
            .any(|waiting| waiting == tag || waiting == PURGE_ALL_TAG)
        {
            return;
        }
        if outbox.len() >= OUTBOX_LIMIT {
            // A long outage: one purge of everything, once the channel is
            // back, stands for every tag and keeps the outbox bounded.
            *outbox = vec![PURGE_ALL_TAG.to_string()];
        } else {
            outbox.push(tag.to_string());
        }
    }

    /// Sends `tag` to the other servers: through Redis (which also drops
    /// its own entries) or PostgreSQL, whichever the cache uses.
    async fn tell_others(&self, tag: &str) -> Told {
        if let Some(redis) = &self.redis {
            return match redis.invalidate(tag).await {
                Some(shared) => Told::Dropped(shared),
                None => Told::Postponed,
            };
        }
        match &self.postgres {
            Some(postgres) if postgres.send(tag).await => Told::Dropped(0),
            Some(_) => Told::Postponed,
            None => Told::Nobody,
        }
    }

    /// Invalidations waiting in the outbox.
    pub(crate) fn postponed(&self) -> usize {
        self.outbox
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    /// Tries the postponed invalidations again (run every second); those
    /// still not acknowledged stay for the next try.
    pub(crate) async fn retry_invalidations(&self) {
        let waiting = std::mem::take(
            &mut *self
                .outbox
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
        for tag in waiting {
            match self.tell_others(&tag).await {
                Told::Dropped(_) => {
                    self.metrics.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                Told::Postponed => self.postpone(&tag),
                Told::Nobody => {}
            }
        }
    }

    /// The subscription to other servers' invalidations was lost and is
    /// back: any may have been missed, so this server's memory and disk
    /// levels start over (Redis, which the invalidating server cleared,
    /// stays). Returns how many entries went.
    pub(crate) fn resubscribed(&self) -> usize {
        self.invalidate_local(PURGE_ALL_TAG)
    }

    /// What each level holds now, for `kiln cache stats`.
    pub(crate) fn stats(&self) -> Stats {
        self.settle();
        Stats {
            memory_entries: self.memory.entry_count(),
            memory_bytes: self.memory.weighted_size(),
            disk_entries: self.disk.as_ref().map(|disk| disk.len() as u64),
            disk_bytes: self.disk.as_ref().map(Disk::bytes),
            redis: self.redis.is_some(),
            hits: by_level(&self.metrics.hits),
            misses: by_level(&self.metrics.misses),
        }
    }

    /// Starts dropping the memory and disk entries rendered for another
    /// generation than `current` (a new build was loaded): the work is
    /// done by [`RouteCache::retire_step`], a bounded batch at a time, so
    /// neither the reload nor requests wait for a walk of the disk level.
    /// Redis keeps such entries, for servers still on that build, until
    /// they expire. Entries of other generations are never served
    /// meanwhile: the generation is part of every key.
    pub(crate) fn start_retiring(&self, current: Arc<str>) -> Retirement {
        let memory = self
            .memory
            .iter()
            .filter(|(key, _)| generation_of(key) != Some(&*current))
            .map(|(key, _)| Arc::clone(&*key))
            .collect();
        Retirement {
            disk_from: self.disk.as_ref().map(|_| Vec::new()),
            current,
            memory,
        }
    }

    /// Retires up to `budget` entries of `retirement`'s memory list, or
    /// reads up to `budget` disk entries; returns how many entries went,
    /// and `true` when nothing is left.
    pub(crate) fn retire_step(&self, retirement: &mut Retirement, budget: usize) -> (usize, bool) {
        let dropped = if !retirement.memory.is_empty() {
            let at = retirement.memory.len().saturating_sub(budget);
            let batch = retirement.memory.split_off(at);
            for key in &batch {
                self.memory.invalidate(key);
            }
            batch.len()
        } else if let (Some(disk), Some(from)) = (&self.disk, retirement.disk_from.take()) {
            let (dropped, next) = disk.sweep_from(&retirement.current, &from, budget);
            retirement.disk_from = next;
            dropped
        } else {
            0
        };
        self.metrics
            .retired
            .fetch_add(dropped as u64, Ordering::Relaxed);
        let done = retirement.memory.is_empty() && retirement.disk_from.is_none();
        (dropped, done)
    }

    /// Another server invalidated `tag` (heard on the channel): drops it
    /// from this server's memory and disk levels.
    pub(crate) fn heard(&self, tag: &str) {
        self.metrics.heard.fetch_add(1, Ordering::Relaxed);
        self.invalidate_local(tag);
    }

    /// Drops `tag` from this server's memory and disk levels.
    pub(crate) fn invalidate_local(&self, tag: &str) -> usize {
        let _fence = self
            .fence
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        // Marked before any entry goes, so a fill that read its rows
        // before the write cannot store them after.
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut recently = self
                .recently
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if tag == PURGE_ALL_TAG || recently.tags.len() >= RECENT_TAGS {
                recently.tags.clear();
                recently.floor = epoch;
            } else {
                recently.tags.insert(tag.to_string(), epoch);
            }
        }
        // Lower levels first: a lookup that misses memory meanwhile must
        // not find the entry below and bring it back.
        let on_disk = self.disk.as_ref().map_or(0, |disk| disk.invalidate(tag));
        let keys = lock(&self.index).tags.remove(tag).unwrap_or_default();
        let in_memory = keys.len();
        for key in keys {
            self.memory.invalidate(&key);
        }
        in_memory.max(on_disk)
    }

    /// The tags other servers invalidate, when the cache has a channel
    /// (Redis or PostgreSQL) to hear them on.
    pub(crate) async fn listen(&self) -> Option<Result<TagStream, CacheError>> {
        use futures_util::StreamExt;
        if let Some(redis) = &self.redis {
            let stream = redis.listen().await.map_err(CacheError::Redis);
            return Some(stream.map(|stream| stream.boxed_local()));
        }
        let stream = self.postgres.as_ref()?.listen().await;
        Some(
            stream
                .map(|stream| stream.boxed_local())
                .map_err(CacheError::from),
        )
    }

    /// The channel invalidations travel on, for messages.
    pub(crate) fn channel_name(&self) -> &'static str {
        match (&self.redis, &self.postgres) {
            (Some(_), _) => "Redis",
            (None, Some(_)) => "PostgreSQL",
            (None, None) => "no",
        }
    }

    /// Puts an entry in memory, indexes its tags and counts it for its
    /// route (memory's listener takes both back when it leaves).
    fn remember(&self, key: &Arc<str>, entry: &Arc<Entry>) {
        {
            let mut index = lock(&self.index);
            for tag in &entry.tags {
                let keys = index.tags.entry(tag.clone()).or_default();
                keys.insert(Arc::clone(key));
            }
            index.indexed.insert(Arc::clone(key), address(entry));
            if let Some((route, _)) = key.split_once('.') {
                *index.per_route.entry(route.into()).or_default() += 1;
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
        out.counter(
            "kiln_cache_route_full",
            "Responses served without being stored: their route held cache.max_entries.",
            self.metrics.route_full.load(Ordering::Relaxed),
        )?;
        out.counter(
            "kiln_cache_promoted",
            "Entries written below memory on their second use (admit = \"repeat\").",
            self.metrics.promoted.load(Ordering::Relaxed),
        )?;
        out.counter(
            "kiln_cache_bypassed",
            "Requests of cached routes sent past the cache by a cache.bypass parameter.",
            self.metrics.bypassed.load(Ordering::Relaxed),
        )?;
        out.counter(
            "kiln_cache_redelivered",
            "Invalidations Redis did not acknowledge at first, delivered by a later try.",
            self.metrics.redelivered.load(Ordering::Relaxed),
        )?;
        out.gauge(
            "kiln_cache_outbox",
            "Invalidations waiting for the channel (Redis or PostgreSQL) to acknowledge them.",
            self.postponed() as u64,
        )?;
        out.counter(
            "kiln_cache_overtaken",
            "Responses served but not stored: one of their tags was invalidated while they rendered.",
            self.metrics.overtaken.load(Ordering::Relaxed),
        )?;
        out.counter(
            "kiln_cache_heard",
            "Invalidations heard on the channel (Redis or PostgreSQL), this server's own included.",
            self.metrics.heard.load(Ordering::Relaxed),
        )?;
        out.counter(
            "kiln_cache_retired",
            "Memory and disk entries dropped because they were rendered for another build.",
            self.metrics.retired.load(Ordering::Relaxed),
        )?;
        if let Some(redis) = &self.redis {
            out.counter(
                "kiln_cache_redis_errors",
                "Redis calls that failed or timed out (answered as misses).",
                redis.errors.load(Ordering::Relaxed),
            )?;
        }
        if let Some(postgres) = &self.postgres {
            out.counter(
                "kiln_cache_notify_errors",
                "Invalidations PostgreSQL did not take in time (kept in the outbox).",
                postgres.errors.load(Ordering::Relaxed),
            )?;
        }
        Ok(())
    }
}
