//! The persistent build cache under `ROOT/.kiln-cache/`.
//!
//! Content-addressed: blobs are stored under the blake3 of their bytes, and
//! records (what a stage produced from which inputs) under the blake3 of the
//! stage's inputs, options and the kiln version. A record is only trusted
//! after its inputs are re-hashed and found unchanged, so a stale or partial
//! cache can cost time but never correctness. Deleting the directory is
//! always safe. Every write goes through a temporary file and a rename, so
//! concurrent builds and crashes leave no torn files.
//!
//! Cache I/O failures are never build failures: the stage just runs again.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bumped when the on-disk layout changes; old layouts are ignored.
const LAYOUT: &str = "v1";
/// Entries not used for this long are removed.
const MAX_UNUSED_AGE: Duration = Duration::from_secs(14 * 24 * 3600);
/// Pruning walks the cache; once a day is plenty.
const PRUNE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// A file as a build read it. The contents hash decides whether a cached
/// result is still valid; size and modification time only let an untouched
/// file be recognised with a `stat` instead of a read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileStamp {
    pub path: PathBuf,
    pub blake3: String,
    pub len: u64,
    pub mtime_ns: Option<i128>,
}

impl FileStamp {
    /// Reads `path` and stamps it. The metadata is taken before the read,
    /// so a write that races with the read leaves a stale time (and a
    /// re-hash next time), never a fresh time on old contents.
    pub(crate) fn read(path: &Path) -> std::io::Result<(FileStamp, Vec<u8>)> {
        let mut file = fs::File::open(path)?;
        let metadata = file.metadata()?;
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        file.read_to_end(&mut bytes)?;
        let stamp = FileStamp {
            path: path.to_path_buf(),
            blake3: blake3::hash(&bytes).to_hex().to_string(),
            len: metadata.len(),
            mtime_ns: mtime_ns(&metadata),
        };
        Ok((stamp, bytes))
    }

    /// Whether the file still has the contents it had when stamped.
    pub(crate) fn unchanged(&self) -> bool {
        let Ok(metadata) = fs::metadata(&self.path) else {
            return false;
        };
        if metadata.len() == self.len
            && self.mtime_ns.is_some()
            && mtime_ns(&metadata) == self.mtime_ns
        {
            return true;
        }
        fs::read(&self.path)
            .is_ok_and(|bytes| blake3::hash(&bytes).to_hex().as_str() == self.blake3)
    }
}

fn mtime_ns(metadata: &fs::Metadata) -> Option<i128> {
    let modified = metadata.modified().ok()?;
    let since = modified.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(since.as_nanos() as i128)
}

/// A cache key: blake3 over the kiln version and the given parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(blake3::Hash);

impl Key {
    /// Hashes the parts with length prefixes, so `["ab", "c"]` and `["a", "bc"]` differ.
    pub fn new(kind: &str, parts: &[&[u8]]) -> Key {
        let mut hasher = blake3::Hasher::new();
        for part in [env!("CARGO_PKG_VERSION").as_bytes(), kind.as_bytes()]
            .into_iter()
            .chain(parts.iter().copied())
        {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Key(hasher.finalize())
    }

    fn hex(&self) -> String {
        self.0.to_hex().to_string()
    }
}

/// Hit and miss counts, for the build summary and tests.
#[derive(Debug, Default)]
pub(crate) struct CacheStats {
    pub hits: AtomicUsize,
    pub misses: AtomicUsize,
}

impl CacheStats {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    pub(crate) fn misses(&self) -> usize {
        self.misses.load(Ordering::Relaxed)
    }
}

/// A handle on the cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating if needed) the cache at `dir`. Failure to create it
    /// leaves a cache that misses on every lookup.
    pub fn open(dir: &Path) -> Cache {
        let _ = fs::create_dir_all(dir.join(LAYOUT));
        // Tells backup and archiving tools to skip this directory.
        let tag = dir.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = write_atomic(
                &tag,
                b"Signature: 8a477f597d28d172789f06886806bc55\n# kiln build cache; safe to delete.\n",
            );
        }
        Cache {
            dir: dir.join(LAYOUT),
        }
    }

    /// Stores `bytes` under their own hash and returns it.
    pub fn put_blob(&self, bytes: &[u8]) -> blake3::Hash {
        let digest = blake3::hash(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            let _ = write_atomic(&path, bytes);
        }
        digest
    }

    /// The blob with this hash, verified against it.
    pub fn get_blob(&self, digest: &blake3::Hash) -> Option<Vec<u8>> {
        let bytes = read_and_touch(&self.blob_path(digest))?;
        (blake3::hash(&bytes) == *digest).then_some(bytes)
    }

    /// Stores a serialisable record under `key`.
    pub fn put_record<T: Serialize>(&self, key: &Key, record: &T) {
        if let Ok(json) = serde_json::to_vec(record) {
            let _ = write_atomic(&self.record_path(key), &json);
        }
    }

    /// The record stored under `key`, if it exists and parses.
    pub fn get_record<T: DeserializeOwned>(&self, key: &Key) -> Option<T> {
        let bytes = read_and_touch(&self.record_path(key))?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores raw bytes under `key`, prefixed with their hash so a damaged
    /// file is detected on read.
    pub fn put_bytes(&self, key: &Key, bytes: &[u8]) {
        let mut framed = Vec::with_capacity(32 + bytes.len());
        framed.extend_from_slice(blake3::hash(bytes).as_bytes());
        framed.extend_from_slice(bytes);
        let _ = write_atomic(&self.record_path(key), &framed);
    }

    /// The bytes stored under `key`, if present and intact.
    pub fn get_bytes(&self, key: &Key) -> Option<Vec<u8>> {
        let framed = read_and_touch(&self.record_path(key))?;
        let (digest, bytes) = framed.split_at_checked(32)?;
        (blake3::hash(bytes).as_bytes() == digest).then(|| bytes.to_vec())
    }

    /// The bytes under `key`, computing and storing them on a miss.
    pub fn memoize(&self, key: &Key, compute: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
        if let Some(bytes) = self.get_bytes(key) {
            return bytes;
        }
        let bytes = compute();
        self.put_bytes(key, &bytes);
        bytes
    }

    /// Removes entries unused for a long time, at most once a day.
    pub fn prune(&self) {
        let stamp = self.dir.join("last-prune");
        let now = SystemTime::now();
        let due = fs::metadata(&stamp)
            .and_then(|meta| meta.modified())
            .map(|last| now.duration_since(last).unwrap_or_default() >= PRUNE_INTERVAL)
            .unwrap_or(true);
        if !due {
            return;
        }
        let _ = write_atomic(&stamp, b"");
        for sub in ["blobs", "records"] {
            prune_older_than(&self.dir.join(sub), now, MAX_UNUSED_AGE);
        }
    }

    fn blob_path(&self, digest: &blake3::Hash) -> PathBuf {
        let hex = digest.to_hex();
        self.dir.join("blobs").join(&hex[..2]).join(&hex[2..])
    }

    fn record_path(&self, key: &Key) -> PathBuf {
        let hex = key.hex();
        self.dir.join("records").join(&hex[..2]).join(&hex[2..])
    }
}

/// Reads a cache file and marks it as used (its mtime drives pruning).
fn read_and_touch(path: &Path) -> Option<Vec<u8>> {
    let mut file = fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let _ = file.set_modified(SystemTime::now());
    Some(bytes)
}

fn prune_older_than(dir: &Path, now: SystemTime, max_age: Duration) {
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let old = entry
            .metadata()
            .ok()
            .and_then(|meta| meta.modified().ok())
            .is_some_and(|modified| now.duration_since(modified).unwrap_or_default() > max_age);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes through a uniquely named temporary file in the same directory, then
/// renames it into place: readers see the old file or the whole new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, bytes)?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_length_prefixed() {
        assert_ne!(Key::new("k", &[b"ab", b"c"]), Key::new("k", &[b"a", b"bc"]));
        assert_ne!(Key::new("k1", &[b"a"]), Key::new("k2", &[b"a"]));
        assert_eq!(Key::new("k", &[b"a"]), Key::new("k", &[b"a"]));
    }

    #[test]
    fn file_stamps_see_edits_and_ignore_touches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.js");
        fs::write(&path, "export const a = 1;").unwrap();
        let (stamp, bytes) = FileStamp::read(&path).unwrap();
        assert_eq!(bytes, b"export const a = 1;");
        assert!(stamp.unchanged());
        // Rewritten with the same bytes (a new mtime): still unchanged.
        std::thread::sleep(Duration::from_millis(5));
        fs::write(&path, "export const a = 1;").unwrap();
        assert!(stamp.unchanged());
        // Same size, different bytes: changed, whatever the clock says.
        fs::write(&path, "export const a = 2;").unwrap();
        assert!(!stamp.unchanged());
        fs::remove_file(&path).unwrap();
        assert!(!stamp.unchanged());
    }

    #[test]
    fn blobs_and_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path());
        let digest = cache.put_blob(b"hello");
        assert_eq!(cache.get_blob(&digest).unwrap(), b"hello");
        let key = Key::new("test", &[b"x"]);
        cache.put_record(&key, &vec![1, 2, 3]);
        assert_eq!(cache.get_record::<Vec<i32>>(&key).unwrap(), vec![1, 2, 3]);
        assert!(
            cache
                .get_record::<Vec<i32>>(&Key::new("test", &[b"y"]))
                .is_none()
        );
    }

    #[test]
    fn raw_bytes_round_trip_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path());
        let key = Key::new("raw", &[b"x"]);
        cache.put_bytes(&key, b"");
        assert_eq!(cache.get_bytes(&key).unwrap(), b"");
        cache.put_bytes(&key, b"payload");
        assert_eq!(cache.get_bytes(&key).unwrap(), b"payload");
        let path = cache.record_path(&key);
        let mut damaged = fs::read(&path).unwrap();
        damaged.truncate(damaged.len() - 1);
        fs::write(&path, damaged).unwrap();
        assert!(cache.get_bytes(&key).is_none());
    }

    #[test]
    fn corrupted_blob_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path());
        let digest = cache.put_blob(b"hello");
        fs::write(cache.blob_path(&digest), b"tampered").unwrap();
        assert!(cache.get_blob(&digest).is_none());
    }

    #[test]
    fn unusable_cache_directory_only_misses() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let cache = Cache::open(&blocker.join("cache"));
        let digest = cache.put_blob(b"x");
        assert!(cache.get_blob(&digest).is_none());
    }

    #[test]
    fn prune_removes_only_old_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path());
        let old = cache.put_blob(b"old");
        let fresh = cache.put_blob(b"fresh");
        let long_ago = SystemTime::now() - Duration::from_secs(60 * 24 * 3600);
        fs::File::options()
            .write(true)
            .open(cache.blob_path(&old))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        cache.prune();
        assert!(!cache.blob_path(&old).exists());
        assert!(cache.get_blob(&fresh).is_some());
    }
}
