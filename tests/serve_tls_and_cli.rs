//! TLS (HTTP/2 by ALPN, HSTS only there) and the `kiln serve` binary
//! (start-up, SIGTERM).

mod common;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::http;
use common::server::{TestServer, site_with_pages};
use common::tls::{TestCertificates, certificates};

/// A TLS client configuration offering `alpn`, trusting only the test CA.
fn client_config(ca_der: &[u8], alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS client connection offering `alpn`, trusting only the test CA.
fn tls_connect(
    addr: std::net::SocketAddr,
    ca_der: &[u8],
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = client_config(ca_der, alpn);
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

#[test]
fn tls_negotiates_http2_and_sends_hsts() {
    let site = site_with_pages();
    let certs = certificates();
    site.write("tls/cert.pem", &certs.cert_pem);
    site.write("tls/key.pem", &certs.key_pem);
    let server = TestServer::start(
        &site,
        &[
            "server.tls_cert=\"tls/cert.pem\"",
            "server.tls_key=\"tls/key.pem\"",
        ],
    );
    assert!(server.running().base_url().starts_with("https://"));

    let h2 = tls_connect(server.addr, &certs.ca_der, &[b"h2", b"http/1.1"]);
    assert_eq!(h2.conn.alpn_protocol(), Some(&b"h2"[..]));

    let mut h1 = tls_connect(server.addr, &certs.ca_der, &[b"http/1.1"]);
    h1.write_all(b"GET /robots.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut bytes = Vec::new();
    let _ = h1.read_to_end(&mut bytes);
    let response = http::parse(&bytes, false);
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "User-agent: *\nAllow: /\n");
    assert_eq!(
        response.header("strict-transport-security"),
        Some("max-age=63072000; includeSubDomains")
    );
}

#[test]
fn tls_with_a_bad_key_fails_to_start_with_the_path() {
    let site = site_with_pages();
    site.write("tls/cert.pem", certificates().cert_pem);
    site.write("tls/key.pem", "not a key");
    let settings = site.settings(&[
        "server.tls_cert=\"tls/cert.pem\"",
        "server.tls_key=\"tls/key.pem\"",
    ]);
    let options = kiln::server::ServeOptions {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let err = kiln::server::start(&settings, options)
        .err()
        .expect("refuses to start");
    assert!(err.to_string().contains("key.pem"), "{err}");
}

/// Runs `kiln serve` and returns the child and the address it printed.
fn spawn_serve(root: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    let (child, address, _before) = spawn_serve_logging(root, extra);
    (child, address)
}

/// [`spawn_serve`], with the standard error lines printed before the address.
fn spawn_serve_logging(
    root: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "serve",
            "--root",
            root.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
            "--workers",
            "1",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = Vec::new();
    let address = loop {
        let line = lines
            .next()
            .expect("kiln serve prints its address")
            .unwrap();
        if let Some(at) = line.find("http://") {
            let rest = &line[at + "http://".len()..];
            break rest.split_whitespace().next().unwrap().to_string();
        }
        before.push(line);
    };
    (child, address, before)
}

/// The library logs through `tracing`; the binary prints its events as
/// lines of their own, `kiln: …` (and `warning: …`), as before.
#[test]
fn kiln_serve_prints_the_server_log_on_standard_error() {
    let site = common::Site::fixture("shop");
    let (mut child, _address, before) = spawn_serve_logging(site.root(), &[]);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        before
            .iter()
            .any(|line| line.starts_with("kiln: applied ") && line.contains("migration(s): ")),
        "{before:#?}"
    );
}

#[test]
fn kiln_serve_builds_serves_and_stops_gracefully_on_sigterm() {
    let site = common::Site::fixture("basic");
    let (mut child, address) = spawn_serve(site.root(), &[]);
    let addr = address.parse().unwrap();
    let css = site.output_of("css/site.css");
    assert_eq!(http::get(addr, &format!("/{css}"), &[]).status, 200);
    // SAFETY: kill(2) with a child's pid and SIGTERM.
    let result = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(result, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn kiln_serve_no_build_serves_the_existing_output() {
    let site = site_with_pages();
    let (mut child, address) = spawn_serve(site.root(), &["--no-build"]);
    let addr = address.parse().unwrap();
    // Pages added to dist/ by hand survive: nothing was rebuilt.
    assert_eq!(http::get(addr, "/about/", &[]).status, 200);
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn kiln_serve_with_a_bad_addr_exits_2() {
    let site = common::Site::empty();
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "serve",
            "--root",
            site.root().to_str().unwrap(),
            "--addr",
            "nowhere",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--addr"));
}

/// An HTTP/2 client over TLS, on a runtime of its own.
struct H2Client {
    runtime: tokio::runtime::Runtime,
    send: h2::client::SendRequest<bytes::Bytes>,
    /// What the server's SETTINGS allowed.
    max_concurrent_streams: usize,
}

impl H2Client {
    fn connect(addr: std::net::SocketAddr, ca_der: &[u8]) -> H2Client {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (send, max_concurrent_streams) = runtime.block_on(async {
            let config = client_config(ca_der, &[b"h2"]);
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let tls = connector.connect(name, tcp).await.unwrap();
            let (send, mut connection) = h2::client::handshake(tls).await.unwrap();
            // Drive the connection until the server's SETTINGS arrive.
            let max = std::future::poll_fn(|cx| {
                let _ = std::pin::Pin::new(&mut connection).poll(cx);
                match connection.max_concurrent_send_streams() {
                    usize::MAX => std::task::Poll::Pending,
                    max => std::task::Poll::Ready(max),
                }
            });
            let max = tokio::time::timeout(Duration::from_secs(10), max)
                .await
                .expect("the server's SETTINGS arrive");
            tokio::spawn(async move {
                let _ = connection.await;
            });
            (send, max)
        });
        H2Client {
            runtime,
            send,
            max_concurrent_streams,
        }
    }

    /// Sends a request; the status, headers and body, or the stream's error.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, ::http::HeaderMap, Vec<u8>), h2::Error> {
        let mut request = ::http::Request::builder()
            .method(method)
            .uri(format!("https://127.0.0.1{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).unwrap();
        let send = self.send.clone();
        self.runtime.block_on(async move {
            let mut send = send.ready().await?;
            let (response, _) = send.send_request(request, true)?;
            let response = response.await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Ok((status, headers, bytes))
        })
    }
}

fn tls_site() -> (common::Site, TestCertificates) {
    let site = site_with_pages();
    let certs = certificates();
    site.write("tls/cert.pem", &certs.cert_pem);
    site.write("tls/key.pem", &certs.key_pem);
    (site, certs)
}

const TLS: [&str; 2] = [
    "server.tls_cert=\"tls/cert.pem\"",
    "server.tls_key=\"tls/key.pem\"",
];

#[test]
fn http2_serves_files_and_pages_with_their_headers() {
    let (site, certs) = tls_site();
    let server = TestServer::start(&site, &TLS);
    let mut client = H2Client::connect(server.addr, &certs.ca_der);
    let (status, headers, body) = client.request("GET", "/robots.txt", &[]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, b"User-agent: *\nAllow: /\n");
    assert_eq!(headers["content-length"], "23");
    assert!(headers.contains_key("date"));
    assert!(headers.contains_key("etag"));
    assert!(!headers.contains_key("connection"));
    assert_eq!(
        headers["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
    let (status, headers, body) = client.request("HEAD", "/robots.txt", &[]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["content-length"], "23");
    assert!(body.is_empty());
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (status, _, body) = client
        .request("GET", "/robots.txt", &[("if-none-match", &etag)])
        .unwrap();
    assert_eq!(status, 304);
    assert!(body.is_empty());
    let (status, _, _) = client.request("GET", "/no-such-page", &[]).unwrap();
    assert_eq!(status, 404);
}

/// HTTP/2 with no stream limit, and 16 MiB header lists decoded before
/// kiln's own 16 KiB check.
#[test]
fn http2_streams_and_header_lists_are_limited() {
    let (site, certs) = tls_site();
    let mut overrides = TLS.to_vec();
    overrides.push("server.h2_max_concurrent_streams=8");
    let server = TestServer::start(&site, &overrides);
    let mut client = H2Client::connect(server.addr, &certs.ca_der);
    assert_eq!(client.max_concurrent_streams, 8);
    let huge = "a".repeat(64 * 1024);
    let refused = client.request("GET", "/robots.txt", &[("x-huge", &huge)]);
    assert!(
        !matches!(refused, Ok((200, _, _))),
        "a 64 KiB header list was answered"
    );
    // The server is still there for well-behaved clients.
    let mut client = H2Client::connect(server.addr, &certs.ca_der);
    let (status, _, _) = client.request("GET", "/robots.txt", &[]).unwrap();
    assert_eq!(status, 200);
}

/// Streams opened and reset at once, thousands of them (CVE-2023-44487):
/// the server stays up and answers others.
#[test]
fn http2_rapid_reset_does_not_take_the_server_down() {
    let (site, certs) = tls_site();
    let server = TestServer::start(&site, &TLS);
    let attacker = H2Client::connect(server.addr, &certs.ca_der);
    let send = attacker.send.clone();
    attacker.runtime.block_on(async move {
        for _ in 0..5000 {
            let Ok(mut ready) = send.clone().ready().await else {
                break;
            };
            let request = ::http::Request::get("https://127.0.0.1/").body(()).unwrap();
            // Dropping both halves of the stream resets it.
            match ready.send_request(request, true) {
                Ok(stream) => drop(stream),
                Err(_) => break,
            }
        }
    });
    let mut client = H2Client::connect(server.addr, &certs.ca_der);
    let (status, _, _) = client.request("GET", "/robots.txt", &[]).unwrap();
    assert_eq!(status, 200);
}

/// Slowloris over HTTP/2: a stream's HEADERS sent without END_HEADERS and
/// its CONTINUATION never sent. h2 waits for the rest of the block, so no
/// stream is ever in flight; the connection is sent GOAWAY when idle for
/// `keep_alive_secs`, and dropped `header_timeout_secs` later, since the
/// client never finishes the block nor answers the GOAWAY's PING.
#[test]
fn http2_header_block_left_unfinished_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (site, certs) = tls_site();
    let mut overrides = TLS.to_vec();
    overrides.extend(["server.keep_alive_secs=1", "server.header_timeout_secs=1"]);
    let server = TestServer::start(&site, &overrides);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let closed = runtime.block_on(async {
        let config = client_config(&certs.ca_der, &[b"h2"]);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // SETTINGS, empty.
        frames.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        // HEADERS on stream 1, one byte of block (`:method: GET`), no flags.
        frames.extend_from_slice(&[0, 0, 1, 0x1, 0, 0, 0, 0, 1, 0x82]);
        tls.write_all(&frames).await.unwrap();
        tls.flush().await.unwrap();
        // Read (and ignore) what the server sends until it closes.
        let mut buffer = [0u8; 4096];
        let until_closed = async {
            loop {
                match tls.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), until_closed)
            .await
            .is_ok()
    });
    assert!(closed, "the unfinished header block kept its connection");
    let mut client = H2Client::connect(server.addr, &certs.ca_der);
    let (status, _, _) = client.request("GET", "/robots.txt", &[]).unwrap();
    assert_eq!(status, 200);
}
