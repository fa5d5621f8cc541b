//! `datacube intake --collection sentinel-2-l1c`: fill the persistent store with a tile-year (or a date range of it) in bulk.
//!
//! Work is grouped so that every JP2 tile is decoded exactly once: a group is one time chunk × one
//! 1024-px JP2 tile region (the chunk sizes 512/256/128 divide 1024, so every chunk lies inside one
//! JP2 tile). A group first decodes all its (scene, band) tiles in parallel into the block cache,
//! then assembles and encodes its chunks in parallel, writes each atomically, and records them.
//! The cache is capped by `--memory`; groups run one after another, so memory stays bounded.
//!
//! Resumable: chunk files are written before they are recorded, and the record is rewritten
//! atomically after each group; a rerun skips recorded chunks and recomputes the rest identically.

pub use crate::intake::{NoScenes, Regions};

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chrono::NaiveDate;
use rayon::prelude::*;

use crate::generation::{self, Fence, Tracker, Verdict};
use crate::s2::array::PixelArray;
use crate::s2::bands::Resolution;
use crate::s2::catalog::{merge, Catalog, MergeReport};
use crate::s2::chunk::{ChunkIndex, ChunkOutcome, YearContext};

type Generation = crate::generation::Generation<Catalog>;
use crate::key::TileYear;
use crate::raster::{RasterReader, Window};
use crate::source::BandSource;
use crate::store::{ChunkEntry, ChunkRecord, RecordWriter, Store};

/// JP2 tile size of Sentinel-2 band files; used to group chunks (correct for any tiling, fastest
/// for this one).
pub const JP2_TILE: u64 = 1024;

#[derive(Debug, Clone)]
pub struct IntakeOptions {
    pub tile: String,
    pub year: i32,
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    pub resolutions: Vec<Resolution>,
    /// Cap of the decoded-tile cache, bytes.
    pub memory_bytes: usize,
    pub progress: bool,
    /// Timing of the store's consistency protocol.
    pub fence: Fence,
    /// Which JP2-tile regions to compute (`Part::WHOLE`: all): a share of the tile-year for one
    /// of several processes (`--part`).
    pub regions: Regions,
    /// The layout for a new store (`None`: the default); an existing store keeps its own, and
    /// asking for another is an error.
    pub layout: Option<crate::s2::chunking::Chunking>,
}

#[derive(Debug, Default)]
pub struct IntakeReport {
    pub scenes: usize,
    pub merge: MergeReport,
    pub superseded: Vec<String>,
    pub chunks_total: u64,
    pub chunks_written: u64,
    pub chunks_empty: u64,
    pub chunks_skipped: u64,
    pub bytes_written: u64,
    pub decodes: u64,
    /// Every failure, naming the file or chunk.
    pub errors: Vec<String>,
    pub seconds: f64,
}

/// A tile-year's catalog after a scan was merged into the store's latest generation.
pub struct Prepared {
    pub ctx: YearContext,
    /// The latest generation (created by this call if the scan changed the axis).
    pub generation: Arc<Generation>,
    pub merge: MergeReport,
    /// Whether this call created `generation`.
    pub published: bool,
}

/// Resolves the tile-year's catalog against the source and merges it into the store (see
/// `prepare_scanned`).
pub fn prepare_year(
    store: &dyn Store,
    source: &dyn BandSource,
    ty: &TileYear,
    fence: &Fence,
    chunking: crate::s2::chunking::Chunking,
) -> Result<(Prepared, crate::s2::catalog::ScanResult)> {
    let swept = store.sweep_temp(&ty.to_string())?;
    if swept > 0 {
        tracing::info!("removed {swept} temporary file(s) left by an interrupted run");
    }
    let scan = source.scan(&ty.tile, ty.year)?;
    let p = prepare_scanned(store, &source.describe(), ty, &scan, fence, chunking)?;
    Ok((p, scan))
}

/// Merges a source scan into the store's latest catalog generation, publishing a new generation
/// if the axis grows or a product is replaced (retrying the merge if another process published
/// first). The metadata documents of a first generation are written at once; those of a later
/// one by its invalidation (`generation::invalidate`), after the grace period, so that a writer
/// still on the previous generation cannot overwrite them afterwards.
pub fn prepare_scanned(
    store: &dyn Store,
    source_name: &str,
    ty: &TileYear,
    scan: &crate::s2::catalog::ScanResult,
    fence: &Fence,
    chunking: crate::s2::chunking::Chunking,
) -> Result<Prepared> {
    loop {
        let base = generation::latest::<Catalog>(store, ty)?;
        let (catalog, report) = merge(
            base.as_ref().map(|g| g.catalog.clone()),
            scan.scenes.clone(),
            &ty.tile,
            ty.year,
        )?;
        if catalog.scenes.is_empty() {
            let mut msg = format!(
                "no scenes of tile {} in {} in {source_name}",
                ty.tile, ty.year
            );
            for e in &scan.errors {
                msg.push_str(&format!("\n  {e}"));
            }
            return Err(NoScenes(msg).into());
        }
        let grows = base.is_none() || report.appended > 0 || !report.replaced.is_empty();
        let (generation, published) = match (base, grows) {
            (Some(b), false) => (b, false),
            (base, _) => {
                let replaced = report.replaced.iter().cloned().collect();
                match generation::try_publish(store, base.as_ref(), catalog, replaced, fence)? {
                    Some(g) => (g, true),
                    // Another process published first: merge into its generation.
                    None => continue,
                }
            }
        };
        let ctx = YearContext::new(Arc::new(generation.catalog.clone()), chunking)?;
        if !generation.has_changes() {
            for (key, bytes) in &ctx.layout.files {
                if store.get(key)?.as_deref() != Some(bytes.as_slice()) {
                    store.put(key, bytes)?;
                }
            }
        }
        return Ok(Prepared {
            ctx,
            generation: Arc::new(generation),
            merge: report,
            published,
        });
    }
}

/// A unit of intake work: the objects (chunks or shards) of one time chunk inside one JP2 tile
/// region (or one shard, where a shard spans several JP2 tiles).
struct Group {
    array: PixelArray,
    t: u64,
    /// Region in pixels.
    x0: u64,
    y0: u64,
    w: u64,
    h: u64,
    chunks: Vec<ChunkIndex>,
}

pub fn intake(
    store: &dyn Store,
    source: &dyn BandSource,
    opts: &IntakeOptions,
) -> Result<IntakeReport> {
    let started = Instant::now();
    let level = source.level();
    crate::collection::check_store(store, level.stac_collection())?;
    let chunking = crate::s2::layout::establish(store, opts.layout, level)?;
    let ty = TileYear::new(&opts.tile, opts.year);
    let tracker = Tracker::new(opts.fence, crate::s2::layout::metadata_files(chunking));
    let writer = RecordWriter::new();
    let raster = RasterReader::new(opts.memory_bytes);
    let (mut prepared, scan) = prepare_year(store, source, &ty, &opts.fence, chunking)?;
    let mut report = IntakeReport {
        superseded: scan.superseded.clone(),
        errors: scan.errors.clone(),
        ..Default::default()
    };
    report.merge = std::mem::take(&mut prepared.merge);
    for late in &report.merge.late {
        tracing::warn!("{late}: older than the end of the persisted time axis; not inserted (indices never move)");
    }
    for attempt in 1.. {
        tracker.seed(prepared.generation.clone());
        let complete = run_generation(
            store,
            source,
            opts,
            &prepared,
            &tracker,
            &writer,
            &raster,
            &mut report,
        )?;
        report.scenes = prepared.ctx.catalog.scenes.len();
        if complete {
            break;
        }
        if attempt >= 5 {
            anyhow::bail!(
                "{ty}: the catalog changed {attempt} times during this intake; run it again"
            );
        }
        // Another process published a newer generation: continue under it (with our scan
        // merged in), keeping every chunk that is still valid.
        prepared = prepare_scanned(store, &source.describe(), &ty, &scan, &opts.fence, chunking)?;
        tracing::info!(
            "{ty}: catalog generation {} appeared during intake; continuing under it",
            prepared.generation.number
        );
    }
    report.decodes = raster.stats.decodes.get();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Computes the missing chunks of one generation. Returns false if a newer generation made
/// some of them stale (the caller continues under it).
#[allow(clippy::too_many_arguments)]
fn run_generation(
    store: &dyn Store,
    source: &dyn BandSource,
    opts: &IntakeOptions,
    prepared: &Prepared,
    tracker: &Tracker<Catalog>,
    writer: &RecordWriter,
    raster: &RasterReader,
    report: &mut IntakeReport,
) -> Result<bool> {
    let ctx = &prepared.ctx;
    let gen = &prepared.generation;
    let ty = gen.tile_year();
    let catalog = ctx.catalog.clone();
    let in_range = |i: usize| {
        let d = chrono::DateTime::from_timestamp_millis(catalog.scenes[i].sensing_time_ms)
            .unwrap_or_default()
            .date_naive();
        opts.start.is_none_or(|s| d >= s) && opts.end.is_none_or(|e| d <= e)
    };

    report.chunks_total = 0;
    report.chunks_skipped = 0;
    let mut groups = Vec::new();
    let arrays = PixelArray::of_level(catalog.level());
    for &array in arrays.iter().filter(|a| opts.resolutions.contains(&a.res)) {
        let res = array.res;
        let geom = *ctx.geometry(array);
        let [nt, ny, nx] = geom.chunk_counts();
        report.chunks_total += nt * ny * nx;
        writer.adopt_abandoned(store, &ty, array.unit(), catalog.as_ref())?;
        let record = ChunkRecord::load_valid(store, &ty, array.unit(), catalog.as_ref())?;
        // Objects (chunks or shards) along y and x.
        let cs = ctx.chunking.space(res);
        let per = (JP2_TILE / cs).max(1);
        let ct = res.time_chunk() as usize;
        for t in 0..nt {
            let scenes = t as usize * ct..((t as usize + 1) * ct).min(catalog.scenes.len());
            if !scenes.clone().any(in_range) {
                continue;
            }
            let nrx = nx.div_ceil(per);
            // Work units are (time chunk, region) pairs — a region is a JP2 tile's objects, or one
            // shard where a shard spans several JP2 tiles: never part of a shard, so no shard is
            // written by two parts — the regions numbered across the level's arrays (10 m data
            // first, then 20 m, 60 m, then L2A's scl), so the parts' shares mix resolutions and
            // time chunks; the numbering depends only on the tile's grid, so parts agree on it
            // even when they see catalogs of different lengths.
            let regions_of = |a: PixelArray| {
                let [_, ny, nx] = ctx.geometry(a).chunk_counts();
                let per = (JP2_TILE / ctx.chunking.space(a.res)).max(1);
                ny.div_ceil(per) * nx.div_ceil(per)
            };
            let offset: u64 = arrays
                .iter()
                .take_while(|a| **a != array)
                .map(|&a| regions_of(a))
                .sum();
            for ry in 0..ny.div_ceil(per) {
                for rx in 0..nrx {
                    // Hashed, so that shares stay balanced whatever the grid's periodicity.
                    let unit = crate::util::mix((t << 32) | (offset + ry * nrx + rx));
                    if unit % opts.regions.count != opts.regions.index {
                        continue;
                    }
                    let mut chunks = Vec::new();
                    for y in ry * per..((ry + 1) * per).min(ny) {
                        for x in rx * per..((rx + 1) * per).min(nx) {
                            let idx = ChunkIndex { t, y, x };
                            if record.chunks.contains_key(&idx) {
                                report.chunks_skipped += 1;
                            } else {
                                chunks.push(idx);
                            }
                        }
                    }
                    if chunks.is_empty() {
                        continue;
                    }
                    let x0 = rx * per * cs;
                    let y0 = ry * per * cs;
                    groups.push(Group {
                        array,
                        t,
                        x0,
                        y0,
                        w: (per * cs).min(geom.grid.ncols - x0),
                        h: (per * cs).min(geom.grid.nrows - y0),
                        chunks,
                    });
                }
            }
        }
    }
    // Time chunks this generation changed are fenced until its invalidation has settled: do
    // everything else first.
    groups.sort_by_key(|g| gen.is_changed(g.array.unit(), g.t));

    let todo: u64 = groups.iter().map(|g| g.chunks.len() as u64).sum();
    let bar = crate::progress::bar(todo, "intake", opts.progress);
    let mut warned = std::collections::BTreeSet::new();
    for g in groups {
        let (array, res) = (g.array, g.array.res);
        let ct = res.time_chunk() as usize;
        let working_set =
            ct * array.planes(catalog.level()) as usize * (JP2_TILE * JP2_TILE * 2) as usize;
        if working_set > opts.memory_bytes && warned.insert(array) {
            tracing::warn!(
                "--memory {} MiB is below one {res} group's working set ({} MiB): JP2 tiles may be decoded more than once",
                opts.memory_bytes >> 20,
                working_set >> 20
            );
        }
        let fp = catalog.fingerprint(res, g.t);
        if !tracker.wait_until_writable(store, &ty, array.unit(), g.t, &fp)? {
            bar.finish_and_clear();
            return Ok(false);
        }
        let stale = run_group(
            ctx, store, source, raster, tracker, &g, &fp, writer, report, &bar,
        );
        writer.save(store, &ty, array.unit())?;
        if stale {
            bar.finish_and_clear();
            return Ok(false);
        }
    }
    bar.finish_and_clear();
    Ok(true)
}

/// Decodes, assembles, encodes and writes one group's chunks and records them in `writer`.
/// Returns true if a newer catalog generation made them stale (they were not written).
#[allow(clippy::too_many_arguments)]
fn run_group(
    ctx: &YearContext,
    store: &dyn Store,
    source: &dyn BandSource,
    raster: &RasterReader,
    tracker: &Tracker<Catalog>,
    g: &Group,
    fp: &str,
    writer: &RecordWriter,
    report: &mut IntakeReport,
    bar: &indicatif::ProgressBar,
) -> bool {
    let (array, res) = (g.array, g.array.res);
    let ct = res.time_chunk() as usize;
    let scenes = &ctx.catalog.scenes
        [g.t as usize * ct..((g.t as usize + 1) * ct).min(ctx.catalog.scenes.len())];
    // Phase 1: decode every (scene, band) JP2 tile of the region once, in parallel. Failures
    // resurface below, per chunk, with their context. (`scl` objects read their SCL windows
    // themselves: one small Byte file per scene.)
    let bands = array.bands(ctx.catalog.level());
    let jobs: Vec<(usize, usize)> = (0..scenes.len())
        .flat_map(|s| bands.iter().map(move |b| (s, b.id)))
        .collect();
    let keys: Vec<&str> = jobs.iter().map(|&(s, b)| scenes[s].band_key(b)).collect();
    let window = Window {
        x0: g.x0 as usize,
        y0: g.y0 as usize,
        w: g.w as usize,
        h: g.h as usize,
    };
    source.prefetch_window(&keys, window);
    jobs.par_iter().for_each(|&(s, b)| {
        if let Ok(path) = source.open_window(scenes[s].band_key(b), window) {
            let _ = raster.prefetch(&path, window);
        }
    });
    // Phase 2: assemble, encode and write the chunks, in parallel.
    let tile = &ctx.catalog.tile;
    let year = ctx.catalog.year;
    let ty = TileYear::new(tile, year);
    let stale = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<(ChunkIndex, Result<Option<ChunkEntry>>)> = g
        .chunks
        .par_iter()
        .map(|&idx| {
            let r = (|| -> Result<Option<ChunkEntry>> {
                let key = ty.array_chunk(array, idx).to_string();
                let outcome = ctx.materialize(source, raster, array, idx)?;
                // The fence: the latest generation, looked at no longer than the check age
                // ago, must still give this time chunk the products it was computed from.
                if tracker.verdict(store, &ty, array.unit(), idx.t, fp)? != Verdict::Write {
                    stale.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(None);
                }
                match outcome {
                    ChunkOutcome::Data(bytes) => {
                        store.put(&key, &bytes)?;
                        Ok(Some(ChunkEntry::Data {
                            bytes: bytes.len() as u64,
                        }))
                    }
                    ChunkOutcome::Empty => {
                        store.delete(&key)?;
                        Ok(Some(ChunkEntry::Empty))
                    }
                }
            })();
            bar.inc(1);
            (idx, r)
        })
        .collect();
    for (idx, r) in results {
        match r {
            Ok(None) => {}
            Ok(Some(entry)) => {
                match entry {
                    ChunkEntry::Data { bytes } => {
                        report.chunks_written += 1;
                        report.bytes_written += bytes;
                    }
                    ChunkEntry::Empty => report.chunks_empty += 1,
                }
                writer.add(&ty, array.unit(), idx, entry, fp);
            }
            Err(e) => {
                let msg = format!("{}: {e:#}", ty.array_chunk(array, idx));
                tracing::error!("{msg}");
                report.errors.push(msg);
            }
        }
    }
    stale.into_inner()
}
