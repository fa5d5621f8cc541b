//! `datacube intake --collection sentinel-1-sig0`: materializes every shard region of a tile-year
//! into a store. The catalog is the store's latest generation with the source's items merged in
//! (`prepare`): a rerun takes up new days and late slices, and recomputes exactly the time chunks
//! they changed. Shard regions run one after another, each using every core; a region's five
//! shard objects are written atomically (each after a fence verdict, like every writer of the
//! store), then recorded (per-writer record files, fingerprinted like S2 chunks), so a rerun skips
//! what is done and a killed run loses at most the regions in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::catalog::{Merged, S1Catalog};
use super::grid::Equi7Tile;
use super::layout;
use super::shard::{self, Encoders, OrbitCache, ShardPos};
use super::source::S1Source;
use super::{GROUP, VARIABLES};
use crate::generation::{self, Fence, Tracker, Verdict};
use crate::key::{ChunkIndex, TileYear};
use crate::store::{ChunkEntry, ChunkRecord, RecordWriter, Store};

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
    /// Days of new slices older than the axis end, not inserted.
    pub late_days: usize,
    pub seconds: f64,
}

/// A tile-year's catalog generation after a search of the source; `merge` says what the search
/// added (days appended, days changed, late days not inserted, versions).
pub type Prepared = crate::intake::Prepared<S1Catalog, Merged>;

/// Searches the source and brings the tile-year's catalog up to date: the store's latest
/// generation, with the search merged in (`S1Catalog::merge`), published as the next generation
/// when it grows — created exclusively, so of two processes that both grow it one wins and the
/// other merges into the winner's. A first generation's metadata documents are written at once; a
/// later one's by its invalidation, after the fence's grace period (`generation`).
///
/// Bad items fail the tile-year before anything is published: a slice that is left out cannot
/// come back into a day later without recomputing the day.
pub fn prepare(
    store: &dyn Store,
    source: &S1Source,
    tile: Equi7Tile,
    year: i32,
    fence: &Fence,
) -> Result<Prepared> {
    crate::collection::check_store(store, crate::s1::NAME)?;
    let ty = TileYear::new(&tile.to_string(), year);
    let found = source.search(tile, year)?;
    if !found.errors.is_empty() {
        bail!(
            "{tile}/{year}: {} unusable STAC item(s) in {}; nothing was published:\n  {}",
            found.errors.len(),
            source.describe(),
            found.errors.join("\n  ")
        );
    }
    loop {
        let base = generation::latest::<S1Catalog>(store, &ty)?;
        let merge = S1Catalog::merge(
            base.as_ref().map(|g| &g.catalog),
            &tile.to_string(),
            year,
            found.slices.clone(),
        );
        for d in &merge.late {
            tracing::warn!(
                "{ty}: slices of {} arrived after later days; not inserted (time indices never move)",
                super::iso_day(*d)
            );
        }
        let (generation, published) = match (base, merge.grows()) {
            (Some(b), false) => (b, false),
            (base, _) => {
                let Some(catalog) = merge.catalog.clone() else {
                    return Err(crate::intake::NoScenes(format!(
                        "{tile}/{year}: no items in {}",
                        source.describe()
                    ))
                    .into());
                };
                let replaced = merge.superseded.iter().cloned().collect();
                match generation::try_publish(store, base.as_ref(), catalog, replaced, fence)? {
                    Some(g) => (g, true),
                    // Another process published first: merge into its generation.
                    None => continue,
                }
            }
        };
        if !generation.has_changes() {
            for (key, bytes) in layout::build(&generation.catalog)? {
                if store.get(&key)?.as_deref() != Some(&bytes[..]) {
                    store.put(&key, &bytes)?;
                }
            }
        }
        return Ok(Prepared {
            generation: Arc::new(generation),
            published,
            merge,
        });
    }
}

/// The fence of an S1 tile-year: its metadata documents are `layout::build`'s.
pub fn tracker(fence: Fence) -> Tracker<S1Catalog> {
    Tracker::new(fence, Box::new(|c: &S1Catalog| layout::build(c)))
}

/// Fills the store with every shard of `tile`/`year` (this process's `regions` share), under the
/// catalog's latest generation; if another process publishes a newer one meanwhile, continues
/// under it, keeping every region that is still valid.
pub fn intake_year(
    store: &dyn Store,
    source: &S1Source,
    tile: Equi7Tile,
    year: i32,
    regions: crate::intake::Regions,
    fence: &Fence,
    progress: bool,
) -> Result<S1IntakeReport> {
    let start = Instant::now();
    let tracker = tracker(*fence);
    let writer = RecordWriter::new();
    let reader = source.reader();
    let orbits = OrbitCache::default();
    let enc = Encoders::new()?;
    let mut report = S1IntakeReport::default();
    for attempt in 1.. {
        let p = prepare(store, source, tile, year, fence)?;
        if attempt == 1 {
            report.superseded = p.merge.superseded.clone();
            report.late_days = p.merge.late.len();
        }
        tracker.seed(p.generation.clone());
        let catalog = &p.generation.catalog;
        let ty = catalog.tile_year();
        let fp_of = |t: u64| (t < catalog.time_chunks()).then(|| catalog.fingerprint(t));
        let done = ChunkRecord::load_matching(store, &ty, GROUP, &fp_of)?;
        let positions = shard::all_positions(catalog);
        let mut todo: Vec<ShardPos> = positions
            .iter()
            .copied()
            // This process's share (`--part`): regions hashed by position, as S2 intake does.
            .filter(|p| {
                crate::util::mix((p.t << 32) | (p.y * shard::SHARDS_PER_SIDE + p.x)) % regions.count
                    == regions.index
            })
            .filter(|p| !done.chunks.contains_key(&index(p)))
            .collect();
        // Time chunks this generation changed are fenced until its invalidation has settled: do
        // everything else first.
        todo.sort_by_key(|q| p.generation.is_changed(GROUP, q.t));
        report.days = catalog.days.len();
        report.slices = catalog.slice_count();
        report.regions = positions.len();
        report.regions_skipped = done.chunks.len();
        report.regions_computed = todo.len();
        let bar = crate::progress::bar(todo.len() as u64, &format!("{ty} shards"), progress);
        let (written, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
        let mut stale = false;
        for pos in todo {
            let fp = catalog.fingerprint(pos.t);
            if !tracker.wait_until_writable(store, &ty, GROUP, pos.t, &fp)? {
                stale = true;
                break;
            }
            let set =
                shard::materialize(catalog, &reader, &orbits, &enc, pos).with_context(|| {
                    format!("{ty}: shard region t {} y {} x {}", pos.t, pos.y, pos.x)
                })?;
            let mut total = 0u64;
            for (v, obj) in VARIABLES.iter().zip(set.iter()) {
                let key = layout::shard_key(&catalog.tile, year, v.name, pos.t, pos.y, pos.x);
                // Each PUT starts within the fence's check age of a verdict.
                if tracker.verdict(store, &ty, GROUP, pos.t, &fp)? != Verdict::Write {
                    stale = true;
                    break;
                }
                match obj {
                    Some(b) => {
                        store.put(&key, b)?;
                        total += b.len() as u64;
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                    // A region computed again (its day changed) may have had data here before.
                    None => store.delete(&key)?,
                }
            }
            if stale {
                break;
            }
            bytes.fetch_add(total, Ordering::Relaxed);
            let entry = if total == 0 {
                ChunkEntry::Empty
            } else {
                ChunkEntry::Data { bytes: total }
            };
            writer.add(&ty, GROUP, index(&pos), entry, &fp);
            writer.save(store, &ty, GROUP)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        report.shards_written += written.into_inner();
        report.bytes_written += bytes.into_inner();
        if !stale {
            break;
        }
        if attempt >= 5 {
            bail!("{ty}: the catalog changed {attempt} times during this intake; run it again");
        }
        tracing::info!(
            "{ty}: a newer catalog generation appeared during intake; continuing under it"
        );
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The record index of a shard region.
fn index(p: &ShardPos) -> ChunkIndex {
    ChunkIndex {
        t: p.t,
        y: p.y,
        x: p.x,
    }
}
