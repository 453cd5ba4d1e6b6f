//! Integration tests of `kiln build` on fixture sites built in temp dirs.

mod common;

use std::fs;
use std::io::Read;

use common::{Site, snapshot};

/// The blake3 hash the build puts in a file name, recomputed from the bytes.
fn expected_hash(bytes: &[u8], length: usize) -> String {
    let style = kiln::build::hash::HashStyle {
        encoding: kiln::config::HashEncoding::Base32,
        length,
    };
    style.of(bytes)
}

/// `css/site.abcdefgh.css` → (`css/site`, `abcdefgh`, `css`).
fn split_hashed(file: &str) -> (String, String, String) {
    let (rest, ext) = file.rsplit_once('.').expect("extension");
    let (stem, hash) = rest.rsplit_once('.').expect("hash");
    (stem.to_string(), hash.to_string(), ext.to_string())
}

#[test]
fn static_assets_are_named_by_the_hash_of_their_bytes() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    for key in ["images/dot.png", "fonts/demo.woff2", "data/words.txt"] {
        let file = site.output_of(key);
        let bytes = site.read_dist(&file);
        assert_eq!(
            bytes,
            fs::read(site.path(&format!("assets/{key}"))).unwrap()
        );
        let (stem, hash, _) = split_hashed(&file);
        assert_eq!(stem, key.rsplit_once('.').unwrap().0);
        assert_eq!(hash, expected_hash(&bytes, 8), "{file}");
    }
}

#[test]
fn stylesheet_hash_covers_code_and_map() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let file = site.output_of("css/site.css");
    let css = site.read_dist_string(&file);
    let map = site.read_dist(&format!("{file}.map"));
    let name = file.rsplit('/').next().unwrap();
    let comment = format!("\n/*# sourceMappingURL={name}.map */\n");
    let code = css
        .strip_suffix(&comment)
        .expect("ends with the map comment");
    let mut hasher = blake3::Hasher::new();
    hasher.update(code.as_bytes());
    hasher.update(&map);
    let style = kiln::build::hash::HashStyle {
        encoding: kiln::config::HashEncoding::Base32,
        length: 8,
    };
    assert_eq!(split_hashed(&file).1, style.of_digest(hasher.finalize()));
}

#[test]
fn hash_length_and_encoding_are_configurable() {
    let site = Site::fixture("basic");
    site.build_with(&["build.hash_length=16", "build.hash_encoding=\"hex\""])
        .unwrap();
    let file = site.output_of("images/dot.png");
    let (_, hash, _) = split_hashed(&file);
    assert_eq!(hash.len(), 16);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");
    let digest = blake3::hash(&site.read_dist(&file)).to_hex();
    assert_eq!(hash, &digest[..16]);
}

#[test]
fn local_urls_are_rewritten_to_hashed_outputs() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let css = site.read_dist_string(&site.output_of("css/site.css"));
    let dot = site.output_of("images/dot.png");
    let font = site.output_of("fonts/demo.woff2");
    // Relative from a partial, relative from a nested file, and root-absolute.
    assert!(
        css.contains(&format!("body{{background:url(/{dot})")),
        "{css}"
    );
    assert!(css.contains(&format!("--card-bg:url(/{dot})")), "{css}");
    // Query and fragment survive the rewrite.
    assert!(css.contains(&format!("url(/{font}?v=2#iefix)")), "{css}");
    // A percent-encoded name resolves, and the new URL is encoded again.
    let photo = site.output_of("images/my photo.svg");
    assert!(css.contains(&photo.replace(' ', "%20")), "{css}");
    // Remote, data: and fragment-only URLs are left alone.
    assert!(css.contains("url(https://example.com/remote.png)"), "{css}");
    assert!(
        css.contains("url(data:image/gif;base64,R0lGODlhAQABAAAAACw=)"),
        "{css}"
    );
    assert!(css.contains("url(#clip)"), "{css}");
    // Every rewritten URL names a file that exists in the output.
    for url in css.split("url(/").skip(1) {
        let path = url
            .split([')', '?', '#'])
            .next()
            .unwrap()
            .replace("%20", " ");
        assert!(site.dist().join(&path).is_file(), "{path}");
    }
}

#[test]
fn package_imports_and_their_urls_resolve_from_node_modules() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let css = site.read_dist_string(&site.output_of("css/site.css"));
    assert!(css.contains("--pkg-accent:#f60"), "{css}");
    let font = site.output_of("node_modules/tokens-pkg/dist/fonts/icons.woff2");
    assert!(font.starts_with("vendor/icons."), "{font}");
    assert!(css.contains(&format!("url(/{font})")), "{css}");
}

/// A package whose stylesheets are reachable only through package.json
/// `exports` under the `style` condition: no `style` field, a JavaScript
/// `main`, no `index.css`.
fn site_with_exports_only_package() -> Site {
    let site = Site::empty();
    site.write(
        "node_modules/exports-only/package.json",
        r#"{
  "name": "exports-only",
  "main": "index.js",
  "exports": {
    ".": { "style": "./dist/theme.css", "default": "./index.js" },
    "./tokens": { "style": "./dist/tokens.css" }
  }
}"#,
    );
    site.write("node_modules/exports-only/index.js", "export {};\n");
    site.write(
        "node_modules/exports-only/dist/theme.css",
        ".theme{color:red}\n",
    );
    site.write(
        "node_modules/exports-only/dist/tokens.css",
        ":root{--tone:blue}\n",
    );
    site
}

#[test]
fn package_imports_honour_exports_with_the_style_condition() {
    let site = site_with_exports_only_package();
    site.write(
        "assets/css/site.css",
        "@import \"exports-only\";\n@import \"~exports-only/tokens\";\n.z{color:green}\n",
    );
    site.build().unwrap();
    let css = site.read_dist_string(&site.output_of("css/site.css"));
    assert_eq!(css, ".theme{color:red}:root{--tone:blue}.z{color:green}");
}

#[test]
fn package_import_outside_exports_is_reported_at_its_line_and_column() {
    let site = site_with_exports_only_package();
    site.write(
        "assets/css/site.css",
        "/* tokens */\n@import \"exports-only/dist/theme.css\";\n",
    );
    let err = site.build().unwrap_err();
    let diagnostic = &err.diagnostics[0];
    assert!(
        diagnostic
            .message
            .contains("cannot resolve @import \"exports-only/dist/theme.css\""),
        "{}",
        diagnostic.message
    );
    let location = diagnostic.location.as_ref().unwrap();
    assert!(location.file.ends_with("assets/css/site.css"));
    assert_eq!((location.line, location.column), (2, 1));
}

#[test]
fn base_url_prefixes_urls_or_makes_them_relative() {
    let site = Site::fixture("basic");
    site.build_with(&["build.base_url=https://cdn.example.com/app/"])
        .unwrap();
    let dot = site.output_of("images/dot.png");
    let css = site.read_dist_string(&site.output_of("css/site.css"));
    assert!(
        css.contains(&format!("url(https://cdn.example.com/app/{dot})")),
        "{css}"
    );

    site.build_with(&["build.base_url=./"]).unwrap();
    let css = site.read_dist_string(&site.output_of("css/site.css"));
    assert!(css.contains(&format!("url(../{dot})")), "{css}");
}

#[test]
fn imports_are_bundled_in_order_with_media_conditions() {
    let site = Site::empty();
    site.write(
        "assets/css/site.css",
        "@import './_a.css';\n@import './_b.css' print;\n.z{color:red}\n",
    );
    site.write("assets/css/_a.css", ".a{color:green}\n");
    site.write("assets/css/_b.css", ".b{color:blue}\n");
    site.build().unwrap();
    let css = site.read_dist_string(&site.output_of("css/site.css"));
    assert_eq!(
        css,
        ".a{color:green}@media print{.b{color:#00f}}.z{color:red}"
    );
}

#[test]
fn targets_control_prefixing_and_lowering() {
    let site = Site::empty();
    site.write(
        "assets/css/site.css",
        ".a{user-select:none;color:oklch(70% 0.1 200)}\n.b{.c &{color:red}}\n",
    );
    site.build_with(&["build.targets=\"safari 12\""]).unwrap();
    let old = site.read_dist_string(&site.output_of("css/site.css"));
    assert!(old.contains("-webkit-user-select:none"), "{old}");
    assert!(
        !old.contains("oklch"),
        "oklch is lowered for Safari 12: {old}"
    );
    assert!(old.contains(".c .b{"), "nesting is flattened: {old}");

    site.build_with(&["build.targets=\"chrome 130\""]).unwrap();
    let new = site.read_dist_string(&site.output_of("css/site.css"));
    assert!(!new.contains("-webkit-user-select"), "{new}");
}

#[test]
fn minify_false_keeps_readable_output() {
    let site = Site::fixture("basic");
    site.build_with(&["build.minify=false"]).unwrap();
    let css = site.read_dist_string(&site.output_of("css/other.css"));
    assert!(css.contains(".other {\n  color: #639;\n}"), "{css}");
}

#[test]
fn manifest_has_vites_shape_with_integrity() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let manifest = site.manifest();
    let entries = manifest.as_object().unwrap();
    let mut keys: Vec<&str> = entries.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "css/other.css",
            "css/site.css",
            "data/tiny.txt",
            "data/words.txt",
            "fonts/demo.woff2",
            "images/dot.png",
            "images/my photo.svg",
            "node_modules/tokens-pkg/dist/fonts/icons.woff2",
        ],
        "partials, excluded (*.md) and hidden files are not outputs"
    );
    let site_css = &manifest["css/site.css"];
    assert_eq!(site_css["src"], "css/site.css");
    assert_eq!(site_css["name"], "site");
    assert_eq!(site_css["isEntry"], true);
    let assets: Vec<&str> = site_css["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(assets.contains(&site.output_of("images/dot.png").as_str()));
    assert!(
        assets.contains(
            &site
                .output_of("node_modules/tokens-pkg/dist/fonts/icons.woff2")
                .as_str()
        )
    );
    let dot = &manifest["images/dot.png"];
    assert!(dot.get("isEntry").is_none(), "Vite omits false isEntry");
    assert!(dot.get("imports").is_none(), "Vite omits empty lists");
    // Every integrity value verifies against the file it describes.
    for (key, chunk) in entries {
        let file = chunk["file"].as_str().unwrap();
        let expected = kiln::build::hash::integrity(&site.read_dist(file));
        assert_eq!(chunk["integrity"], expected.as_str(), "{key}");
        assert!(expected.starts_with("sha384-"));
    }
}

#[test]
fn source_maps_point_back_to_the_sources() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let file = site.output_of("css/site.css");
    let map: serde_json::Value =
        serde_json::from_slice(&site.read_dist(&format!("{file}.map"))).unwrap();
    assert_eq!(map["version"], 3);
    let map_dir = site.dist().join(&file).parent().unwrap().to_path_buf();
    let sources = map["sources"].as_array().unwrap();
    let contents = map["sourcesContent"].as_array().unwrap();
    assert_eq!(sources.len(), contents.len());
    let mut names = Vec::new();
    for (source, content) in sources.iter().zip(contents) {
        let relative = source.as_str().unwrap();
        assert!(
            !relative.starts_with('/'),
            "sources are relative: {relative}"
        );
        let on_disk = fs::read_to_string(map_dir.join(relative)).unwrap();
        assert_eq!(on_disk, content.as_str().unwrap());
        names.push(relative.rsplit('/').next().unwrap().to_string());
    }
    assert_eq!(names[..3], ["site.css", "_base.css", "card.css"]);
    assert!(!map["mappings"].as_str().unwrap().is_empty());

    site.build_with(&["build.sourcemaps=false"]).unwrap();
    let file = site.output_of("css/site.css");
    assert!(!site.read_dist_string(&file).contains("sourceMappingURL"));
    assert!(!site.dist().join(format!("{file}.map")).exists());
}

#[test]
fn licence_comments_are_kept() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let css = site.read_dist_string(&site.output_of("css/site.css"));
    assert!(css.starts_with("/*! fixture licence comment */"), "{css}");
}

#[test]
fn two_builds_of_the_same_input_are_byte_identical() {
    let first = Site::fixture("basic");
    let second = Site::fixture("basic");
    first.build().unwrap();
    second.build().unwrap();
    // A rebuild from the cache must not differ from a cold build either.
    let cold = snapshot(&first.dist());
    first.build().unwrap();
    assert_eq!(snapshot(&first.dist()), cold);
    assert_eq!(snapshot(&second.dist()), cold);
}

fn decompress(extension: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match extension {
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "gz" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zst" => out = zstd::decode_all(bytes).unwrap(),
        other => panic!("unexpected variant {other}"),
    }
    out
}

#[test]
fn precompressed_variants_decompress_to_the_original() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let files = snapshot(&site.dist());
    let mut checked = 0;
    for (path, bytes) in &files {
        let Some((original, extension)) = path.rsplit_once('.') else {
            continue;
        };
        if !["br", "gz", "zst"].contains(&extension) {
            continue;
        }
        let source = &files[original];
        assert_eq!(&decompress(extension, bytes), source, "{path}");
        assert!(
            bytes.len() < source.len(),
            "{path} is smaller than its original"
        );
        checked += 1;
    }
    let words = site.output_of("data/words.txt");
    for extension in ["br", "gz", "zst"] {
        assert!(files.contains_key(&format!("{words}.{extension}")));
    }
    assert!(checked >= 12, "{checked}");
}

#[test]
fn variants_that_do_not_shrink_and_binary_formats_are_not_written() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let files = snapshot(&site.dist());
    let tiny = site.output_of("data/tiny.txt");
    let png = site.output_of("images/dot.png");
    for extension in ["br", "gz", "zst"] {
        assert!(
            !files.contains_key(&format!("{tiny}.{extension}")),
            "1-byte file"
        );
        assert!(!files.contains_key(&format!("{png}.{extension}")), "PNG");
    }
}

#[test]
fn precompress_can_be_limited_or_disabled() {
    let site = Site::fixture("basic");
    site.build_with(&["build.precompress=[\"br\"]"]).unwrap();
    let words = site.output_of("data/words.txt");
    let files = snapshot(&site.dist());
    assert!(files.contains_key(&format!("{words}.br")));
    assert!(!files.contains_key(&format!("{words}.gz")));

    site.build_with(&["build.precompress=[]"]).unwrap();
    let files = snapshot(&site.dist());
    assert!(
        files
            .keys()
            .all(|path| !path.ends_with(".br") && !path.ends_with(".gz"))
    );
}

#[test]
fn second_build_without_changes_is_served_from_the_cache() {
    let site = Site::fixture("basic");
    let cold = site.build().unwrap();
    assert!(cold.cache_misses > 0);
    let warm = site.build().unwrap();
    assert_eq!(warm.cache_misses, 0, "{warm:?}");
    assert_eq!(warm.cache_hits, cold.cache_misses);
}

#[test]
fn a_changed_partial_rebuilds_only_the_entries_that_import_it() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    // Only site.css imports card.css; other.css stays cached.
    let other_before = site.output_of("css/other.css");
    site.write(
        "assets/css/components/card.css",
        ".card{color:teal;background:url(../../images/dot.png)}\n",
    );
    let report = site.build().unwrap();
    // site.css is re-bundled (1) and its css + map recompressed (2 files × 3 encodings).
    assert_eq!(report.cache_misses, 1 + 2 * 3, "{report:?}");
    assert_eq!(site.output_of("css/other.css"), other_before);
    let css = site.read_dist_string(&site.output_of("css/site.css"));
    assert!(css.contains(".card{color:teal"), "{css}");
}

#[test]
fn a_changed_asset_renames_it_and_updates_stylesheets_that_use_it() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let before = site.output_of("images/dot.png");
    // New pixels (trailing bytes would not do: oxipng drops them).
    image::RgbImage::from_pixel(4, 4, image::Rgb([10, 20, 30]))
        .save(site.path("assets/images/dot.png"))
        .unwrap();
    // Keeping no earlier build: see tests/deploy.rs for those kept.
    site.build_with(&["build.keep_builds=0", "build.keep_for_secs=0"])
        .unwrap();
    let after = site.output_of("images/dot.png");
    assert_ne!(before, after);
    for entry in ["css/site.css", "css/other.css"] {
        let css = site.read_dist_string(&site.output_of(entry));
        assert!(css.contains(&after), "{entry}: {css}");
        assert!(!css.contains(&before), "{entry}: {css}");
    }
    assert!(
        !site.dist().join(&before).exists(),
        "stale outputs are gone"
    );
}

#[test]
fn deleting_the_cache_is_safe() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let first = snapshot(&site.dist());
    fs::remove_dir_all(site.path(".kiln-cache")).unwrap();
    let report = site.build().unwrap();
    assert_eq!(report.cache_hits, 0);
    assert_eq!(snapshot(&site.dist()), first);
}

#[test]
fn a_damaged_cache_record_is_rebuilt_not_trusted() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let first = snapshot(&site.dist());
    for entry in walkdir::WalkDir::new(site.path(".kiln-cache/v1/records")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            fs::write(entry.path(), b"garbage").unwrap();
        }
    }
    site.build().unwrap();
    assert_eq!(snapshot(&site.dist()), first);
}

#[test]
fn failed_build_leaves_the_previous_output_intact() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let good = snapshot(&site.dist());
    site.write(
        "assets/css/components/card.css",
        ".card { color: red;\n  .x {{ }\n",
    );
    let err = site.build().unwrap_err();
    assert!(!err.diagnostics.is_empty());
    assert_eq!(snapshot(&site.dist()), good);
    let leftovers: Vec<_> = fs::read_dir(site.root())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("staging") || name.contains("previous"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn missing_import_is_reported_at_its_line_and_column() {
    let site = Site::empty();
    site.write("assets/css/site.css", "\n  @import \"./nope.css\";\n.a{}\n");
    let err = site.build().unwrap_err();
    let diagnostic = &err.diagnostics[0];
    let location = diagnostic.location.as_ref().unwrap();
    assert!(location.file.ends_with("assets/css/site.css"));
    assert_eq!((location.line, location.column), (2, 3));
    assert!(
        diagnostic.message.contains("./nope.css"),
        "{}",
        diagnostic.message
    );
    let text = err.to_string();
    assert!(text.contains("2 |   @import \"./nope.css\";"), "{text}");
    assert!(text.contains("  |   ^"), "{text}");
}

#[test]
fn import_cycle_is_an_error_naming_the_chain() {
    let site = Site::empty();
    site.write("assets/css/site.css", "@import './_a.css';\n");
    site.write("assets/css/_a.css", "@import './_b.css';\n.a{}\n");
    site.write("assets/css/_b.css", "/* b */\n@import './_a.css';\n.b{}\n");
    let err = site.build().unwrap_err();
    let diagnostic = &err.diagnostics[0];
    assert!(
        diagnostic.message.contains("circular @import"),
        "{}",
        diagnostic.message
    );
    assert!(
        diagnostic
            .message
            .contains("_a.css → assets/css/_b.css → assets/css/_a.css"),
        "{}",
        diagnostic.message
    );
    let location = diagnostic.location.as_ref().unwrap();
    assert!(location.file.ends_with("_b.css"));
    assert_eq!(location.line, 2);
}

#[test]
fn self_import_is_a_cycle() {
    let site = Site::empty();
    site.write("assets/css/site.css", "@import './site.css';\n");
    let err = site.build().unwrap_err();
    assert!(err.diagnostics[0].message.contains("circular @import"));
}

#[test]
fn missing_url_target_is_reported_with_location() {
    let site = Site::empty();
    site.write("assets/css/site.css", "@import './_x.css';\n");
    site.write(
        "assets/css/_x.css",
        ".a {\n  color: red;\n  background: url(../img/none.png);\n}\n",
    );
    let err = site.build().unwrap_err();
    let diagnostic = &err.diagnostics[0];
    assert!(
        diagnostic.message.contains("url(../img/none.png)"),
        "{}",
        diagnostic.message
    );
    let location = diagnostic.location.as_ref().unwrap();
    assert!(location.file.ends_with("_x.css"), "{location:?}");
    assert_eq!(location.line, 3);
}

#[test]
fn syntax_error_is_reported_with_location() {
    let site = Site::empty();
    site.write("assets/css/site.css", ".a { color: red; }\n.b { color: }\n@media (min-width: ) {}\n.c { width: calc(1px +) }\n.d {{ }\n");
    let err = site.build().unwrap_err();
    let location = err.diagnostics[0].location.as_ref().unwrap();
    assert!(location.file.ends_with("site.css"));
    assert!(location.line >= 2, "{location:?}");
}

#[test]
fn errors_of_several_entries_are_reported_together() {
    let site = Site::empty();
    site.write("assets/css/a.css", "@import './missing-a.css';\n");
    site.write(
        "assets/css/b.css",
        ".b { background: url(missing-b.png) }\n.c{background:url(missing-c.png)}\n",
    );
    let err = site.build().unwrap_err();
    let messages: Vec<&str> = err.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(err.to_string().ends_with("3 errors"));
}

#[test]
fn empty_site_builds_an_empty_manifest() {
    let site = Site::empty();
    let report = site.build().unwrap();
    assert!(report.outputs.is_empty());
    assert_eq!(site.manifest(), serde_json::json!({}));
}

#[test]
fn configured_entries_replace_discovery() {
    let site = Site::fixture("basic");
    site.build_with(&["build.entries=[\"css/other.css\"]"])
        .unwrap();
    let manifest = site.manifest();
    assert!(manifest.get("css/other.css").is_some());
    assert!(manifest.get("css/site.css").is_none());

    let err = site
        .build_with(&["build.entries=[\"css/absent.css\"]"])
        .unwrap_err();
    assert!(err.to_string().contains("build.entries"), "{err}");
}

#[test]
fn underscore_files_and_subdirectories_are_not_entries() {
    let site = Site::fixture("basic");
    site.build().unwrap();
    let manifest = site.manifest();
    assert!(manifest.get("css/_base.css").is_none());
    assert!(manifest.get("css/components/card.css").is_none());
}

#[test]
fn exclude_globs_keep_files_out_of_the_site() {
    let site = Site::fixture("basic");
    site.build_with(&["build.exclude=[\"data/**\"]"]).unwrap();
    let manifest = site.manifest();
    assert!(manifest.get("data/words.txt").is_none());
    // Overriding the default list also lets *.md back in.
    assert!(manifest.get("README.md").is_some());
}

#[test]
fn script_entries_are_bundled_into_hashed_chunks() {
    let site = Site::empty();
    site.write(
        "assets/js/app.ts",
        "const greeting: string = 'hi';\nconsole.log(greeting);\n",
    );
    site.build().unwrap();
    let file = site.output_of("js/app.ts");
    assert!(
        file.starts_with("js/app.") && file.ends_with(".js"),
        "{file}"
    );
    assert_eq!(site.manifest()["js/app.ts"]["isEntry"], true);
    assert!(!site.read_dist_string(&file).contains(": string"));
}

#[test]
fn out_dir_setting_moves_the_output() {
    let site = Site::fixture("basic");
    site.build_with(&["build.out_dir=\"public/build\""])
        .unwrap();
    assert!(site.path("public/build/manifest.json").is_file());
    assert!(!site.dist().exists());
}
