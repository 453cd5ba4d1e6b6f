//! A cached response: the rendered body with its compressed copies, its
//! headers' ingredients, when it goes stale, and its tags; and the compact
//! binary form the disk and Redis levels store.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// One rendered response of a cached route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub status: u16,
    pub content_type: String,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// Until then the entry is fresh.
    pub fresh_until_ms: u64,
    /// Until then a stale entry may still be served while it is refreshed.
    pub stale_until_ms: u64,
    pub tags: Vec<String>,
    /// The page renders the visitor's CSRF token: it is served private,
    /// with the token spliced in at `csrf_at`.
    pub csrf: bool,
    /// Byte offsets in `body` where the token goes, in increasing order.
    /// The body itself holds no placeholder, so nothing a visitor writes
    /// into a page can be mistaken for one.
    pub csrf_at: Vec<u32>,
    pub body: Bytes,
    /// Brotli and gzip copies, made once when the entry is filled (not for
    /// CSRF pages, whose bodies differ per visitor).
    pub br: Option<Bytes>,
    pub gzip: Option<Bytes>,
    /// The body's entity tag (without quotes or coding suffix), made once:
    /// hashing the body on every hit costs more than the rest of a hit.
    pub tag: String,
    /// The page's `Link` header values (preload hints).
    pub links: Vec<String>,
    /// This server's invalidation epoch when the entry's rows were read
    /// (its fill began, or a lower level gave it): an invalidation of one
    /// of its tags after that makes it unfit to store. Never encoded.
    pub epoch: u64,
}

/// The entity tag of a body: 20 hex digits of its blake3.
pub(crate) fn body_tag(body: &[u8]) -> String {
    blake3::hash(body).to_hex()[..20].to_string()
}

/// Stands for the visitor's CSRF token while a cached page renders:
/// random per process, so no stored text (a visitor's message included)
/// can contain it; [`cut_placeholders`] takes it out of the rendered body.
pub(crate) fn csrf_placeholder() -> &'static str {
    static PLACEHOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PLACEHOLDER.get_or_init(|| {
        let mut seed = [0u8; 16];
        if getrandom::fill(&mut seed).is_err() {
            // Still unpredictable enough to never occur in content by chance.
            let clock = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos());
            let material = format!("{clock} {}", std::process::id());
            seed.copy_from_slice(&blake3::hash(material.as_bytes()).as_bytes()[..16]);
        }
        let hex: String = seed.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("kiln-csrf-{hex}")
    })
}

/// `body` without the placeholder, and the offsets where it stood.
pub(crate) fn cut_placeholders(body: &[u8], placeholder: &str) -> (Vec<u8>, Vec<u32>) {
    let finder = memchr::memmem::Finder::new(placeholder.as_bytes());
    let mut out = Vec::with_capacity(body.len());
    let mut offsets = Vec::new();
    let mut rest = body;
    while let Some(at) = finder.find(rest) {
        out.extend_from_slice(&rest[..at]);
        offsets.push(out.len() as u32);
        rest = &rest[at + placeholder.len()..];
    }
    out.extend_from_slice(rest);
    (out, offsets)
}

/// Whether `body` (with the exact placeholders cut out) still holds the
/// placeholder's random part in some other form: the template changed the
/// token as it rendered it (`| upper`, a URL), so it cannot be filled in.
pub(crate) fn placeholder_transformed(body: &[u8], placeholder: &str) -> bool {
    let random = placeholder.rsplit('-').next().unwrap_or(placeholder);
    let lowered = body.to_ascii_lowercase();
    memchr::memmem::find(&lowered, random.as_bytes()).is_some()
}

/// `body` with `token` at each of `offsets` (increasing, within the body).
pub(crate) fn splice_token(body: &[u8], offsets: &[u32], token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + offsets.len() * token.len());
    let mut copied = 0;
    for &offset in offsets {
        let offset = (offset as usize).clamp(copied, body.len());
        out.extend_from_slice(&body[copied..offset]);
        out.extend_from_slice(token.as_bytes());
        copied = offset;
    }
    out.extend_from_slice(&body[copied..]);
    out
}

/// How fresh an entry is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    Fresh,
    /// Servable while one request refreshes it.
    Stale,
    Expired,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl Entry {
    pub(crate) fn freshness(&self, now_ms: u64) -> Freshness {
        if now_ms < self.fresh_until_ms {
            Freshness::Fresh
        } else if now_ms < self.stale_until_ms {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// Bytes the entry occupies (bodies and headers), for the size bounds.
    pub(crate) fn weight(&self) -> u64 {
        let copies =
            self.br.as_ref().map_or(0, Bytes::len) + self.gzip.as_ref().map_or(0, Bytes::len);
        let links: usize = self.links.iter().map(String::len).sum();
        (self.body.len() + copies + self.content_type.len() + links + 64) as u64
    }

    /// Milliseconds until the entry may no longer be served at all.
    pub(crate) fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.stale_until_ms.saturating_sub(now_ms)
    }

    /// The binary form: a version byte, then fixed fields and
    /// length-prefixed strings and bodies.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weight() as usize + 64);
        out.push(VERSION);
        out.extend_from_slice(&self.status.to_le_bytes());
        for time in [self.created_ms, self.fresh_until_ms, self.stale_until_ms] {
            out.extend_from_slice(&time.to_le_bytes());
        }
        out.push(u8::from(self.csrf));
        out.extend_from_slice(&(self.csrf_at.len() as u32).to_le_bytes());
        for offset in &self.csrf_at {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        put(&mut out, self.content_type.as_bytes());
        put(&mut out, self.tag.as_bytes());
        out.extend_from_slice(&(self.tags.len() as u32).to_le_bytes());
        for tag in &self.tags {
            put(&mut out, tag.as_bytes());
        }
        out.extend_from_slice(&(self.links.len() as u32).to_le_bytes());
        for link in &self.links {
            put(&mut out, link.as_bytes());
        }
        put(&mut out, &self.body);
        for copy in [&self.br, &self.gzip] {
            match copy {
                Some(bytes) => {
                    out.push(1);
                    put(&mut out, bytes);
                }
                None => out.push(0),
            }
        }
        out
    }

    /// Reads [`Entry::encode`]'s output; `None` for anything else (another
    /// version, a truncated value).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.byte()? != VERSION {
            return None;
        }
        let status = u16::from_le_bytes(reader.array()?);
        let created_ms = u64::from_le_bytes(reader.array()?);
        let fresh_until_ms = u64::from_le_bytes(reader.array()?);
        let stale_until_ms = u64::from_le_bytes(reader.array()?);
        let csrf = reader.byte()? == 1;
        let offsets = u32::from_le_bytes(reader.array()?);
        let mut csrf_at = Vec::new();
        for _ in 0..offsets {
            csrf_at.push(u32::from_le_bytes(reader.array()?));
        }
        let content_type = String::from_utf8(reader.chunk()?.to_vec()).ok()?;
        let tag = String::from_utf8(reader.chunk()?.to_vec()).ok()?;
        let tag_count = u32::from_le_bytes(reader.array()?);
        let mut tags = Vec::new();
        for _ in 0..tag_count {
            tags.push(String::from_utf8(reader.chunk()?.to_vec()).ok()?);
        }
        let link_count = u32::from_le_bytes(reader.array()?);
        let mut links = Vec::new();
        for _ in 0..link_count {
            links.push(String::from_utf8(reader.chunk()?.to_vec()).ok()?);
        }
        let body = Bytes::copy_from_slice(reader.chunk()?);
        let mut copy = || -> Option<Option<Bytes>> {
            match reader.byte()? {
                1 => Some(Some(Bytes::copy_from_slice(reader.chunk()?))),
                _ => Some(None),
            }
        };
        let br = copy()?;
        let gzip = copy()?;
        Some(Entry {
            status,
            content_type,
            created_ms,
            fresh_until_ms,
            stale_until_ms,
            tags,
            csrf,
            csrf_at,
            body,
            br,
            gzip,
            tag,
            links,
            epoch: 0,
        })
    }
}

/// 3: CSRF offsets instead of a placeholder in the body; 4: `Link` values.
const VERSION: u8 = 4;

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(slice)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|slice| slice[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn chunk(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_refuse_garbage() {
        let entry = Entry {
            status: 200,
            content_type: "text/html; charset=utf-8".into(),
            created_ms: 1,
            fresh_until_ms: 2,
            stale_until_ms: 3,
            tags: vec!["a".into(), "product:7".into()],
            csrf: true,
            csrf_at: vec![3],
            body: Bytes::from_static(b"<p>hi</p>"),
            br: Some(Bytes::from_static(b"br")),
            gzip: None,
            tag: body_tag(b"<p>hi</p>"),
            links: vec!["</app.js>; rel=modulepreload".into()],
            epoch: 0,
        };
        let encoded = entry.encode();
        assert_eq!(Entry::decode(&encoded), Some(entry));
        assert_eq!(Entry::decode(&encoded[..encoded.len() - 1]), None);
        assert_eq!(Entry::decode(b"\x01rest"), None);
        assert_eq!(Entry::decode(b""), None);
    }

    #[test]
    fn freshness_follows_the_clock() {
        let entry = Entry {
            status: 200,
            content_type: String::new(),
            created_ms: 0,
            fresh_until_ms: 10,
            stale_until_ms: 20,
            tags: Vec::new(),
            csrf: false,
            csrf_at: Vec::new(),
            body: Bytes::new(),
            br: None,
            gzip: None,
            tag: String::new(),
            links: Vec::new(),
            epoch: 0,
        };
        assert_eq!(entry.freshness(5), Freshness::Fresh);
        assert_eq!(entry.freshness(15), Freshness::Stale);
        assert_eq!(entry.freshness(20), Freshness::Expired);
    }
}
