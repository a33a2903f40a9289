//! Fetching any storage URI: most through the fetch engine straight into the destination;
//! an OCI image (`oci+fetch://`) through the engine into a scratch directory of layers,
//! whose `models/` trees are then unpacked in order.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::archive;
use crate::environment::Environment;
use crate::error::StorageError;
use crate::fetch::{
    fetch, path_name, read_marker, remove_if_present, remove_unpacked_before, with_retries,
    write_marker, FetchOptions, FetchReport, Marker, MARKER,
};
use crate::source::{self, Source, SourceOptions};
use crate::uri::{Location, StorageUri};

/// Where modelcar images keep the model, and so where `oci+fetch://` takes it from.
const IMAGE_MODEL_DIR: &str = "models/";
const LAYERS: &str = ".serval-image-layers";

/// Fetches `uri` into `dest`, whatever its kind.
pub async fn fetch_uri(
    uri: &StorageUri,
    env: &Environment,
    source_options: &SourceOptions,
    dest: &Path,
    options: &FetchOptions,
) -> Result<FetchReport, StorageError> {
    let source = source::open(uri, env, source_options).await?;
    match uri.location {
        Location::Image { .. } => fetch_image(source, &uri.to_string(), dest, options).await,
        _ => fetch(source, &uri.to_string(), dest, options).await,
    }
}

async fn fetch_image(
    source: Arc<dyn Source>,
    label: &str,
    dest: &Path,
    options: &FetchOptions,
) -> Result<FetchReport, StorageError> {
    let started = Instant::now();
    let layers = with_retries(options.retries, || source.list()).await?;
    let marker = read_marker(dest).await;
    if let Some(marker) = &marker {
        if marker.unpacked && marker.files == layers {
            return Ok(FetchReport::already_complete(&layers, started));
        }
    }
    remove_if_present(&dest.join(MARKER)).await?;
    let unpacked_before = marker.map(|m| m.unpacked_files).unwrap_or_default();
    let scratch = dest.join(LAYERS);
    let mut report = fetch(source, label, &scratch, options).await?;
    let into = dest.to_path_buf();
    let from = scratch.clone();
    let count = layers.len();
    let unpacked_files = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
        let mut files = BTreeSet::new();
        for i in 0..count {
            let layer = from.join(format!("layer-{i:03}"));
            archive::unpack_layer(&layer, IMAGE_MODEL_DIR, &into, &mut files)?;
        }
        Ok(files.iter().map(|f| path_name(f)).collect::<Vec<_>>())
    })
    .await
    .map_err(|e| StorageError::io(dest, std::io::Error::other(e)))??;
    tokio::fs::remove_dir_all(&scratch)
        .await
        .map_err(|e| StorageError::io(&scratch, e))?;
    if unpacked_files.is_empty() {
        return Err(StorageError::Empty {
            what: format!("{label} (no files under /{IMAGE_MODEL_DIR} in the image)"),
        });
    }
    // Files an earlier image unpacked here that this one no longer holds go.
    let kept: HashSet<&str> = unpacked_files.iter().map(String::as_str).collect();
    remove_unpacked_before(dest, &unpacked_before, &kept).await?;
    write_marker(
        dest,
        &Marker {
            files: layers,
            unpacked: true,
            unpacked_files,
        },
    )
    .await?;
    report.elapsed = started.elapsed();
    Ok(report)
}
