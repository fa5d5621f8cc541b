//! Reading SAFE products: the two metadata files and the product's place in the archive.
//!
//! `MTD_MSIL1C.xml` gives the product-level facts (sensing start, baseline, quantification, offsets,
//! cloud cover, band file list); `GRANULE/<granule>/MTD_TL.xml` gives the tile geometry and sun
//! angles. Both are parsed by local element name, so namespace prefixes and versions do not matter.

mod product_mtd;
mod tile_mtd;
mod xml;

use std::path::{Path, PathBuf};

pub use product_mtd::{parse_product_mtd, ProductMtd};
pub use tile_mtd::{parse_tile_mtd, TileMtd};

use crate::s2::bands::BANDS;
use crate::s2::scene::Scene;

/// A metadata problem, always naming the file and the element.
#[derive(Debug, thiserror::Error)]
pub enum SafeError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not well-formed XML: {msg}")]
    Xml { file: PathBuf, msg: String },
    #[error("{file}: missing element <{field}>")]
    Missing { file: PathBuf, field: String },
    #[error("{file}: invalid <{field}> value {value:?}: {msg}")]
    Invalid {
        file: PathBuf,
        field: String,
        value: String,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Product { file: PathBuf, msg: String },
}

/// Reads a product directory (`<archive>/<key>.SAFE`) into a scene. `archive_key` is the product
/// directory's key relative to the archive root; band keys are built from it.
pub fn read_product(safe_dir: &Path, archive_key: &str) -> Result<Scene, SafeError> {
    let product_file = safe_dir.join("MTD_MSIL1C.xml");
    let text = read(&product_file)?;
    let product = parse_product_mtd(&text, &product_file)?;
    let granule = product.granule_dir().ok_or_else(|| SafeError::Missing {
        file: product_file.clone(),
        field: "IMAGE_FILE".into(),
    })?;
    let tile_file = safe_dir.join(&granule).join("MTD_TL.xml");
    let tile = parse_tile_mtd(&read(&tile_file)?, &tile_file)?;
    scene_from_parts(&product, &tile, archive_key, &product_file)
}

/// Combines the two parsed metadata files into a scene.
pub fn scene_from_parts(
    product: &ProductMtd,
    tile: &TileMtd,
    archive_key: &str,
    product_file: &Path,
) -> Result<Scene, SafeError> {
    let err = |msg: String| SafeError::Product {
        file: product_file.to_path_buf(),
        msg,
    };
    let mut band_keys = Vec::with_capacity(BANDS.len());
    for band in &BANDS {
        let suffix = format!("_{}", band.name);
        let file = product
            .image_files
            .iter()
            .find(|f| f.ends_with(&suffix))
            .ok_or_else(|| err(format!("no IMAGE_FILE for band {}", band.name)))?;
        band_keys.push(format!("{archive_key}/{file}.jp2"));
    }
    let scene = Scene {
        product_id: product.product_id(),
        tile: product.tile().ok_or_else(|| {
            err(format!(
                "cannot find the tile in PRODUCT_URI {}",
                product.product_uri
            ))
        })?,
        sensing_time_ms: product.start_time_ms,
        baseline: product.baseline.clone(),
        platform: product.platform(),
        relative_orbit: product.relative_orbit,
        cloud_cover: product.cloud_cover,
        mean_sun_zenith: tile.sun_zenith,
        mean_sun_azimuth: tile.sun_azimuth,
        quantification: product.quantification,
        radio_offsets: product.radio_offsets.to_vec(),
        epsg: tile.epsg,
        grids: tile.grids.to_vec(),
        band_keys,
    };
    scene.validate().map_err(err)?;
    Ok(scene)
}

fn read(file: &Path) -> Result<String, SafeError> {
    std::fs::read_to_string(file).map_err(|source| SafeError::Io {
        file: file.to_path_buf(),
        source,
    })
}
