//! HTTP/1.1: one request at a time on a keep-alive connection, the
//! request written from bytes prepared once, the response head parsed with
//! `httparse` and the body read by `Content-Length` or chunked framing and
//! discarded. A general client (hyper, awc) would allocate a request and a
//! header map per request; the generator must not be slower than the
//! server it measures, and wrk's own client is built the same way.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Answer, ClientError, Stream};

/// Most header lines a response may have.
const MAX_HEADERS: usize = 64;
/// Largest response head read before the response counts as malformed.
const MAX_HEAD: usize = 64 * 1024;
/// Most body bytes kept for the caller; the rest is read and dropped.
const MAX_KEPT_BODY: usize = 64 * 1024;

/// One keep-alive connection.
pub(crate) struct Http1 {
    stream: Stream,
    buffer: Vec<u8>,
    /// Bytes of `buffer` read but not yet consumed.
    filled: usize,
}

impl Http1 {
    pub(super) fn new(stream: Stream) -> Http1 {
        Http1 {
            stream,
            buffer: vec![0; 16 * 1024],
            filled: 0,
        }
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
        // TLS may hold the last record back until flushed; TCP's flush is free.
        self.stream.flush().await?;
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
                    let mut answer = Answer::new(status);
                    let mut framing = Framing::None;
                    for header in response.headers.iter() {
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
                        } else if keep {
                            answer.keep_header(header.name, header.value);
                        }
                    }
                    // No body after a HEAD, a 1xx, 204 or 304, whatever
                    // the headers say.
                    if head_only || status == 204 || status == 304 || status < 200 {
                        framing = Framing::None;
                    } else if matches!(framing, Framing::None) {
                        // A body that runs to the close: not read here,
                        // and the connection cannot carry another request.
                        answer.closes = true;
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
                let room = MAX_KEPT_BODY.saturating_sub(answer.body.len()).min(take);
                answer.body.extend_from_slice(&self.buffer[..room]);
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
