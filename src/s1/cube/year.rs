//! A Sentinel-1 tile-year as the mount serves it under one catalog generation ([`S1Year`]: its
//! documents and the shard regions known to be computed), and what Sentinel-1 says about its
//! years to the generic year lifecycle ([`S1Years`], a `crate::cube::years::YearModel`): a
//! search is an STAC search merged by `s1::intake::prepare` (new days appended, late slices
//! merged into their day).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Result;

pub use super::Region;
use crate::cube::years::{Prepared, Served, YearModel};
use crate::generation::{AxisCatalog, Fence, Generation};
use crate::key::TileYear;
use crate::s1::catalog::{Merged, S1Catalog};
use crate::s1::grid::Equi7Tile;
use crate::s1::shard::ShardPos;
use crate::s1::source::S1Source;
use crate::s1::{layout, GROUP, VARIABLES};
use crate::store::{ChunkRecord, Store};

/// What is known of each object (region, variable): its size, or `None` for all fill (computed
/// here, or read from the store). Listings and getattr answer from it.
pub type Known = Mutex<HashMap<(Region, usize), Option<u64>>>;

/// The tile-years of a Sentinel-1 mount.
pub type Years = crate::cube::years::Years<S1Years>;

/// One resolved tile-year under one catalog generation.
pub struct S1Year {
    pub generation: Arc<Generation<S1Catalog>>,
    pub catalog: Arc<S1Catalog>,
    /// Per time chunk: `S1Catalog::fingerprint`.
    pub fingerprints: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
    /// Regions known to be computed under this generation (recorded in the store, or computed
    /// by this mount): their objects are read from the cache, the queue or the store.
    pub done: Mutex<HashSet<ShardPos>>,
}

impl S1Year {
    pub fn fp(&self, t: u64) -> &str {
        self.fingerprints.get(t as usize).map_or("", |s| s.as_str())
    }
}

impl Served<S1Catalog> for S1Year {
    fn generation(&self) -> &Arc<Generation<S1Catalog>> {
        &self.generation
    }
}

crate::counters! {
    /// What refreshes of this mount published.
    pub struct S1RefreshStats {
        /// Days appended to the time axis.
        days_appended,
        /// Publications that changed days already on the axis (late slices).
        days_changed,
    }
}

/// Sentinel-1's side of the year lifecycle.
pub struct S1Years {
    source: S1Source,
    /// The cube's knowledge of objects, pruned when a year moves on.
    known: Arc<Known>,
    pub stats: S1RefreshStats,
}

impl S1Years {
    pub fn new(source: S1Source, known: Arc<Known>) -> Self {
        S1Years {
            source,
            known,
            stats: S1RefreshStats::default(),
        }
    }
}

impl YearModel for S1Years {
    type Catalog = S1Catalog;
    type State = S1Year;
    type Merge = Merged;

    fn source_name(&self) -> String {
        self.source.describe()
    }

    fn prepare(
        &self,
        store: &dyn Store,
        ty: &TileYear,
        fence: &Fence,
    ) -> Result<Option<Prepared<S1Catalog, Merged>>> {
        let tile: Equi7Tile = ty.tile.parse().map_err(anyhow::Error::msg)?;
        let p = crate::s1::intake::prepare(store, &self.source, tile, ty.year, fence);
        crate::intake::unless_no_scenes(p)
    }

    /// The documents and the regions recorded under `g` (a region recorded under an older
    /// generation counts when its time chunk's fingerprint is unchanged; one this mount computed
    /// and has not recorded yet is carried over from `old`).
    fn state(
        &self,
        store: &dyn Store,
        g: Arc<Generation<S1Catalog>>,
        old: Option<&S1Year>,
    ) -> Result<S1Year> {
        let catalog = Arc::new(g.catalog.clone());
        let fingerprints: Vec<String> = (0..catalog.time_chunks())
            .map(|t| catalog.fingerprint(t))
            .collect();
        let fp_of = |t: u64| fingerprints.get(t as usize).cloned();
        let record = ChunkRecord::load_matching(store, &g.tile_year(), GROUP, &fp_of)?;
        let mut done: HashSet<ShardPos> = record
            .chunks
            .keys()
            .map(|i| ShardPos {
                t: i.t,
                y: i.y,
                x: i.x,
            })
            .collect();
        if let Some(old) = old {
            done.extend(
                old.done
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|p| fp_of(p.t).as_deref() == Some(old.fp(p.t))),
            );
        }
        Ok(S1Year {
            files: layout::build(&catalog)?,
            fingerprints,
            catalog,
            generation: g,
            done: Mutex::new(done),
        })
    }

    /// The documents that differ, and the shard directories (`ARRAY/c/T/`) of every time chunk
    /// whose slices differ.
    fn changed_paths(&self, old: &S1Year, new: &S1Year) -> Vec<String> {
        let ty = new.generation.tile_year();
        let mut out: Vec<String> = new
            .files
            .iter()
            .filter(|(k, v)| old.files.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        let changed = old
            .catalog
            .changed_time_chunks(&new.catalog, GROUP)
            .into_iter();
        for t in changed {
            for v in VARIABLES.iter() {
                out.push(format!("{ty}/{GROUP}/{}/c/{t}/", v.name));
            }
        }
        out
    }

    fn describe(&self, catalog: &S1Catalog) -> String {
        format!(
            "{} days, {} slices",
            catalog.days.len(),
            catalog.slice_count()
        )
    }

    fn stats_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.stats.to_json()
    }

    fn refreshed(&self, ty: &TileYear, merge: &Merged) {
        self.stats.days_appended.add(merge.appended as u64);
        if merge.changed {
            self.stats.days_changed.inc();
            tracing::info!("{ty}: days on the axis changed by late slices");
        }
    }

    /// Objects of time chunks the new generation changed are never asked for again.
    fn adopted(&self, ty: &TileYear, _old: &S1Year, new: &S1Year) {
        self.known
            .lock()
            .unwrap()
            .retain(|((t, p, fp), _), _| t != ty || fp.as_str() == new.fp(p.t));
    }
}
