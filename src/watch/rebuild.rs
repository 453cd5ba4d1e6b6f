//! What one rebuild tells the browser and the terminal: stylesheets to swap
//! when only stylesheets changed, a reload otherwise, nothing when no output
//! changed; and one line saying what changed and how long it took.

use std::time::Duration;

use crate::build::report::BuildReport;
use crate::server::live::{CssSwap, Event};
use crate::site::manifest::Manifest;

use super::changes::Changes;

/// The event for a successful rebuild, `None` when browsers need nothing.
pub(crate) fn event_for(
    changes: &Changes,
    report: &BuildReport,
    before: &Manifest,
    after: &Manifest,
) -> Option<Event> {
    let templates_changed = changes
        .paths
        .iter()
        .any(|path| !path.starts_with(changes.root().join("assets")));
    if report.changed.is_empty() && !templates_changed {
        return None;
    }
    if changes.only_stylesheets() {
        let swaps = stylesheet_swaps(before, after);
        let only_styles_and_pages = report.changed.iter().all(|file| {
            file.ends_with(".css") || file.ends_with(".css.map") || file.ends_with(".html")
        });
        if !swaps.is_empty() && only_styles_and_pages {
            return Some(Event::Css(swaps));
        }
    }
    Some(Event::Reload {
        reason: changes.describe(),
    })
}

/// Every stylesheet whose output file changed.
fn stylesheet_swaps(before: &Manifest, after: &Manifest) -> Vec<CssSwap> {
    let mut swaps: Vec<CssSwap> = after
        .iter()
        .filter(|(_, chunk)| chunk.file.ends_with(".css"))
        .filter_map(|(key, chunk)| {
            let old = before.get(key)?;
            (old.file != chunk.file).then(|| CssSwap {
                old: old.file.clone(),
                new: chunk.file.clone(),
                integrity: chunk.integrity.clone(),
            })
        })
        .collect();
    swaps.sort_by(|a, b| a.old.cmp(&b.old));
    swaps.dedup();
    swaps
}

/// `21:04:09 assets/css/site.css → css/site.css swapped in place · 12 ms`
pub(crate) fn summary_line(
    changes: &Changes,
    report: &BuildReport,
    event: Option<&Event>,
    took: Duration,
) -> String {
    let outputs = report
        .changed
        .iter()
        .filter(|file| !file.ends_with(".map"))
        .count();
    let effect = match event {
        Some(Event::Css(swaps)) => format!(
            "{} stylesheet{} swapped in place",
            swaps.len(),
            plural(swaps.len())
        ),
        Some(Event::Reload { .. }) => "browsers reloaded".to_string(),
        _ => "no output changed".to_string(),
    };
    format!(
        "{} {} → {outputs} output{} rebuilt, {} page{} rendered · {effect} · {}",
        clock(),
        changes.describe(),
        plural(outputs),
        report.pages_rendered,
        plural(report.pages_rendered),
        milliseconds(took)
    )
}

/// `21:04:09 assets/css/site.css → build failed (2 errors); still serving the last good build · 9 ms`
pub(crate) fn failure_line(changes: &Changes, problems: usize, took: Duration) -> String {
    format!(
        "{} {} → build failed ({problems} error{}); still serving the last good build · {}",
        clock(),
        changes.describe(),
        plural(problems),
        milliseconds(took)
    )
}

pub(crate) fn milliseconds(took: Duration) -> String {
    let ms = took.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// The local time of day, `HH:MM:SS`.
pub(crate) fn clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r writes only into `parts`, which outlives the call.
    let mut parts: libc::tm = unsafe { std::mem::zeroed() };
    let converted = unsafe { !libc::localtime_r(&now, &mut parts).is_null() };
    if !converted {
        return String::new();
    }
    format!(
        "{:02}:{:02}:{:02}",
        parts.tm_hour, parts.tm_min, parts.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::manifest::ManifestChunk;

    fn manifest(entries: &[(&str, &str)]) -> Manifest {
        let mut manifest = Manifest::new();
        for (key, file) in entries {
            manifest.insert(
                key.to_string(),
                ManifestChunk {
                    file: file.to_string(),
                    integrity: format!("sha384-{file}"),
                    ..Default::default()
                },
            );
        }
        manifest
    }

    #[test]
    fn swaps_name_only_the_stylesheets_that_changed() {
        let before = manifest(&[
            ("css/site.css", "css/site.AAAA.css"),
            ("css/print.css", "css/print.BBBB.css"),
            ("js/app.ts", "js/app.CCCC.js"),
        ]);
        let after = manifest(&[
            ("css/site.css", "css/site.DDDD.css"),
            ("css/print.css", "css/print.BBBB.css"),
            ("js/app.ts", "js/app.EEEE.js"),
        ]);
        let swaps = stylesheet_swaps(&before, &after);
        assert_eq!(
            swaps,
            [CssSwap {
                old: "css/site.AAAA.css".into(),
                new: "css/site.DDDD.css".into(),
                integrity: "sha384-css/site.DDDD.css".into(),
            }]
        );
    }
}
