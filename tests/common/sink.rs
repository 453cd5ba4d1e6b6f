//! A webhook sink for `http` jobs: an HTTP/1.1 server on loopback that
//! records every request (method, target, headers, body) and answers with
//! the status its `answer` function gives for the request's number,
//! optionally after a delay; it also counts the most requests it held at
//! once (concurrency limits). Each connection is served on a thread of
//! its own, keep-alive.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the sink received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the sink answers request number `n` (from 0): a status and extra
/// header lines.
pub(crate) type Answer = dyn Fn(usize, &Received) -> (u16, &'static str) + Send + Sync;

pub(crate) struct Sink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

impl Sink {
    /// A sink answering 200 to everything.
    pub(crate) fn ok() -> Sink {
        Sink::start(Duration::ZERO, Arc::new(|_, _| (200, "")))
    }

    /// A sink that waits `delay` before each answer, then answers what
    /// `answer` says.
    pub(crate) fn start(delay: Duration, answer: Arc<Answer>) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        let addr = listener.local_addr().expect("an address");
        let sink = Sink {
            addr,
            received: Arc::default(),
            in_flight: Arc::default(),
            most_in_flight: Arc::default(),
        };
        let received = Arc::clone(&sink.received);
        let in_flight = Arc::clone(&sink.in_flight);
        let most = Arc::clone(&sink.most_in_flight);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let received = Arc::clone(&received);
                let answer = Arc::clone(&answer);
                let in_flight = Arc::clone(&in_flight);
                let most = Arc::clone(&most);
                std::thread::spawn(move || {
                    serve(stream, delay, answer.as_ref(), &received, &in_flight, &most)
                });
            }
        });
        sink
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The most requests the sink held at once.
    pub(crate) fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }
}

fn serve(
    stream: TcpStream,
    delay: Duration,
    answer: &Answer,
    received: &Mutex<Vec<Received>>,
    in_flight: &AtomicUsize,
    most: &AtomicUsize,
) {
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Received {
            method,
            target,
            headers,
            body,
        };
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        let number = {
            let mut all = received.lock().unwrap();
            all.push(request.clone());
            all.len() - 1
        };
        std::thread::sleep(delay);
        let (status, extra) = answer(number, &request);
        in_flight.fetch_sub(1, Ordering::SeqCst);
        // No body after 204 or 304 (a client would read it as the next
        // response's start).
        let body = if status == 204 || status == 304 {
            ""
        } else {
            "ok"
        };
        let response = format!(
            "HTTP/1.1 {status} Sink\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
