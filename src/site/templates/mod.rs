//! The template environment shared by the build's pages and the server's
//! route templates: the loader and functions ([`functions`]), front matter
//! ([`frontmatter`]), the `data/` tree every template sees, and template
//! errors located at file, line and column.

pub(crate) mod frontmatter;
pub(crate) mod functions;

use std::path::Path;

use crate::diagnostic::{Diagnostic, SourceLocation};
use crate::site::manifest::key_of;

/// `data/**/*.toml|json` as a nested object: `data/team/people.toml` is
/// `data.team.people`.
pub(crate) fn read_data(dir: &Path) -> Result<serde_json::Value, Vec<Diagnostic>> {
    let mut root = serde_json::Map::new();
    if !dir.is_dir() {
        return Ok(root.into());
    }
    let mut problems = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        let path = entry.path();
        let extension = path.extension().and_then(|ext| ext.to_str()).unwrap_or("");
        if !entry.file_type().is_file() || !matches!(extension, "toml" | "json") {
            continue;
        }
        let value = match parse_data(path, extension) {
            Ok(value) => value,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        let key = key_of(dir, path);
        let key = key.rsplit_once('.').map_or(key.as_str(), |(stem, _)| stem);
        let mut parts: Vec<&str> = key.split('/').collect();
        let leaf = parts.pop().unwrap_or_default();
        let mut map = &mut root;
        for part in parts {
            let next = map
                .entry(part.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !next.is_object() {
                *next = serde_json::Value::Object(Default::default());
            }
            map = next.as_object_mut().expect("made an object above");
        }
        map.insert(leaf.to_string(), value);
    }
    if problems.is_empty() {
        Ok(root.into())
    } else {
        Err(problems)
    }
}

fn parse_data(path: &Path, extension: &str) -> Result<serde_json::Value, Diagnostic> {
    let text = std::fs::read_to_string(path).map_err(|err| Diagnostic::io(path, &err))?;
    let at = |message: String, line: u32, column: u32| {
        let location = SourceLocation {
            file: path.to_path_buf(),
            line,
            column,
        };
        Diagnostic::at(message, location, Some(&text))
    };
    if extension == "json" {
        serde_json::from_str(&text)
            .map_err(|err| at(err.to_string(), err.line() as u32, err.column() as u32))
    } else {
        let table: toml::Table = toml::from_str(&text).map_err(|err| {
            let line = err.span().map_or(1, |span| {
                text[..span.start].matches('\n').count() as u32 + 1
            });
            at(err.message().to_string(), line, 1)
        })?;
        Ok(frontmatter::table_to_json(&table))
    }
}

/// A template error at the file and line where it happened: for an error
/// inside an included or extended template, the innermost one.
pub(crate) fn template_diagnostic(
    templates_dir: &Path,
    rendering: &str,
    template: &str,
    err: &minijinja::Error,
) -> Diagnostic {
    let mut err = err;
    while let Some(inner) =
        std::error::Error::source(err).and_then(|inner| inner.downcast_ref::<minijinja::Error>())
    {
        if inner.name().is_none() {
            break;
        }
        err = inner;
    }
    let name = err.name().unwrap_or(template);
    let file = templates_dir.join(name);
    let mut message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    if name != rendering {
        message.push_str(&format!(" (rendering {rendering})"));
    }
    match err.line() {
        Some(line) => {
            let text = std::fs::read_to_string(&file).ok();
            // The error's byte range, when known, gives the column.
            let column = err
                .range()
                .zip(text.as_deref())
                .and_then(|(range, text)| {
                    let before = text.get(..range.start)?;
                    Some(before.rsplit('\n').next()?.chars().count() as u32 + 1)
                })
                .unwrap_or(1);
            let location = SourceLocation {
                file,
                line: line as u32,
                column,
            };
            Diagnostic::at(message, location, text.as_deref())
        }
        None => Diagnostic::new(format!("{}: {message}", file.display())),
    }
}
