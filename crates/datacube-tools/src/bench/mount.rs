//! `datacube bench-mount`: patch time-series reads through a real mount, against the same reader
//! on the store and against the decode floor, in one run.
//!
//! 1. cold: a fresh daemon over an empty store; each patch is read through the mount (chunks are
//!    materialized) — against the floor (GDAL decoding exactly the patch windows). The band files
//!    are read once beforehand, so both decode from the page cache.
//! 2. warm: the same patches again, through the mount (chunks cached) and from the store directly
//!    (after writeback), alternating, several repeats.
//! 3. memory: many concurrent readers on new patches; the daemon's peak RSS against its cache
//!    budget.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::daemon::{Daemon, DaemonSpec};
use super::{floor_read_all, mean_std, read_all, sample_patches, Patch, ZarrReader};
use datacube::s2::bands::Resolution;
use datacube::s2::catalog::Catalog;
use datacube::s2::product::ProductLevel;
use datacube::source::BandSource;
use datacube::store::DirStore;

#[derive(Debug, Clone)]
pub struct Options {
    pub source: String,
    pub tile: String,
    pub year: i32,
    pub work: PathBuf,
    pub patches: usize,
    pub patch_size_m: u64,
    pub seed: u64,
    pub cache_size: u64,
    pub repeats: usize,
    pub readers: usize,
    pub patches_per_reader: usize,
    pub threads: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tile: String,
    pub year: i32,
    pub scenes: usize,
    pub patches: Vec<Patch>,
    pub threads: usize,
    pub cache_size: u64,
    pub floor_seconds: Vec<f64>,
    pub cold_mount_seconds: Vec<f64>,
    pub floor_total: f64,
    pub cold_mount_total: f64,
    pub cold_over_floor: f64,
    pub chunks_materialized: u64,
    pub jp2_tiles_decoded: u64,
    pub warm_mount_seconds: Vec<f64>,
    pub warm_store_seconds: Vec<f64>,
    pub warm_mount_mean: f64,
    pub warm_mount_std: f64,
    pub warm_store_mean: f64,
    pub warm_store_std: f64,
    pub warm_mount_over_store: f64,
    pub concurrent_readers: usize,
    pub concurrent_patches: usize,
    pub concurrent_seconds: f64,
    pub concurrent_chunks_materialized: u64,
    pub peak_rss_bytes: u64,
    pub rss_over_budget_bytes: i64,
    /// Every reader returned the same arrays as the floor.
    pub checksums_agree: bool,
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t0 = Instant::now();
    let v = f()?;
    Ok((t0.elapsed().as_secs_f64(), v))
}

pub fn run(o: &Options, source: &dyn BandSource) -> Result<Report> {
    let store_dir = o.work.join("store");
    let mnt = o.work.join("mnt");
    if store_dir.exists() {
        std::fs::remove_dir_all(&store_dir)?;
    }
    std::fs::create_dir_all(&store_dir)?;
    let daemon = Daemon::start(
        &DaemonSpec {
            source: &o.source,
            tile: &o.tile,
            year: o.year,
            cache_size: o.cache_size,
            threads: o.threads,
            log: &o.work.join("mount.log"),
            extra: &[],
        },
        &mnt,
        &store_dir,
    )?;
    let result = measure(o, source, &daemon, &store_dir);
    let stopped = daemon.stop();
    let report = result?;
    stopped?;
    Ok(report)
}

fn measure(
    o: &Options,
    source: &dyn BandSource,
    daemon: &Daemon,
    store_dir: &Path,
) -> Result<Report> {
    // Opening the arrays resolves the year's catalog (once) and persists it.
    let through_mount = ZarrReader::open(&daemon.mnt, &o.tile, o.year, ProductLevel::L1C)?;
    let store = DirStore::create(store_dir)?;
    let catalog = Catalog::load(&store, &o.tile, o.year)?.context("catalog not persisted")?;
    let width_m = catalog.scenes[0].grid(Resolution::R10).ncols * 10;
    let patches = sample_patches(width_m, o.patch_size_m, o.patches, o.seed)?;
    // Page-cache the band files, so floor and mount both decode from memory.
    let mut buf = vec![0u8; 1 << 20];
    for s in &catalog.scenes {
        for key in &s.band_keys {
            let mut f = std::fs::File::open(source.local_path(key)?)?;
            while f.read(&mut buf)? > 0 {}
        }
    }

    let mut floor_seconds = Vec::new();
    let mut floor_sums = Vec::new();
    for p in &patches {
        let (t, h) = timed(|| floor_read_all(source, &catalog, p))?;
        floor_seconds.push(t);
        floor_sums.push(h);
    }
    let mut cold_mount_seconds = Vec::new();
    let mut agree = true;
    for (p, want) in patches.iter().zip(&floor_sums) {
        let (t, h) = timed(|| read_all(&through_mount, p))?;
        cold_mount_seconds.push(t);
        agree &= h == *want;
    }
    let chunks_materialized = daemon.stat("/fs/materializations")?;
    let jp2_tiles_decoded = daemon.stat("/decoded_tiles/decodes")?;
    // Writeback done before the store is read directly.
    while daemon.stat("/writeback/queue_jobs")? > 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let direct = ZarrReader::open(store_dir, &o.tile, o.year, ProductLevel::L1C)?;
    let (mut warm_mount_seconds, mut warm_store_seconds) = (Vec::new(), Vec::new());
    // One warm-up repeat of each, not counted, then alternating repeats.
    for rep in 0..=o.repeats {
        let order = if rep % 2 == 0 {
            [&through_mount, &direct]
        } else {
            [&direct, &through_mount]
        };
        for reader in order {
            let (t, sums) = timed(|| {
                patches
                    .iter()
                    .map(|p| read_all(reader, p))
                    .collect::<Result<Vec<u64>>>()
            })?;
            agree &= sums == floor_sums;
            if rep > 0 {
                if std::ptr::eq(reader, &through_mount) {
                    warm_mount_seconds.push(t);
                } else {
                    warm_store_seconds.push(t);
                }
            }
        }
    }
    let (wm, wms) = mean_std(&warm_mount_seconds);
    let (ws, wss) = mean_std(&warm_store_seconds);

    // Memory under concurrency: readers on new patches (cold, so the caches fill and evict).
    let before = daemon.stat("/fs/materializations")?;
    let (concurrent_seconds, ()) = timed(|| {
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = (0..o.readers)
                .map(|i| {
                    let mnt = &daemon.mnt;
                    s.spawn(move || -> Result<()> {
                        let r = ZarrReader::open(mnt, &o.tile, o.year, ProductLevel::L1C)?;
                        let seed = o.seed ^ 0x5eed ^ ((i as u64 + 1) << 40);
                        for p in
                            sample_patches(width_m, o.patch_size_m, o.patches_per_reader, seed)?
                        {
                            read_all(&r, &p)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
            }
            Ok(())
        })
    })?;
    let concurrent_chunks_materialized = daemon.stat("/fs/materializations")? - before;
    let peak_rss_bytes = daemon.peak_rss()?;
    Ok(Report {
        tile: o.tile.clone(),
        year: o.year,
        scenes: catalog.scenes.len(),
        threads: o.threads,
        cache_size: o.cache_size,
        floor_total: floor_seconds.iter().sum(),
        cold_mount_total: cold_mount_seconds.iter().sum(),
        cold_over_floor: cold_mount_seconds.iter().sum::<f64>() / floor_seconds.iter().sum::<f64>(),
        floor_seconds,
        cold_mount_seconds,
        chunks_materialized,
        jp2_tiles_decoded,
        warm_mount_mean: wm,
        warm_mount_std: wms,
        warm_store_mean: ws,
        warm_store_std: wss,
        warm_mount_over_store: wm / ws,
        warm_mount_seconds,
        warm_store_seconds,
        concurrent_readers: o.readers,
        concurrent_patches: o.readers * o.patches_per_reader,
        concurrent_seconds,
        concurrent_chunks_materialized,
        peak_rss_bytes,
        rss_over_budget_bytes: peak_rss_bytes as i64 - o.cache_size as i64,
        checksums_agree: agree,
        patches,
    })
}

/// The report as a markdown table.
pub fn markdown(r: &Report) -> String {
    let mib = |b: f64| b / (1u64 << 20) as f64;
    format!(
        "| measure | value |\n|---|---|\n\
         | scenes × patches | {} × {} ({} m) |\n\
         | cold: decode floor (GDAL, patch windows) | {:.2} s |\n\
         | cold: through the mount (empty store) | {:.2} s |\n\
         | **cold ÷ floor** | **{:.2}** |\n\
         | warm: store read directly (zarrs) | {:.3} ± {:.3} s |\n\
         | warm: through the mount (zarrs) | {:.3} ± {:.3} s |\n\
         | **warm mount ÷ store** | **{:.2}** |\n\
         | {} concurrent readers, {} new patches | {:.1} s, {} chunks materialized |\n\
         | daemon peak RSS / cache budget | {:.0} MiB / {:.0} MiB (**{:+.0} MiB**) |\n\
         | all readers agree with the floor | {} |\n",
        r.scenes,
        r.patches.len(),
        r.patches.first().map(|p| p.size_m).unwrap_or(0),
        r.floor_total,
        r.cold_mount_total,
        r.cold_over_floor,
        r.warm_store_mean,
        r.warm_store_std,
        r.warm_mount_mean,
        r.warm_mount_std,
        r.warm_mount_over_store,
        r.concurrent_readers,
        r.concurrent_patches,
        r.concurrent_seconds,
        r.concurrent_chunks_materialized,
        mib(r.peak_rss_bytes as f64),
        mib(r.cache_size as f64),
        mib(r.rss_over_budget_bytes as f64),
        r.checksums_agree
    )
}
