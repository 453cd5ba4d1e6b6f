//! Level 2: entries on disk in sled, so they survive a restart. Three
//! trees: `entries` (key → encoded entry), `tags` (`tag NUL key` → ∅, so a
//! tag's keys are one prefix scan) and `by_age` (`created BE ‖ key` → ∅, so
//! the oldest entry is the first one). The level stays under its byte bound
//! by evicting oldest first; expired entries are dropped when read and by
//! [`Disk::sweep`] (a batch at a time), which also drops other builds'
//! entries.

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
    /// generation than `current` (run on a schedule); returns how many.
    pub(crate) fn sweep(&self, current: &str) -> usize {
        let mut dropped = 0;
        let mut from = Some(Vec::new());
        while let Some(start) = from {
            let (batch, next) = self.sweep_from(current, &start, SWEEP_BATCH);
            dropped += batch;
            from = next;
        }
        dropped
    }

    /// [`Disk::sweep`] over at most `budget` entries from key `from` on;
    /// returns how many went and where the next batch starts (`None`: the
    /// end was reached).
    pub(crate) fn sweep_from(
        &self,
        current: &str,
        from: &[u8],
        budget: usize,
    ) -> (usize, Option<Vec<u8>>) {
        let now = now_ms();
        let mut next = None;
        let mut dropped = Vec::new();
        for (seen, (key, value)) in self
            .entries
            .range(from..)
            .filter_map(Result::ok)
            .enumerate()
        {
            if seen == budget {
                next = Some(key.to_vec());
                break;
            }
            let Ok(key) = std::str::from_utf8(&key) else {
                continue;
            };
            let retired = super::generation_of(key) != Some(current);
            let expired = || {
                Entry::decode(&value).is_none_or(|entry| entry.freshness(now) == Freshness::Expired)
            };
            if retired || expired() {
                dropped.push(key.to_string());
            }
        }
        for key in &dropped {
            self.remove(key);
        }
        (dropped.len(), next)
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

/// Entries read per batch of a sweep.
const SWEEP_BATCH: usize = 1024;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: &str) -> Entry {
        let now = now_ms();
        Entry {
            status: 200,
            content_type: "text/html".into(),
            created_ms: now,
            fresh_until_ms: now + 60_000,
            stale_until_ms: now + 120_000,
            tags: vec![tag.into()],
            csrf: false,
            csrf_at: Vec::new(),
            body: bytes::Bytes::from_static(b"<p>page</p>"),
            br: None,
            gzip: None,
            tag: String::new(),
            links: Vec::new(),
            epoch: 0,
        }
    }

    #[test]
    fn a_sweep_in_small_batches_drops_exactly_the_other_generations_entries() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let disk = Disk::open(dir.path(), 1 << 20).expect("the disk level opens");
        for id in 0..7 {
            disk.put(&format!("route.old.{id}"), &entry("old"));
            disk.put(&format!("route.new.{id}"), &entry("new"));
        }
        let (mut dropped, mut batches, mut from) = (0, 0, Some(Vec::new()));
        while let Some(start) = from {
            let (batch, next) = disk.sweep_from("new", &start, 3);
            dropped += batch;
            batches += 1;
            from = next;
        }
        assert_eq!(dropped, 7);
        assert_eq!(batches, 5, "14 entries read 3 at a time");
        assert_eq!(disk.len(), 7);
        assert!((0..7).all(|id| disk.get(&format!("route.new.{id}")).is_some()));
        assert_eq!(disk.invalidate("old"), 0, "their tags went with them");
    }
}
