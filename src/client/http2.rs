//! HTTP/2 on the `h2` crate: one connection whose streams the lanes of a
//! group share. Requests are prepared once as HTTP/1.1 bytes for both
//! protocols; here they are read back (`httparse`) into an `http::Request`
//! with the hop-by-hop headers HTTP/2 forbids left out, and `Host` as the
//! authority.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::{Answer, ClientError, Stream};

/// Most header lines a prepared request has.
const MAX_HEADERS: usize = 32;
/// Flow-control windows as a browser's (Chrome opens 6 MB and 15 MB):
/// large enough that a response is not paced by window updates.
const STREAM_WINDOW: u32 = 6 << 20;
const CONNECTION_WINDOW: u32 = 15 << 20;

/// A handle on one HTTP/2 connection; clones share it.
#[derive(Clone)]
pub(crate) struct Http2 {
    sender: h2::client::SendRequest<Bytes>,
    /// Cleared when the connection's task ends (closed, GOAWAY, an error).
    alive: Arc<AtomicBool>,
    scheme: &'static str,
}

impl Http2 {
    pub(super) async fn handshake(
        stream: Stream,
        scheme: &'static str,
    ) -> Result<Http2, ClientError> {
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(stream)
            .await?;
        let alive = Arc::new(AtomicBool::new(true));
        let driving = Arc::clone(&alive);
        // The connection's frames are read and written by its own task;
        // exchanges only talk to it through their streams.
        tokio::spawn(async move {
            let _ = connection.await;
            driving.store(false, Ordering::Relaxed);
        });
        Ok(Http2 {
            sender,
            alive,
            scheme,
        })
    }

    pub(super) fn is_open(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    pub(super) async fn exchange(
        &mut self,
        request: &[u8],
        head_only: bool,
        keep: bool,
    ) -> Result<Answer, ClientError> {
        let (request, body) = self.request_of(request)?;
        let mut sender = self.sender.clone().ready().await?;
        let (response, mut outgoing) = sender.send_request(request, body.is_empty())?;
        if !body.is_empty() {
            outgoing.send_data(Bytes::copy_from_slice(body), true)?;
        }
        let response = response.await?;
        let (head, mut incoming) = response.into_parts();
        let mut answer = Answer::new(head.status.as_u16());
        if keep {
            for (name, value) in &head.headers {
                answer.keep_header(name.as_str(), value.as_bytes());
            }
        }
        if head_only {
            return Ok(answer);
        }
        while let Some(chunk) = incoming.data().await {
            let chunk = chunk?;
            answer.body_bytes += chunk.len() as u64;
            let _ = incoming.flow_control().release_capacity(chunk.len());
            if keep {
                answer.body.extend_from_slice(&chunk);
            }
        }
        Ok(answer)
    }

    /// The prepared HTTP/1.1 request as HTTP/2's head, and its body.
    fn request_of<'a>(
        &self,
        prepared: &'a [u8],
    ) -> Result<(http::Request<()>, &'a [u8]), ClientError> {
        let malformed = |_| ClientError::Malformed("prepared request");
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(head_len) = parsed.parse(prepared).map_err(malformed)?
        else {
            return Err(ClientError::Malformed("prepared request"));
        };
        let authority = parsed
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case("host"))
            .map(|header| String::from_utf8_lossy(header.value).into_owned())
            .unwrap_or_default();
        let mut builder = http::Request::builder()
            .method(parsed.method.unwrap_or("GET"))
            .uri(format!(
                "{}://{authority}{}",
                self.scheme,
                parsed.path.unwrap_or("/")
            ));
        for header in parsed.headers.iter() {
            if !HOP_BY_HOP
                .iter()
                .any(|name| header.name.eq_ignore_ascii_case(name))
            {
                builder = builder.header(header.name, header.value);
            }
        }
        let request = builder
            .body(())
            .map_err(|_| ClientError::Malformed("prepared request"))?;
        Ok((request, &prepared[head_len..]))
    }
}

/// Headers HTTP/2 carries otherwise (`Host` as `:authority`) or forbids.
const HOP_BY_HOP: [&str; 7] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];
