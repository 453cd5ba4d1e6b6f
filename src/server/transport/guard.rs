//! Deadlines on a connection's reads and writes, enforced below HTTP, so a
//! client that dribbles bytes or stops reading cannot hold a connection.
//!
//! actix-http times only a connection's first request head, and once a
//! byte of a later request arrives its keep-alive timer stops: a client
//! that answers one request and then sends the next head a byte every two
//! seconds kept its connection forever. Here every HTTP/1 request head
//! must be complete within `server.header_timeout_secs` of its first byte
//! (taken, to spare the common request a clock read, as the first read
//! that finds the head unfinished); bytes that arrived while a request
//! was handled (a pipelined head actix-http buffers out of our sight) must
//! become a request within `server.keep_alive_secs` plus that; and a write
//! the client does not drain for `server.send_timeout_secs` closes the
//! connection too (nginx's `client_header_timeout` and `send_timeout`).
//! An idle connection is closed by actix-http's own keep-alive timer.
//!
//! The stream cannot see where a request ends, so the requests read from
//! it tell it, through the [`ConnectionClock`] actix keeps in the
//! connection's data: [`ConnectionClock::request_started`] when a head has
//! been parsed, [`ConnectionClock::request_answered`] when its response is
//! out. While a request is being handled no read deadline applies: its
//! body is bounded where it is read ([`crate::http::request_body`]), its
//! handler by the statement timeout. A read that finds the connection
//! closed tells [`ConnectionClock::client_gone`], which stops the reads
//! still being handled.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::caps::Slot;
use crate::http::metrics::TimedOut;

/// The deadlines, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// From a request head's first byte to its last.
    pub(crate) head: Duration,
    /// From the last byte written to the next request's first.
    pub(crate) idle: Duration,
    /// How long a write may wait for the client to drain its window.
    pub(crate) send: Duration,
    /// Requests answered on one connection before it is closed.
    pub(crate) max_requests: u64,
}

/// Where an HTTP/1 connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Reading a head. Its deadline is fixed the first time a read finds
    /// nothing more before the head's blank line has been seen: a head
    /// that arrives whole (the common request) reads no clock and arms no
    /// timer, though actix-http reads until the socket is empty before it
    /// parses.
    Head {
        deadline: Option<Instant>,
        allowed: Allowed,
        complete: bool,
    },
    /// A request is being handled; `read` says whether bytes arrived
    /// meanwhile (a body, or a pipelined head).
    Handling { read: bool },
    /// The response is out and nothing has arrived since: actix-http's
    /// keep-alive timer closes the connection if nothing does.
    Answered,
    /// HTTP/2 multiplexes requests: no head deadline applies to the
    /// connection (`transport::h2` closes idle ones).
    Multiplexed,
}

/// How long a head in progress may take, and what running out is called.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Allowed {
    /// `server.header_timeout_secs`, from the head's first byte.
    Head,
    /// Keep-alive plus that, from the response: bytes that arrived while
    /// the last request was handled may be the start of the next head,
    /// buffered by actix-http where no read of ours sees it end.
    Idle,
}

/// Shared by a connection's stream and its requests.
#[derive(Debug)]
pub(crate) struct ConnectionClock {
    phase: Cell<Phase>,
    requests: Cell<u64>,
    max_requests: u64,
    /// [`Deadlines::idle`].
    idle: Duration,
    /// The client closed the connection (or it broke).
    gone: Cell<bool>,
    on_gone: Notify,
}

impl ConnectionClock {
    fn new(deadlines: &Deadlines) -> ConnectionClock {
        ConnectionClock {
            phase: Cell::new(Phase::Head {
                deadline: None,
                allowed: Allowed::Head,
                complete: false,
            }),
            requests: Cell::new(0),
            max_requests: deadlines.max_requests,
            idle: deadlines.idle,
            gone: Cell::new(false),
            on_gone: Notify::new(),
        }
    }

    /// Resolves once the client has closed the connection: a request still
    /// being handled can stop, and give back what it holds (its query).
    /// A client that only half-closes (shuts down its sending side and
    /// waits for the answer) looks the same; HTTP/1.1 clients do not.
    pub(crate) async fn client_gone(&self) {
        let notified = self.on_gone.notified();
        if self.gone.get() {
            return;
        }
        notified.await;
    }

    fn went(&self) {
        if !self.gone.replace(true) {
            self.on_gone.notify_waiters();
        }
    }

    /// A request head has been parsed. Returns whether the connection
    /// should close after this request (its keep-alive allowance is spent).
    pub(crate) fn request_started(&self) -> bool {
        if self.phase.get() != Phase::Multiplexed {
            self.phase.set(Phase::Handling { read: false });
        }
        let served = self.requests.get() + 1;
        self.requests.set(served);
        served >= self.max_requests
    }

    /// The request's response has been produced.
    pub(crate) fn request_answered(&self) {
        match self.phase.get() {
            Phase::Handling { read: false } => self.phase.set(Phase::Answered),
            Phase::Handling { read: true } => self.phase.set(Phase::Head {
                deadline: Some(Instant::now() + self.idle),
                allowed: Allowed::Idle,
                complete: false,
            }),
            _ => {}
        }
    }

    /// The connection speaks HTTP/2.
    pub(crate) fn multiplexed(&self) {
        self.phase.set(Phase::Multiplexed);
    }

    /// Bytes arrived; `before` are the last three that came earlier.
    fn bytes_read(&self, before: [u8; 3], bytes: &[u8]) {
        match self.phase.get() {
            Phase::Answered => self.phase.set(Phase::Head {
                deadline: None,
                allowed: Allowed::Head,
                complete: ends_head(before, bytes),
            }),
            Phase::Head {
                deadline,
                allowed,
                complete: false,
            } if ends_head(before, bytes) => self.phase.set(Phase::Head {
                deadline,
                allowed,
                complete: true,
            }),
            Phase::Handling { read: false } => self.phase.set(Phase::Handling { read: true }),
            _ => {}
        }
    }

    /// When a read that found nothing must give up, and what it waited for.
    fn read_deadline(&self, deadlines: &Deadlines) -> Option<(Instant, TimedOut)> {
        let Phase::Head {
            deadline,
            allowed,
            complete: false,
        } = self.phase.get()
        else {
            return None;
        };
        let deadline = deadline.unwrap_or_else(|| {
            let fixed = Instant::now() + deadlines.head;
            self.phase.set(Phase::Head {
                deadline: Some(fixed),
                allowed,
                complete: false,
            });
            fixed
        });
        let what = match allowed {
            Allowed::Head => TimedOut::Head,
            Allowed::Idle => TimedOut::Idle,
        };
        Some((deadline, what))
    }
}

/// Whether `bytes`, read after `before`, hold the blank line that ends a
/// request head (`\r\n\r\n`, or a bare `\n\n`, which parsers accept).
/// A head that arrives alone (a GET) ends the read, which is checked first.
fn ends_head(before: [u8; 3], bytes: &[u8]) -> bool {
    let at = |index: usize| -> u8 {
        // `index` counts from the start of `before`.
        if index < 3 {
            before[index]
        } else {
            bytes[index - 3]
        }
    };
    let blank_line_ends_at = |newline: usize| {
        let end = newline + 3;
        at(end - 1) == b'\n' || (at(end - 1) == b'\r' && at(end - 2) == b'\n')
    };
    let Some(last) = bytes.len().checked_sub(1) else {
        return false;
    };
    if bytes[last] == b'\n' && blank_line_ends_at(last) {
        return true;
    }
    // Split across reads, or followed by a body in the same read.
    bytes
        .iter()
        .take(2)
        .enumerate()
        .any(|(index, byte)| *byte == b'\n' && blank_line_ends_at(index))
        || memchr::memmem::find(bytes, b"\n\r\n").is_some()
        || memchr::memmem::find(bytes, b"\n\n").is_some()
}

/// A stream whose reads and writes keep to the [`Deadlines`].
pub(crate) struct Guarded<S> {
    inner: S,
    clock: Rc<ConnectionClock>,
    deadlines: Deadlines,
    /// The last three bytes read, for a head's end split across reads.
    last_read: [u8; 3],
    /// Set when a write found the client's window full.
    stalled_since: Option<Instant>,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// Holds the connection's place under the connection caps, and the
    /// metrics' count of open connections, until the stream is dropped.
    slot: Slot,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, deadlines: Deadlines, slot: Slot) -> Guarded<S> {
        Guarded {
            inner,
            clock: Rc::new(ConnectionClock::new(&deadlines)),
            deadlines,
            last_read: [0; 3],
            stalled_since: None,
            read_timer: None,
            write_timer: None,
            slot,
        }
    }

    pub(crate) fn clock(&self) -> Rc<ConnectionClock> {
        Rc::clone(&self.clock)
    }

    fn timed_out(&self, what: TimedOut) -> io::Error {
        self.slot.metrics().timed_out(what);
        io::Error::new(io::ErrorKind::TimedOut, what.reason())
    }
}

/// The last three bytes of `before` followed by `bytes`.
fn last_three(before: [u8; 3], bytes: &[u8]) -> [u8; 3] {
    match bytes {
        [.., a, b, c] => [*a, *b, *c],
        [a, b] => [before[2], *a, *b],
        [a] => [before[1], before[2], *a],
        [] => before,
    }
}

/// Polls `timer`, set (or moved) to `deadline`: ready once it has passed.
/// Only reads waiting on an unfinished head, and writes a client does not
/// drain, get here.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    let timer = match timer {
        Some(timer) => {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            timer
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    timer.as_mut().poll(cx).is_ready()
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled();
                if filled.len() > before {
                    let bytes = &filled[before..];
                    this.clock.bytes_read(this.last_read, bytes);
                    this.last_read = last_three(this.last_read, bytes);
                } else if room {
                    this.clock.went();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => {
                this.clock.went();
                Poll::Ready(Err(error))
            }
            Poll::Pending => match this.clock.read_deadline(&this.deadlines) {
                Some((deadline, what)) if expired(&mut this.read_timer, deadline, cx) => {
                    Poll::Ready(Err(this.timed_out(what)))
                }
                _ => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, bytes) {
            Poll::Ready(result) => {
                this.stalled_since = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let since = *this.stalled_since.get_or_insert_with(Instant::now);
                if expired(&mut this.write_timer, since + this.deadlines.send, cx) {
                    return Poll::Ready(Err(this.timed_out(TimedOut::Send)));
                }
                Poll::Pending
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_head_is_found_across_reads() {
        let none = [0; 3];
        assert!(ends_head(none, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(ends_head(none, b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(!ends_head(none, b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!ends_head(none, b"\n"));
        // Split after each byte of the blank line.
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for split in head.len() - 4..head.len() {
            let (first, second) = head.split_at(split);
            let before = last_three(none, first);
            assert!(!ends_head(none, first) || split == head.len());
            assert!(ends_head(before, second), "split at {split}");
        }
        assert_eq!(last_three([1, 2, 3], b"a"), [2, 3, b'a']);
        assert_eq!(last_three([1, 2, 3], b"ab"), [3, b'a', b'b']);
        assert_eq!(last_three([1, 2, 3], b"abcd"), [b'b', b'c', b'd']);
    }
}
