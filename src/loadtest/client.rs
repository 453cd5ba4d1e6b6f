//! The load generator's HTTP/1.1 client: one keep-alive connection per
//! task, requests written from bytes prepared once, response heads parsed
//! with `httparse` and bodies read by `Content-Length` or chunked framing
//! and discarded. A general client (hyper, awc) would allocate a request
//! and a header map per request; the generator must not be slower than
//! the server it measures, and wrk's own client is built the same way.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most header lines a response may have.
const MAX_HEADERS: usize = 64;
/// Largest response head read before the response counts as malformed.
const MAX_HEAD: usize = 64 * 1024;

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
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("connection closed before the response ended")]
    Closed,
}

/// One keep-alive connection.
pub(crate) struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` read but not yet consumed.
    filled: usize,
}

impl Connection {
    pub(crate) async fn open(addr: SocketAddr) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(ClientError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            buffer: vec![0; 16 * 1024],
            filled: 0,
        })
    }

    /// Writes `request` and reads its response; `keep` keeps headers and
    /// the body for the caller (forms: tokens, cookies, redirects).
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        head_only: bool,
        keep: bool,
    ) -> Result<Answer, ClientError> {
        self.stream.write_all(request).await?;
        let (mut answer, head_len, framing) = self.read_head(keep, head_only).await?;
        self.consume(head_len);
        match framing {
            Framing::Length(length) => self.read_exact_body(length, keep, &mut answer).await?,
            Framing::Chunked => self.read_chunked(keep, &mut answer).await?,
            Framing::None => {}
        }
        Ok(answer)
    }

    async fn fill(&mut self) -> Result<(), ClientError> {
        if self.filled == self.buffer.len() {
            if self.buffer.len() >= MAX_HEAD {
                return Err(ClientError::Malformed("head too large"));
            }
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        let read = self.stream.read(&mut self.buffer[self.filled..]).await?;
        if read == 0 {
            return Err(ClientError::Closed);
        }
        self.filled += read;
        Ok(())
    }

    fn consume(&mut self, count: usize) {
        self.buffer.copy_within(count..self.filled, 0);
        self.filled -= count;
    }

    async fn read_head(
        &mut self,
        keep: bool,
        head_only: bool,
    ) -> Result<(Answer, usize, Framing), ClientError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buffer[..self.filled]) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = response.code.unwrap_or(0);
                    let mut answer = Answer {
                        status,
                        body_bytes: 0,
                        etag: None,
                        cookies: Vec::new(),
                        location: None,
                        body: Vec::new(),
                        closes: false,
                    };
                    let mut framing = Framing::None;
                    for header in response.headers.iter() {
                        let value = || String::from_utf8_lossy(header.value).into_owned();
                        if header.name.eq_ignore_ascii_case("content-length") {
                            let length = std::str::from_utf8(header.value)
                                .ok()
                                .and_then(|text| text.trim().parse().ok())
                                .ok_or(ClientError::Malformed("content-length"))?;
                            framing = Framing::Length(length);
                        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                            framing = Framing::Chunked;
                        } else if header.name.eq_ignore_ascii_case("connection") {
                            answer.closes = header.value.eq_ignore_ascii_case(b"close");
                        } else if keep && header.name.eq_ignore_ascii_case("etag") {
                            answer.etag = Some(value());
                        } else if keep && header.name.eq_ignore_ascii_case("set-cookie") {
                            answer.cookies.push(value());
                        } else if keep && header.name.eq_ignore_ascii_case("location") {
                            answer.location = Some(value());
                        }
                    }
                    // No body after a HEAD, a 1xx, 204 or 304, whatever
                    // the headers say.
                    if head_only || status == 204 || status == 304 || status < 200 {
                        framing = Framing::None;
                    }
                    return Ok((answer, head_len, framing));
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(_) => return Err(ClientError::Malformed("head")),
            }
        }
    }

    async fn read_exact_body(
        &mut self,
        mut length: u64,
        keep: bool,
        answer: &mut Answer,
    ) -> Result<(), ClientError> {
        answer.body_bytes += length;
        while length > 0 {
            if self.filled == 0 {
                self.fill().await?;
            }
            let take = (self.filled as u64).min(length) as usize;
            if keep {
                answer.body.extend_from_slice(&self.buffer[..take]);
            }
            self.consume(take);
            length -= take as u64;
        }
        Ok(())
    }

    async fn read_chunked(&mut self, keep: bool, answer: &mut Answer) -> Result<(), ClientError> {
        loop {
            let line = self.read_line().await?;
            let size_text = line.split(|&byte| byte == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(size_text)
                .ok()
                .and_then(|text| u64::from_str_radix(text.trim(), 16).ok())
                .ok_or(ClientError::Malformed("chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(());
            }
            self.read_exact_body(size, keep, answer).await?;
            if !self.read_line().await?.is_empty() {
                return Err(ClientError::Malformed("chunk end"));
            }
        }
    }

    /// One CRLF-terminated line, without its end.
    async fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(end) = self.buffer[..self.filled]
                .windows(2)
                .position(|pair| pair == b"\r\n")
            {
                let line = self.buffer[..end].to_vec();
                self.consume(end + 2);
                return Ok(line);
            }
            self.fill().await?;
        }
    }
}

enum Framing {
    Length(u64),
    Chunked,
    None,
}
