//! Catalog generations: how any number of processes, on any number of hosts, grow and revise one
//! tile-year's time axis in a shared store without a lock (the consistency model is in
//! `docs/design.md` §5 and the README; this is its implementation).
//!
//! - The catalog is a chain of immutable generations `TILE/YEAR/.datacube/catalog/NNNNNNNN.json`.
//!   Generation n+1 is created with `Store::put_if_absent`, so of two processes that both grow
//!   the axis exactly one wins; the other reads the winner and merges again. The latest
//!   generation is the catalog. (Icechunk's conditional root update, spelled as create-only.)
//! - A chunk's values depend only on the products of its time chunk, so a chunk computed under
//!   one generation stays valid under another iff `Catalog::fingerprint` of its time chunk
//!   agrees. Each generation lists the time chunks it changed.
//! - Writers check, at most `Fence::check_age` before each PUT, that the latest generation still
//!   gives their chunk's time chunk the fingerprint they computed it under; a PUT finishes within
//!   `Fence::check_age`. So a writer that missed a new generation has its PUT land within half
//!   the grace period after that generation was published.
//! - The changed time chunks of a generation are invalidated (their chunk files deleted, the
//!   generation's metadata written again) no earlier than `grace` after it was published — after
//!   every stale PUT has landed — and a `.done` marker is created. Chunks of a changed time chunk
//!   are written only `grace` after the marker, when no invalidating delete can still be in
//!   flight. Anyone may invalidate (the publisher normally; whoever needs it if the publisher
//!   died); deletes are idempotent and stop once the marker exists.
//!
//! The timing assumptions (a store call finishes within `check_age`, clocks of the hosts agree to
//! well within `grace`) are those of leases; `grace` defaults to a minute.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::bands::Resolution;
use crate::catalog::Catalog;
use crate::key::TileYear;
use crate::store::Store;

/// The timing of the protocol.
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    /// How long after a generation's publication its changed chunks may be invalidated, and how
    /// long after the invalidation they may be written again.
    pub grace: Duration,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            grace: Duration::from_secs(60),
        }
    }
}

impl Fence {
    /// How stale a writer's view of the latest generation may be when it starts a PUT.
    pub fn check_age(&self) -> Duration {
        self.grace / 4
    }

    fn grace_ms(&self) -> i64 {
        self.grace.as_millis() as i64
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One immutable catalog generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub number: u64,
    /// When it was created (ms since the epoch, the creator's clock).
    pub published_ms: i64,
    /// The process that created it (`host-pid-start`).
    pub owner: String,
    /// Per resolution name: the time chunks whose products differ from the previous generation's
    /// (plus those of a predecessor whose invalidation had not settled when this one was made).
    pub changed: BTreeMap<String, Vec<u64>>,
    /// Products this generation replaced in place by a newer processing baseline (old → new).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replaced: BTreeMap<String, String>,
    pub catalog: Catalog,
}

impl Generation {
    pub fn tile_year(&self) -> TileYear {
        TileYear::new(&self.catalog.tile, self.catalog.year)
    }

    /// The time chunks of `res` this generation changed.
    pub fn changed(&self, res: Resolution) -> &[u64] {
        self.changed.get(res.name()).map_or(&[], |v| v.as_slice())
    }

    pub fn is_changed(&self, res: Resolution, t: u64) -> bool {
        self.changed(res).contains(&t)
    }

    pub fn has_changes(&self) -> bool {
        self.changed.values().any(|v| !v.is_empty())
    }
}

fn parse(store: &dyn Store, key: &str, bytes: &[u8]) -> Result<Generation> {
    serde_json::from_slice(bytes)
        .with_context(|| format!("{}: invalid catalog generation {key}", store.describe()))
}

/// Generation `n` of `ty`, if it exists.
pub fn load(store: &dyn Store, ty: &TileYear, n: u64) -> Result<Option<Generation>> {
    let key = ty.generation_key(n);
    store.get(&key)?.map(|b| parse(store, &key, &b)).transpose()
}

/// The newest generation after `n`, if there is one (probes n+1, n+2, ...: generations are
/// created in sequence and never deleted, so the first absent number ends the chain).
pub fn newer(store: &dyn Store, ty: &TileYear, n: u64) -> Result<Option<Generation>> {
    let mut found = None;
    let mut next = n + 1;
    while let Some(g) = load(store, ty, next)? {
        found = Some(g);
        next += 1;
    }
    Ok(found)
}

/// The latest generation of `ty`, or `None` if the tile-year has no catalog. A store made before
/// generations has one catalog file: it reads as generation 1 (written as such when generation 2
/// is published), so reading a store never writes to it.
pub fn latest(store: &dyn Store, ty: &TileYear) -> Result<Option<Generation>> {
    let highest = store
        .list_dir(&ty.generations_dir())?
        .iter()
        .filter_map(|n| n.strip_suffix(".json"))
        .filter_map(|n| n.parse::<u64>().ok())
        .max();
    if let Some(h) = highest {
        let base = load(store, ty, h)?.with_context(|| {
            format!(
                "{}: {} listed but absent",
                store.describe(),
                ty.generation_key(h)
            )
        })?;
        return Ok(Some(newer(store, ty, h)?.unwrap_or(base)));
    }
    if let Some(g) = newer(store, ty, 0)? {
        return Ok(Some(g)); // a listing that lags behind a creation
    }
    Ok(legacy(store, ty)?.map(|catalog| Generation {
        number: 1,
        published_ms: 0,
        owner: LEGACY_OWNER.into(),
        changed: BTreeMap::new(),
        replaced: BTreeMap::new(),
        catalog,
    }))
}

const LEGACY_OWNER: &str = "catalog.json";

fn legacy(store: &dyn Store, ty: &TileYear) -> Result<Option<Catalog>> {
    let Some(bytes) = store.get(&ty.catalog_key())? else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
        format!("{}: invalid catalog {}", store.describe(), ty.catalog_key())
    })?))
}

/// The catalog of generation 1 (a pre-generation record's entries were computed under it).
pub fn first_catalog(store: &dyn Store, ty: &TileYear) -> Result<Option<Catalog>> {
    match load(store, ty, 1)? {
        Some(g) => Ok(Some(g.catalog)),
        None => legacy(store, ty),
    }
}

/// When generation `n`'s invalidation finished, if it has.
pub fn done_ms(store: &dyn Store, ty: &TileYear, n: u64) -> Result<Option<i64>> {
    #[derive(Deserialize)]
    struct Done {
        done_ms: i64,
    }
    let key = ty.done_key(n);
    match store.get(&key)? {
        None => Ok(None),
        Some(b) => Ok(Some(
            serde_json::from_slice::<Done>(&b)
                .with_context(|| format!("{}: invalid marker {key}", store.describe()))?
                .done_ms,
        )),
    }
}

/// Creates generation `base + 1` holding `catalog`, unless another process created it first
/// (`Ok(None)`: read the winner and merge again). `replaced` lists products replaced in place.
pub fn try_publish(
    store: &dyn Store,
    base: Option<&Generation>,
    catalog: Catalog,
    replaced: BTreeMap<String, String>,
    fence: &Fence,
) -> Result<Option<Generation>> {
    let ty = TileYear::new(&catalog.tile, catalog.year);
    if let Some(b) = base.filter(|b| b.owner == LEGACY_OWNER && b.number == 1) {
        // A pre-generation catalog becomes generation 1 in the store before it gets a successor.
        store.put_if_absent(&ty.generation_key(1), &serde_json::to_vec_pretty(b)?)?;
    }
    let now = now_ms();
    let mut changed = BTreeMap::new();
    // The predecessor's changed chunks are carried over unless its invalidation settled: writers
    // consult only the latest generation, which must therefore cover every chunk still fenced.
    let carry = match base {
        Some(b) if b.has_changes() => match done_ms(store, &ty, b.number)? {
            Some(d) => now < d + fence.grace_ms(),
            None => true,
        },
        _ => false,
    };
    for res in Resolution::ALL {
        let mut ts: Vec<u64> = match base {
            Some(b) => b.catalog.changed_time_chunks(&catalog, res),
            None => Vec::new(),
        };
        if carry {
            ts.extend_from_slice(base.unwrap().changed(res));
        }
        ts.sort_unstable();
        ts.dedup();
        changed.insert(res.name().to_string(), ts);
    }
    let g = Generation {
        number: base.map_or(1, |b| b.number + 1),
        published_ms: now,
        owner: crate::store::writer_id().to_string(),
        changed,
        replaced,
        catalog,
    };
    let created = store.put_if_absent(
        &ty.generation_key(g.number),
        &serde_json::to_vec_pretty(&g)?,
    )?;
    Ok(created.then_some(g))
}

/// What an invalidation did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Invalidation {
    pub deleted: usize,
    /// False if another process finished it first.
    pub completed_here: bool,
}

/// Invalidates generation `g`: deletes the chunk files of its changed time chunks, writes its
/// metadata documents (`files`, from `YearLayout::build(&g.catalog)`) where they differ, and
/// creates its `.done` marker. Waits until `grace` after publication first. Stops early if the
/// marker appears (someone else finished), and if a newer generation appears (its own
/// invalidation covers these chunks and metadata).
pub fn invalidate(
    store: &dyn Store,
    g: &Generation,
    files: &BTreeMap<String, Vec<u8>>,
    fence: &Fence,
) -> Result<Invalidation> {
    let ty = g.tile_year();
    let due = g.published_ms + fence.grace_ms();
    let wait = due - now_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
    let mut report = Invalidation::default();
    let mut checked = Instant::now();
    let mut still_needed = |force: bool| -> Result<bool> {
        if !force && checked.elapsed() < fence.check_age() {
            return Ok(true);
        }
        checked = Instant::now();
        Ok(done_ms(store, &ty, g.number)?.is_none() && load(store, &ty, g.number + 1)?.is_none())
    };
    if !still_needed(true)? {
        return Ok(report);
    }
    for res in Resolution::ALL {
        for &t in g.changed(res) {
            let dir = ty.time_chunk_dir(res, t);
            for y in store.list_dir(&dir)? {
                for x in store.list_dir(&format!("{dir}/{y}"))? {
                    if !still_needed(false)? {
                        return Ok(report);
                    }
                    store.delete(&format!("{dir}/{y}/{x}"))?;
                    report.deleted += 1;
                }
            }
        }
    }
    for (key, bytes) in files {
        if !still_needed(false)? {
            return Ok(report);
        }
        if store.get(key)?.as_deref() != Some(bytes.as_slice()) {
            store.put(key, bytes)?;
        }
    }
    let marker = serde_json::json!({"done_ms": now_ms(), "by": crate::store::writer_id()});
    report.completed_here =
        store.put_if_absent(&ty.done_key(g.number), &serde_json::to_vec(&marker)?)?;
    Ok(report)
}

/// Whether a computed chunk may be written to the store now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its time chunk is unchanged in the latest generation and settled: write it.
    Write,
    /// The latest generation gives its time chunk other products: drop it.
    Stale,
    /// Its time chunk was changed by the latest generation and is still fenced: do not write it
    /// yet (it is computed again when needed).
    Unsettled,
}

crate::counters! {
    /// What the tracker saw.
    pub struct TrackerStats {
        /// Reads of the store's latest generation (probes for a newer one).
        generation_checks,
        /// Newer generations found (published by this or another process).
        generations_seen,
        invalidations,
        invalidated_chunks,
    }
}

struct Tracked {
    gen: Arc<Generation>,
    checked: Instant,
    /// The latest generation's `.done` time, once seen.
    done_ms: Option<i64>,
}

/// A writer's view of the latest generation of each tile-year, kept at most
/// `Fence::check_age` old when a verdict is asked for.
pub struct Tracker {
    pub fence: Fence,
    /// The store's layout (which metadata documents an invalidation writes).
    pub chunking: crate::chunking::Chunking,
    years: Mutex<HashMap<TileYear, Tracked>>,
    pub stats: TrackerStats,
}

impl Tracker {
    pub fn new(fence: Fence, chunking: crate::chunking::Chunking) -> Self {
        Tracker {
            fence,
            chunking,
            years: Mutex::new(HashMap::new()),
            stats: TrackerStats::default(),
        }
    }

    /// Tells the tracker about a generation just read or published.
    pub fn seed(&self, gen: Arc<Generation>) {
        let ty = gen.tile_year();
        let mut g = self.years.lock().unwrap();
        match g.get(&ty) {
            Some(t) if t.gen.number > gen.number => {}
            Some(t) if t.gen.number == gen.number => {
                g.get_mut(&ty).unwrap().checked = Instant::now();
            }
            _ => {
                g.insert(
                    ty,
                    Tracked {
                        gen,
                        checked: Instant::now(),
                        done_ms: None,
                    },
                );
            }
        }
    }

    /// The latest generation known without asking the store (possibly stale).
    pub fn known(&self, ty: &TileYear) -> Option<Arc<Generation>> {
        self.years.lock().unwrap().get(ty).map(|t| t.gen.clone())
    }

    /// The latest generation, read again from the store if the last look is older than the
    /// fence's check age.
    pub fn latest(&self, store: &dyn Store, ty: &TileYear) -> Result<Option<Arc<Generation>>> {
        let cached = {
            let g = self.years.lock().unwrap();
            g.get(ty).map(|t| (t.gen.clone(), t.checked.elapsed()))
        };
        let fresh = match cached {
            Some((gen, age)) if age < self.fence.check_age() => return Ok(Some(gen)),
            Some((gen, _)) => {
                self.stats.generation_checks.inc();
                newer(store, ty, gen.number)?
            }
            .map(Arc::new)
            .unwrap_or(gen),
            None => match latest(store, ty)? {
                Some(g) => Arc::new(g),
                None => return Ok(None),
            },
        };
        let mut g = self.years.lock().unwrap();
        match g.get_mut(ty) {
            Some(t) if t.gen.number >= fresh.number => {
                t.checked = Instant::now();
                Ok(Some(t.gen.clone()))
            }
            other => {
                if other.is_some() {
                    self.stats.generations_seen.inc();
                }
                g.insert(
                    ty.clone(),
                    Tracked {
                        gen: fresh.clone(),
                        checked: Instant::now(),
                        done_ms: None,
                    },
                );
                Ok(Some(fresh))
            }
        }
    }

    /// Whether a chunk of time chunk `t` of `res`, computed under fingerprint `fp`, may be
    /// written now. Performs an invalidation that is due and unfinished (its publisher died).
    pub fn verdict(
        &self,
        store: &dyn Store,
        ty: &TileYear,
        res: Resolution,
        t: u64,
        fp: &str,
    ) -> Result<Verdict> {
        let Some(gen) = self.latest(store, ty)? else {
            return Ok(Verdict::Stale);
        };
        if gen.catalog.fingerprint(res, t) != fp {
            return Ok(Verdict::Stale);
        }
        if !gen.is_changed(res, t) {
            return Ok(Verdict::Write);
        }
        let done = match self.done(store, &gen)? {
            Some(d) => d,
            None if now_ms() >= gen.published_ms + self.fence.grace_ms() => {
                self.invalidate(store, &gen)?;
                match self.done(store, &gen)? {
                    Some(d) => d,
                    None => return Ok(Verdict::Unsettled),
                }
            }
            None => return Ok(Verdict::Unsettled),
        };
        Ok(if now_ms() >= done + self.fence.grace_ms() {
            Verdict::Write
        } else {
            Verdict::Unsettled
        })
    }

    fn done(&self, store: &dyn Store, gen: &Generation) -> Result<Option<i64>> {
        let ty = gen.tile_year();
        if let Some(t) = self.years.lock().unwrap().get(&ty) {
            if t.gen.number == gen.number && t.done_ms.is_some() {
                return Ok(t.done_ms);
            }
        }
        let d = done_ms(store, &ty, gen.number)?;
        if let Some(t) = self.years.lock().unwrap().get_mut(&ty) {
            if t.gen.number == gen.number {
                t.done_ms = d;
            }
        }
        Ok(d)
    }

    /// Runs `gen`'s invalidation (waiting for its due time), counting what it did.
    pub fn invalidate(&self, store: &dyn Store, gen: &Generation) -> Result<Invalidation> {
        let files = crate::layout::YearLayout::build(&gen.catalog, self.chunking)?.files;
        let r = invalidate(store, gen, &files, &self.fence)?;
        if r.completed_here {
            self.stats.invalidations.inc();
        }
        self.stats.invalidated_chunks.add(r.deleted as u64);
        if r.deleted > 0 || r.completed_here {
            tracing::info!(
                "{}: generation {} invalidated {} chunk file(s)",
                gen.tile_year(),
                gen.number,
                r.deleted
            );
        }
        Ok(r)
    }
}
