//! `datacube bench-intake`: intake throughput against the decode floor, measured in one run.
//!
//! The floor is GDAL decoding every band JP2 of the tile-year's scenes fully (the level's bands;
//! L2A: and every scene's SCL file), one file per worker, on the same thread pool. Intake must
//! decode the same pixels, so floor ÷ intake is the share of intake time spent on anything but
//! decoding. (L2A's intake reads the SCL windows for both `20m/scl` and `10m/scl`; the floor
//! decodes each SCL file once.)

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use datacube::raster::read_direct;
use datacube::s2::bands::Resolution;
use datacube::s2::product::ProductLevel;
use datacube::source::BandSource;
use datacube::store::DirStore;

#[derive(Debug, Serialize)]
pub struct BenchIntakeResult {
    /// The processing level (absent for L1C, whose reports predate L2A).
    #[serde(skip_serializing_if = "ProductLevel::is_l1c")]
    pub level: ProductLevel,
    pub tile: String,
    pub year: i32,
    pub scenes: usize,
    /// Files the floor decodes: band files, and L2A's SCL files (`scl_files` of them).
    pub band_files: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub scl_files: usize,
    pub megapixels: f64,
    pub threads: usize,
    /// `None` with `--skip-floor` (a run comparing layouts measures the floor once).
    pub floor_seconds: Option<f64>,
    pub intake_seconds: f64,
    pub intake_over_floor: Option<f64>,
    /// The store's layout.
    pub layout: String,
    /// Objects (files) in the store after the intake, everything included.
    pub store_objects: u64,
    pub chunks_written: u64,
    pub chunks_empty: u64,
    pub store_bytes: u64,
    pub jp2_tiles_decoded: u64,
}

pub fn run(
    source: &dyn BandSource,
    tile: &str,
    year: i32,
    store_dir: &Path,
    memory: usize,
    layout: Option<datacube::s2::chunking::Chunking>,
    skip_floor: bool,
) -> Result<BenchIntakeResult> {
    let scan = source.scan(tile, year)?;
    let level = source.level();
    let mut files = Vec::new();
    for s in &scan.scenes {
        for (key, res) in crate::bench::scene_files(s, level) {
            let g = s.grid(res);
            files.push((source.local_path(key)?, g.ncols as usize, g.nrows as usize));
        }
    }
    let scl_files = scan.scenes.iter().filter(|s| s.scl_key.is_some()).count();
    let megapixels = files.iter().map(|(_, w, h)| (w * h) as f64).sum::<f64>() / 1e6;

    let floor = if skip_floor {
        None
    } else {
        let t0 = Instant::now();
        files
            .par_iter()
            .try_for_each(|(p, w, h)| read_direct(p, 0, 0, *w, *h).map(|_| ()))?;
        Some(t0.elapsed().as_secs_f64())
    };

    if store_dir.exists() {
        std::fs::remove_dir_all(store_dir)?;
    }
    let store = DirStore::create(store_dir)?;
    let opts = datacube::s2::intake::IntakeOptions {
        fence: Default::default(),
        regions: datacube::intake::Part::WHOLE,
        tile: tile.into(),
        year,
        start: None,
        end: None,
        resolutions: Resolution::ALL.to_vec(),
        memory_bytes: memory,
        progress: false,
        layout,
    };
    let t1 = Instant::now();
    let r = datacube::s2::intake::intake(&store, source, &opts)?;
    let intake = t1.elapsed().as_secs_f64();
    if !r.errors.is_empty() {
        anyhow::bail!("intake failed: {}", r.errors.join("; "));
    }
    Ok(BenchIntakeResult {
        level,
        tile: tile.into(),
        year,
        scenes: scan.scenes.len(),
        band_files: files.len(),
        scl_files,
        megapixels,
        threads: rayon::current_num_threads(),
        floor_seconds: floor,
        intake_seconds: intake,
        intake_over_floor: floor.map(|f| intake / f),
        layout: layout
            .unwrap_or(datacube::s2::chunking::Chunking::DEFAULT)
            .to_string(),
        store_objects: count_files(store_dir)?,
        chunks_written: r.chunks_written,
        chunks_empty: r.chunks_empty,
        store_bytes: r.bytes_written,
        jp2_tiles_decoded: r.decodes,
    })
}

/// Files under `dir`, recursively.
fn count_files(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            n += count_files(&e.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
