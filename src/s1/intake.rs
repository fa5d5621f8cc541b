//! `datacube intake --collection sentinel-1-sig0`: materializes every shard region of a tile-year
//! into a store. The catalog is built from the source's items and published once (a tile-year's
//! time axis is fixed by its first catalog; see the README for what that means for later items).
//! Shard regions run one after another, each using every core; a region's five shard objects are
//! written atomically, then recorded (per-writer record files, fingerprinted like S2 chunks), so a
//! rerun skips what is done and a killed run loses at most the regions in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::catalog::S1Catalog;
use super::grid::Equi7Tile;
use super::layout;
use super::shard::{self, Encoders, OrbitCache, ShardPos};
use super::source::S1Source;
use super::VARIABLES;
use crate::bands::Resolution;
use crate::collection::Collection;
use crate::key::{ChunkIndex, TileYear};
use crate::store::{ChunkEntry, ChunkRecord, RecordWriter, Store};

/// The record files of the S1 cube live under the `20m` resolution name, like S2's 20 m group.
const RECORD_RES: Resolution = Resolution::R20;

#[derive(Debug, Default)]
pub struct S1IntakeReport {
    pub days: usize,
    pub slices: usize,
    pub regions: usize,
    pub regions_skipped: usize,
    /// Computed by this run (its `--part` share of what was not done).
    pub regions_computed: usize,
    pub shards_written: u64,
    pub bytes_written: u64,
    /// Data versions replaced by newer ones (old → new).
    pub superseded: Vec<(String, String)>,
    pub seconds: f64,
}

/// The catalog of a tile-year: the stored one, else built from the source and published.
/// Bad items fail the tile-year before anything is stored: a published time axis is permanent,
/// and one that silently lacked a slice would never get it back.
pub fn prepare(
    store: &dyn Store,
    source: &S1Source,
    tile: Equi7Tile,
    year: i32,
) -> Result<(S1Catalog, Vec<(String, String)>)> {
    Collection::Sentinel1Sig0.check_store(store)?;
    let ty = TileYear::new(&tile.to_string(), year);
    if let Some(c) = S1Catalog::load(store, &ty)? {
        warn_if_open(&c);
        return Ok((c, Vec::new()));
    }
    let found = source.search(tile, year)?;
    if !found.errors.is_empty() {
        bail!(
            "{tile}/{year}: {} unusable STAC item(s) in {}; nothing was stored:\n  {}",
            found.errors.len(),
            source.describe(),
            found.errors.join("\n  ")
        );
    }
    let built = S1Catalog::build(&tile.to_string(), year, found.slices);
    let Some(catalog) = built.catalog else {
        return Err(crate::intake::NoScenes(format!(
            "{tile}/{year}: no items in {}",
            source.describe()
        ))
        .into());
    };
    let catalog = catalog.publish(store)?;
    warn_if_open(&catalog);
    Ok((catalog, built.superseded))
}

/// EODC publishes a slice days after sensing and reprocesses older ones; a year is taken as
/// complete this long after it ends.
const YEAR_SETTLES_DAYS: i64 = 30;

/// An S1 tile-year's time axis is fixed when first published (its catalog does not grow like
/// Sentinel-2's): say so when that happened before the year was complete.
fn warn_if_open(c: &S1Catalog) {
    let settled = chrono::NaiveDate::from_ymd_opt(c.year + 1, 1, 1)
        .map(|d| d + chrono::Duration::days(YEAR_SETTLES_DAYS));
    let created = chrono::DateTime::parse_from_rfc3339(&c.created)
        .ok()
        .map(|t| t.date_naive());
    if let (Some(settled), Some(created)) = (settled, created) {
        if created < settled {
            tracing::warn!(
                "{}/{}: this Sentinel-1 time axis was fixed on {created}, before the year was \
                 complete; slices published after that do not appear (Sentinel-1 tile-years do \
                 not grow yet: remove TILE/YEAR from the store to rebuild it)",
                c.tile,
                c.year
            );
        }
    }
}

/// Fills the store with every shard of `tile`/`year`.
pub fn intake_year(
    store: &dyn Store,
    source: &S1Source,
    tile: Equi7Tile,
    year: i32,
    regions: crate::intake::Regions,
    progress: bool,
) -> Result<S1IntakeReport> {
    let start = Instant::now();
    let (catalog, superseded) = prepare(store, source, tile, year)?;
    let ty = catalog.tile_year();
    for (key, bytes) in layout::build(&catalog)? {
        if store.get(&key)?.as_deref() != Some(&bytes[..]) {
            store.put(&key, &bytes)?;
        }
    }
    let fp_of = |t: u64| (t < catalog.time_chunks()).then(|| catalog.fingerprint(t));
    let done = ChunkRecord::load_matching(store, &ty, RECORD_RES, &fp_of)?;
    let reader = source.reader();
    let orbits = OrbitCache::default();
    let enc = Encoders::new()?;
    let writer = RecordWriter::new();
    let positions = shard::all_positions(&catalog);
    let todo: Vec<ShardPos> = positions
        .iter()
        .copied()
        // This process's share (`--part`): regions hashed by position, as S2 intake does.
        .filter(|p| {
            crate::synth::mix((p.t << 32) | (p.y * shard::SHARDS_PER_SIDE + p.x)) % regions.count
                == regions.index
        })
        .filter(|p| {
            !done.chunks.contains_key(&ChunkIndex {
                t: p.t,
                y: p.y,
                x: p.x,
            })
        })
        .collect();
    let mut report = S1IntakeReport {
        days: catalog.days.len(),
        slices: catalog.slice_count(),
        regions: positions.len(),
        regions_skipped: done.chunks.len(),
        regions_computed: todo.len(),
        superseded,
        ..Default::default()
    };
    let bar = crate::progress::bar(todo.len() as u64, &format!("{ty} shards"), progress);
    let (written, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    for pos in todo {
        let set = shard::materialize(&catalog, &reader, &orbits, &enc, pos)
            .with_context(|| format!("{ty}: shard region t {} y {} x {}", pos.t, pos.y, pos.x))?;
        let mut total = 0u64;
        for (v, obj) in VARIABLES.iter().zip(set.iter()) {
            let key = layout::shard_key(&catalog.tile, year, v.name, pos.t, pos.y, pos.x);
            match obj {
                Some(b) => {
                    store.put(&key, b)?;
                    total += b.len() as u64;
                    written.fetch_add(1, Ordering::Relaxed);
                }
                // A region computed again under the same catalog has the same content; an object
                // left by an older run cannot exist (the time axis never changes), but stay exact.
                None => store.delete(&key)?,
            }
        }
        bytes.fetch_add(total, Ordering::Relaxed);
        let entry = if total == 0 {
            ChunkEntry::Empty
        } else {
            ChunkEntry::Data { bytes: total }
        };
        writer.add(
            &ty,
            RECORD_RES,
            ChunkIndex {
                t: pos.t,
                y: pos.y,
                x: pos.x,
            },
            entry,
            &catalog.fingerprint(pos.t),
        );
        writer.save(store, &ty, RECORD_RES)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    report.shards_written = written.into_inner();
    report.bytes_written = bytes.into_inner();
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
