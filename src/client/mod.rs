//! kiln's outbound HTTP client: HTTP/1.1 ([`http1`]) written by hand for
//! speed, HTTP/2 ([`http2`]) on the `h2` crate the server already uses,
//! either over TCP or TLS ([`tls`], rustls with ALPN). The load generator
//! drives servers with it; `http` jobs send their requests through
//! [`outbound`] (a keep-alive pool per origin, paced per host).
//!
//! A [`Dialer`] opens connections for one group of lanes: over HTTP/1.1
//! each lane has its own connection; over HTTP/2 the group's lanes share
//! one, each exchange a stream of it, as a browser multiplexes a page's
//! requests (h2load's `-m`, oha's `-p`).

mod http1;
mod http2;
pub(crate) mod outbound;
pub(crate) mod tls;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::LoadProtocol;
use http1::Http1;
use http2::Http2;

/// What one exchange gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    /// Body bytes received (after any transfer coding).
    pub body_bytes: u64,
    /// `ETag`, when `keep` asked for headers.
    pub etag: Option<String>,
    /// `Set-Cookie` values, when `keep` asked for headers.
    pub cookies: Vec<String>,
    /// `Location`, when `keep` asked for headers.
    pub location: Option<String>,
    /// The body, when `keep` asked for it.
    pub body: Vec<u8>,
    /// The server will close the connection after this response.
    pub closes: bool,
    /// `Retry-After` in seconds, when `keep` asked for headers.
    pub retry_after: Option<u64>,
}

impl Answer {
    fn new(status: u16) -> Answer {
        Answer {
            status,
            body_bytes: 0,
            etag: None,
            cookies: Vec::new(),
            location: None,
            body: Vec::new(),
            closes: false,
            retry_after: None,
        }
    }

    /// Keeps the headers the form flows read, when asked to.
    fn keep_header(&mut self, name: &str, value: &[u8]) {
        let text = || String::from_utf8_lossy(value).into_owned();
        if name.eq_ignore_ascii_case("etag") {
            self.etag = Some(text());
        } else if name.eq_ignore_ascii_case("set-cookie") {
            self.cookies.push(text());
        } else if name.eq_ignore_ascii_case("location") {
            self.location = Some(text());
        } else if name.eq_ignore_ascii_case("retry-after") {
            // Seconds; the HTTP-date form is left to the job's backoff.
            self.retry_after = text().trim().parse().ok();
        }
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("connect: {0}")]
    Connect(io::Error),
    #[error("tls: {0}")]
    Tls(String),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("http/2: {0}")]
    Http2(#[from] h2::Error),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("connection closed before the response ended")]
    Closed,
    #[error("{0}")]
    Url(String),
}

/// Where requests go and how.
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    /// TLS, for an `https://` target.
    pub tls: Option<tls::Tls>,
    pub protocol: LoadProtocol,
    /// Connections opened so far, by protocol spoken.
    opened: Opened,
}

/// Connections opened, by protocol.
#[derive(Default)]
struct Opened {
    http1: AtomicU64,
    http2: AtomicU64,
}

/// Connections opened over a stretch of time, by protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct OpenedCount {
    pub http1: u64,
    pub http2: u64,
}

impl Endpoint {
    pub(crate) fn new(addr: SocketAddr, tls: Option<tls::Tls>, protocol: LoadProtocol) -> Endpoint {
        Endpoint {
            addr,
            tls,
            protocol,
            opened: Opened::default(),
        }
    }

    /// Connections opened since the endpoint was made.
    pub(crate) fn opened(&self) -> OpenedCount {
        OpenedCount {
            http1: self.opened.http1.load(Ordering::Relaxed),
            http2: self.opened.http2.load(Ordering::Relaxed),
        }
    }

    async fn connect(&self) -> Result<(Stream, bool), ClientError> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            // Over plain TCP HTTP/2 is only spoken when asked for (prior
            // knowledge, h2c): there is no ALPN to agree on it.
            return Ok((Stream::Plain(tcp), self.protocol == LoadProtocol::Http2));
        };
        let stream = tls.connect(tcp).await?;
        let agreed_h2 = stream.get_ref().1.alpn_protocol() == Some(&b"h2"[..]);
        if self.protocol == LoadProtocol::Http2 && !agreed_h2 {
            return Err(ClientError::Tls(
                "the server did not agree to HTTP/2 (ALPN h2); loadtest.protocol = \"http2\" needs it"
                    .to_string(),
            ));
        }
        Ok((Stream::Tls(Box::new(stream)), agreed_h2))
    }
}

/// Opens connections for a group of lanes that share an HTTP/2 one.
#[derive(Clone)]
pub(crate) struct Dialer {
    endpoint: Arc<Endpoint>,
    shared: Rc<RefCell<Option<Http2>>>,
    /// Held while a connection for the group is being opened, so lanes
    /// starting together open one, not one each.
    dialing: Rc<tokio::sync::Mutex<()>>,
}

impl Dialer {
    /// A dialer whose connections nothing else shares.
    pub(crate) fn new(endpoint: &Arc<Endpoint>) -> Dialer {
        Dialer {
            endpoint: Arc::clone(endpoint),
            shared: Rc::new(RefCell::new(None)),
            dialing: Rc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn live_shared(&self) -> Option<Connection> {
        let shared = self.shared.borrow();
        let open = shared.as_ref().filter(|connection| connection.is_open())?;
        Some(Connection::Http2(open.clone()))
    }

    pub(crate) async fn open(&self) -> Result<Connection, ClientError> {
        if let Some(shared) = self.live_shared() {
            return Ok(shared);
        }
        let _dialing = self.dialing.lock().await;
        if let Some(shared) = self.live_shared() {
            return Ok(shared);
        }
        let (stream, http2) = self.endpoint.connect().await?;
        let opened = &self.endpoint.opened;
        if !http2 {
            opened.http1.fetch_add(1, Ordering::Relaxed);
            return Ok(Connection::Http1(Box::new(Http1::new(stream))));
        }
        opened.http2.fetch_add(1, Ordering::Relaxed);
        let scheme = if self.endpoint.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let connection = Http2::handshake(stream, scheme).await?;
        *self.shared.borrow_mut() = Some(connection.clone());
        Ok(Connection::Http2(connection))
    }
}

impl Dialer {
    /// Sends `request` on `connection`, opening one first when there is
    /// none; `keep` keeps headers and body.
    pub(crate) async fn exchange(
        &self,
        connection: &mut Option<Connection>,
        request: &[u8],
        keep: bool,
    ) -> Result<Answer, ClientError> {
        let open = match connection {
            Some(open) => open,
            None => connection.insert(self.open().await?),
        };
        open.exchange(request, false, keep).await
    }
}

/// One lane's connection.
pub(crate) enum Connection {
    Http1(Box<Http1>),
    Http2(Http2),
}

impl Connection {
    /// Sends `request` (HTTP/1.1 bytes, whatever the protocol spoken) and
    /// reads its response; `keep` keeps headers and the body for the
    /// caller (forms: tokens, cookies, redirects).
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        head_only: bool,
        keep: bool,
    ) -> Result<Answer, ClientError> {
        match self {
            Connection::Http1(connection) => connection.exchange(request, head_only, keep).await,
            Connection::Http2(connection) => connection.exchange(request, head_only, keep).await,
        }
    }
}

/// A connection's bytes, in clear or through TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
