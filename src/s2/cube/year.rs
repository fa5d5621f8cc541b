//! A Sentinel-2 tile-year as a mount serves it under one catalog generation ([`YearState`]: its
//! documents and the chunks known to be computed, per pixel array), and what Sentinel-2 says
//! about its years to the generic year lifecycle ([`S2Years`], a `crate::cube::years::YearModel`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;

use crate::collection::View;
use crate::generation::Fence;
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
/// chunks. A newer generation gets a new `YearState` (`S2Years::state`).
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

    /// The chunks of `array` computed under this generation that have a file (all-fill chunks
    /// have none).
    pub fn computed(&self, array: PixelArray) -> Vec<ChunkIndex> {
        self.known[array.index()]
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| matches!(e, ChunkEntry::Data { .. }))
            .map(|(i, _)| *i)
            .collect()
    }
}

/// The byte ranges of a shard's inner chunks, in C order (`None`: absent).
pub type ShardIndex = Arc<[Option<std::ops::Range<u64>>]>;

crate::counters! {
    /// What refreshes of this mount published.
    pub struct RefreshStats {
        /// Scenes appended, and replaced by a newer baseline, by refreshes of this mount.
        scenes_appended,
        scenes_replaced,
    }
}

/// The tile-years of a Sentinel-2 mount.
pub type Years = crate::cube::years::Years<S2Years>;

/// What Sentinel-2 says about its tile-years (`crate::cube::years` does the rest): a search is a
/// scan of the source merged by `s2::intake::prepare_scanned` (newest baseline wins); a state
/// knows the chunks computed under its generation, per pixel array.
pub struct S2Years {
    source: Arc<dyn BandSource>,
    /// The store's layout.
    pub chunking: Chunking,
    /// What the mount presents (`Native` for a chunked store, whatever was asked).
    pub view: View,
    records: Arc<RecordWriter>,
    pub stats: RefreshStats,
}

impl S2Years {
    pub fn new(
        source: Arc<dyn BandSource>,
        chunking: Chunking,
        view: View,
        records: Arc<RecordWriter>,
    ) -> Self {
        S2Years {
            source,
            chunking,
            view: chunking.effective_view(view),
            records,
            stats: RefreshStats::default(),
        }
    }

    /// The valid chunk records of a generation (folding in those of writers that are gone).
    fn load_known(&self, store: &dyn Store, g: &Generation) -> Result<Known> {
        let ty = g.tile_year();
        let mut out: Known = Default::default();
        for a in PixelArray::of_level(g.catalog.level()) {
            self.records
                .adopt_abandoned(store, &ty, a.unit(), &g.catalog)?;
            out[a.index()] = ChunkRecord::load_valid(store, &ty, a.unit(), &g.catalog)?.chunks;
        }
        Ok(out)
    }
}

impl crate::cube::years::Served<Catalog> for YearState {
    fn generation(&self) -> &Arc<Generation> {
        &self.generation
    }
}

impl crate::cube::years::YearModel for S2Years {
    type Catalog = Catalog;
    type State = YearState;
    type Merge = crate::s2::catalog::MergeReport;

    fn source_name(&self) -> String {
        self.source.describe()
    }

    fn prepare(
        &self,
        store: &dyn Store,
        ty: &TileYear,
        fence: &Fence,
    ) -> Result<Option<crate::cube::years::Prepared<Catalog, Self::Merge>>> {
        let scan = self.source.scan(&ty.tile, ty.year)?;
        for e in &scan.errors {
            tracing::warn!("{ty}: skipped: {e}");
        }
        let p = crate::s2::intake::prepare_scanned(
            store,
            &self.source.describe(),
            ty,
            &scan,
            fence,
            self.chunking,
        );
        Ok(
            crate::intake::unless_no_scenes(p)?.map(|p| crate::cube::years::Prepared {
                generation: p.generation,
                published: p.published,
                merge: p.merge,
            }),
        )
    }

    fn state(
        &self,
        store: &dyn Store,
        g: Arc<Generation>,
        old: Option<&YearState>,
    ) -> Result<YearState> {
        let mut known = self.load_known(store, &g)?;
        if let Some(old) = old {
            for a in PixelArray::of_level(g.catalog.level()) {
                for (idx, e) in old.known[a.index()].lock().unwrap().iter() {
                    if g.catalog.fingerprint(a.res, idx.t) == old.fingerprint(a, idx.t)
                        && idx.t < g.catalog.time_chunks(a.res)
                    {
                        known[a.index()].entry(*idx).or_insert(*e);
                    }
                }
            }
        }
        YearState::new(g, self.chunking, self.view, known)
    }

    fn changed_paths(&self, old: &YearState, new: &YearState) -> Vec<String> {
        let mut out = Vec::new();
        let (old_files, new_files) = (old.files(), new.files());
        for (k, v) in new_files {
            if old_files.get(k) != Some(v) {
                out.push(k.clone());
            }
        }
        let ty = new.tile_year();
        for a in PixelArray::of_level(new.ctx.catalog.level()) {
            let n_new = new.ctx.catalog.time_chunks(a.res);
            let n_old = old.ctx.catalog.time_chunks(a.res);
            for t in 0..n_new.max(n_old) {
                if t >= n_old || t >= n_new || old.fingerprint(a, t) != new.fingerprint(a, t) {
                    out.push(format!("{ty}/{}/c/{t}/", a.path()));
                }
            }
        }
        out
    }

    fn describe(&self, catalog: &Catalog) -> String {
        format!("{} scenes", catalog.scenes.len())
    }

    fn stats_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.stats.to_json()
    }

    fn refreshed(&self, ty: &TileYear, merge: &Self::Merge) {
        self.stats.scenes_appended.add(merge.appended as u64);
        self.stats.scenes_replaced.add(merge.replaced.len() as u64);
        for (old, new) in &merge.replaced {
            tracing::info!("{ty}: {old} replaced by its newer baseline {new}");
        }
    }
}
