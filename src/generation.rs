//! Catalog generations: how any number of processes, on any number of hosts, grow and revise one
//! tile-year's time axis in a shared store without a lock (the consistency model is in
//! `docs/design.md` §5 and the README; this is its implementation).
//!
//! - The catalog is a chain of immutable generations `TILE/YEAR/.datacube/catalog/NNNNNNNN.json`.
//!   Generation n+1 is created with `Store::put_if_absent`, so of two processes that both grow
//!   the axis exactly one wins; the other reads the winner and merges again. The latest
//!   generation is the catalog. (Icechunk's conditional root update, spelled as create-only.)
//! - A chunk's values depend only on the products of its time chunk, so a chunk computed under
//!   one generation stays valid under another iff `AxisCatalog::fingerprint` of its time chunk
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
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::key::TileYear;
use crate::store::Store;

/// What the protocol needs of a collection's catalog (the time axis of one tile-year): which
/// arrays are cut into time chunks, and a fingerprint of what each time chunk holds. Every
/// collection's catalog implements it; nothing here knows scenes, slices or bands.
pub trait AxisCatalog:
    Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    fn tile_year(&self) -> TileYear;
    /// The arrays whose chunk files are cut along time: (group, the array's path below the
    /// tile-year, key levels below the time index — `10m/data/c/T/0/Y/X` has 3). A *group* is the
    /// unit of fingerprints, invalidation, fencing and chunk records; several arrays may share
    /// one (S1's variables), or each be its own (S2's `data` and `scl`).
    fn time_chunked_arrays(&self) -> Vec<(&'static str, String, usize)>;
    /// Number of time chunks of `group`.
    fn time_chunks(&self, group: &str) -> u64;
    /// A hash of the items time chunk `t` of `group` holds. An object's values are a function
    /// of exactly these items, so an object computed under one catalog is valid under another
    /// iff the fingerprints agree.
    fn fingerprint(&self, group: &str, t: u64) -> String;

    /// The groups with time-chunked arrays, each once, in order.
    fn groups(&self) -> Vec<&'static str> {
        let mut gs: Vec<&'static str> = Vec::new();
        for (g, _, _) in self.time_chunked_arrays() {
            if !gs.contains(&g) {
                gs.push(g);
            }
        }
        gs
    }

    /// Time chunks of `group` whose contents differ between `self` and `newer`.
    fn changed_time_chunks(&self, newer: &Self, group: &str) -> Vec<u64> {
        let (old_n, new_n) = (self.time_chunks(group), newer.time_chunks(group));
        (0..old_n.max(new_n))
            .filter(|&t| {
                t >= old_n
                    || t >= new_n
                    || self.fingerprint(group, t) != newer.fingerprint(group, t)
            })
            .collect()
    }
}

/// The timing of the protocol.
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    /// How long after a generation's publication its changed chunks may be invalidated, and how
    /// long after the invalidation they may be written again.
    pub grace: Duration,
}

impl Default for Fence {
    /// A minute of grace: a check age of 15 s, the longest a store call may take
    /// (`store::MAX_CALL`).
    fn default() -> Self {
        Fence {
            grace: crate::store::MAX_CALL * 4,
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
#[serde(bound = "C: AxisCatalog")]
pub struct Generation<C> {
    pub number: u64,
    /// When it was created (ms since the epoch, the creator's clock).
    pub published_ms: i64,
    /// The process that created it (`host-pid-start`).
    pub owner: String,
    /// Per group: the time chunks whose products differ from the previous generation's
    /// (plus those of a predecessor whose invalidation had not settled when this one was made).
    pub changed: BTreeMap<String, Vec<u64>>,
    /// Products this generation replaced in place by a newer processing baseline (old → new).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replaced: BTreeMap<String, String>,
    pub catalog: C,
}

impl<C: AxisCatalog> Generation<C> {
    pub fn tile_year(&self) -> TileYear {
        self.catalog.tile_year()
    }

    /// The time chunks of `group` this generation changed.
    pub fn changed(&self, group: &str) -> &[u64] {
        self.changed.get(group).map_or(&[], |v| v.as_slice())
    }

    pub fn is_changed(&self, group: &str, t: u64) -> bool {
        self.changed(group).contains(&t)
    }

    pub fn has_changes(&self) -> bool {
        self.changed.values().any(|v| !v.is_empty())
    }
}

fn parse<C: AxisCatalog>(store: &dyn Store, key: &str, bytes: &[u8]) -> Result<Generation<C>> {
    serde_json::from_slice(bytes)
        .with_context(|| format!("{}: invalid catalog generation {key}", store.describe()))
}

/// Generation `n` of `ty`, if it exists.
pub fn load<C: AxisCatalog>(
    store: &dyn Store,
    ty: &TileYear,
    n: u64,
) -> Result<Option<Generation<C>>> {
    let key = ty.generation_key(n);
    store.get(&key)?.map(|b| parse(store, &key, &b)).transpose()
}

/// The newest generation after `n`, if there is one (probes n+1, n+2, ...: generations are
/// created in sequence and never deleted, so the first absent number ends the chain).
pub fn newer<C: AxisCatalog>(
    store: &dyn Store,
    ty: &TileYear,
    n: u64,
) -> Result<Option<Generation<C>>> {
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
pub fn latest<C: AxisCatalog>(store: &dyn Store, ty: &TileYear) -> Result<Option<Generation<C>>> {
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

fn legacy<C: AxisCatalog>(store: &dyn Store, ty: &TileYear) -> Result<Option<C>> {
    let Some(bytes) = store.get(&ty.catalog_key())? else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
        format!("{}: invalid catalog {}", store.describe(), ty.catalog_key())
    })?))
}

/// The catalog of generation 1 (a pre-generation record's entries were computed under it).
pub fn first_catalog<C: AxisCatalog>(store: &dyn Store, ty: &TileYear) -> Result<Option<C>> {
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
pub fn try_publish<C: AxisCatalog>(
    store: &dyn Store,
    base: Option<&Generation<C>>,
    catalog: C,
    replaced: BTreeMap<String, String>,
    fence: &Fence,
) -> Result<Option<Generation<C>>> {
    let ty = catalog.tile_year();
    if let Some(b) = base.filter(|b| b.owner == LEGACY_OWNER && b.number == 1) {
        // A pre-generation catalog becomes generation 1 in the store before it gets a successor.
        create(store, &ty.generation_key(1), &serde_json::to_vec_pretty(b)?)?;
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
    for group in catalog.groups() {
        let mut ts: Vec<u64> = match base {
            Some(b) => b.catalog.changed_time_chunks(&catalog, group),
            None => Vec::new(),
        };
        if carry {
            ts.extend_from_slice(base.unwrap().changed(group));
        }
        ts.sort_unstable();
        ts.dedup();
        changed.insert(group.to_string(), ts);
    }
    let g = Generation {
        number: base.map_or(1, |b| b.number + 1),
        published_ms: now,
        owner: crate::store::writer_id().to_string(),
        changed,
        replaced,
        catalog,
    };
    let created = create(
        store,
        &ty.generation_key(g.number),
        &serde_json::to_vec_pretty(&g)?,
    )?;
    Ok(created.then_some(g))
}

/// Creates `key` unless it exists (`Store::put_if_absent`), retrying transient failures: a create
/// whose outcome stayed unknown is asked again, and recognised as ours if it landed.
fn create(store: &dyn Store, key: &str, bytes: &[u8]) -> Result<bool> {
    crate::store::with_retries(
        &crate::remote::retry::RetryPolicy::default(),
        &format!("creating {key} in {}", store.describe()),
        || store.put_if_absent(key, bytes),
    )
}

/// What an invalidation did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Invalidation {
    pub deleted: usize,
    /// False if another process finished it first.
    pub completed_here: bool,
}

/// Invalidates generation `g`: deletes the object files of its changed time chunks, writes its
/// metadata documents (`files`, the collection's documents for `g.catalog`) where they differ, and
/// creates its `.done` marker. Waits until `grace` after publication first. Stops early if the
/// marker appears (someone else finished), and if a newer generation appears (its own
/// invalidation covers these chunks and metadata).
pub fn invalidate<C: AxisCatalog>(
    store: &dyn Store,
    g: &Generation<C>,
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
        Ok(done_ms(store, &ty, g.number)?.is_none()
            && load::<C>(store, &ty, g.number + 1)?.is_none())
    };
    if !still_needed(true)? {
        return Ok(report);
    }
    for (group, array, levels) in g.catalog.time_chunked_arrays() {
        for &t in g.changed(group) {
            let mut keys = vec![ty.time_chunk_prefix(&array, t)];
            for _ in 0..levels {
                let mut below = Vec::new();
                for k in &keys {
                    below.extend(store.list_dir(k)?.into_iter().map(|n| format!("{k}/{n}")));
                }
                keys = below;
            }
            for key in keys {
                if !still_needed(false)? {
                    return Ok(report);
                }
                store.delete(&key)?;
                report.deleted += 1;
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
    report.completed_here = create(store, &ty.done_key(g.number), &serde_json::to_vec(&marker)?)?;
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

struct Tracked<C> {
    gen: Arc<Generation<C>>,
    checked: Instant,
    /// The latest generation's `.done` time, once seen.
    done_ms: Option<i64>,
}

/// What a writer asks before each PUT, whatever the collection: may an object of time chunk `t`
/// of `group`, computed under fingerprint `fp`, be written now? (`Tracker` of any catalog.)
pub trait Fencing: Send + Sync {
    fn fence(&self) -> &Fence;
    fn verdict(
        &self,
        store: &dyn Store,
        ty: &TileYear,
        group: &str,
        t: u64,
        fp: &str,
    ) -> Result<Verdict>;
}

impl<C: AxisCatalog> Fencing for Tracker<C> {
    fn fence(&self) -> &Fence {
        &self.fence
    }

    fn verdict(
        &self,
        store: &dyn Store,
        ty: &TileYear,
        group: &str,
        t: u64,
        fp: &str,
    ) -> Result<Verdict> {
        Tracker::verdict(self, store, ty, group, t, fp)
    }
}

/// The metadata documents of a tile-year under a catalog (key → bytes): what an invalidation
/// writes again. The collection's own layout provides it.
pub type MetadataFiles<C> = Box<dyn Fn(&C) -> Result<BTreeMap<String, Vec<u8>>> + Send + Sync>;

/// A writer's view of the latest generation of each tile-year, kept at most
/// `Fence::check_age` old when a verdict is asked for.
pub struct Tracker<C: AxisCatalog> {
    pub fence: Fence,
    /// The documents an invalidation writes (they depend on the store's layout).
    files: MetadataFiles<C>,
    years: Mutex<HashMap<TileYear, Tracked<C>>>,
    pub stats: TrackerStats,
}

impl<C: AxisCatalog> Tracker<C> {
    pub fn new(fence: Fence, files: MetadataFiles<C>) -> Self {
        Tracker {
            fence,
            files,
            years: Mutex::new(HashMap::new()),
            stats: TrackerStats::default(),
        }
    }

    /// The metadata documents of a tile-year under `catalog` (the collection's layout).
    pub fn documents(&self, catalog: &C) -> Result<BTreeMap<String, Vec<u8>>> {
        (self.files)(catalog)
    }

    /// Tells the tracker about a generation just read or published.
    pub fn seed(&self, gen: Arc<Generation<C>>) {
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
    pub fn known(&self, ty: &TileYear) -> Option<Arc<Generation<C>>> {
        self.years.lock().unwrap().get(ty).map(|t| t.gen.clone())
    }

    /// The latest generation, read again from the store if the last look is older than the
    /// fence's check age.
    pub fn latest(&self, store: &dyn Store, ty: &TileYear) -> Result<Option<Arc<Generation<C>>>> {
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

    /// Whether an object of time chunk `t` of `group`, computed under fingerprint `fp`, may be
    /// written now. Performs an invalidation that is due and unfinished (its publisher died).
    pub fn verdict(
        &self,
        store: &dyn Store,
        ty: &TileYear,
        group: &str,
        t: u64,
        fp: &str,
    ) -> Result<Verdict> {
        let Some(gen) = self.latest(store, ty)? else {
            return Ok(Verdict::Stale);
        };
        if gen.catalog.fingerprint(group, t) != fp {
            return Ok(Verdict::Stale);
        }
        if !gen.is_changed(group, t) {
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

    fn done(&self, store: &dyn Store, gen: &Generation<C>) -> Result<Option<i64>> {
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

    /// Waits until objects of time chunk `t` of `group`, computed under `fp`, may be written
    /// (performing the generation's invalidation when it is due): what a bulk writer does, where
    /// the mount defers instead. False if their generation is no longer the latest.
    pub fn wait_until_writable(
        &self,
        store: &dyn Store,
        ty: &TileYear,
        group: &str,
        t: u64,
        fp: &str,
    ) -> Result<bool> {
        let mut said = false;
        loop {
            match self.verdict(store, ty, group, t, fp)? {
                Verdict::Write => return Ok(true),
                Verdict::Stale => return Ok(false),
                Verdict::Unsettled => {
                    if !said {
                        tracing::info!(
                            "{ty}: waiting for the new catalog generation to settle before writing {group} time chunk {t}"
                        );
                        said = true;
                    }
                    std::thread::sleep(self.fence.check_age());
                }
            }
        }
    }

    /// Runs the invalidation of a generation this process just published with changes on a thread
    /// of its own (not fatal if it fails: whoever next needs a changed object performs it).
    pub fn invalidate_in_background(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        g: Arc<Generation<C>>,
    ) {
        if !g.has_changes() {
            return;
        }
        let tracker = self.clone();
        let spawned = std::thread::Builder::new()
            .name("invalidate".into())
            .spawn(move || {
                if let Err(e) = tracker.invalidate(store.as_ref(), &g) {
                    tracing::error!(
                        "{}: invalidating for catalog generation {}: {e:#}",
                        g.tile_year(),
                        g.number
                    );
                }
            });
        if let Err(e) = spawned {
            tracing::error!("spawning the invalidation thread: {e}");
        }
    }

    /// Runs `gen`'s invalidation (waiting for its due time), counting what it did.
    pub fn invalidate(&self, store: &dyn Store, gen: &Generation<C>) -> Result<Invalidation> {
        let files = (self.files)(&gen.catalog)?;
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
