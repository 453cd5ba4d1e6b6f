//! A stored session: its values, when it was created and last used, in a
//! compact binary form, zstd-compressed above a threshold. Expiry (idle
//! and absolute) is decided here, against a clock the caller passes, so
//! tests can move time.

use std::collections::HashMap;

/// A session's values, as actix-session keeps them (JSON per value).
pub(crate) type State = HashMap<String, String>;

/// One stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Unix milliseconds.
    pub created_ms: u64,
    pub seen_ms: u64,
    pub state: State,
}

/// The idle and absolute limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetime {
    pub idle_ms: u64,
    pub max_ms: u64,
}

impl Lifetime {
    /// Whether `record` may no longer be used at `now_ms`.
    pub(crate) fn expired(&self, record: &Record, now_ms: u64) -> bool {
        now_ms.saturating_sub(record.seen_ms) >= self.idle_ms
            || now_ms.saturating_sub(record.created_ms) >= self.max_ms
    }

    /// Milliseconds until `record` expires (for store TTLs).
    pub(crate) fn remaining_ms(&self, record: &Record, now_ms: u64) -> u64 {
        let idle_end = record.seen_ms + self.idle_ms;
        let max_end = record.created_ms + self.max_ms;
        idle_end.min(max_end).saturating_sub(now_ms)
    }

    /// Whether `record` should be marked used again: often enough that
    /// the idle timeout counts from real use, rarely enough that reading a
    /// session seldom writes.
    pub(crate) fn needs_touch(&self, record: &Record, now_ms: u64) -> bool {
        now_ms.saturating_sub(record.seen_ms) >= (self.idle_ms / 8).min(60_000)
    }
}

const VERSION: u8 = 1;
const COMPRESSED: u8 = 1;

/// The most a stored record may decompress to: far above any
/// `session.max_bytes`, so a corrupt or planted record (a store shared with
/// something else) cannot make a worker inflate gigabytes.
const MAX_DECOMPRESSED: u64 = 64 * 1024 * 1024;

fn decompress(payload: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut json = Vec::new();
    zstd::stream::read::Decoder::new(payload)
        .ok()?
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut json)
        .ok()?;
    (json.len() as u64 <= MAX_DECOMPRESSED).then_some(json)
}

/// The serialized values' size, which `session.max_bytes` bounds.
pub(crate) fn state_bytes(state: &State) -> usize {
    serde_json::to_vec(state).map_or(0, |bytes| bytes.len())
}

impl Record {
    /// Binary form: version, flags, two timestamps, then the values as
    /// JSON, zstd-compressed when longer than `compress_above`.
    pub(crate) fn encode(&self, compress_above: usize) -> Vec<u8> {
        let json = serde_json::to_vec(&self.state).unwrap_or_default();
        let (flags, payload) = if json.len() > compress_above {
            match zstd::encode_all(json.as_slice(), 3) {
                Ok(packed) if packed.len() < json.len() => (COMPRESSED, packed),
                _ => (0, json),
            }
        } else {
            (0, json)
        };
        let mut out = Vec::with_capacity(payload.len() + 18);
        out.push(VERSION);
        out.push(flags);
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        out.extend_from_slice(&self.seen_ms.to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Reads [`Record::encode`]'s output; `None` for anything else.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Record> {
        let (&version, rest) = bytes.split_first()?;
        let (&flags, rest) = rest.split_first()?;
        if version != VERSION || rest.len() < 16 {
            return None;
        }
        let created_ms = u64::from_le_bytes(rest[..8].try_into().ok()?);
        let seen_ms = u64::from_le_bytes(rest[8..16].try_into().ok()?);
        let payload = &rest[16..];
        let state = if flags & COMPRESSED != 0 {
            serde_json::from_slice(&decompress(payload)?).ok()?
        } else {
            serde_json::from_slice(payload).ok()?
        };
        Some(Record {
            created_ms,
            seen_ms,
            state,
        })
    }

    /// Whether the stored form is compressed.
    #[cfg(test)]
    fn is_compressed(bytes: &[u8]) -> bool {
        bytes.get(1).is_some_and(|flags| flags & COMPRESSED != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &str) -> Record {
        Record {
            created_ms: 1_000,
            seen_ms: 2_000,
            state: [("name".to_string(), format!("{value:?}"))].into(),
        }
    }

    #[test]
    fn large_sessions_are_compressed_and_round_trip() {
        let small = record("Ada");
        let encoded = small.encode(1024);
        assert!(!Record::is_compressed(&encoded));
        assert_eq!(Record::decode(&encoded), Some(small));
        let large = record(&"coffee ".repeat(500));
        let encoded = large.encode(1024);
        assert!(Record::is_compressed(&encoded));
        assert!(encoded.len() < 1000);
        assert_eq!(Record::decode(&encoded), Some(large));
        assert_eq!(Record::decode(&encoded[..10]), None);
    }

    #[test]
    fn idle_and_absolute_limits_both_expire() {
        let lifetime = Lifetime {
            idle_ms: 100,
            max_ms: 10_000,
        };
        let used = record("x"); // created 1_000, last used 2_000
        assert!(!lifetime.expired(&used, 2_050));
        assert!(lifetime.expired(&used, 2_100), "idle too long");
        assert_eq!(lifetime.remaining_ms(&used, 2_050), 50);
        let old = Record {
            created_ms: 0,
            seen_ms: 9_990,
            ..record("x")
        };
        assert!(
            lifetime.expired(&old, 10_000),
            "too old, however recently used"
        );
    }
}
