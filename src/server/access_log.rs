//! Access logs in NCSA common or combined format, or JSON lines. Lines are
//! formatted on the worker and written by a dedicated thread, so a slow
//! terminal or pipe never stalls a request; if the writer falls far behind,
//! lines are dropped rather than blocking.

use std::io::Write;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use crate::config::AccessLogFormat;

/// Lines queued before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// One finished request, as the log sees it.
pub struct LogEntry<'a> {
    pub peer: Option<IpAddr>,
    pub time: SystemTime,
    pub method: &'a str,
    /// Path and query as the client sent them.
    pub target: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub body_bytes: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub duration: Duration,
}

/// The access log; cheap to clone into every worker.
#[derive(Clone, Debug)]
pub struct AccessLog {
    format: AccessLogFormat,
    sender: Option<SyncSender<String>>,
}

impl AccessLog {
    /// A log to standard output in `format` (nothing for `Off`).
    pub fn stdout(format: AccessLogFormat) -> AccessLog {
        AccessLog::to_writer(format, Box::new(std::io::stdout()))
    }

    /// A log to any writer (tests capture it).
    pub fn to_writer(format: AccessLogFormat, writer: Box<dyn Write + Send>) -> AccessLog {
        if format == AccessLogFormat::Off {
            return AccessLog {
                format,
                sender: None,
            };
        }
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("kiln-access-log".into())
            .spawn(move || write_lines(receiver, writer));
        AccessLog {
            format,
            sender: spawned.ok().map(|_| sender),
        }
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    pub fn record(&self, entry: &LogEntry) {
        let Some(sender) = &self.sender else { return };
        let line = format_line(self.format, entry);
        if let Err(TrySendError::Full(_)) = sender.try_send(line) {
            // The writer is behind: drop the line rather than stall a worker.
        }
    }
}

fn write_lines(receiver: Receiver<String>, writer: Box<dyn Write + Send>) {
    let mut writer = std::io::BufWriter::new(writer);
    while let Ok(line) = receiver.recv() {
        let _ = writer.write_all(line.as_bytes());
        // Batch whatever else is queued, then flush once.
        while let Ok(line) = receiver.try_recv() {
            let _ = writer.write_all(line.as_bytes());
        }
        let _ = writer.flush();
    }
}

fn format_line(format: AccessLogFormat, entry: &LogEntry) -> String {
    let peer = entry
        .peer
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "-".into());
    let request = format!("{} {} {}", entry.method, entry.target, entry.version);
    match format {
        AccessLogFormat::Off => String::new(),
        AccessLogFormat::Common | AccessLogFormat::Combined => {
            let mut line = format!(
                "{peer} - - [{}] \"{}\" {} {}",
                clf_time(entry.time),
                escape_quoted(&request),
                entry.status,
                entry.body_bytes
            );
            if format == AccessLogFormat::Combined {
                line.push_str(&format!(
                    " \"{}\" \"{}\"",
                    escape_quoted(entry.referer.unwrap_or("-")),
                    escape_quoted(entry.user_agent.unwrap_or("-"))
                ));
            }
            line.push('\n');
            line
        }
        AccessLogFormat::Json => {
            let value = serde_json::json!({
                "time": iso_time(entry.time),
                "remote": peer,
                "method": entry.method,
                "target": entry.target,
                "version": entry.version,
                "status": entry.status,
                "bytes": entry.body_bytes,
                "duration_ms": entry.duration.as_secs_f64() * 1000.0,
                "referer": entry.referer,
                "user_agent": entry.user_agent,
            });
            format!("{value}\n")
        }
    }
}

/// Escapes `"` and `\` and control characters, so a hostile request line
/// cannot forge log fields.
fn escape_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Calendar date and time (UTC).
fn civil(time: SystemTime) -> (i32, u8, u8, u8, u8, u8) {
    let at = ::time::OffsetDateTime::from(time);
    (
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
    )
}

/// `27/Nov/2026:13:05:09 +0000`
fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, hour, minute, second) = civil(time);
    let month = MONTHS[usize::from(month.saturating_sub(1))];
    format!("{day:02}/{month}/{year}:{hour:02}:{minute:02}:{second:02} +0000")
}

/// `2026-11-27T13:05:09Z`
fn iso_time(time: SystemTime) -> String {
    let (year, month, day, hour, minute, second) = civil(time);
    format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn entry() -> LogEntry<'static> {
        LogEntry {
            peer: Some("127.0.0.1".parse().unwrap()),
            time: UNIX_EPOCH + Duration::from_secs(1_795_784_709),
            method: "GET",
            target: "/a \"b\"",
            version: "HTTP/1.1",
            status: 200,
            body_bytes: 1234,
            referer: None,
            user_agent: Some("curl/8"),
            duration: Duration::from_micros(250),
        }
    }

    #[test]
    fn common_and_combined_lines() {
        let common = format_line(AccessLogFormat::Common, &entry());
        assert_eq!(
            common,
            "127.0.0.1 - - [27/Nov/2026:13:05:09 +0000] \"GET /a \\\"b\\\" HTTP/1.1\" 200 1234\n"
        );
        let combined = format_line(AccessLogFormat::Combined, &entry());
        assert!(
            combined.ends_with(" 200 1234 \"-\" \"curl/8\"\n"),
            "{combined}"
        );
    }

    #[test]
    fn json_lines_parse() {
        let line = format_line(AccessLogFormat::Json, &entry());
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["status"], 200);
        assert_eq!(value["time"], "2026-11-27T13:05:09Z");
        assert_eq!(value["target"], "/a \"b\"");
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(iso_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            iso_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_quoted("a\nb\u{1b}"), "a\\x0ab\\x1b");
    }
}
