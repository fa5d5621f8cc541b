//! Reading SAFE products: the two metadata files and the product's place in the archive.
//!
//! The product metadata (`MTD_MSIL1C.xml` for Level-1C, `MTD_MSIL2A.xml` for Level-2A) gives the
//! product-level facts (sensing start, baseline, quantification, per-band offsets, cloud cover, band
//! file list); `GRANULE/<granule>/MTD_TL.xml` (same geometry and sun angle elements in both levels)
//! gives the tile geometry and sun angles. All are parsed by local element name, so namespace
//! prefixes and versions do not matter. The level is told by the root element or `PRODUCT_TYPE`
//! ([`product_level`]); L1C becomes a [`Scene`] here, L2A is parsed ([`L2aProductMtd`]: native band
//! files, 20 m SCL, `BOA_ADD_OFFSET`, `BOA_QUANTIFICATION_VALUE`) for the L2A pipeline to use.

mod product_mtd;
mod product_mtd_l2a;
mod tile_mtd;
mod xml;

use std::path::{Path, PathBuf};

pub use product_mtd::{parse_product_mtd, product_level, ProductMtd};
pub use product_mtd_l2a::{parse_l2a_product_mtd, L2aProductMtd, FIRST_BASELINE_WITH_OFFSETS};
pub use tile_mtd::{parse_tile_mtd, TileMtd};

use crate::s2::bands::BANDS;
use crate::s2::product::ProductLevel;
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
    build_scene(
        product,
        ProductLevel::L1C,
        tile,
        band_keys,
        None,
        product_file,
    )
}

/// The scene of a product of `level` from its general metadata (for L2A, `L2aProductMtd::general`),
/// its granule's, and the keys of its files.
fn build_scene(
    product: &ProductMtd,
    level: ProductLevel,
    tile: &TileMtd,
    band_keys: Vec<String>,
    scl_key: Option<String>,
    product_file: &Path,
) -> Result<Scene, SafeError> {
    let err = |msg: String| SafeError::Product {
        file: product_file.to_path_buf(),
        msg,
    };
    let scene = Scene {
        level,
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
        scl_key,
    };
    scene.validate().map_err(err)?;
    Ok(scene)
}

/// Reads a product directory of either level (told by which metadata file it holds) into a scene.
pub fn read_any_product(safe_dir: &Path, archive_key: &str) -> Result<Scene, SafeError> {
    if safe_dir.join(ProductLevel::L2A.metadata_file()).is_file() {
        let (product, tile) = read_l2a_product(safe_dir)?;
        let file = safe_dir.join(ProductLevel::L2A.metadata_file());
        l2a_scene_from_parts(&product, &tile, archive_key, &file)
    } else {
        read_product(safe_dir, archive_key)
    }
}

/// Combines a Level-2A product's two parsed metadata files into a scene: the native-resolution
/// band files (none for B10), the 20 m SCL, `BOA_ADD_OFFSET` and `BOA_QUANTIFICATION_VALUE`.
pub fn l2a_scene_from_parts(
    product: &L2aProductMtd,
    tile: &TileMtd,
    archive_key: &str,
    product_file: &Path,
) -> Result<Scene, SafeError> {
    let band_keys = BANDS
        .iter()
        .map(|b| {
            product
                .band_file(b)
                .map_or(String::new(), |f| format!("{archive_key}/{f}.jp2"))
        })
        .collect();
    let scl_key = Some(format!("{archive_key}/{}.jp2", product.scl_file));
    let general = product.general();
    build_scene(
        &general,
        ProductLevel::L2A,
        tile,
        band_keys,
        scl_key,
        product_file,
    )
}

/// A product metadata file of either level.
#[derive(Debug, Clone, PartialEq)]
pub enum ProductMetadata {
    L1C(ProductMtd),
    L2A(L2aProductMtd),
}

impl ProductMetadata {
    pub fn level(&self) -> ProductLevel {
        match self {
            ProductMetadata::L1C(_) => ProductLevel::L1C,
            ProductMetadata::L2A(_) => ProductLevel::L2A,
        }
    }
}

/// Parses a product metadata file of either level, told by its root element or `PRODUCT_TYPE`.
pub fn parse_product_metadata(text: &str, file: &Path) -> Result<ProductMetadata, SafeError> {
    Ok(match product_level(text, file)? {
        ProductLevel::L1C => ProductMetadata::L1C(parse_product_mtd(text, file)?),
        ProductLevel::L2A => ProductMetadata::L2A(parse_l2a_product_mtd(text, file)?),
    })
}

/// Reads a Level-2A product directory's `MTD_MSIL2A.xml` and its granule's `MTD_TL.xml`.
pub fn read_l2a_product(safe_dir: &Path) -> Result<(L2aProductMtd, TileMtd), SafeError> {
    let product_file = safe_dir.join(ProductLevel::L2A.metadata_file());
    let product = parse_l2a_product_mtd(&read(&product_file)?, &product_file)?;
    let granule = product
        .granule_dir()
        .ok_or_else(|| xml::missing(&product_file, "IMAGE_FILE"))?;
    let tile_file = safe_dir.join(&granule).join("MTD_TL.xml");
    let tile_text = read(&tile_file)?;
    if product_level(&tile_text, &tile_file)? != ProductLevel::L2A {
        return Err(SafeError::Product {
            file: tile_file,
            msg: "a Level-1C granule in a Level-2A product".into(),
        });
    }
    let tile = parse_tile_mtd(&tile_text, &tile_file)?;
    Ok((product, tile))
}

fn read(file: &Path) -> Result<String, SafeError> {
    std::fs::read_to_string(file).map_err(|source| SafeError::Io {
        file: file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s2::bands::Resolution;

    fn l2a_dir(product: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/reference/cdse/l2a")
            .join(format!("{product}.SAFE"))
    }

    #[test]
    fn l2a_product_directory_reads_with_its_granule() {
        let dir = l2a_dir("S2A_MSIL2A_20230821T221941_N0509_R029_T01KAB_20230822T021825");
        let (p, t) = read_l2a_product(&dir).unwrap();
        assert_eq!(p.tile().as_deref(), Some("01KAB"));
        assert_eq!(t.epsg, 32701);
        assert!((t.sun_zenith - 38.4174390061789).abs() < 1e-12);
        assert!((t.sun_azimuth - 43.3009058473725).abs() < 1e-12);
        assert_eq!(
            crate::s2::scene::iso_ms(t.sensing_time_ms),
            "2023-08-21T22:20:45.625Z"
        );
        for (res, n) in [
            (Resolution::R10, 10980),
            (Resolution::R20, 5490),
            (Resolution::R60, 1830),
        ] {
            let g = t.grids[res.index()];
            assert_eq!((g.nrows, g.ncols, g.ulx, g.uly), (n, n, 99960.0, 8200000.0));
        }
    }

    #[test]
    fn l2a_granule_metadata_of_baseline_04_00_parses() {
        let file = l2a_dir("S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126")
            .join("GRANULE/L2A_T33XWJ_A026649_20220413T150756/MTD_TL.xml");
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(product_level(&text, &file).unwrap(), ProductLevel::L2A);
        let t = parse_tile_mtd(&text, &file).unwrap();
        assert_eq!(t.epsg, 32633);
        assert_eq!((t.grids[0].ulx, t.grids[0].uly), (499980.0, 8900040.0));
        assert!((t.sun_zenith - 76.5286190227361).abs() < 1e-12);
    }

    #[test]
    fn either_level_parses_through_one_entry_point() {
        let l2a = l2a_dir("S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500")
            .join("MTD_MSIL2A.xml");
        let l1c = Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "tests/data/reference/S2A_MSIL1C_20230216T044851_N0509_R076_T46UEU_20230216T000000.SAFE/MTD_MSIL1C.xml",
        );
        for (file, level) in [(l2a, ProductLevel::L2A), (l1c, ProductLevel::L1C)] {
            let text = std::fs::read_to_string(&file).unwrap();
            assert_eq!(parse_product_metadata(&text, &file).unwrap().level(), level);
        }
    }

    #[test]
    fn a_missing_l2a_granule_names_the_file() {
        let dir = std::env::temp_dir().join(format!("datacube-l2a-safe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = l2a_dir("S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500");
        std::fs::copy(src.join("MTD_MSIL2A.xml"), dir.join("MTD_MSIL2A.xml")).unwrap();
        let e = read_l2a_product(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.contains("GRANULE/L2A_T22HBD_A020270_20210122T133224/MTD_TL.xml")
                && e.contains("cannot read"),
            "{e}"
        );
    }
}
