//! Deadlines on a connection's reads and writes, enforced below HTTP, so a
//! client that dribbles bytes or stops reading cannot hold a connection.
//!
//! actix-http times only a connection's first request head, and once a
//! byte of a later request arrives its keep-alive timer stops: a client
//! that answers one request and then sends the next head a byte every two
//! seconds kept its connection forever. Here every HTTP/1 request head
//! must be complete within `server.header_timeout_secs` of its first byte,
//! a connection with nothing to do is closed once it has been idle for
//! `server.keep_alive_secs` plus that, and a write the client does not
//! drain for `server.send_timeout_secs` closes it too (nginx's
//! `client_header_timeout`, `keepalive_timeout` and `send_timeout`).
//!
//! The stream cannot see where a request ends, so the requests read from
//! it tell it, through the [`ConnectionClock`] actix keeps in the
//! connection's data: [`ConnectionClock::request_started`] when a head has
//! been parsed, [`ConnectionClock::request_answered`] when its response is
//! out. While a request is being handled no read deadline applies: its
//! body is bounded by the body deadline of [`crate::http::body`], its
//! handler by the statement timeout.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// Reading a head that must be complete by the deadline.
    Head { deadline: Instant },
    /// A request is being read or handled.
    Handling,
    /// The response is out; the next head has not begun.
    Answered,
    /// HTTP/2 multiplexes requests: no head deadline applies to the
    /// connection (h2's own pings close idle ones).
    Multiplexed,
}

/// Shared by a connection's stream and its requests.
#[derive(Debug)]
pub(crate) struct ConnectionClock {
    phase: Cell<Phase>,
    requests: Cell<u64>,
    max_requests: u64,
}

impl ConnectionClock {
    fn new(deadlines: &Deadlines) -> ConnectionClock {
        ConnectionClock {
            phase: Cell::new(Phase::Head {
                deadline: Instant::now() + deadlines.head,
            }),
            requests: Cell::new(0),
            max_requests: deadlines.max_requests,
        }
    }

    /// A request head has been parsed. Returns whether the connection
    /// should close after this request (its keep-alive allowance is spent).
    pub(crate) fn request_started(&self) -> bool {
        if self.phase.get() != Phase::Multiplexed {
            self.phase.set(Phase::Handling);
        }
        let served = self.requests.get() + 1;
        self.requests.set(served);
        served >= self.max_requests
    }

    /// The request's response has been produced. A head that began
    /// meanwhile (a pipelined request) keeps its deadline.
    pub(crate) fn request_answered(&self) {
        if self.phase.get() == Phase::Handling {
            self.phase.set(Phase::Answered);
        }
    }

    /// The connection speaks HTTP/2.
    pub(crate) fn multiplexed(&self) {
        self.phase.set(Phase::Multiplexed);
    }
}

/// A stream whose reads and writes keep to the [`Deadlines`].
pub(crate) struct Guarded<S> {
    inner: S,
    clock: Rc<ConnectionClock>,
    deadlines: Deadlines,
    /// Set when a read found nothing after the response went out.
    idle_since: Option<Instant>,
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
            idle_since: None,
            stalled_since: None,
            read_timer: None,
            write_timer: None,
            slot,
        }
    }

    pub(crate) fn clock(&self) -> Rc<ConnectionClock> {
        Rc::clone(&self.clock)
    }

    /// Bytes arrived: a head begins if none was expected to be underway.
    fn on_bytes_read(&mut self) {
        self.idle_since = None;
        if self.clock.phase.get() == Phase::Answered {
            self.clock.phase.set(Phase::Head {
                deadline: Instant::now() + self.deadlines.head,
            });
        }
    }

    /// When a read that found nothing must give up, and what it waited for.
    fn read_deadline(&mut self) -> Option<(Instant, TimedOut)> {
        match self.clock.phase.get() {
            Phase::Head { deadline } => Some((deadline, TimedOut::Head)),
            // While a write is stalled, the write's own deadline applies.
            Phase::Answered if self.stalled_since.is_none() => {
                let since = *self.idle_since.get_or_insert_with(Instant::now);
                Some((since + self.deadlines.idle, TimedOut::Idle))
            }
            Phase::Answered | Phase::Handling | Phase::Multiplexed => None,
        }
    }

    fn timed_out(&self, what: TimedOut) -> io::Error {
        self.slot.metrics().timed_out(what);
        io::Error::new(io::ErrorKind::TimedOut, what.reason())
    }
}

/// Polls `timer`, set (or moved) to `deadline`: ready once it has passed.
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
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match this.read_deadline() {
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
                this.idle_since = None;
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
