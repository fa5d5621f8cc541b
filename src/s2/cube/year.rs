//! The tile-years of a mount: each resolved once (the store's latest catalog generation, or a
//! first one resolved from the source and published), with the set of chunks known to be
//! computed; then moved to newer generations as they appear (a refresh of this mount, or another
//! process's). Resolution runs on the caller's thread; `Cube` makes sure that is never a FUSE
//! thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Result;

use crate::collection::View;
use crate::fs::attr::{FsError, Kind};
use crate::generation::Tracker;
use crate::s2::array::PixelArray;
use crate::s2::catalog::Catalog;
use crate::s2::chunk::YearContext;
use crate::s2::chunking::Chunking;
use crate::s2::layout::YearLayout;

type Generation = crate::generation::Generation<Catalog>;
use crate::key::{ChunkIndex, TileYear};
use crate::source::BandSource;
use crate::store::{ChunkEntry, ChunkRecord, RecordWriter, Store};

/// A resolved tile-year under one catalog generation: its context and what is known of its
/// chunks. A newer generation gets a new `YearState` (see `Years::adopt`).
pub struct YearState {
    pub ctx: YearContext,
    pub generation: Arc<Generation>,
    /// The documents of the chunked view (`None`: the mount serves the store's, `ctx.layout`).
    view_files: Option<BTreeMap<String, Vec<u8>>>,
    /// Per resolution, per time chunk: `Catalog::fingerprint` (an `scl` array's are its
    /// resolution's: it is cut along time as `data`).
    fingerprints: [Vec<String>; 3],
    /// Per pixel array: every chunk known to be computed under this generation (valid entries
    /// of the store's chunk records, and chunks computed here).
    known: [Mutex<BTreeMap<ChunkIndex, ChunkEntry>>; 5],
}

/// What is known of each pixel array's chunks (index = `PixelArray::index`).
type Known = [BTreeMap<ChunkIndex, ChunkEntry>; 5];

impl YearState {
    fn new(
        generation: Arc<Generation>,
        chunking: Chunking,
        view: View,
        known: Known,
    ) -> Result<Self> {
        let ctx = YearContext::new(Arc::new(generation.catalog.clone()), chunking)?;
        let view_files = match chunking.effective_view(view) {
            View::Native => None,
            view => Some(YearLayout::build_as(&generation.catalog, chunking, view)?.files),
        };
        let fingerprints = crate::s2::bands::Resolution::ALL.map(|res| {
            (0..generation.catalog.time_chunks(res))
                .map(|t| generation.catalog.fingerprint(res, t))
                .collect()
        });
        Ok(YearState {
            ctx,
            generation,
            view_files,
            fingerprints,
            known: known.map(Mutex::new),
        })
    }

    /// The metadata and coordinate files the mount serves for this tile-year (the store's, or
    /// the chunked view's: the same paths).
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        self.view_files.as_ref().unwrap_or(&self.ctx.layout.files)
    }

    /// Whether the mount serves the chunked view of this tile-year's sharded arrays.
    pub fn is_chunked_view(&self) -> bool {
        self.view_files.is_some()
    }

    pub fn tile_year(&self) -> TileYear {
        TileYear::new(&self.ctx.catalog.tile, self.ctx.catalog.year)
    }

    /// The fingerprint of time chunk `t` of an array under this generation.
    pub fn fingerprint(&self, array: PixelArray, t: u64) -> &str {
        self.fingerprints[array.res.index()]
            .get(t as usize)
            .map_or("", |s| s.as_str())
    }

    /// What is known of chunk `idx`.
    pub fn known(&self, array: PixelArray, idx: ChunkIndex) -> Option<ChunkEntry> {
        self.known[array.index()].lock().unwrap().get(&idx).copied()
    }

    /// Records that chunk `idx` is computed.
    pub fn record(&self, array: PixelArray, idx: ChunkIndex, entry: ChunkEntry) {
        self.known[array.index()].lock().unwrap().insert(idx, entry);
    }

    /// Names directly below the chunk directory `rel` (`c`, `c/T`, `c/T/0`, `c/T/0/Y` of `data`;
    /// `c`, `c/T`, `c/T/Y` of `scl`) that lead to computed chunks (all-fill chunks have no
    /// file), with their kinds.
    pub fn chunk_children(&self, array: PixelArray, rel: &str) -> Option<Vec<(String, Kind)>> {
        let known = self.known[array.index()].lock().unwrap();
        let data = known
            .iter()
            .filter(|(_, e)| matches!(e, ChunkEntry::Data { .. }))
            .map(|(i, _)| *i);
        chunk_dir_children(array, rel, data)
    }

    /// `chunk_children` in the chunked view: names below `rel` that lead to inner chunks of
    /// computed shards whose index `index_of` knows (it answers from memory only, so listing
    /// never reads the store); an absent inner chunk (all fill) has no file. `per`: inner
    /// chunks per shard side.
    pub fn inner_chunk_children(
        &self,
        array: PixelArray,
        rel: &str,
        per: u64,
        index_of: &dyn Fn(ChunkIndex) -> Option<ShardIndex>,
    ) -> Option<Vec<(String, Kind)>> {
        let shards: Vec<ChunkIndex> = {
            let known = self.known[array.index()].lock().unwrap();
            known
                .iter()
                .filter(|(_, e)| matches!(e, ChunkEntry::Data { .. }))
                .map(|(i, _)| *i)
                .collect()
        };
        let inner = shards.into_iter().flat_map(|s| {
            let ranges = index_of(s).unwrap_or_default();
            (0..ranges.len() as u64)
                .filter(move |k| ranges[*k as usize].is_some())
                .map(move |k| ChunkIndex {
                    t: s.t,
                    y: s.y * per + k / per,
                    x: s.x * per + k % per,
                })
        });
        chunk_dir_children(array, rel, inner)
    }
}

/// The byte ranges of a shard's inner chunks, in C order (`None`: absent).
pub type ShardIndex = Arc<[Option<std::ops::Range<u64>>]>;

/// Names directly below the chunk directory `rel` of `array` that lead to the chunks `chunks`.
fn chunk_dir_children(
    array: PixelArray,
    rel: &str,
    chunks: impl Iterator<Item = ChunkIndex>,
) -> Option<Vec<(String, Kind)>> {
    // `scl` has no band level: read its `c/T/Y` as `data`'s `c/T/0/Y`.
    let mut parts: Vec<&str> = rel.split('/').collect();
    if !array.has_bands() && parts.len() >= 2 {
        parts.insert(2, "0");
    }
    let num = |i: usize| crate::key::canonical_u64(parts[i]);
    let names: BTreeSet<u64> = match parts.as_slice() {
        ["c"] => chunks.map(|i| i.t).collect(),
        ["c", _] if array.has_bands() => {
            let t = num(1)?;
            chunks.filter(|i| i.t == t).map(|_| 0).collect()
        }
        ["c", _, "0"] => {
            let t = num(1)?;
            chunks.filter(|i| i.t == t).map(|i| i.y).collect()
        }
        ["c", _, "0", _] => {
            let (t, y) = (num(1)?, num(3)?);
            chunks
                .filter(|i| i.t == t && i.y == y)
                .map(|i| i.x)
                .collect()
        }
        _ => return None,
    };
    // c/T/0/Y (c/T/Y) holds chunk files; every level above holds directories.
    let kind = if parts.len() == 4 {
        Kind::File
    } else {
        Kind::Dir
    };
    Some(names.into_iter().map(|n| (n.to_string(), kind)).collect())
}

crate::counters! {
    /// Tile-year resolutions and refreshes.
    pub struct YearStats {
        years_resolved,
        year_errors,
        /// Source searches of resolved years (`--refresh`).
        refreshes,
        refresh_errors,
        /// Time spent in refreshes (source search, merge, publication), µs.
        refresh_micros,
        /// Scenes appended, and replaced by a newer baseline, by refreshes of this mount.
        scenes_appended,
        scenes_replaced,
        /// Newer catalog generations taken up (published here or by another process).
        generations_adopted,
    }
}

type YearSlot = Arc<OnceLock<std::result::Result<(), String>>>;

/// What changed when a tile-year moved to a newer generation.
pub struct Change {
    pub old: Arc<YearState>,
    pub new: Arc<YearState>,
}

impl Change {
    /// Paths (relative to the mount root) whose content changed from `old` to `new`: exact file
    /// paths, and directory prefixes ending in `/` under which every chunk file changed.
    pub fn paths(&self) -> Vec<String> {
        let c = self;
        let mut out = Vec::new();
        let (old, new) = (c.old.files(), c.new.files());
        for (k, v) in new {
            if old.get(k) != Some(v) {
                out.push(k.clone());
            }
        }
        let ty = c.new.tile_year();
        for a in PixelArray::of_level(c.new.ctx.catalog.level()) {
            let n_new = c.new.ctx.catalog.time_chunks(a.res);
            let n_old = c.old.ctx.catalog.time_chunks(a.res);
            for t in 0..n_new.max(n_old) {
                if t >= n_old || t >= n_new || c.old.fingerprint(a, t) != c.new.fingerprint(a, t) {
                    out.push(format!("{ty}/{}/c/{t}/", a.path()));
                }
            }
        }
        out
    }
}

/// The tile-years of a mount, each resolved at most once (a failure is not remembered, so a
/// later request retries) and then moved along the store's catalog generations.
pub struct Years {
    store: Arc<dyn Store>,
    source: Arc<dyn BandSource>,
    pub tracker: Arc<Tracker<Catalog>>,
    /// The store's layout.
    pub chunking: Chunking,
    /// What the mount presents (`Native` for a chunked store, whatever was asked).
    pub view: View,
    records: Arc<RecordWriter>,
    slots: Mutex<HashMap<TileYear, YearSlot>>,
    /// The state of each resolved year (absent: not resolved, or no scenes).
    current: Mutex<HashMap<TileYear, Arc<YearState>>>,
    pub stats: YearStats,
}

impl Years {
    pub fn new(
        store: Arc<dyn Store>,
        source: Arc<dyn BandSource>,
        tracker: Arc<Tracker<Catalog>>,
        chunking: Chunking,
        view: View,
        records: Arc<RecordWriter>,
    ) -> Self {
        Years {
            store,
            source,
            tracker,
            chunking,
            view: chunking.effective_view(view),
            records,
            slots: Mutex::new(HashMap::new()),
            current: Mutex::new(HashMap::new()),
            stats: YearStats::default(),
        }
    }

    /// Whether `ty` still has to be resolved (a request about it may take long).
    pub fn pending(&self, ty: &TileYear) -> bool {
        !self
            .slots
            .lock()
            .unwrap()
            .get(ty)
            .is_some_and(|slot| slot.get().is_some_and(|r| r.is_ok()))
    }

    /// The tile-years resolved so far that have scenes.
    pub fn resolved(&self) -> Vec<Arc<YearState>> {
        self.current.lock().unwrap().values().cloned().collect()
    }

    /// The tile-year (`None`: no scenes), resolving it on first use.
    pub fn get(&self, ty: &TileYear) -> std::result::Result<Option<Arc<YearState>>, FsError> {
        let slot = self
            .slots
            .lock()
            .unwrap()
            .entry(ty.clone())
            .or_default()
            .clone();
        let r = slot
            .get_or_init(|| match self.resolve_caught(ty) {
                Ok(ys) => {
                    self.stats.years_resolved.inc();
                    if let Some(ys) = ys {
                        self.current
                            .lock()
                            .unwrap()
                            .insert(ty.clone(), Arc::new(ys));
                    }
                    Ok(())
                }
                Err(e) => {
                    self.stats.year_errors.inc();
                    Err(format!("resolving {ty}: {e:#}"))
                }
            })
            .clone();
        if let Err(msg) = r {
            let mut g = self.slots.lock().unwrap();
            if g.get(ty).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                g.remove(ty);
            }
            return Err(FsError::io(anyhow::anyhow!(msg)));
        }
        Ok(self.current.lock().unwrap().get(ty).cloned())
    }

    /// `resolve`, with a panic turned into an error (a request must be answered either way).
    fn resolve_caught(&self, ty: &TileYear) -> Result<Option<YearState>> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.resolve(ty))).unwrap_or_else(
            |panic| anyhow::bail!("panicked: {}", crate::util::panic_message(&panic)),
        )
    }

    /// Loads the store's latest catalog generation, or resolves the catalog from the source and
    /// publishes it; loads the chunk records.
    fn resolve(&self, ty: &TileYear) -> Result<Option<YearState>> {
        let store = self.store.as_ref();
        let swept = store.sweep_temp(&ty.to_string())?;
        if swept > 0 {
            tracing::info!("{ty}: removed {swept} temporary file(s) of an interrupted run");
        }
        let generation = match crate::generation::latest(store, ty)? {
            Some(g) => {
                let g = Arc::new(g);
                if !g.has_changes() {
                    // Repair metadata a store made by an older version may lack.
                    for (key, bytes) in
                        &crate::s2::layout::YearLayout::build(&g.catalog, self.chunking)?.files
                    {
                        if store.get(key)?.as_deref() != Some(bytes.as_slice()) {
                            store.put(key, bytes)?;
                        }
                    }
                }
                tracing::info!(
                    "{ty}: {} scenes (catalog generation {} from the store)",
                    g.catalog.scenes.len(),
                    g.number
                );
                g
            }
            None => {
                let scan = self.source.scan(&ty.tile, ty.year)?;
                for e in &scan.errors {
                    tracing::warn!("{ty}: skipped: {e}");
                }
                if scan.scenes.is_empty() {
                    tracing::info!("{ty}: no scenes in {}", self.source.describe());
                    return Ok(None);
                }
                let p = crate::s2::intake::prepare_scanned(
                    store,
                    &self.source.describe(),
                    ty,
                    &scan,
                    &self.tracker.fence,
                    self.chunking,
                )?;
                self.after_publish(&p);
                tracing::info!(
                    "{ty}: {} scenes (catalog resolved from {} as generation {})",
                    p.generation.catalog.scenes.len(),
                    self.source.describe(),
                    p.generation.number
                );
                p.generation
            }
        };
        self.tracker.seed(generation.clone());
        let known = self.load_known(&generation)?;
        Ok(Some(YearState::new(
            generation,
            self.chunking,
            self.view,
            known,
        )?))
    }

    /// The valid chunk records of a generation (folding in those of writers that are gone).
    fn load_known(&self, g: &Generation) -> Result<Known> {
        let store = self.store.as_ref();
        let ty = g.tile_year();
        let mut out: Known = Default::default();
        for a in PixelArray::of_level(g.catalog.level()) {
            self.records
                .adopt_abandoned(store, &ty, a.unit(), &g.catalog)?;
            out[a.index()] = ChunkRecord::load_valid(store, &ty, a.unit(), &g.catalog)?.chunks;
        }
        Ok(out)
    }

    /// After this process published a generation with changes: its invalidation, in the
    /// background (it first waits out the grace period).
    fn after_publish(&self, p: &crate::s2::intake::Prepared) {
        if p.published {
            self.tracker
                .invalidate_in_background(self.store.clone(), p.generation.clone());
        }
    }

    /// Moves `ty` to the store's latest generation if it is newer than the one served; returns
    /// what changed.
    pub fn adopt_latest(&self, ty: &TileYear) -> Result<Option<Change>> {
        let Some(latest) = self.tracker.latest(self.store.as_ref(), ty)? else {
            return Ok(None);
        };
        self.adopt(latest)
    }

    fn adopt(&self, g: Arc<Generation>) -> Result<Option<Change>> {
        let ty = g.tile_year();
        let Some(old) = self.current.lock().unwrap().get(&ty).cloned() else {
            return Ok(None);
        };
        if old.generation.number >= g.number {
            return Ok(None);
        }
        let mut known = self.load_known(&g)?;
        // Chunks computed here under the old generation that are still valid (their time chunk
        // kept its products) may not be in the store yet: keep knowing them.
        for a in PixelArray::of_level(g.catalog.level()) {
            for (idx, e) in old.known[a.index()].lock().unwrap().iter() {
                if g.catalog.fingerprint(a.res, idx.t) == old.fingerprint(a, idx.t)
                    && idx.t < g.catalog.time_chunks(a.res)
                {
                    known[a.index()].entry(*idx).or_insert(*e);
                }
            }
        }
        let new = Arc::new(YearState::new(g.clone(), self.chunking, self.view, known)?);
        {
            let mut cur = self.current.lock().unwrap();
            match cur.get(&ty) {
                Some(c) if c.generation.number >= g.number => return Ok(None),
                _ => {
                    cur.insert(ty.clone(), new.clone());
                }
            }
        }
        self.stats.generations_adopted.inc();
        tracing::info!(
            "{ty}: now serving catalog generation {} ({} scenes, was {} with {})",
            g.number,
            g.catalog.scenes.len(),
            old.generation.number,
            old.ctx.catalog.scenes.len()
        );
        Ok(Some(Change { old, new }))
    }

    /// Searches the source again for a resolved tile-year and publishes what is new (appended
    /// acquisitions, newer baselines); then serves the latest generation.
    pub fn refresh(&self, ty: &TileYear) -> Result<Option<Change>> {
        self.stats.refreshes.inc();
        let t0 = std::time::Instant::now();
        let r = (|| -> Result<Option<Change>> {
            let scan = self.source.scan(&ty.tile, ty.year)?;
            for e in &scan.errors {
                tracing::warn!("{ty}: skipped: {e}");
            }
            let p = crate::s2::intake::prepare_scanned(
                self.store.as_ref(),
                &self.source.describe(),
                ty,
                &scan,
                &self.tracker.fence,
                self.chunking,
            )?;
            if p.published {
                self.stats.scenes_appended.add(p.merge.appended as u64);
                self.stats
                    .scenes_replaced
                    .add(p.merge.replaced.len() as u64);
                for (old, new) in &p.merge.replaced {
                    tracing::info!("{ty}: {old} replaced by its newer baseline {new}");
                }
                self.after_publish(&p);
            }
            self.tracker.seed(p.generation.clone());
            self.adopt(p.generation)
        })();
        self.stats
            .refresh_micros
            .add(t0.elapsed().as_micros() as u64);
        if r.is_err() {
            self.stats.refresh_errors.inc();
        }
        r
    }
}
