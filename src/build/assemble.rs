//! The manifest, assembled from what the stages emitted: one entry per
//! static asset (with image sizes and variants) and per script or
//! stylesheet entry, in Vite's shape.

use std::sync::Arc;

use super::EntryOutput;
use super::assets::StaticAsset;
use crate::site::manifest::{self, Manifest, ManifestChunk};

pub(super) fn manifest(entries: &[EntryOutput], assets: &[Arc<StaticAsset>]) -> Manifest {
    let mut manifest = Manifest::new();
    for asset in assets {
        let image = asset.image.as_ref();
        manifest.insert(
            asset.key.clone(),
            ManifestChunk {
                file: asset.file.clone(),
                src: Some(asset.key.clone()),
                integrity: asset.integrity.clone(),
                width: image.and_then(|image| image.size).map(|(width, _)| width),
                height: image.and_then(|image| image.size).map(|(_, height)| height),
                variants: image
                    .map(|image| {
                        image
                            .variants
                            .iter()
                            .map(|variant| manifest::ImageVariant {
                                file: variant.file.clone(),
                                width: variant.width,
                                height: variant.height,
                                format: variant.format,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                ..Default::default()
            },
        );
    }
    for entry in entries {
        manifest.insert(entry.key.clone(), entry.chunk.clone());
    }
    manifest
}
