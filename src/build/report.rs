//! What a build tells its caller: progress while it runs, and a summary of
//! the outputs with raw and compressed sizes when it is done (like Vite's).

use std::time::Duration;

pub use crate::site::units::human_size;

/// Receives progress events. Implementations must be cheap: stages call
/// `advance` from worker threads.
pub trait Progress: Sync {
    /// A stage begins with `total` units of work.
    fn stage(&self, name: &str, total: usize);
    /// One unit of the current stage is done.
    fn advance(&self);
    /// One unit of the current stage, `what`, started at `started`, is
    /// done (`kiln build --timings` records it).
    fn done(&self, what: &str, started: std::time::Instant) {
        let _ = (what, started);
        self.advance();
    }
    /// Work that is not one of the stage's counted units (the script
    /// bundle, the pages' rendering) ran from `started` until now.
    fn timed(&self, what: &str, started: std::time::Instant) {
        let _ = (what, started);
    }
}

/// Progress that goes nowhere (tests, library use).
pub struct Silent;

impl Progress for Silent {
    fn stage(&self, _name: &str, _total: usize) {}
    fn advance(&self) {}
}

/// A progress bar on a terminal (indicatif), one line per stage otherwise
/// (logs and CI stay readable).
pub struct ConsoleProgress {
    bar: Option<indicatif::ProgressBar>,
}

impl ConsoleProgress {
    pub fn new() -> ConsoleProgress {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} {prefix:>8} [{bar:30}] {pos}/{len}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        ConsoleProgress { bar }
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for ConsoleProgress {
    fn default() -> Self {
        ConsoleProgress::new()
    }
}

impl Progress for ConsoleProgress {
    fn stage(&self, name: &str, total: usize) {
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(name.to_string());
                bar.set_length(total as u64);
                bar.set_position(0);
            }
            None if total > 0 => eprintln!("kiln: {name} ({total})"),
            None => {}
        }
    }

    fn advance(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }
}

/// One output in the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSize {
    /// Path relative to the output directory.
    pub file: String,
    pub bytes: u64,
    pub gzip: Option<u64>,
    pub brotli: Option<u64>,
    pub zstd: Option<u64>,
}

/// The result of a successful build.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    /// Every output file except the precompressed siblings, sorted by path.
    pub outputs: Vec<OutputSize>,
    pub duration: Duration,
    /// Stage results reused from the build cache.
    pub cache_hits: usize,
    /// Stage results computed afresh.
    pub cache_misses: usize,
    /// Problems that did not stop the build (an image without alt text).
    pub warnings: Vec<crate::diagnostic::Diagnostic>,
    /// Pages rendered by this build (a watch session reuses the others).
    pub pages_rendered: usize,
    /// Output files that are new or differ from the session's previous
    /// build, sorted; empty for one-shot builds, which have no previous build.
    pub changed: Vec<String>,
}

impl BuildReport {
    /// A table of outputs: path, raw size, gzip and brotli sizes.
    pub fn summary(&self, out_dir_label: &str) -> String {
        let rows: Vec<(String, String, String, String)> = self
            .outputs
            .iter()
            .map(|output| {
                (
                    format!("{out_dir_label}/{}", output.file),
                    human_size(output.bytes),
                    output.gzip.map(human_size).unwrap_or_else(|| "-".into()),
                    output.brotli.map(human_size).unwrap_or_else(|| "-".into()),
                )
            })
            .collect();
        let width = |pick: fn(&(String, String, String, String)) -> usize| {
            rows.iter().map(pick).max().unwrap_or(0)
        };
        let (path_w, raw_w) = (width(|r| r.0.len()), width(|r| r.1.len()));
        let gzip_w = width(|r| r.2.len());
        let mut out = String::new();
        for (path, raw, gzip, brotli) in &rows {
            out.push_str(&format!(
                "{path:<path_w$}  {raw:>raw_w$} │ gzip: {gzip:>gzip_w$} │ br: {brotli}\n"
            ));
        }
        out.push_str(&format!(
            "built {} files in {} (cache: {} reused, {} computed)\n",
            self.outputs.len(),
            human_duration(self.duration),
            self.cache_hits,
            self.cache_misses
        ));
        out
    }
}

fn human_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.2} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_vite() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1234), "1.23 kB");
        assert_eq!(human_size(2_500_000), "2.50 MB");
    }

    #[test]
    fn summary_lists_every_output() {
        let report = BuildReport {
            pages_rendered: 0,
            changed: Vec::new(),
            outputs: vec![OutputSize {
                file: "css/site.abc.css".into(),
                bytes: 12_345,
                gzip: Some(3_000),
                brotli: Some(2_500),
                zstd: None,
            }],
            ..Default::default()
        };
        let text = report.summary("dist");
        assert!(
            text.contains("dist/css/site.abc.css  12.35 kB │ gzip: 3.00 kB │ br: 2.50 kB"),
            "{text}"
        );
    }
}
