//! Response bodies assembled from parts: slices of in-memory files (no
//! copy), slices of on-disk files read in chunks, and literal bytes (the
//! separators of `multipart/byteranges`).

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::SizedStream;
use actix_web::web::{Bytes, BytesMut};
use futures_util::Stream;

use crate::http::table::Content;

/// How much of a disk file one chunk carries.
const CHUNK: u64 = 256 * 1024;

/// One piece of a body.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    Bytes(Bytes),
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
}

impl Part {
    /// `range` of `content` as a part.
    pub(crate) fn slice(content: &Content, range: std::ops::Range<u64>) -> Part {
        match content {
            Content::Memory(bytes) => {
                Part::Bytes(bytes.slice(range.start as usize..range.end as usize))
            }
            Content::Disk { file, .. } => Part::File {
                file: Arc::clone(file),
                offset: range.start,
                len: range.end - range.start,
            },
        }
    }

    pub(crate) fn len(&self) -> u64 {
        match self {
            Part::Bytes(bytes) => bytes.len() as u64,
            Part::File { len, .. } => *len,
        }
    }
}

/// A stream over parts. Disk reads are positional (`pread`) on the worker
/// thread: the files are open already and usually in the page cache, where a
/// read is a memory copy, which is what nginx does too.
pub(crate) struct PartStream {
    parts: VecDeque<Part>,
}

impl PartStream {
    /// A sized body (so `Content-Length` is set) over `parts`.
    pub(crate) fn body(parts: Vec<Part>) -> SizedStream<PartStream> {
        let len = parts.iter().map(Part::len).sum();
        SizedStream::new(
            len,
            PartStream {
                parts: parts.into(),
            },
        )
    }
}

impl PartStream {
    /// A stream with nothing in it (HEAD responses keep their length).
    pub(crate) fn empty() -> PartStream {
        PartStream {
            parts: VecDeque::new(),
        }
    }
}

impl Stream for PartStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(part) = self.parts.pop_front() else {
            return Poll::Ready(None);
        };
        match part {
            Part::Bytes(bytes) => Poll::Ready(Some(Ok(bytes))),
            Part::File { file, offset, len } => {
                let size = len.min(CHUNK);
                let mut buffer = BytesMut::zeroed(size as usize);
                if let Err(err) = file.read_exact_at(&mut buffer, offset) {
                    return Poll::Ready(Some(Err(err)));
                }
                if len > size {
                    self.parts.push_front(Part::File {
                        file,
                        offset: offset + size,
                        len: len - size,
                    });
                }
                Poll::Ready(Some(Ok(buffer.freeze())))
            }
        }
    }
}
