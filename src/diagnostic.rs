//! Errors as the user sees them: a message, the file, line and column it
//! points at, and a code frame of the offending line.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a source file. Line and column both count from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
}

/// One problem found by the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub location: Option<SourceLocation>,
    /// The source line under the location, with a caret, ready to print.
    pub frame: Option<String>,
}

impl Diagnostic {
    /// A problem with no position (I/O, configuration).
    pub fn new(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            location: None,
            frame: None,
        }
    }

    /// A problem at `file:line:column`, framed from `source` (the file's text).
    pub fn at(
        message: impl Into<String>,
        location: SourceLocation,
        source: Option<&str>,
    ) -> Diagnostic {
        let frame = source.and_then(|text| code_frame(text, location.line, location.column));
        Diagnostic {
            message: message.into(),
            location: Some(location),
            frame,
        }
    }

    /// Like [`Diagnostic::at`], reading the source from disk for the frame.
    pub fn at_file(message: impl Into<String>, location: SourceLocation) -> Diagnostic {
        let source = std::fs::read_to_string(&location.file).ok();
        Diagnostic::at(message, location, source.as_deref())
    }

    /// An I/O failure on `path`.
    pub fn io(path: &Path, err: &std::io::Error) -> Diagnostic {
        Diagnostic::new(format!("{}: {err}", display_path(path)))
    }
}

impl Diagnostic {
    /// The diagnostic labelled as a warning rather than an error.
    pub fn as_warning(&self) -> impl fmt::Display + '_ {
        Labelled {
            label: "warning",
            diagnostic: self,
        }
    }
}

struct Labelled<'a> {
    label: &'static str,
    diagnostic: &'a Diagnostic,
}

impl fmt::Display for Labelled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.diagnostic.write(f, self.label)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, "error")
    }
}

impl Diagnostic {
    fn write(&self, f: &mut fmt::Formatter<'_>, label: &str) -> fmt::Result {
        writeln!(f, "{label}: {}", self.message)?;
        if let Some(location) = &self.location {
            writeln!(
                f,
                "  --> {}:{}:{}",
                display_path(&location.file),
                location.line,
                location.column
            )?;
        }
        if let Some(frame) = &self.frame {
            f.write_str(frame)?;
        }
        Ok(())
    }
}

/// Renders `line` of `source` with a caret under `column`, gutter-aligned:
///
/// ```text
///    |
///  3 | @import "missing.css";
///    | ^
/// ```
/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_column(source: &str, offset: usize) -> (u32, u32) {
    let mut end = offset.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let before = &source[..end];
    let line = before.matches('\n').count() as u32 + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |text| text.chars().count()) as u32
        + 1;
    (line, column)
}

pub fn code_frame(source: &str, line: u32, column: u32) -> Option<String> {
    let text = source.lines().nth(line.checked_sub(1)? as usize)?;
    let text = text.trim_end();
    // Very long lines (minified input) are cut around the column.
    let (shown, caret_at) = window(text, column.saturating_sub(1) as usize, 100);
    let gutter = line.to_string().len();
    let pad = " ".repeat(gutter);
    let caret_pad: String = shown
        .chars()
        .take(caret_at)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    Some(format!("{pad} |\n{line} | {shown}\n{pad} | {caret_pad}^\n"))
}

/// At most `width` characters of `text` around character `column`, and the
/// caret's position within them.
fn window(text: &str, column: usize, width: usize) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    let column = column.min(chars.len());
    if chars.len() <= width {
        return (text.to_string(), column);
    }
    let start = column.saturating_sub(width / 2).min(chars.len() - width);
    let shown: String = chars[start..start + width].iter().collect();
    (shown, column - start)
}

/// A path as the user should see it: relative to the working directory when
/// it lies below it, so terminals can link it.
pub fn display_path(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// Everything that went wrong in one build, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub diagnostics: Vec<Diagnostic>,
}

impl BuildError {
    pub fn single(diagnostic: Diagnostic) -> BuildError {
        BuildError {
            diagnostics: vec![diagnostic],
        }
    }
}

impl From<Diagnostic> for BuildError {
    fn from(diagnostic: Diagnostic) -> Self {
        BuildError::single(diagnostic)
    }
}

impl From<Vec<Diagnostic>> for BuildError {
    fn from(diagnostics: Vec<Diagnostic>) -> Self {
        BuildError { diagnostics }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.diagnostics.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        if self.diagnostics.len() > 1 {
            write!(f, "\n{} errors", self.diagnostics.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_points_at_column() {
        let frame = code_frame("a {}\n  @import \"x.css\";\n", 2, 3).unwrap();
        assert_eq!(frame, "  |\n2 |   @import \"x.css\";\n  |   ^\n");
    }

    #[test]
    fn frame_of_missing_line_is_none() {
        assert!(code_frame("one line", 5, 1).is_none());
        assert!(code_frame("one line", 0, 1).is_none());
    }

    #[test]
    fn frame_of_long_line_is_windowed_around_column() {
        let line = format!("{}X{}", "a".repeat(500), "b".repeat(500));
        let frame = code_frame(&line, 1, 501).unwrap();
        let lines: Vec<&str> = frame.lines().collect();
        let caret = lines[2].find('^').unwrap();
        assert_eq!(lines[1].as_bytes()[caret], b'X');
        assert!(lines[1].len() < 120);
    }

    #[test]
    fn display_includes_location_and_frame() {
        let diagnostic = Diagnostic::at(
            "boom",
            SourceLocation {
                file: PathBuf::from("/x/site.css"),
                line: 1,
                column: 2,
            },
            Some("ab"),
        );
        let text = diagnostic.to_string();
        assert!(
            text.starts_with("error: boom\n  --> /x/site.css:1:2\n"),
            "{text}"
        );
        assert!(text.contains("1 | ab"), "{text}");
    }
}
