//! Driving `kiln watch` from tests: the process with its terminal lines, and
//! a client of its live-reload event stream.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// How long a test waits for a rebuild before failing (generous: CI
/// machines are slow and shared).
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// A running `kiln watch`, killed when dropped.
pub(crate) struct WatchProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Standard output, line by line (the per-rebuild lines).
    lines: Receiver<String>,
    /// Standard error so far, for failure messages.
    errors: Receiver<String>,
}

impl WatchProcess {
    pub(crate) fn start(root: &Path, extra: &[&str]) -> WatchProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["watch", "--root", root.to_str().unwrap()])
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kiln watch starts");
        let lines = forward(child.stdout.take().expect("stdout"));
        let errors = forward(child.stderr.take().expect("stderr"));
        let mut process = WatchProcess {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            lines,
            errors,
        };
        let serving = process.wait_for_line(|line| line.contains("serving http://"));
        let at = serving.find("http://").unwrap() + "http://".len();
        process.addr = serving[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .expect("an address");
        process
    }

    /// The next standard output line matching `wanted` (earlier ones are dropped).
    pub(crate) fn wait_for_line(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!(
            "kiln watch printed no such line; stderr:\n{}",
            self.stderr()
        );
    }

    /// Standard error printed so far.
    pub(crate) fn stderr(&self) -> String {
        self.errors.try_iter().collect::<Vec<_>>().join("\n")
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the process to exit (after a signal).
    pub(crate) fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }
}

impl Drop for WatchProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub name: String,
    pub data: serde_json::Value,
}

/// A connection to `/__kiln/events`, reading the chunked stream.
pub(crate) struct EventStream {
    reader: BufReader<TcpStream>,
    pending: String,
}

impl EventStream {
    pub(crate) fn connect(addr: SocketAddr) -> EventStream {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            stream,
            "GET /__kiln/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut chunked = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-type:") {
                assert!(lower.contains("text/event-stream"), "{line}");
            }
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            if line == "\r\n" {
                break;
            }
        }
        assert!(chunked, "the stream is chunked");
        EventStream {
            reader,
            pending: String::new(),
        }
    }

    /// The next event that is not a heartbeat; `None` when the server closed
    /// the stream.
    pub(crate) fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                match parse_event(&block) {
                    Some(event) => return Some(event),
                    // A heartbeat: give the caller a chance to check its deadline.
                    None if block.starts_with(':') => {
                        return Some(Event {
                            name: "heartbeat".into(),
                            data: serde_json::Value::Null,
                        });
                    }
                    None => continue,
                }
            }
            let mut size = String::new();
            if self.reader.read_line(&mut size).ok()? == 0 {
                return None;
            }
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).ok()?;
            self.pending
                .push_str(&String::from_utf8_lossy(&chunk[..size]));
        }
    }

    /// The next event named `name`, skipping others (heartbeats arrive
    /// every 15 s, so the deadline is checked at least that often).
    pub(crate) fn next_named(&mut self, name: &str) -> Event {
        let deadline = Instant::now() + PATIENCE;
        let mut skipped = Vec::new();
        while Instant::now() < deadline {
            match self.next() {
                Some(event) if event.name == name => return event,
                Some(event) => skipped.push(event),
                None => panic!("the stream ended before a `{name}` event; got {skipped:?}"),
            }
        }
        panic!("no `{name}` event in time; got {skipped:?}");
    }
}

fn parse_event(block: &str) -> Option<Event> {
    let mut name = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            name = Some(value.to_string());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data.push_str(value);
        }
    }
    Some(Event {
        name: name?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
    })
}
