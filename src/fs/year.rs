//! The tile-years of a mount: each resolved once (its catalog from the store, or from the source
//! and then persisted with its generated metadata), with the set of chunks known to be computed.
//! Resolution runs on the caller's thread; `Cube` makes sure that is never a FUSE thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Result;

use super::cube::{FsError, Kind};
use crate::bands::Resolution;
use crate::catalog::Catalog;
use crate::chunk::YearContext;
use crate::key::{ChunkIndex, TileYear};
use crate::source::BandSource;
use crate::store::{ChunkEntry, ChunkRecord, Store};

/// A resolved tile-year: its context and what is known of its chunks.
pub struct YearState {
    pub ctx: YearContext,
    /// Per resolution: every chunk known to be computed (loaded from the store's chunk record,
    /// updated as chunks are computed).
    known: [Mutex<BTreeMap<ChunkIndex, ChunkEntry>>; 3],
}

impl YearState {
    pub fn tile_year(&self) -> TileYear {
        TileYear::new(&self.ctx.catalog.tile, self.ctx.catalog.year)
    }

    /// What is known of chunk `idx`.
    pub fn known(&self, res: Resolution, idx: ChunkIndex) -> Option<ChunkEntry> {
        self.known[res.index()].lock().unwrap().get(&idx).copied()
    }

    /// Records that chunk `idx` is computed.
    pub fn record(&self, res: Resolution, idx: ChunkIndex, entry: ChunkEntry) {
        self.known[res.index()].lock().unwrap().insert(idx, entry);
    }

    /// Names directly below the chunk directory `rel` (`c`, `c/T`, `c/T/0`, `c/T/0/Y`) that lead
    /// to computed data chunks (all-fill chunks have no file), with their kinds.
    pub fn chunk_children(&self, res: Resolution, rel: &str) -> Option<Vec<(String, Kind)>> {
        let parts: Vec<&str> = rel.split('/').collect();
        let num = |i: usize| crate::key::canonical_u64(parts[i]);
        let known = self.known[res.index()].lock().unwrap();
        let data = known
            .iter()
            .filter(|(_, e)| matches!(e, ChunkEntry::Data { .. }))
            .map(|(i, _)| *i);
        let names: BTreeSet<u64> = match parts.as_slice() {
            ["c"] => data.map(|i| i.t).collect(),
            ["c", _] => {
                let t = num(1)?;
                data.filter(|i| i.t == t).map(|_| 0).collect()
            }
            ["c", _, "0"] => {
                let t = num(1)?;
                data.filter(|i| i.t == t).map(|i| i.y).collect()
            }
            ["c", _, "0", _] => {
                let (t, y) = (num(1)?, num(3)?);
                data.filter(|i| i.t == t && i.y == y).map(|i| i.x).collect()
            }
            _ => return None,
        };
        // c/T/0/Y holds chunk files; every level above holds directories.
        let kind = if parts.len() == 4 {
            Kind::File
        } else {
            Kind::Dir
        };
        Some(names.into_iter().map(|n| (n.to_string(), kind)).collect())
    }
}

crate::counters! {
    /// Tile-year resolutions.
    pub struct YearStats { years_resolved, year_errors }
}

type YearSlot = Arc<OnceLock<std::result::Result<Option<Arc<YearState>>, String>>>;

/// The tile-years of a mount, each resolved at most once (a failure is not remembered, so a
/// later request retries).
pub struct Years {
    store: Arc<dyn Store>,
    source: Arc<dyn BandSource>,
    slots: Mutex<HashMap<TileYear, YearSlot>>,
    pub stats: YearStats,
}

impl Years {
    pub fn new(store: Arc<dyn Store>, source: Arc<dyn BandSource>) -> Self {
        Years {
            store,
            source,
            slots: Mutex::new(HashMap::new()),
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
                    Ok(ys.map(Arc::new))
                }
                Err(e) => {
                    self.stats.year_errors.inc();
                    let msg = format!("{e:#}");
                    tracing::error!("resolving {ty}: {msg}");
                    Err(msg)
                }
            })
            .clone();
        if r.is_err() {
            let mut g = self.slots.lock().unwrap();
            if g.get(ty).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                g.remove(ty);
            }
        }
        r.map_err(|_| FsError::Io)
    }

    /// `resolve`, with a panic turned into an error (a request must be answered either way).
    fn resolve_caught(&self, ty: &TileYear) -> Result<Option<YearState>> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.resolve(ty))).unwrap_or_else(
            |panic| anyhow::bail!("panicked: {}", crate::util::panic_message(&panic)),
        )
    }

    /// Loads the persisted catalog, or resolves it from the source and persists it; makes sure
    /// the store holds the generated metadata; loads the chunk records.
    fn resolve(&self, ty: &TileYear) -> Result<Option<YearState>> {
        let store = self.store.as_ref();
        let (tile, year) = (ty.tile.as_str(), ty.year);
        let swept = store.sweep_temp(&ty.to_string())?;
        if swept > 0 {
            tracing::info!("{ty}: removed {swept} temporary file(s) of an interrupted run");
        }
        let ctx = match Catalog::load(store, tile, year)? {
            Some(catalog) => {
                let ctx = YearContext::new(Arc::new(catalog))?;
                for (key, bytes) in &ctx.layout.files {
                    if store.get(key)?.as_deref() != Some(bytes.as_slice()) {
                        store.put(key, bytes)?;
                    }
                }
                tracing::info!(
                    "{ty}: {} scenes (catalog from the store)",
                    ctx.catalog.scenes.len()
                );
                ctx
            }
            None => {
                let scan = self.source.scan(tile, year)?;
                for e in &scan.errors {
                    tracing::warn!("{ty}: skipped: {e}");
                }
                if scan.scenes.is_empty() {
                    tracing::info!("{ty}: no scenes in {}", self.source.describe());
                    return Ok(None);
                }
                let (ctx, _) = crate::intake::prepare_scanned(
                    store,
                    &self.source.describe(),
                    tile,
                    year,
                    &scan,
                )?;
                tracing::info!(
                    "{ty}: {} scenes (catalog resolved from {} and persisted)",
                    ctx.catalog.scenes.len(),
                    self.source.describe()
                );
                ctx
            }
        };
        let load = |res: Resolution| -> Result<Mutex<BTreeMap<ChunkIndex, ChunkEntry>>> {
            Ok(Mutex::new(
                ChunkRecord::load(store, &ty.record_key(res))?.chunks,
            ))
        };
        Ok(Some(YearState {
            known: [
                load(Resolution::R10)?,
                load(Resolution::R20)?,
                load(Resolution::R60)?,
            ],
            ctx,
        }))
    }
}
