//! Level 2: entries on disk in sled, so they survive a restart. Three
//! trees: `entries` (key → encoded entry), `tags` (`tag NUL key` → ∅, so a
//! tag's keys are one prefix scan) and `by_age` (`created BE ‖ key` → ∅, so
//! the oldest entry is the first one). The level stays under its byte bound
//! by evicting oldest first; expired entries are dropped when read and by
//! [`Disk::sweep`], which also drops other builds' entries.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::CacheError;
use super::entry::{Entry, Freshness, now_ms};

/// The disk level.
pub(crate) struct Disk {
    entries: sled::Tree,
    tags: sled::Tree,
    by_age: sled::Tree,
    bytes: AtomicU64,
    limit: u64,
    pub evictions: AtomicU64,
    // Kept last so the trees above are dropped first.
    _db: sled::Db,
}

impl Disk {
    /// Opens (or creates) the store in `dir`.
    pub(crate) fn open(dir: &Path, limit: u64) -> Result<Disk, CacheError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(16 * 1024 * 1024)
            .flush_every_ms(Some(500));
        let failed = |error| CacheError::Disk {
            dir: dir.to_path_buf(),
            error,
        };
        let db = open_sled(&config).map_err(failed)?;
        let open = |name: &str| db.open_tree(name).map_err(failed);
        let entries = open("entries")?;
        let bytes = entries
            .iter()
            .values()
            .filter_map(Result::ok)
            .map(|value| value.len() as u64)
            .sum();
        Ok(Disk {
            tags: open("tags")?,
            by_age: open("by_age")?,
            entries,
            bytes: AtomicU64::new(bytes),
            limit,
            evictions: AtomicU64::new(0),
            _db: db,
        })
    }

    /// The entry under `key`, unless it has expired (then it is removed).
    pub(crate) fn get(&self, key: &str) -> Option<Entry> {
        let value = self.entries.get(key).ok()??;
        match Entry::decode(&value) {
            Some(entry) if entry.freshness(now_ms()) != Freshness::Expired => Some(entry),
            _ => {
                self.remove(key);
                None
            }
        }
    }

    /// Stores `entry`, evicting the oldest entries past the byte bound.
    pub(crate) fn put(&self, key: &str, entry: &Entry) {
        let encoded = entry.encode();
        if encoded.len() as u64 > self.limit {
            return;
        }
        self.remove(key);
        let len = encoded.len() as u64;
        if self.entries.insert(key, encoded).is_err() {
            return;
        }
        self.bytes.fetch_add(len, Ordering::Relaxed);
        for tag in &entry.tags {
            let _ = self.tags.insert(tag_key(tag, key), &[]);
        }
        let _ = self.by_age.insert(age_key(entry.created_ms, key), &[]);
        while self.bytes.load(Ordering::Relaxed) > self.limit {
            let Ok(Some((oldest, _))) = self.by_age.pop_min() else {
                break;
            };
            if let Some(key) = oldest
                .get(8..)
                .and_then(|key| std::str::from_utf8(key).ok())
            {
                self.remove(key);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Removes every entry tagged `tag`; returns how many.
    pub(crate) fn invalidate(&self, tag: &str) -> usize {
        let prefix = tag_key(tag, "");
        let keys: Vec<String> = self
            .tags
            .scan_prefix(&prefix)
            .keys()
            .filter_map(Result::ok)
            .filter_map(|record| {
                std::str::from_utf8(&record[prefix.len()..])
                    .ok()
                    .map(str::to_string)
            })
            .collect();
        for key in &keys {
            self.remove(key);
        }
        keys.len()
    }

    /// Drops every expired entry, and every entry rendered for another
    /// generation than `current` (run on a schedule, and when a build is
    /// loaded); returns how many.
    pub(crate) fn sweep(&self, current: &str) -> usize {
        let now = now_ms();
        let dropped: Vec<String> = self
            .entries
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(key, value)| {
                let key = std::str::from_utf8(&key).ok()?;
                let retired = super::generation_of(key) != Some(current);
                let expired = || {
                    Entry::decode(&value)
                        .is_none_or(|entry| entry.freshness(now) == Freshness::Expired)
                };
                (retired || expired()).then(|| key.to_string())
            })
            .collect();
        for key in &dropped {
            self.remove(key);
        }
        dropped.len()
    }

    /// The byte bound.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Entries stored.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of encoded entries stored.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn remove(&self, key: &str) {
        let Ok(Some(old)) = self.entries.remove(key) else {
            return;
        };
        self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        if let Some(entry) = Entry::decode(&old) {
            for tag in &entry.tags {
                let _ = self.tags.remove(tag_key(tag, key));
            }
            let _ = self.by_age.remove(age_key(entry.created_ms, key));
        }
    }
}

/// How long opening waits for a previous server (shutting down, or just
/// stopped) to release the directory's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens a sled database, waiting up to [`LOCK_WAIT`] for its lock.
pub(crate) fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            // sled reports a held lock as an Other error naming it.
            Err(sled::Error::Io(err))
                if err.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

fn tag_key(tag: &str, key: &str) -> Vec<u8> {
    let mut record = Vec::with_capacity(tag.len() + 1 + key.len());
    record.extend_from_slice(tag.as_bytes());
    record.push(0);
    record.extend_from_slice(key.as_bytes());
    record
}

fn age_key(created_ms: u64, key: &str) -> Vec<u8> {
    let mut record = created_ms.to_be_bytes().to_vec();
    record.extend_from_slice(key.as_bytes());
    record
}
