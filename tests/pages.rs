//! Images and pages: the `site` fixture built in a temp dir, its HTML parsed
//! with a real HTML parser (html5ever, through scraper).

mod common;

use std::fs;

use common::Site;
use image::GenericImageView;
use scraper::{Html, Selector};

/// A 600×400 gradient with grain, opaque: like a photo, lossy formats beat
/// PNG on it.
fn gradient() -> image::RgbImage {
    image::RgbImage::from_fn(600, 400, |x, y| {
        let grain = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 24;
        image::Rgb([
            (x * 255 / 600 + grain) as u8,
            (y * 255 / 400 + grain) as u8,
            128 + grain as u8,
        ])
    })
}

/// A JPEG of 300×150 pixels whose EXIF says "rotate 90° clockwise".
fn rotated_jpeg() -> Vec<u8> {
    let pixels = image::RgbImage::from_fn(300, 150, |x, _| {
        image::Rgb([if x < 150 { 200 } else { 20 }, 80, 40])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&pixels)
        .unwrap();
    let tiff: &[u8] = &[
        b'I', b'I', 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, // little-endian header, IFD at 8
        0x01, 0x00, // one entry
        0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00,
        0x00, // Orientation = 6
        0x00, 0x00, 0x00, 0x00, // no next IFD
    ];
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(tiff);
    let length = (payload.len() + 2) as u16;
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The `site` fixture with its images generated.
fn site() -> Site {
    let site = Site::fixture("site");
    gradient()
        .save(site.path("assets/images/photo.png"))
        .unwrap();
    site.write("assets/images/photo.jpg", rotated_jpeg());
    site
}

fn page(site: &Site, output: &str) -> Html {
    Html::parse_document(&site.read_dist_string(output))
}

fn select<'a>(html: &'a Html, selector: &str) -> Vec<scraper::ElementRef<'a>> {
    html.select(&Selector::parse(selector).unwrap()).collect()
}

fn attr<'a>(element: &scraper::ElementRef<'a>, name: &str) -> Option<&'a str> {
    element.value().attr(name)
}

// ---------------------------------------------------------------------------
// Images

#[test]
fn png_output_is_lossless_and_variants_decode_at_the_right_size() {
    let site = site();
    site.build().unwrap();
    let chunk = &site.manifest()["images/photo.png"];
    let main = site.read_dist(chunk["file"].as_str().unwrap());
    let decoded = image::load_from_memory(&main).unwrap();
    assert_eq!(
        decoded.to_rgb8(),
        gradient(),
        "decoded pixels equal the source"
    );
    assert_eq!(
        (chunk["width"].as_u64(), chunk["height"].as_u64()),
        (Some(600), Some(400))
    );
    let variants = chunk["variants"].as_array().unwrap();
    let mut seen = Vec::new();
    for variant in variants {
        let (width, height) = (
            variant["width"].as_u64().unwrap(),
            variant["height"].as_u64().unwrap(),
        );
        assert!(width <= 600, "never upscaled: {variant}");
        let exact = width as f64 * 400.0 / 600.0;
        assert!(
            (height as f64 - exact).abs() <= 0.5,
            "aspect ratio kept: {variant}"
        );
        let format = variant["format"].as_str().unwrap();
        let bytes = site.read_dist(variant["file"].as_str().unwrap());
        if format == "avif" {
            assert_eq!(&bytes[4..12], b"ftypavif", "{variant}");
        } else {
            let decoded = image::load_from_memory(&bytes).unwrap();
            assert_eq!(u64::from(decoded.width()), width, "{variant}");
            assert_eq!(u64::from(decoded.height()), height, "{variant}");
        }
        seen.push((width, format.to_string(), bytes.len()));
    }
    // A modern format is only kept when it beats PNG at the same width.
    for (width, format, len) in &seen {
        let png_len = if *width == 600 {
            main.len()
        } else {
            seen.iter()
                .find(|(w, f, _)| w == width && f == "png")
                .unwrap()
                .2
        };
        if format != "png" {
            assert!(*len < png_len, "{format} at {width}w: {len} >= {png_len}");
        }
    }
    let seen: Vec<(u64, String)> = seen.into_iter().map(|(w, f, _)| (w, f)).collect();
    for expected in [
        (200, "png"),
        (400, "png"),
        (200, "webp"),
        (400, "avif"),
        (600, "webp"),
        (600, "avif"),
    ] {
        assert!(
            seen.contains(&(expected.0, expected.1.to_string())),
            "{expected:?} in {seen:?}"
        );
    }
}

#[test]
fn jpeg_orientation_is_applied_and_metadata_stripped() {
    let site = site();
    site.build().unwrap();
    let chunk = &site.manifest()["images/photo.jpg"];
    let bytes = site.read_dist(chunk["file"].as_str().unwrap());
    let decoded = image::load_from_memory(&bytes).unwrap();
    assert_eq!(decoded.dimensions(), (150, 300), "rotated upright");
    assert!(!bytes.windows(6).any(|w| w == b"Exif\0\0"), "EXIF stripped");
    // The left half of the source (red) is now the top half.
    let top = decoded.get_pixel(75, 20);
    let bottom = decoded.get_pixel(75, 280);
    assert!(top[0] > 150 && bottom[0] < 80, "{top:?} {bottom:?}");
    assert_eq!(
        (chunk["width"].as_u64(), chunk["height"].as_u64()),
        (Some(150), Some(300))
    );
}

#[test]
fn svg_is_minified_safely() {
    let site = site();
    site.build().unwrap();
    let svg = site.read_dist_string(&site.output_of("images/icon.svg"));
    assert!(
        !svg.contains("<!--") && !svg.contains("metadata") && !svg.contains("<?xml"),
        "{svg}"
    );
    assert!(
        svg.contains("<circle cx=\"16\" cy=\"16\" r=\"14\" fill=\"#336699\"/>"),
        "{svg}"
    );
    assert_eq!(site.manifest()["images/icon.svg"]["width"], 32);
}

#[test]
fn image_formats_and_widths_follow_config() {
    let site = site();
    site.build_with(&[
        "images.webp=false",
        "images.avif=false",
        "images.widths=[300]",
    ])
    .unwrap();
    let variants = site.manifest()["images/photo.png"]["variants"]
        .as_array()
        .unwrap()
        .clone();
    let described: Vec<(u64, &str)> = variants
        .iter()
        .map(|v| (v["width"].as_u64().unwrap(), v["format"].as_str().unwrap()))
        .collect();
    assert_eq!(described, [(300, "png")]);
}

#[test]
fn unchanged_images_cost_nothing_on_the_next_build() {
    let site = site();
    let cold = site.build().unwrap();
    assert!(cold.cache_misses > 0);
    let warm = site.build().unwrap();
    assert_eq!(warm.cache_misses, 0);
}

#[test]
fn a_broken_image_fails_the_build_naming_it() {
    let site = site();
    site.write("assets/images/broken.png", b"\x89PNG\r\n\x1a\nnot really");
    let err = site.build().unwrap_err().to_string();
    assert!(err.contains("broken.png"), "{err}");
}

// ---------------------------------------------------------------------------
// Pages

#[test]
fn pages_render_to_pretty_urls() {
    let site = site();
    site.build().unwrap();
    for output in [
        "index.html",
        "about/index.html",
        "404.html",
        "blog/first-post/index.html",
    ] {
        assert!(site.dist().join(output).is_file(), "{output}");
    }
    assert!(
        !site.dist().join("blog/draft/index.html").exists(),
        "drafts are skipped"
    );

    site.build_with(&["pages.pretty_urls=false", "pages.drafts=true"])
        .unwrap();
    assert!(site.dist().join("about.html").is_file());
    assert!(site.dist().join("blog/draft.html").is_file());
}

#[test]
fn layouts_partials_data_and_front_matter_render() {
    let site = site();
    site.build().unwrap();
    let home = page(&site, "index.html");
    let title = select(&home, "title")[0].text().collect::<String>();
    assert_eq!(title, "Home | Fixture Site");
    let links: Vec<&str> = select(&home, "nav a")
        .iter()
        .filter_map(|a| attr(a, "href"))
        .collect();
    assert_eq!(links, ["/", "/about/"]);
    assert!(home.html().contains("Owned by Ada."));
    let listed: Vec<String> = select(&home, "ul li a")
        .iter()
        .map(|a| a.text().collect())
        .collect();
    assert_eq!(listed, ["First post"], "the page list excludes drafts");
}

#[test]
fn markdown_pages_have_anchors_toc_and_highlighting() {
    let site = site();
    site.build().unwrap();
    let post = page(&site, "blog/first-post/index.html");
    let toc: Vec<(String, String)> = select(&post, ".toc a")
        .iter()
        .map(|a| (attr(a, "href").unwrap().to_string(), a.text().collect()))
        .collect();
    assert_eq!(
        toc,
        [
            (
                "#getting-started".to_string(),
                "Getting started".to_string()
            ),
            ("#next-steps".to_string(), "Next steps".to_string())
        ]
    );
    assert_eq!(select(&post, "h2#getting-started a.anchor").len(), 1);
    let code = &select(&post, "pre.code[data-lang=rust] code")[0];
    assert!(!select(&post, "pre.code span[class^=hl-]").is_empty());
    assert!(
        code.text()
            .collect::<String>()
            .contains("println!(\"hi\");")
    );
    assert!(post.html().contains("<strong>bold</strong>"));
}

#[test]
fn asset_urls_are_hashed_and_sri_verifies() {
    let site = site();
    site.build().unwrap();
    let home = page(&site, "index.html");
    let stylesheet = &select(&home, "link[rel=stylesheet]")[0];
    let href = attr(stylesheet, "href").unwrap();
    assert_eq!(href, format!("/{}", site.output_of("css/site.css")));
    let script = &select(&home, "script[src]")[0];
    assert_eq!(attr(script, "type"), Some("module"));
    for (element, url_attr) in [(stylesheet, "href"), (script, "src")] {
        let url = attr(element, url_attr).unwrap();
        let bytes = site.read_dist(url.trim_start_matches('/'));
        assert_eq!(
            attr(element, "integrity").unwrap(),
            kiln::build::hash::integrity(&bytes)
        );
        assert_eq!(attr(element, "crossorigin"), Some("anonymous"));
    }
}

#[test]
fn picture_markup_offers_modern_formats_at_every_width() {
    let site = site();
    site.build().unwrap();
    let home = page(&site, "index.html");
    let picture = &select(&home, "picture")[0];
    let sources: Vec<(&str, &str)> = picture
        .select(&Selector::parse("source").unwrap())
        .map(|s| (attr(&s, "type").unwrap(), attr(&s, "srcset").unwrap()))
        .collect();
    assert_eq!(
        sources.iter().map(|s| s.0).collect::<Vec<_>>(),
        ["image/avif", "image/webp"]
    );
    let manifest = site.manifest();
    for (mime, srcset) in &sources {
        let format = mime.trim_start_matches("image/");
        let expected: Vec<String> = manifest["images/photo.png"]["variants"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["format"] == format)
            .map(|v| format!("/{} {}w", v["file"].as_str().unwrap(), v["width"]))
            .collect();
        assert_eq!(srcset.split(", ").collect::<Vec<_>>(), expected, "{mime}");
    }
    let img = &picture
        .select(&Selector::parse("img").unwrap())
        .next()
        .unwrap();
    assert_eq!(
        attr(img, "src"),
        Some(format!("/{}", site.output_of("images/photo.png")).as_str())
    );
    assert_eq!(
        (attr(img, "width"), attr(img, "height")),
        (Some("600"), Some("400"))
    );
    assert_eq!(attr(img, "alt"), Some("A gradient"));
    assert_eq!(attr(img, "class"), Some("hero-image"));
    assert_eq!(attr(img, "sizes"), Some("50vw"));
    assert!(attr(img, "srcset").unwrap().ends_with(" 600w"));
    assert!(
        attr(img, "data-kiln-image").is_none(),
        "the marker is removed"
    );
}

#[test]
fn lazy_loading_everywhere_but_the_first_image() {
    let site = site();
    site.build().unwrap();
    let home = page(&site, "index.html");
    let images = select(&home, "img");
    // The first image (likely the LCP element) loads eagerly, with priority.
    assert_eq!(attr(&images[0], "loading"), None);
    assert_eq!(attr(&images[0], "fetchpriority"), Some("high"));
    // A plain <img> gets lazy loading and its size from the manifest.
    let photo = &images[1];
    assert_eq!(attr(photo, "loading"), Some("lazy"));
    assert_eq!(attr(photo, "decoding"), Some("async"));
    assert_eq!(
        (attr(photo, "width"), attr(photo, "height")),
        (Some("150"), Some("300"))
    );
    // An explicit loading attribute is respected.
    assert_eq!(attr(&images[2], "loading"), Some("eager"));
    assert_eq!(attr(&select(&home, "iframe")[0], "loading"), Some("lazy"));

    site.build_with(&["pages.lazy_loading=false"]).unwrap();
    let home = page(&site, "index.html");
    let images = select(&home, "img");
    assert_eq!(attr(&images[1], "loading"), None);
    assert!(attr(&select(&home, "iframe")[0], "loading").is_none());
}

#[test]
fn resource_hints_match_the_manifest() {
    let site = site();
    site.build().unwrap();
    let home = page(&site, "index.html");
    let css = site.output_of("css/site.css");
    let js = site.output_of("js/app.js");
    let preloads: Vec<(&str, &str)> = select(
        &home,
        "head link[rel=preload], head link[rel=modulepreload]",
    )
    .iter()
    .map(|l| (attr(l, "rel").unwrap(), attr(l, "href").unwrap()))
    .collect();
    assert_eq!(
        preloads,
        [
            ("preload", format!("/{css}").as_str()),
            ("modulepreload", format!("/{js}").as_str())
        ]
    );
    let hints: serde_json::Value =
        serde_json::from_slice(&site.read_dist(".kiln/hints.json")).unwrap();
    assert_eq!(
        hints["index.html"],
        serde_json::json!([
            format!("</{css}>; rel=preload; as=style; crossorigin=anonymous"),
            format!("</{js}>; rel=modulepreload")
        ])
    );
    site.build_with(&["pages.resource_hints=false"]).unwrap();
    assert!(select(&page(&site, "index.html"), "link[rel=preload]").is_empty());
    assert!(!site.dist().join(".kiln/hints.json").exists());
}

#[test]
fn html_is_minified_without_changing_rendering() {
    let site = site();
    site.build().unwrap();
    let html = site.read_dist_string("index.html");
    assert!(!html.contains("<!-- main content -->"));
    let pre = "<pre>  keep    this\n    spacing  </pre>";
    assert!(html.contains(pre), "<pre> is kept verbatim: {html}");
    assert!(
        !html.replace(pre, "").contains("  "),
        "no runs of spaces outside <pre>: {html}"
    );
    site.build_with(&["build.minify=false"]).unwrap();
    assert!(
        site.read_dist_string("index.html")
            .contains("<!-- main content -->")
    );
}

#[test]
fn missing_alt_text_is_a_warning() {
    let site = site();
    let report = site.build().unwrap();
    let warnings: Vec<String> = report.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("images/photo.jpg") && warnings[0].contains("alt"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("templates/pages/about.html:7:"),
        "{}",
        warnings[0]
    );
}

#[test]
fn unknown_asset_is_an_error_naming_template_line_and_path() {
    let site = site();
    site.write(
        "templates/pages/about.html",
        "+++\ntitle = \"About\"\n+++\n{% extends \"layouts/base.html\" %}\n{% block content %}\n<img src=\"{{ asset('images/nope.png') }}\">\n{% endblock %}\n",
    );
    let err = site.build().unwrap_err();
    let diagnostic = &err.diagnostics[0];
    assert!(
        diagnostic.message.contains("images/nope.png"),
        "{}",
        diagnostic.message
    );
    let location = diagnostic.location.as_ref().unwrap();
    assert!(
        location.file.ends_with("templates/pages/about.html"),
        "{location:?}"
    );
    assert_eq!(location.line, 6);
}

#[test]
fn template_syntax_errors_name_the_file_and_line_of_a_partial() {
    let site = site();
    site.write(
        "templates/partials/nav.html",
        "<nav>\n{% for link in data.nav.links %}\n<a>{{ link.label }</a>\n",
    );
    let err = site.build().unwrap_err();
    let text = err.to_string();
    let location = err.diagnostics[0].location.as_ref().unwrap();
    assert!(
        location.file.ends_with("templates/partials/nav.html"),
        "{text}"
    );
    assert_eq!(location.line, 3, "{text}");
}

#[test]
fn front_matter_errors_name_the_line() {
    let site = site();
    site.write(
        "templates/pages/about.html",
        "+++\ntitle = \"About\"\nbad = [\n+++\n<p>x</p>\n",
    );
    let err = site.build().unwrap_err();
    let location = err.diagnostics[0].location.as_ref().unwrap();
    assert!(location.file.ends_with("about.html"));
    assert!(location.line >= 3, "{location:?}");
}

#[test]
fn two_pages_for_one_url_is_an_error() {
    let site = site();
    site.write("templates/pages/about/index.html", "<p>dup</p>");
    let err = site.build().unwrap_err().to_string();
    assert!(err.contains("both render to about/index.html"), "{err}");
}

#[test]
fn relative_base_url_makes_page_links_relative() {
    let site = site();
    site.build_with(&["build.base_url=./"]).unwrap();
    let about = page(&site, "about/index.html");
    let href = attr(&select(&about, "link[rel=stylesheet]")[0], "href").unwrap();
    assert_eq!(href, format!("../{}", site.output_of("css/site.css")));
    // SRI still applies to relative references.
    assert!(attr(&select(&about, "link[rel=stylesheet]")[0], "integrity").is_some());
}

#[test]
fn pages_are_precompressed() {
    let site = site();
    site.build().unwrap();
    for extension in ["br", "gz", "zst"] {
        assert!(
            site.dist()
                .join(format!("index.html.{extension}"))
                .is_file()
        );
    }
    let _ = fs::metadata(site.dist().join("index.html")).unwrap();
}

#[test]
fn site_url_writes_a_sitemap_and_an_atom_feed_per_dated_collection() {
    let site = Site::demo();
    site.build().expect("the demo builds");
    let sitemap = site.read_dist_string("sitemap.xml");
    assert!(sitemap.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset"));
    for url in ["/", "/gallery/", "/blog/", "/blog/roasting-in-orbit/"] {
        assert!(
            sitemap.contains(&format!("<loc>https://orbital.example{url}</loc>")),
            "{url}: {sitemap}"
        );
    }
    assert!(!sitemap.contains("404"), "{sitemap}");
    assert!(sitemap.contains("<lastmod>2026-11-20T00:00:00Z</lastmod>"));
    let feed = site.read_dist_string("blog/atom.xml");
    assert!(
        feed.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"),
        "{feed}"
    );
    assert!(feed.contains("<title>Journal</title>"), "{feed}");
    assert!(feed.contains("<id>https://orbital.example/blog/roasting-in-orbit/</id>"));
    assert!(feed.contains("<updated>2026-11-20T00:00:00Z</updated>"));
    assert!(feed.contains("<author><name>Mae, head roaster</name></author>"));
    // Precompressed like pages, and not content-hashed: their URLs are known.
    assert!(site.dist().join("sitemap.xml.br").is_file());
}

#[test]
fn without_site_url_there_is_no_sitemap_and_a_bad_one_is_refused() {
    let site = Site::demo();
    site.build_with(&["pages.site_url=\"\""])
        .expect("the demo builds");
    assert!(!site.dist().join("sitemap.xml").exists());
    let err = kiln::Settings::load(
        site.root(),
        &["pages.site_url=\"example.com\"".parse().unwrap()],
    )
    .expect_err("not absolute");
    assert!(err.to_string().contains("pages.site_url"), "{err}");
}
