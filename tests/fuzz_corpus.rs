//! Replays the committed fuzz corpora (`fuzz/corpus/TARGET/`) through the
//! same entry points the fuzz targets drive, so an input that once found a
//! crash, or reached new code, keeps passing on every test run without
//! cargo-fuzz. `docs/fuzzing.md` says how to fuzz for longer.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        count += 1;
    }
    assert!(count > 0, "{}: an empty corpus", dir.display());
}

#[test]
fn range_corpus_passes() {
    replay("range", kiln::fuzzing::range);
}

#[test]
fn conditional_corpus_passes() {
    replay("conditional", kiln::fuzzing::conditional);
}

#[test]
fn accept_encoding_corpus_passes() {
    replay("accept_encoding", kiln::fuzzing::accept_encoding);
}

#[test]
fn path_corpus_passes() {
    replay("path", kiln::fuzzing::path);
}

#[test]
fn route_pattern_corpus_passes() {
    replay("route_pattern", kiln::fuzzing::route_pattern);
}

#[test]
fn form_corpus_passes() {
    replay("form", kiln::fuzzing::form);
}

#[test]
fn cookie_session_corpus_passes() {
    replay("cookie_session", kiln::fuzzing::cookie_session);
}

#[test]
fn build_toml_corpus_passes() {
    replay("build_toml", kiln::fuzzing::build_toml);
}
