//! `datacube convert cog`: one Cloud-Optimized GeoTIFF per scene and resolution, stacking that
//! resolution's bands — the layout a COG-based pipeline would use, so the benchmark can compare it.
//!
//! Each COG is made by GDAL's COG driver from a VRT over the band JP2s: DEFLATE with the horizontal
//! predictor, 512×512 blocks, overviews, nodata 0, band descriptions and wavelengths, the tile's
//! CRS and grid. Written to a temporary name and renamed; existing COGs are skipped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use gdal::cpl::CslStringList;
use gdal::{Dataset, DriverManager};
use rayon::prelude::*;

use datacube::s2::bands::Resolution;
use datacube::s2::scene::Scene;
use datacube::source::BandSource;

/// Where the COG of `product_id` at `res` lives under `out`.
pub fn cog_path(out: &Path, tile: &str, year: i32, res: Resolution, product_id: &str) -> PathBuf {
    out.join(tile)
        .join(year.to_string())
        .join(res.name())
        .join(format!("{product_id}.tif"))
}

#[derive(Debug, Default, serde::Serialize)]
pub struct CogReport {
    pub scenes: usize,
    pub written: u64,
    pub skipped: u64,
    pub bytes_written: u64,
    /// Every failure, naming the scene, resolution and file.
    pub errors: Vec<String>,
    pub seconds: f64,
}

/// Converts every scene of the tile-year (deduplicated as on the time axis) into COGs under `out`.
pub fn convert_cog(
    source: &dyn BandSource,
    out: &Path,
    tile: &str,
    year: i32,
) -> Result<CogReport> {
    let t0 = std::time::Instant::now();
    let scan = source.scan(tile, year)?;
    if scan.scenes.is_empty() {
        anyhow::bail!(
            "no scenes of tile {tile} in {year} in {}",
            source.describe()
        );
    }
    let mut jobs = Vec::new();
    for s in &scan.scenes {
        for res in Resolution::ALL {
            jobs.push((s, res));
        }
    }
    let (written, skipped, bytes) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let mut errors: Vec<String> = jobs
        .par_iter()
        .filter_map(|(s, res)| {
            let path = cog_path(out, tile, year, *res, &s.product_id);
            if path.exists() {
                skipped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match write_cog(source, s, *res, &path) {
                Ok(n) => {
                    written.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(n, Ordering::Relaxed);
                    None
                }
                Err(e) => Some(format!("{} {res}: {e:#}", s.product_id)),
            }
        })
        .collect();
    errors.extend(scan.errors.iter().cloned());
    Ok(CogReport {
        scenes: scan.scenes.len(),
        written: written.into_inner(),
        skipped: skipped.into_inner(),
        bytes_written: bytes.into_inner(),
        errors,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The VRT stacking `res`'s band files of `scene`, with the grid, CRS, descriptions and wavelengths.
fn vrt_xml(source: &dyn BandSource, scene: &Scene, res: Resolution) -> Result<String> {
    let g = scene.grid(res);
    let gt = g.geotransform();
    let wkt = datacube::s2::layout::crs_wkt(scene.epsg)?;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut x = format!(
        "<VRTDataset rasterXSize=\"{}\" rasterYSize=\"{}\">\n  <SRS>{}</SRS>\n  <GeoTransform>{}, {}, {}, {}, {}, {}</GeoTransform>\n",
        g.ncols, g.nrows, esc(&wkt), gt[0], gt[1], gt[2], gt[3], gt[4], gt[5]
    );
    for (i, band) in res.bands().iter().enumerate() {
        let path = source.local_path(scene.band_key(band.id))?;
        write!(
            x,
            "  <VRTRasterBand dataType=\"UInt16\" band=\"{}\">\n    <Description>{}</Description>\n    <NoDataValue>0</NoDataValue>\n    <Metadata>\n      <MDI key=\"BANDNAME\">{}</MDI>\n      <MDI key=\"WAVELENGTH\">{}</MDI>\n      <MDI key=\"WAVELENGTH_UNIT\">nm</MDI>\n    </Metadata>\n    <SimpleSource>\n      <SourceFilename relativeToVRT=\"0\">{}</SourceFilename>\n      <SourceBand>1</SourceBand>\n    </SimpleSource>\n  </VRTRasterBand>\n",
            i + 1,
            band.name,
            band.name,
            band.wavelength_nm,
            esc(&path.to_string_lossy())
        )?;
    }
    x.push_str("</VRTDataset>\n");
    Ok(x)
}

fn write_cog(source: &dyn BandSource, scene: &Scene, res: Resolution, path: &Path) -> Result<u64> {
    let dir = path.parent().context("COG path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let vrt = Dataset::open(vrt_xml(source, scene, res)?)
        .with_context(|| format!("opening the band files of {} at {res}", scene.product_id))?;
    let cog = DriverManager::get_driver_by_name("COG")?;
    let mut opts = CslStringList::new();
    for (k, v) in [
        ("COMPRESS", "DEFLATE"),
        ("PREDICTOR", "YES"),
        ("BLOCKSIZE", "512"),
        ("OVERVIEWS", "AUTO"),
        ("OVERVIEW_RESAMPLING", "AVERAGE"),
        ("BIGTIFF", "IF_SAFER"),
        ("NUM_THREADS", "1"),
    ] {
        opts.set_name_value(k, v)?;
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = vrt
        .create_copy(&cog, &tmp, &opts)
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|ds| {
            drop(ds);
            std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    Ok(std::fs::metadata(path)?.len())
}

/// Reads the window (`x0`, `y0`, `n`×`n`) of every band of a COG: `[band, n, n]`.
pub fn read_cog_window(path: &Path, x0: usize, y0: usize, n: usize) -> Result<Vec<u16>> {
    let ds = Dataset::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let count = ds.raster_count();
    let mut out = vec![0u16; count * n * n];
    for (i, plane) in out.chunks_mut(n * n).enumerate() {
        ds.rasterband(i + 1)?
            .read_into_slice::<u16>((x0 as isize, y0 as isize), (n, n), (n, n), plane, None)
            .with_context(|| format!("{}: reading band {}", path.display(), i + 1))?;
    }
    Ok(out)
}
