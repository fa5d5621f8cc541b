//! `datacube bench --collection sentinel-1-sig0`: the Sentinel-1 σ⁰ measurements, in one run.
//!
//! 1. **Intake against its floor.** The floor is GDAL reading exactly the GeoTIFF windows intake
//!    reads (every 500 × 500 inner window of every slice of every shard region, both
//!    polarisations), with nothing merged, encoded or stored. Both start with the files in the page
//!    cache (a mirror) or an empty disk cache of ranges (HTTP), and GDAL's caches empty.
//! 2. **Patch time series.** Random 5.1 km patches (255 × 255 px at 20 m; VV and VH, every day of
//!    the year) where the store has data, read with zarrs: through a fresh mount over an empty
//!    store (cold: the shard regions are materialized from the source), again through the same
//!    mount (warm: its cache), and from the intaken store directly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use datacube::s1::grid::Equi7Tile;
use datacube::s1::shard::SliceReader;
use datacube::s1::source::S1Source;
use datacube::s1::{INNER_PX, SHARD_PX};

use super::daemon::{Daemon, DaemonSpec};

pub struct Options {
    pub source: String,
    pub tile: Equi7Tile,
    pub year: i32,
    pub patches: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub threads: usize,
    pub cache_size: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tile: String,
    pub year: i32,
    pub days: usize,
    pub slices: usize,
    pub threads: usize,
    pub intake_seconds: f64,
    pub floor_seconds: f64,
    /// Windows (of 500 × 500 px) the floor read.
    pub floor_windows: u64,
    pub intake_over_floor: f64,
    pub patch_px: u64,
    pub patches: usize,
    /// Median seconds per patch.
    pub store_median_s: f64,
    pub mount_cold_median_s: f64,
    pub mount_warm_median_s: f64,
    pub cold_over_store: f64,
    pub warm_over_store: f64,
}

/// Patch side: 5.1 km at 20 m.
const PATCH: u64 = 255;

pub fn run(o: &Options) -> Result<Report> {
    std::fs::create_dir_all(&o.out)?;
    let work = o.out.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // Over HTTP every phase starts from its own empty disk cache of ranges (a mirror has none).
    let open_source = |cache: &str| {
        S1Source::open(
            &o.source,
            &datacube::s1::source::EodcOptions {
                cache_dir: work.join(cache),
                ..Default::default()
            },
        )
    };
    let src = open_source("floor-cache")?;
    let store_dir = work.join("store");
    let store = datacube::store::DirStore::create(&store_dir)?;
    let catalog = datacube::s1::intake::prepare(&store, &src, o.tile, o.year, &Default::default())?
        .generation
        .catalog
        .clone();

    // Page cache warm for both: read every asset once (a mirror only).
    if let S1Source::Mirror(root) = &src {
        for d in &catalog.days {
            for s in &d.slices {
                for a in &s.assets {
                    let p = datacube::s1::source::GdalReader::mirror_path(root, a);
                    let _ = std::fs::read(&p);
                }
            }
        }
    }

    // The floor: the same windows, read only.
    let reader = src.reader();
    let t0 = Instant::now();
    let mut windows = 0u64;
    for pos in datacube::s1::shard::all_positions(&catalog) {
        let days = catalog.chunk_days(pos.t);
        let n = SHARD_PX / INNER_PX;
        let counts: Vec<u64> = rayon_rows(n, |iy| {
            let mut k = 0;
            for ix in 0..n {
                let (x0, y0) = (
                    pos.x * SHARD_PX + ix * INNER_PX,
                    pos.y * SHARD_PX + iy * INNER_PX,
                );
                for d in days {
                    for s in &d.slices {
                        for pol in 0..2 {
                            reader.window(s, pol, x0, y0, INNER_PX, INNER_PX)?;
                            k += 1;
                        }
                    }
                }
            }
            Ok(k)
        })?;
        windows += counts.iter().sum::<u64>();
    }
    let floor_seconds = t0.elapsed().as_secs_f64();
    datacube::s1::source::close_handles();

    let src = open_source("intake-cache")?;
    let t0 = Instant::now();
    datacube::s1::intake::intake_year(
        &store,
        &src,
        o.tile,
        o.year,
        datacube::intake::Part::WHOLE,
        &Default::default(),
        false,
    )?;
    let intake_seconds = t0.elapsed().as_secs_f64();
    datacube::s1::source::close_handles();

    // Patches where the store has data (VV shards present), from a seeded generator.
    let regions = vv_regions(&store_dir, o.tile, o.year)?;
    anyhow::ensure!(
        !regions.is_empty(),
        "the store has no VV data to place patches on"
    );
    let mut rng = o.seed.max(1);
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let patches: Vec<(u64, u64)> = (0..o.patches)
        .map(|_| {
            let (sy, sx) = regions[(next() % regions.len() as u64) as usize];
            let y = sy * SHARD_PX + next() % (SHARD_PX - PATCH);
            let x = sx * SHARD_PX + next() % (SHARD_PX - PATCH);
            (y, x)
        })
        .collect();
    let days = catalog.days.len() as u64;
    let store_times = read_patches(&store_dir, o, days, &patches)?;

    let mnt = work.join("mnt");
    let log = o.out.join("mount.log");
    let daemon = Daemon::start(
        &DaemonSpec {
            source: &o.source,
            tile: &o.tile.to_string(),
            year: o.year,
            cache_size: o.cache_size,
            threads: o.threads,
            log: &log,
            extra: &[
                "--collection",
                "sentinel-1-sig0",
                "--source-cache",
                &work.join("mount-cache").display().to_string(),
            ],
        },
        &mnt,
        &work.join("mount-store"),
    )?;
    let cold = read_patches(&mnt, o, days, &patches)?;
    let warm = read_patches(&mnt, o, days, &patches)?;
    daemon.stop()?;

    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (s, c, w) = (med(&store_times), med(&cold), med(&warm));
    let report = Report {
        tile: o.tile.to_string(),
        year: o.year,
        days: catalog.days.len(),
        slices: catalog.slice_count(),
        threads: o.threads,
        intake_seconds,
        floor_seconds,
        floor_windows: windows,
        intake_over_floor: intake_seconds / floor_seconds,
        patch_px: PATCH,
        patches: o.patches,
        store_median_s: s,
        mount_cold_median_s: c,
        mount_warm_median_s: w,
        cold_over_store: c / s,
        warm_over_store: w / s,
    };
    std::fs::write(
        o.out.join("s1-bench.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(o.out.join("s1-bench.md"), markdown(&report))?;
    Ok(report)
}

/// Runs `f` for each inner row in parallel (as shard materialization does).
fn rayon_rows(n: u64, f: impl Fn(u64) -> Result<u64> + Sync + Send) -> Result<Vec<u64>> {
    use rayon::prelude::*;
    (0..n).into_par_iter().map(f).collect()
}

/// The (y, x) of the shard regions whose VV shard of time chunk 0 exists.
fn vv_regions(store: &Path, tile: Equi7Tile, year: i32) -> Result<Vec<(u64, u64)>> {
    let dir = store.join(format!("{tile}/{year}/20m/VV/c/0"));
    let mut out = Vec::new();
    for y in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let y = y?;
        let sy: u64 = y.file_name().to_string_lossy().parse()?;
        for x in std::fs::read_dir(y.path())? {
            out.push((sy, x?.file_name().to_string_lossy().parse()?));
        }
    }
    out.sort();
    Ok(out)
}

/// Seconds per patch: VV and VH, every day, read with zarrs from a directory (store or mount).
fn read_patches(root: &Path, o: &Options, days: u64, patches: &[(u64, u64)]) -> Result<Vec<f64>> {
    let fs = std::sync::Arc::new(zarrs::filesystem::FilesystemStore::new(root)?);
    let arrays = ["VV", "VH"]
        .iter()
        .map(|a| {
            zarrs::array::Array::open(fs.clone(), &format!("/{}/{}/20m/{a}", o.tile, o.year))
                .with_context(|| format!("opening {a} under {}", root.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut times = Vec::new();
    for &(y, x) in patches {
        let t0 = Instant::now();
        for a in &arrays {
            let subset =
                zarrs::array::ArraySubset::new_with_ranges(&[0..days, y..y + PATCH, x..x + PATCH]);
            let v: ndarray::ArrayD<i16> = a.retrieve_array_subset(&subset)?;
            std::hint::black_box(v);
        }
        times.push(t0.elapsed().as_secs_f64());
    }
    Ok(times)
}

pub fn markdown(r: &Report) -> String {
    format!(
        "## Sentinel-1 σ⁰ benchmark: {} {} ({} days, {} slices, {} threads)\n\n\
| measurement | seconds | ratio |\n|---|---:|---:|\n\
| intake (whole tile-year) | {:.2} | {:.2}× the floor |\n\
| floor: GDAL reads of the same {} windows | {:.2} | 1 |\n\
| patch {}×{} px, VV+VH, all days: store (zarrs), median | {:.4} | 1 |\n\
| same patches through a fresh mount (cold), median | {:.4} | {:.1}× the store |\n\
| same patches again (warm), median | {:.4} | {:.2}× the store |\n",
        r.tile,
        r.year,
        r.days,
        r.slices,
        r.threads,
        r.intake_seconds,
        r.intake_over_floor,
        r.floor_windows,
        r.floor_seconds,
        r.patch_px,
        r.patch_px,
        r.store_median_s,
        r.mount_cold_median_s,
        r.cold_over_store,
        r.mount_warm_median_s,
        r.warm_over_store,
    )
}
