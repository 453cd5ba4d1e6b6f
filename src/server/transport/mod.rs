//! From an accepted socket to actix-http: the connection caps
//! ([`caps`]), the deadlines on every read and write ([`guard`]), TLS, and
//! then actix-http's HTTP/1 and HTTP/2 dispatchers with the app.
//!
//! actix-web's `HttpServer` hands the socket straight to actix-http, with
//! no place to count, refuse or time a connection below HTTP; this is the
//! same assembly (an actix-server service per listener, an
//! `HttpService` per worker) with those three steps in front.

pub(crate) mod caps;
pub(crate) mod guard;
pub(crate) mod h2;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, Protocol};
use actix_server::ServerBuilder;
use actix_service::{
    IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, fn_factory, fn_service,
    map_config,
};
use actix_web::App;
use actix_web::body::BoxBody;
use actix_web::dev::{AppConfig, ServiceRequest, ServiceResponse};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use caps::ConnectionCaps;
use guard::{Deadlines, Guarded};

/// The connection-level settings, from `[server]`.
#[derive(Clone)]
pub(crate) struct Transport {
    pub(crate) deadlines: Deadlines,
    pub(crate) caps: Arc<ConnectionCaps>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) keep_alive: Duration,
    pub(crate) h2: h2::H2Limits,
}

/// How long a TLS handshake may take (actix-tls's default).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Adds `listener` to `builder`, serving the apps `app` makes (one per
/// worker and protocol) over `transport`.
pub(crate) fn listen<F, T>(
    builder: ServerBuilder,
    listener: TcpListener,
    transport: Transport,
    app: F,
) -> io::Result<ServerBuilder>
where
    F: Fn() -> App<T> + Clone + Send + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<BoxBody>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    let shutdown = builder.graceful_shutdown_signal();
    let local = listener.local_addr()?;
    builder.listen(format!("kiln-{local}"), listener, move || {
        let transport = transport.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        fn_factory(move || {
            let transport = transport.clone();
            let shutdown = shutdown.clone();
            // HTTP/2 streams go to an app of their own (see [`h2`]).
            let h2_app = map_config(
                app().into_factory().map_err(|error| error.error_response()),
                |_| AppConfig::default(),
            );
            let signal = shutdown.clone();
            let http = HttpService::build()
                .keep_alive(transport.keep_alive)
                .client_request_timeout(transport.deadlines.head)
                .client_disconnect_timeout(Duration::from_secs(1))
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                .local_addr(local)
                .on_connect_ext(|io: &Connection, data| {
                    data.insert(io.clock());
                })
                .finish(map_config(
                    app().into_factory().map_err(|error| error.error_response()),
                    |_| AppConfig::default(),
                ));
            async move {
                let workers = Workers {
                    http1: Rc::new(http.new_service(()).await.map_err(|_| ())?),
                    http2: match transport.tls {
                        Some(_) => Some(Rc::new(h2_app.new_service(()).await.map_err(|_| ())?)),
                        None => None,
                    },
                    acceptor: transport.tls.clone().map(TlsAcceptor::from),
                    shutdown,
                };
                let workers = Rc::new(workers);
                Ok::<_, ()>(fn_service(move |stream: TcpStream| {
                    serve(stream, transport.clone(), Rc::clone(&workers))
                }))
            }
        })
    })
}

/// What actix-http reads and writes: a guarded socket, with TLS or not.
pub(crate) enum Connection {
    Plain(Guarded<TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<Guarded<TcpStream>>>),
}

impl Connection {
    fn guarded(&self) -> &Guarded<TcpStream> {
        match self {
            Connection::Plain(stream) => stream,
            Connection::Tls(stream) => stream.get_ref().0,
        }
    }

    fn clock(&self) -> Rc<guard::ConnectionClock> {
        self.guarded().clock()
    }
}

/// What one worker serves connections with.
struct Workers<H1, H2> {
    /// actix-http's HTTP/1 dispatcher around the app.
    http1: Rc<H1>,
    /// The app HTTP/2 streams are handed to, with TLS.
    http2: Option<Rc<H2>>,
    acceptor: Option<TlsAcceptor>,
    shutdown: actix_server::GracefulShutdownSignal,
}

/// One accepted connection, from the caps to the end of its last request.
async fn serve<H1, H2>(
    stream: TcpStream,
    transport: Transport,
    workers: Rc<Workers<H1, H2>>,
) -> Result<(), ()>
where
    H1: Service<(Connection, Protocol, Option<SocketAddr>), Response = ()>,
    H2: Service<actix_http::Request> + 'static,
    H2::Response: Into<actix_http::Response<actix_http::body::BoxBody>>,
    H2::Error: Into<actix_http::Response<actix_http::body::BoxBody>>,
{
    let peer = stream.peer_addr().ok();
    let slot = match transport.caps.admit(peer.map(|addr| addr.ip())) {
        Ok(slot) => slot,
        Err(_) => {
            if workers.acceptor.is_none() {
                refuse(stream).await;
            }
            return Ok(());
        }
    };
    let _ = stream.set_nodelay(true);
    let guarded = Guarded::new(stream, transport.deadlines, slot);
    let connection = match &workers.acceptor {
        None => Connection::Plain(guarded),
        Some(acceptor) => {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(guarded));
            let Ok(Ok(tls)) = handshake.await else {
                return Ok(());
            };
            if tls.get_ref().1.alpn_protocol() == Some(&b"h2"[..])
                && let Some(app) = &workers.http2
            {
                tls.get_ref().0.clock().multiplexed();
                let shutdown = workers.shutdown.clone();
                h2::serve(tls, peer, Rc::clone(app), transport.h2, shutdown).await;
                return Ok(());
            }
            Connection::Tls(Box::new(tls))
        }
    };
    // Errors here are the client's (a reset, a malformed request, a
    // deadline): the connection is over either way.
    let _ = workers
        .http1
        .call((connection, Protocol::Http1, peer))
        .await;
    Ok(())
}

/// Tells a plain-HTTP client refused by a cap why, then closes. The
/// request is read (briefly, and no more than a head's worth) first: a
/// socket closed with unread bytes is reset, and a reset can reach the
/// client before the 503 does.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let refusal = async {
        stream.write_all(REFUSED).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                read => left -= read.min(left),
            }
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, refusal).await;
}

/// How long a refused connection is written to and read from before it
/// is closed.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Written to a plain-HTTP connection refused by a cap.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 41\r\n\
\r\n\
Too many connections; retry in a moment.\n";

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => std::pin::Pin::new(stream).poll_read(cx, buf),
            Connection::Tls(stream) => std::pin::Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => std::pin::Pin::new(stream).poll_write(cx, bytes),
            Connection::Tls(stream) => std::pin::Pin::new(stream).poll_write(cx, bytes),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => std::pin::Pin::new(stream).poll_flush(cx),
            Connection::Tls(stream) => std::pin::Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => std::pin::Pin::new(stream).poll_shutdown(cx),
            Connection::Tls(stream) => std::pin::Pin::new(stream).poll_shutdown(cx),
        }
    }
}
