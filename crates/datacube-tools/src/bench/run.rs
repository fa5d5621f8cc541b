//! `datacube bench`: the patch time-series benchmark over every way of storing and serving the cube,
//! with the reference method: the same random patches for every target (fixed seed), their order
//! shuffled per repeat, one warm-up repeat not counted, all the level's bands in the three
//! resolution groups (L1C: 13; L2A: 12, plus `10m/scl`: see [`super::patch_arrays`]).
//! Every target's arrays are checksummed per patch and must agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use datacube::s2::chunking::Chunking;
use rayon::prelude::*;
use serde::Serialize;

use super::daemon::{Daemon, DaemonSpec};
use super::{
    checksum, combine, floor_read_all, mean_std, patch_arrays, read_all, sample_patches,
    scene_files, Patch, ZarrReader,
};
use datacube::s2::array::PixelArray;
use datacube::s2::bands::Resolution;
use datacube::s2::catalog::Catalog;
use datacube::s2::product::ProductLevel;
use datacube::source::BandSource;
use datacube::store::DirStore;

/// CDSE quotas of a normal account, for projecting cold reads onto the real service.
pub const CDSE_CONNECTIONS: f64 = 4.0;
pub const CDSE_BYTES_PER_SECOND_PER_CONNECTION: f64 = 20e6;
pub const CDSE_REQUESTS_PER_MINUTE: f64 = 2000.0;
/// Range requests for one window of a remote JP2 without TLM markers (docs/design.md §5).
pub const RANGE_REQUESTS_PER_WINDOW: u64 = 110;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    MountCold,
    MountWarm,
    Store,
    Safe,
    Cog,
    Xarray,
    /// xarray + dask through a warm mount over the store.
    XarrayMount,
    /// A training loader: `--workers` processes reading random patches through a warm mount and
    /// from the store (see `super::loader`).
    Loader,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::MountCold => "mount-cold",
            Target::MountWarm => "mount-warm",
            Target::Store => "store",
            Target::Safe => "safe",
            Target::Cog => "cog",
            Target::Xarray => "xarray",
            Target::XarrayMount => "xarray-mount",
            Target::Loader => "loader",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The collection's level (L2A: its patches read `10m/scl` too; the mounts are started with
    /// `--collection sentinel-2-l2a`).
    pub level: ProductLevel,
    pub source: String,
    pub store: PathBuf,
    pub cog: Option<PathBuf>,
    pub tile: String,
    pub year: i32,
    pub patches: usize,
    pub patch_size_m: u64,
    pub seed: u64,
    pub repeats: usize,
    pub targets: Vec<Target>,
    pub out: PathBuf,
    pub cache_size: u64,
    pub threads: usize,
    pub python: PathBuf,
    pub progress: bool,
    /// Worker counts of the loader target (`--patches` patches per worker and round).
    pub workers: Vec<usize>,
}

/// What a cold target cost at the source, and what it would cost on CDSE under its quotas.
#[derive(Debug, Clone, Serialize)]
pub struct ColdSource {
    pub source_bytes: u64,
    pub source_requests: u64,
    /// max(bytes ÷ (4 × 20 MB/s), requests ÷ 2000/min).
    pub projected_cdse_seconds: f64,
    pub how: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    pub target: Target,
    /// Seconds per counted repeat (all patches).
    pub durations: Vec<f64>,
    pub mean_durations: f64,
    pub std_durations: f64,
    pub stderr_durations: f64,
    /// Mean seconds per patch (all three groups).
    pub mean_patch_seconds: f64,
    pub band_group_shapes: BTreeMap<String, Vec<u64>>,
    /// Bytes the reading process read per repeat (`rchar`), mean.
    pub bytes_read: u64,
    /// Chunk files (zarr targets) or raster files (safe, cog) touched per repeat.
    pub files_touched: u64,
    pub cold: Option<ColdSource>,
    /// Chunks the daemon materialized per repeat (mount targets), mean.
    pub chunks_materialized: Option<f64>,
    pub notes: Vec<String>,
}

/// What a target measured, before the statistics are derived.
struct Measured {
    /// Seconds per counted repeat.
    durations: Vec<f64>,
    /// Bytes read per counted repeat.
    bytes: Vec<u64>,
    files_touched: u64,
    cold: Option<ColdSource>,
    chunks_materialized: Option<f64>,
    notes: Vec<String>,
}

impl TargetResult {
    fn new(
        target: Target,
        m: Measured,
        patches: usize,
        shapes: &BTreeMap<String, Vec<u64>>,
    ) -> Self {
        let (mean, std) = mean_std(&m.durations);
        TargetResult {
            target,
            mean_durations: mean,
            std_durations: std,
            stderr_durations: std / (m.durations.len() as f64).sqrt(),
            mean_patch_seconds: mean / patches as f64,
            band_group_shapes: shapes.clone(),
            bytes_read: m.bytes.iter().sum::<u64>() / m.bytes.len().max(1) as u64,
            durations: m.durations,
            files_touched: m.files_touched,
            cold: m.cold,
            chunks_materialized: m.chunks_materialized,
            notes: m.notes,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// The processing level (absent for L1C, whose reports predate L2A).
    #[serde(skip_serializing_if = "ProductLevel::is_l1c")]
    pub level: ProductLevel,
    pub tile: String,
    pub year: i32,
    pub scenes: usize,
    pub patch_size_m: u64,
    pub seed: u64,
    pub repeats: usize,
    pub threads: usize,
    pub patches: Vec<Patch>,
    /// Per array read (its unit name: `10m`, `20m`, `60m` for `data`, `10m-scl`): the shape of a
    /// patch, `[time, band, n, n]` (`[time, n, n]` for `scl`).
    pub band_group_shapes: BTreeMap<String, Vec<u64>>,
    pub machine: String,
    /// The store's layout (`chunked`, `sharded`, `sharded:SHARD/INNER`).
    pub layout: String,
    /// Per array read (as `band_group_shapes`): what a Zarr reader decodes per patch (every chunk
    /// or inner chunk the patch touches, whole), MB, mean over the patches.
    pub decoded_mb_per_patch: BTreeMap<String, f64>,
    /// Per array read: decoded ÷ delivered along y and x only (the time axis is read whole
    /// either way): the layout's read amplification.
    pub decode_ratio_yx: BTreeMap<String, f64>,
    pub targets: Vec<TargetResult>,
    /// Every target returned the same arrays for every patch (and the loader's workers read
    /// the same values through the mount as from the store).
    pub checksums_agree: bool,
    /// The loader target: patches/s through the mount and from the store per worker count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loader: Option<super::loader::LoaderReport>,
}

/// The order of patches in repeat `r` (a seeded shuffle; repeat 0 is the warm-up).
pub fn order(n: usize, seed: u64, r: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j =
            (datacube::util::mix(seed ^ ((r as u64) << 32) ^ i as u64) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn rchar() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("rchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Empties the kernel page cache (root only); the note says whether it happened.
fn drop_page_cache() -> String {
    // SAFETY: sync has no arguments and cannot fail.
    unsafe { libc::sync() };
    match std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
        Ok(()) => "page cache dropped before each repeat".into(),
        Err(e) => format!("page cache NOT dropped ({e}): source reads may come from memory"),
    }
}

struct Ctx<'a> {
    o: &'a Options,
    source: &'a dyn BandSource,
    catalog: Catalog,
    /// What a patch read reads.
    arrays: Vec<PixelArray>,
    patches: Vec<Patch>,
    chunking: Chunking,
    /// `--layout <the store's>` for the mounts (whose fresh stores must match the store's), and
    /// `--collection` for L2A.
    mount_extra: Vec<&'a str>,
}

impl Ctx<'_> {
    fn spec<'b>(&'b self, log: &'b Path) -> DaemonSpec<'b> {
        DaemonSpec {
            source: &self.o.source,
            tile: &self.o.tile,
            year: self.o.year,
            cache_size: self.o.cache_size,
            threads: self.o.threads,
            log,
            extra: &self.mount_extra,
        }
    }

    /// Distinct data chunks the patches touch (per repeat).
    fn chunks_touched(&self) -> u64 {
        let mut set = std::collections::BTreeSet::new();
        let nt = self.catalog.scenes.len() as u64;
        for p in &self.patches {
            for array in &self.arrays {
                let res = array.res;
                let (r, c, n) = p.pixels(res);
                let cs = self.chunking.space(res);
                for t in 0..nt.div_ceil(res.time_chunk()) {
                    for y in r / cs..(r + n).div_ceil(cs) {
                        for x in c / cs..(c + n).div_ceil(cs) {
                            set.insert((array.index(), t, y, x));
                        }
                    }
                }
            }
        }
        set.len() as u64
    }

    /// The files a patch needs of every scene: the level's band files (and L2A's SCL file).
    fn files_per_patch(&self) -> u64 {
        let level = self.catalog.level();
        self.catalog
            .scenes
            .iter()
            .map(|s| scene_files(s, level).len() as u64)
            .sum()
    }

    /// Whole band files a cold mount needs (the way a CDSE source fetches them: one GET each).
    fn whole_file_source(&self) -> Result<ColdSource> {
        let mut bytes = 0;
        let mut requests = 0;
        let level = self.catalog.level();
        for s in &self.catalog.scenes {
            for (key, _) in scene_files(s, level) {
                bytes += std::fs::metadata(self.source.local_path(key)?)?.len();
                requests += 1;
            }
        }
        Ok(cold_source(
            bytes,
            requests,
            "every band file of every scene, downloaded whole (one GET each)",
        ))
    }

    /// Windowed remote reads: ~110 range requests per window, the bytes of the JP2 tiles touched.
    fn windowed_source(&self) -> Result<ColdSource> {
        let (mut bytes, mut requests) = (0u64, 0u64);
        let level = self.catalog.level();
        for s in &self.catalog.scenes {
            for (key, res) in scene_files(s, level) {
                let g = s.grid(res);
                let tiles_per_side = g.ncols.div_ceil(1024);
                let size = std::fs::metadata(self.source.local_path(key)?)?.len();
                for p in &self.patches {
                    let (r, c, n) = p.pixels(res);
                    let touched =
                        ((r + n).div_ceil(1024) - r / 1024) * ((c + n).div_ceil(1024) - c / 1024);
                    bytes += size * touched / (tiles_per_side * tiles_per_side);
                    requests += RANGE_REQUESTS_PER_WINDOW;
                }
            }
        }
        Ok(cold_source(
            bytes,
            requests,
            "one window read per patch, scene and band: ~110 range requests, the JP2 tiles it touches",
        ))
    }
}

fn cold_source(bytes: u64, requests: u64, how: &str) -> ColdSource {
    let by_bytes = bytes as f64 / (CDSE_CONNECTIONS * CDSE_BYTES_PER_SECOND_PER_CONNECTION);
    let by_requests = requests as f64 / (CDSE_REQUESTS_PER_MINUTE / 60.0);
    ColdSource {
        source_bytes: bytes,
        source_requests: requests,
        projected_cdse_seconds: by_bytes.max(by_requests),
        how: how.into(),
    }
}

/// Per-repeat state of a target.
trait Runner {
    /// Called before each repeat (including the warm-up).
    fn before(&mut self, _repeat: usize) -> Result<()> {
        Ok(())
    }
    fn read(&mut self, p: &Patch) -> Result<u64>;
    /// Called after each repeat.
    fn after(&mut self, _repeat: usize) -> Result<()> {
        Ok(())
    }
    /// Chunks materialized per counted repeat, mean (mount targets).
    fn materialized(&self) -> Option<f64> {
        None
    }
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

struct ZarrRunner {
    root: PathBuf,
    tile: String,
    year: i32,
    level: ProductLevel,
    reader: Option<ZarrReader>,
}

impl Runner for ZarrRunner {
    fn before(&mut self, _: usize) -> Result<()> {
        self.reader = Some(ZarrReader::open(
            &self.root, &self.tile, self.year, self.level,
        )?);
        Ok(())
    }
    fn read(&mut self, p: &Patch) -> Result<u64> {
        read_all(self.reader.as_ref().expect("opened"), p)
    }
}

struct SafeRunner<'a> {
    ctx: &'a Ctx<'a>,
}

impl Runner for SafeRunner<'_> {
    fn read(&mut self, p: &Patch) -> Result<u64> {
        floor_read_all(self.ctx.source, &self.ctx.catalog, p)
    }
}

struct CogRunner<'a> {
    ctx: &'a Ctx<'a>,
    dir: PathBuf,
}

impl Runner for CogRunner<'_> {
    fn read(&mut self, p: &Patch) -> Result<u64> {
        let mut h = 0;
        let (tile, year) = (&self.ctx.o.tile, self.ctx.o.year);
        for res in Resolution::ALL {
            let (r, c, n) = p.pixels(res);
            let n = n as usize;
            let nb = res.bands().len();
            let scenes = &self.ctx.catalog.scenes;
            let mut out = vec![0u16; scenes.len() * nb * n * n];
            out.par_chunks_mut(nb * n * n)
                .zip(scenes.par_iter())
                .try_for_each(|(plane, s)| -> Result<()> {
                    let path = crate::convert::cog_path(&self.dir, tile, year, res, &s.product_id);
                    let v = crate::convert::read_cog_window(&path, c as usize, r as usize, n)?;
                    plane.copy_from_slice(&v);
                    Ok(())
                })?;
            h = combine(h, checksum(&out));
        }
        Ok(h)
    }
}

struct MountRunner<'a> {
    ctx: &'a Ctx<'a>,
    cold: bool,
    store: PathBuf,
    mnt: PathBuf,
    log: PathBuf,
    daemon: Option<Daemon>,
    reader: Option<ZarrReader>,
    /// Materializations per counted repeat.
    materialized: Vec<f64>,
    /// The daemon's running total after the previous repeat (warm: one daemon for all repeats).
    last_total: u64,
    note: String,
}

impl Runner for MountRunner<'_> {
    fn before(&mut self, _: usize) -> Result<()> {
        if self.daemon.is_none() {
            if self.cold {
                if self.store.exists() {
                    std::fs::remove_dir_all(&self.store)?;
                }
                std::fs::create_dir_all(&self.store)?;
            }
            let spec = self.ctx.spec(&self.log);
            self.daemon = Some(Daemon::start(&spec, &self.mnt, &self.store)?);
            if self.cold {
                self.note = drop_page_cache();
            }
        }
        self.reader = Some(ZarrReader::open(
            &self.mnt,
            &self.ctx.o.tile,
            self.ctx.o.year,
            self.ctx.o.level,
        )?);
        Ok(())
    }
    fn read(&mut self, p: &Patch) -> Result<u64> {
        read_all(self.reader.as_ref().expect("opened"), p)
    }
    fn materialized(&self) -> Option<f64> {
        self.mean_materialized()
    }
    fn notes(&self) -> Vec<String> {
        if self.note.is_empty() {
            vec![]
        } else {
            vec![self.note.clone()]
        }
    }
    fn after(&mut self, repeat: usize) -> Result<()> {
        self.reader = None;
        if let Some(d) = &self.daemon {
            let total = d.stat("/fs/materializations")?;
            if repeat > 0 {
                self.materialized.push((total - self.last_total) as f64);
            }
            self.last_total = if self.cold { 0 } else { total };
        }
        if self.cold {
            // A fresh daemon over an empty store for every repeat.
            if let Some(d) = self.daemon.take() {
                d.stop()?;
            }
        }
        Ok(())
    }
}

impl MountRunner<'_> {
    fn mean_materialized(&self) -> Option<f64> {
        Some(mean_std(&self.materialized).0)
    }
}

impl Drop for MountRunner<'_> {
    fn drop(&mut self) {
        self.reader = None;
        if let Some(d) = self.daemon.take() {
            let _ = d.stop();
        }
    }
}

pub fn run(o: &Options, source: &dyn BandSource) -> Result<BenchReport> {
    let store = DirStore::create(&o.store)?;
    let catalog = Catalog::load(&store, &o.tile, o.year)?.with_context(|| {
        format!(
            "store {} has no catalog for {}/{}: run `datacube intake` into it first",
            o.store.display(),
            o.tile,
            o.year
        )
    })?;
    anyhow::ensure!(
        catalog.level() == o.level,
        "store {} holds {} for {}/{}, not the {} the bench was asked for (--collection)",
        o.store.display(),
        catalog.level().stac_collection(),
        o.tile,
        o.year,
        o.level.stac_collection()
    );
    anyhow::ensure!(
        source.level() == o.level,
        "source {} offers {}, not {}",
        o.source,
        source.level().stac_collection(),
        o.level.stac_collection()
    );
    if o.level != ProductLevel::L1C && o.targets.contains(&Target::Cog) {
        anyhow::bail!(
            "target cog is L1C only (`datacube convert cog` writes the 13 L1C bands and no SCL): \
             leave it out of --targets for {}",
            o.level.stac_collection()
        );
    }
    let width_m = catalog.scenes[0].grid(Resolution::R10).ncols * 10;
    let patches = sample_patches(width_m, o.patch_size_m, o.patches, o.seed)?;
    let arrays = patch_arrays(o.level);
    let mut shapes = BTreeMap::new();
    for array in &arrays {
        let n = o.patch_size_m / array.res.metres() as u64;
        let t = catalog.scenes.len() as u64;
        shapes.insert(
            array.unit().to_string(),
            if array.has_bands() {
                vec![t, array.planes(o.level), n, n]
            } else {
                vec![t, n, n]
            },
        );
    }
    std::fs::create_dir_all(&o.out)?;
    let chunking = Chunking::of_store(&store)?.unwrap_or(Chunking::Chunked);
    let (decoded, ratio) = decode_amplification(&catalog, &arrays, &patches, chunking);
    let mut mount_args = vec!["--layout".to_string(), chunking.to_string()];
    if o.level != ProductLevel::L1C {
        mount_args.extend(["--collection".into(), o.level.stac_collection().into()]);
    }
    let mount_extra: Vec<&str> = mount_args.iter().map(String::as_str).collect();
    let ctx = Ctx {
        o,
        source,
        catalog,
        arrays,
        patches,
        chunking,
        mount_extra,
    };
    let mut reference: Option<(Target, Vec<u64>)> = None;
    let mut mismatches = Vec::new();
    let mut results = Vec::new();
    for &target in o.targets.iter().filter(|t| **t != Target::Loader) {
        let (r, sums) = run_target(&ctx, target, &shapes)?;
        match &reference {
            None => reference = Some((target, sums)),
            Some((t0, want)) => {
                for (i, (a, b)) in want.iter().zip(&sums).enumerate() {
                    if a != b {
                        mismatches.push(format!(
                            "patch {i} {:?}: {} and {} return different arrays",
                            ctx.patches[i],
                            t0.name(),
                            target.name()
                        ));
                    }
                }
            }
        }
        results.push(r);
    }
    let loader = if o.targets.contains(&Target::Loader) {
        let r = run_loader(&ctx, width_m)?;
        for row in r.rows.iter().filter(|r| !r.checksums_agree) {
            mismatches.push(format!(
                "loader, {} workers: the mount and the store returned different arrays",
                row.workers
            ));
        }
        Some(r)
    } else {
        None
    };
    for m in &mismatches {
        tracing::error!("{m}");
    }
    Ok(BenchReport {
        level: o.level,
        tile: o.tile.clone(),
        year: o.year,
        scenes: ctx.catalog.scenes.len(),
        patch_size_m: o.patch_size_m,
        seed: o.seed,
        repeats: o.repeats,
        threads: o.threads,
        patches: ctx.patches.clone(),
        band_group_shapes: shapes,
        machine: machine(),
        layout: chunking.to_string(),
        decoded_mb_per_patch: decoded,
        decode_ratio_yx: ratio,
        targets: results,
        checksums_agree: mismatches.is_empty(),
        loader,
    })
}

/// The loader target: a warm mount over the store, then `super::loader::run`.
fn run_loader(ctx: &Ctx, width_m: u64) -> Result<super::loader::LoaderReport> {
    let o = ctx.o;
    let work = o.out.join("loader");
    std::fs::create_dir_all(&work)?;
    let log = work.join("mount.log");
    let daemon = Daemon::start(&ctx.spec(&log), &work.join("mnt"), &o.store)?;
    let r = super::loader::run(&super::loader::Loader {
        level: o.level,
        tile: o.tile.clone(),
        year: o.year,
        store: o.store.clone(),
        mnt: daemon.mnt.clone(),
        daemon_pid: daemon.pid(),
        workers: o.workers.clone(),
        patches_per_worker: o.patches,
        patch_size_m: o.patch_size_m,
        width_m,
        seed: o.seed,
        repeats: o.repeats,
    });
    let stopped = daemon.stop();
    let r = r?;
    stopped?;
    Ok(r)
}

/// What a Zarr reader must decode for the patches, per array read: MB per patch (the whole of
/// every chunk, or inner chunk, a patch touches) and the ratio decoded ÷ delivered along y and x.
fn decode_amplification(
    catalog: &Catalog,
    arrays: &[PixelArray],
    patches: &[Patch],
    chunking: Chunking,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let (mut mb, mut ratio) = (BTreeMap::new(), BTreeMap::new());
    let nt = catalog.scenes.len() as u64;
    let level = catalog.level();
    for &array in arrays {
        let res = array.res;
        let unit = chunking.inner_space(res).unwrap_or(chunking.space(res));
        let grid = catalog.scenes[0].grid(res);
        let covered = |start: u64, n: u64, size: u64| {
            let a = start / unit * unit;
            let b = ((start + n).div_ceil(unit) * unit).min(size.div_ceil(unit) * unit);
            b - a
        };
        let (mut decoded_px, mut delivered_px) = (0u64, 0u64);
        for p in patches {
            let (r, c, n) = p.pixels(res);
            decoded_px += covered(r, n, grid.nrows) * covered(c, n, grid.ncols);
            delivered_px += n * n;
        }
        let time_slots = nt.div_ceil(res.time_chunk()) * res.time_chunk();
        let bytes = decoded_px * time_slots * array.planes(level) * array.value_bytes() as u64;
        mb.insert(
            array.unit().to_string(),
            bytes as f64 / 1e6 / patches.len() as f64,
        );
        ratio.insert(
            array.unit().to_string(),
            decoded_px as f64 / delivered_px as f64,
        );
    }
    (mb, ratio)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "{} cores ({cpu}), {:.0} GiB RAM, GDAL {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        mem as f64 / (1 << 20) as f64,
        gdal::version::version_info("RELEASE_NAME")
    )
}

fn run_target(
    ctx: &Ctx,
    target: Target,
    shapes: &BTreeMap<String, Vec<u64>>,
) -> Result<(TargetResult, Vec<u64>)> {
    let o = ctx.o;
    let n = ctx.patches.len();
    let scenes = ctx.catalog.scenes.len() as u64;
    if target == Target::Xarray {
        return run_xarray(ctx, shapes, &o.store, Target::Xarray);
    }
    if target == Target::XarrayMount {
        let log = o.out.join("xarray-mount.log");
        let daemon = Daemon::start(&ctx.spec(&log), &o.out.join("xarray-mnt"), &o.store)?;
        let r = run_xarray(ctx, shapes, &daemon.mnt.clone(), Target::XarrayMount);
        daemon.stop()?;
        return r;
    }
    let work = o.out.join(target.name());
    std::fs::create_dir_all(&work)?;
    let mut notes = Vec::new();
    let (mut runner, files_touched, cold): (Box<dyn Runner + '_>, u64, Option<ColdSource>) =
        match target {
            Target::Store => (
                Box::new(ZarrRunner {
                    root: o.store.clone(),
                    tile: o.tile.clone(),
                    year: o.year,
                    level: o.level,
                    reader: None,
                }),
                ctx.chunks_touched(),
                None,
            ),
            Target::Safe => (
                Box::new(SafeRunner { ctx }),
                n as u64 * ctx.files_per_patch(),
                Some(ctx.windowed_source()?),
            ),
            Target::Cog => {
                let dir = o.cog.clone().context(
                    "target cog needs --cog DIR (made by `datacube convert cog --out DIR`)",
                )?;
                for s in &ctx.catalog.scenes {
                    for res in Resolution::ALL {
                        let p = crate::convert::cog_path(&dir, &o.tile, o.year, res, &s.product_id);
                        if !p.exists() {
                            anyhow::bail!(
                                "{} missing: run `datacube convert cog --out {}` first",
                                p.display(),
                                dir.display()
                            );
                        }
                    }
                }
                (
                    Box::new(CogRunner { ctx, dir }),
                    n as u64 * scenes * 3,
                    None,
                )
            }
            Target::MountCold | Target::MountWarm => {
                let cold = target == Target::MountCold;
                (
                    Box::new(MountRunner {
                        ctx,
                        cold,
                        store: if cold {
                            work.join("store")
                        } else {
                            o.store.clone()
                        },
                        mnt: work.join("mnt"),
                        log: work.join("mount.log"),
                        daemon: None,
                        reader: None,
                        materialized: Vec::new(),
                        last_total: 0,
                        note: String::new(),
                    }),
                    ctx.chunks_touched(),
                    if cold {
                        Some(ctx.whole_file_source()?)
                    } else {
                        None
                    },
                )
            }
            Target::Xarray | Target::XarrayMount | Target::Loader => unreachable!(),
        };
    let bar = datacube::progress::bar(
        ((o.repeats + 1) * n) as u64,
        &format!("{:>10}", target.name()),
        o.progress,
    );
    let mut durations = Vec::new();
    let mut bytes = Vec::new();
    let mut sums = vec![0u64; n];
    for rep in 0..=o.repeats {
        let t0 = Instant::now();
        let r0 = rchar();
        runner.before(rep)?;
        for i in order(n, o.seed, rep) {
            let h = runner.read(&ctx.patches[i])?;
            if rep == 0 {
                sums[i] = h;
            } else if sums[i] != h {
                anyhow::bail!("{}: patch {i} differs between repeats", target.name());
            }
            bar.inc(1);
        }
        let dt = t0.elapsed().as_secs_f64();
        let read = rchar() - r0;
        runner.after(rep)?;
        if rep > 0 {
            durations.push(dt);
            bytes.push(read);
        }
    }
    bar.finish_and_clear();
    let chunks_materialized = runner.materialized();
    notes.extend(runner.notes());
    drop(runner);
    let m = Measured {
        durations,
        bytes,
        files_touched,
        cold,
        chunks_materialized,
        notes,
    };
    Ok((TargetResult::new(target, m, n, shapes), sums))
}

const XARRAY_READER: &str = include_str!("xarray_reader.py");

/// The reference users' stack: xarray + dask `open_zarr` on the same store, in the venv's Python.
/// xarray + dask reading the patches from `root` (the store, or a mount of it).
fn run_xarray(
    ctx: &Ctx,
    shapes: &BTreeMap<String, Vec<u64>>,
    root: &std::path::Path,
    target: Target,
) -> Result<(TargetResult, Vec<u64>)> {
    let o = ctx.o;
    let n = ctx.patches.len();
    let script = o.out.join("xarray_reader.py");
    std::fs::write(&script, XARRAY_READER)?;
    let orders: Vec<Vec<usize>> = (0..=o.repeats).map(|r| order(n, o.seed, r)).collect();
    // The arrays to read, in the order of `read_all`: [group, array, metres].
    let arrays: Vec<(&str, &str, u32)> = ctx
        .arrays
        .iter()
        .map(|a| (a.res.name(), a.name(), a.res.metres()))
        .collect();
    let input = serde_json::json!({
        "store": root, "tile": o.tile, "year": o.year,
        "patches": ctx.patches, "orders": orders, "arrays": arrays,
    });
    let mut child = std::process::Command::new(&o.python)
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (target xarray needs the venv: scripts/setup)",
                o.python.display()
            )
        })?;
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!("xarray reader failed ({})", out.status);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("xarray reader output")?;
    let all: Vec<f64> = serde_json::from_value(v["durations"].clone())?;
    let rchar: Vec<u64> = serde_json::from_value(v["rchar"].clone())?;
    let sums: Vec<u64> = serde_json::from_value(v["checksums"].clone())?;
    // The first repeat is the warm-up.
    let m = Measured {
        durations: all[1..].to_vec(),
        bytes: rchar[1..].to_vec(),
        files_touched: ctx.chunks_touched(),
        cold: None,
        chunks_materialized: None,
        notes: vec![v["versions"].as_str().unwrap_or("").to_string()],
    };
    Ok((TargetResult::new(target, m, n, shapes), sums))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_seeded_permutations_that_change_per_repeat() {
        let a = order(10, 42, 1);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(a, order(10, 42, 1));
        assert_ne!(a, order(10, 42, 2));
    }

    #[test]
    fn cdse_projection_takes_the_binding_quota() {
        // 8 GB at 4 × 20 MB/s = 100 s; 100 requests = 3 s.
        assert_eq!(
            cold_source(8_000_000_000, 100, "").projected_cdse_seconds,
            100.0
        );
        // 20 000 requests at 2000/min = 600 s.
        assert_eq!(cold_source(1000, 20_000, "").projected_cdse_seconds, 600.0);
    }
}
