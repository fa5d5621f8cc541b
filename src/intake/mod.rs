//! `datacube intake`: fill the persistent store with a tile-year (or a date range of it) in bulk.
//!
//! Work is grouped so that every JP2 tile is decoded exactly once: a group is one time chunk × one
//! 1024-px JP2 tile region (the chunk sizes 512/256/128 divide 1024, so every chunk lies inside one
//! JP2 tile). A group first decodes all its (scene, band) tiles in parallel into the block cache,
//! then assembles and encodes its chunks in parallel, writes each atomically, and records them.
//! The cache is capped by `--memory`; groups run one after another, so memory stays bounded.
//!
//! Resumable: chunk files are written before they are recorded, and the record is rewritten
//! atomically after each group; a rerun skips recorded chunks and recomputes the rest identically.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chrono::NaiveDate;
use rayon::prelude::*;

use crate::bands::Resolution;
use crate::catalog::{merge, Catalog, MergeReport};
use crate::chunk::{ChunkIndex, ChunkOutcome, YearContext};
use crate::key::TileYear;
use crate::raster::{RasterReader, Window};
use crate::source::BandSource;
use crate::store::{ChunkEntry, ChunkRecord, Store};

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

/// Resolves the tile-year's catalog against the source, persists it and the generated metadata.
/// Chunks invalidated by new scenes (the old last time chunk) are dropped from record and store.
pub fn prepare_year(
    store: &dyn Store,
    source: &dyn BandSource,
    tile: &str,
    year: i32,
) -> Result<(YearContext, MergeReport, crate::catalog::ScanResult)> {
    let swept = store.sweep_temp(&format!("{tile}/{year}"))?;
    if swept > 0 {
        tracing::info!("removed {swept} temporary file(s) left by an interrupted run");
    }
    let scan = source.scan(tile, year)?;
    let (ctx, report) = prepare_scanned(store, &source.describe(), tile, year, &scan)?;
    Ok((ctx, report, scan))
}

/// `prepare_year` after the source scan: merge, invalidate, persist catalog and metadata.
pub fn prepare_scanned(
    store: &dyn Store,
    source_name: &str,
    tile: &str,
    year: i32,
    scan: &crate::catalog::ScanResult,
) -> Result<(YearContext, MergeReport)> {
    let existing = Catalog::load(store, tile, year)?;
    let (catalog, report) = merge(existing, scan.scenes.clone(), tile, year)?;
    if catalog.scenes.is_empty() {
        let mut msg = format!("no scenes of tile {tile} in {year} in {source_name}");
        for e in &scan.errors {
            msg.push_str(&format!("\n  {e}"));
        }
        anyhow::bail!(msg);
    }
    if report.appended > 0 && report.previous_len > 0 {
        let ty = TileYear::new(tile, year);
        for res in Resolution::ALL {
            let first_stale = report.previous_len as u64 / res.time_chunk();
            let key = ty.record_key(res);
            let mut record = ChunkRecord::load(store, &key)?;
            let stale: Vec<ChunkIndex> = record
                .chunks
                .keys()
                .filter(|k| k.t >= first_stale)
                .copied()
                .collect();
            // Files first, then the record, then (below) the catalog: a crash in between
            // repeats the invalidation on the next run, and no stale file outlives it unrecorded
            // (the mount trusts unrecorded chunk files, which only an atomic write can leave).
            for k in &stale {
                store.delete(&ty.chunk(res, *k).to_string())?;
            }
            for k in &stale {
                record.chunks.remove(k);
            }
            record.save(store, &key)?;
        }
    }
    catalog.save(store)?;
    let ctx = YearContext::new(Arc::new(catalog))?;
    for (key, bytes) in &ctx.layout.files {
        if store.get(key)?.as_deref() != Some(bytes.as_slice()) {
            store.put(key, bytes)?;
        }
    }
    Ok((ctx, report))
}

/// A unit of intake work: chunks of one time chunk inside one JP2 tile region.
struct Group {
    res: Resolution,
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
    let (ctx, merge_report, scan) = prepare_year(store, source, &opts.tile, opts.year)?;
    let catalog = ctx.catalog.clone();
    let mut report = IntakeReport {
        scenes: catalog.scenes.len(),
        merge: merge_report,
        superseded: scan.superseded,
        errors: scan.errors,
        ..Default::default()
    };
    for late in &report.merge.late {
        tracing::warn!("{late}: older than the end of the persisted time axis; not inserted (indices never move)");
    }
    let in_range = |i: usize| {
        let d = chrono::DateTime::from_timestamp_millis(catalog.scenes[i].sensing_time_ms)
            .unwrap_or_default()
            .date_naive();
        opts.start.is_none_or(|s| d >= s) && opts.end.is_none_or(|e| d <= e)
    };

    let mut plans = Vec::new();
    for &res in &opts.resolutions {
        let geom = *ctx.geometry(res);
        let [nt, ny, nx] = geom.chunk_counts();
        report.chunks_total += nt * ny * nx;
        let key = TileYear::new(&opts.tile, opts.year).record_key(res);
        let record = ChunkRecord::load(store, &key)?;
        let cs = res.space_chunk();
        let per = (JP2_TILE / cs).max(1);
        let ct = res.time_chunk() as usize;
        let mut groups = Vec::new();
        for t in 0..nt {
            let scenes = t as usize * ct..((t as usize + 1) * ct).min(catalog.scenes.len());
            if !scenes.clone().any(in_range) {
                continue;
            }
            for ry in 0..ny.div_ceil(per) {
                for rx in 0..nx.div_ceil(per) {
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
                        res,
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
        plans.push((res, key, record, groups));
    }

    let todo: u64 = plans
        .iter()
        .flat_map(|p| &p.3)
        .map(|g| g.chunks.len() as u64)
        .sum();
    let bar = crate::progress::bar(todo, "intake", opts.progress);
    let raster = RasterReader::new(opts.memory_bytes);
    for (res, key, mut record, groups) in plans {
        let ct = res.time_chunk() as usize;
        let working_set = ct * res.bands().len() * (JP2_TILE * JP2_TILE * 2) as usize;
        if working_set > opts.memory_bytes {
            tracing::warn!(
                "--memory {} MiB is below one {res} group's working set ({} MiB): JP2 tiles may be decoded more than once",
                opts.memory_bytes >> 20,
                working_set >> 20
            );
        }
        for g in groups {
            run_group(
                &ctx,
                store,
                source,
                &raster,
                &g,
                &mut record,
                &mut report,
                &bar,
            );
            record.save(store, &key)?;
        }
    }
    bar.finish_and_clear();
    report.decodes = raster.stats.decodes.get();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn run_group(
    ctx: &YearContext,
    store: &dyn Store,
    source: &dyn BandSource,
    raster: &RasterReader,
    g: &Group,
    record: &mut ChunkRecord,
    report: &mut IntakeReport,
    bar: &indicatif::ProgressBar,
) {
    let res = g.res;
    let ct = res.time_chunk() as usize;
    let scenes = &ctx.catalog.scenes
        [g.t as usize * ct..((g.t as usize + 1) * ct).min(ctx.catalog.scenes.len())];
    // Phase 1: decode every (scene, band) JP2 tile of the region once, in parallel. Failures
    // resurface below, per chunk, with their context.
    let jobs: Vec<(usize, usize)> = (0..scenes.len())
        .flat_map(|s| res.bands().into_iter().map(move |b| (s, b.id)))
        .collect();
    let keys: Vec<&str> = jobs.iter().map(|&(s, b)| scenes[s].band_key(b)).collect();
    source.prefetch(&keys);
    jobs.par_iter().for_each(|&(s, b)| {
        if let Ok(path) = source.local_path(scenes[s].band_key(b)) {
            let _ = raster.prefetch(
                &path,
                Window {
                    x0: g.x0 as usize,
                    y0: g.y0 as usize,
                    w: g.w as usize,
                    h: g.h as usize,
                },
            );
        }
    });
    // Phase 2: assemble, encode and write the chunks, in parallel.
    let tile = &ctx.catalog.tile;
    let year = ctx.catalog.year;
    let results: Vec<(ChunkIndex, Result<ChunkEntry>)> = g
        .chunks
        .par_iter()
        .map(|&idx| {
            let r = (|| -> Result<ChunkEntry> {
                let key = TileYear::new(tile, year).chunk(res, idx).to_string();
                match ctx.materialize(source, raster, res, idx)? {
                    ChunkOutcome::Data(bytes) => {
                        store.put(&key, &bytes)?;
                        Ok(ChunkEntry::Data {
                            bytes: bytes.len() as u64,
                        })
                    }
                    ChunkOutcome::Empty => {
                        store.delete(&key)?;
                        Ok(ChunkEntry::Empty)
                    }
                }
            })();
            bar.inc(1);
            (idx, r)
        })
        .collect();
    for (idx, r) in results {
        match r {
            Ok(entry) => {
                match entry {
                    ChunkEntry::Data { bytes } => {
                        report.chunks_written += 1;
                        report.bytes_written += bytes;
                    }
                    ChunkEntry::Empty => report.chunks_empty += 1,
                }
                record.chunks.insert(idx, entry);
            }
            Err(e) => {
                let msg = format!("{}: {e:#}", TileYear::new(tile, year).chunk(res, idx));
                tracing::error!("{msg}");
                report.errors.push(msg);
            }
        }
    }
}
