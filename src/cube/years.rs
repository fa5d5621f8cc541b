//! The year lifecycle of a mount, written once for every collection: each tile-year is resolved
//! at most once (the store's latest catalog generation, or a first one prepared from the source
//! and published), then moved along the store's generations as they appear — a refresh of this
//! mount ([`Years::refresh`]) or another process's publication ([`Years::adopt_latest`]).
//!
//! What a collection says is [`YearModel`]: how a search of its source is merged into a
//! generation, what it serves of a tile-year under one generation (its [`YearModel::State`]),
//! and which paths change between two states. Everything else — single resolution, the sweep of
//! an interrupted run's temporary files, the repair of an older store's documents, seeding the
//! fence's tracker, the background invalidation of what this mount publishes, the counters — is
//! here. Resolution runs on the caller's thread: a cube makes sure that is never a FUSE thread
//! (`pending` tells it when a request may have to wait).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Result;

use crate::fs::attr::FsError;
use crate::fs::refresh::LivingYears;
use crate::generation::{AxisCatalog, Fence, Generation, Tracker};
use crate::key::TileYear;
use crate::store::Store;

pub use crate::intake::Prepared;

/// What a collection says about its tile-years.
pub trait YearModel: Send + Sync + 'static {
    type Catalog: AxisCatalog;
    /// What the mount serves of a tile-year under one generation (its documents, and what it
    /// knows of the objects computed under it).
    type State: Served<Self::Catalog> + crate::cube::tree::YearTree;
    /// What a merge of a search changed (scenes appended and replaced, days changed, …).
    type Merge;

    /// Where the items come from, for the log.
    fn source_name(&self) -> String;

    /// Searches the source for `ty` and merges what it finds into the store's latest
    /// generation, publishing the next one when the search grows it (of two processes that do
    /// so at once, one publishes and the other merges into the winner's). `None`: the source
    /// has no items for `ty`.
    fn prepare(
        &self,
        store: &dyn Store,
        ty: &TileYear,
        fence: &Fence,
    ) -> Result<Option<Prepared<Self::Catalog, Self::Merge>>>;

    /// The state served under `g`. `old` is the state of the generation served before, if any:
    /// objects it computed that `g` keeps valid (their time chunk's fingerprint is unchanged)
    /// may not be in the store yet, so the new state keeps knowing them.
    fn state(
        &self,
        store: &dyn Store,
        g: Arc<Generation<Self::Catalog>>,
        old: Option<&Self::State>,
    ) -> Result<Self::State>;

    /// Paths (relative to the mount root) whose content differs between two states: exact file
    /// paths, and directory prefixes ending in `/` under which every object file changed.
    fn changed_paths(&self, old: &Self::State, new: &Self::State) -> Vec<String>;

    /// The catalog's size in the collection's words ("8 scenes", "30 days, 41 slices").
    fn describe(&self, catalog: &Self::Catalog) -> String;

    /// A refresh of this mount published `merge`: log it and count it.
    fn refreshed(&self, _ty: &TileYear, _merge: &Self::Merge) {}

    /// The collection's counters of its years (merged into the `fs` section of the statistics).
    fn stats_json(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// `ty` now serves `new` instead of `old` (to drop what only `old` needed).
    fn adopted(&self, _ty: &TileYear, _old: &Self::State, _new: &Self::State) {}
}

/// A state knows the generation it serves.
pub trait Served<C>: Send + Sync + 'static {
    fn generation(&self) -> &Arc<Generation<C>>;
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
        /// Newer catalog generations taken up (published here or by another process).
        generations_adopted,
    }
}

/// A tile-year that moved to a newer generation.
pub struct Change<S> {
    pub old: Arc<S>,
    pub new: Arc<S>,
}

type YearSlot = Arc<OnceLock<std::result::Result<(), String>>>;

/// The tile-years of a mount, each resolved at most once (a failure is not remembered, so a
/// later request retries) and then moved along the store's catalog generations.
pub struct Years<M: YearModel> {
    store: Arc<dyn Store>,
    pub model: M,
    pub tracker: Arc<Tracker<M::Catalog>>,
    slots: Mutex<HashMap<TileYear, YearSlot>>,
    /// The state of each resolved year (absent: not resolved, or no items).
    current: Mutex<HashMap<TileYear, Arc<M::State>>>,
    pub stats: YearStats,
}

impl<M: YearModel> Years<M> {
    pub fn new(store: Arc<dyn Store>, model: M, tracker: Arc<Tracker<M::Catalog>>) -> Self {
        Years {
            store,
            model,
            tracker,
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

    /// The tile-years resolved so far that have items.
    pub fn resolved(&self) -> Vec<Arc<M::State>> {
        self.current.lock().unwrap().values().cloned().collect()
    }

    /// The tile-year's state (`None`: no items), resolving it on first use.
    pub fn get(&self, ty: &TileYear) -> std::result::Result<Option<Arc<M::State>>, FsError> {
        let slot = self
            .slots
            .lock()
            .unwrap()
            .entry(ty.clone())
            .or_default()
            .clone();
        let r = slot
            .get_or_init(|| match self.resolve_caught(ty) {
                Ok(state) => {
                    self.stats.years_resolved.inc();
                    if let Some(state) = state {
                        self.current
                            .lock()
                            .unwrap()
                            .insert(ty.clone(), Arc::new(state));
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
    fn resolve_caught(&self, ty: &TileYear) -> Result<Option<M::State>> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.resolve(ty))).unwrap_or_else(
            |panic| anyhow::bail!("panicked: {}", crate::util::panic_message(&panic)),
        )
    }

    /// Loads the store's latest catalog generation, or prepares one from the source and
    /// publishes it; then the state under it.
    fn resolve(&self, ty: &TileYear) -> Result<Option<M::State>> {
        let store = self.store.as_ref();
        let swept = store.sweep_temp(&ty.to_string())?;
        if swept > 0 {
            tracing::info!("{ty}: removed {swept} temporary file(s) of an interrupted run");
        }
        let generation = match crate::generation::latest::<M::Catalog>(store, ty)? {
            Some(g) => {
                if !g.has_changes() {
                    // The store is a Zarr store of its own (readable without the mount):
                    // repair documents a store made by an older version lacks.
                    for (key, bytes) in self.tracker.documents(&g.catalog)? {
                        if store.get(&key)?.as_deref() != Some(bytes.as_slice()) {
                            store.put(&key, &bytes)?;
                        }
                    }
                }
                tracing::info!(
                    "{ty}: {} (catalog generation {} from the store)",
                    self.model.describe(&g.catalog),
                    g.number
                );
                Arc::new(g)
            }
            None => {
                let Some(p) = self.model.prepare(store, ty, &self.tracker.fence)? else {
                    tracing::info!("{ty}: no items in {}", self.model.source_name());
                    return Ok(None);
                };
                self.after_publish(&p);
                tracing::info!(
                    "{ty}: {} (catalog resolved from {} as generation {})",
                    self.model.describe(&p.generation.catalog),
                    self.model.source_name(),
                    p.generation.number
                );
                p.generation
            }
        };
        self.tracker.seed(generation.clone());
        Ok(Some(self.model.state(store, generation, None)?))
    }

    /// After this process published a generation with changes: its invalidation, in the
    /// background (it first waits out the grace period; not fatal if it fails: whoever next
    /// needs a changed object performs it).
    fn after_publish(&self, p: &Prepared<M::Catalog, M::Merge>) {
        if p.published {
            self.tracker
                .invalidate_in_background(self.store.clone(), p.generation.clone());
        }
    }

    /// Moves `ty` to the store's latest generation if it is newer than the one served; returns
    /// what changed.
    pub fn adopt_latest(&self, ty: &TileYear) -> Result<Option<Change<M::State>>> {
        let Some(latest) = self.tracker.latest(self.store.as_ref(), ty)? else {
            return Ok(None);
        };
        self.adopt(latest)
    }

    fn adopt(&self, g: Arc<Generation<M::Catalog>>) -> Result<Option<Change<M::State>>> {
        let ty = g.tile_year();
        let Some(old) = self.current.lock().unwrap().get(&ty).cloned() else {
            return Ok(None);
        };
        if old.generation().number >= g.number {
            return Ok(None);
        }
        let new = Arc::new(
            self.model
                .state(self.store.as_ref(), g.clone(), Some(old.as_ref()))?,
        );
        {
            let mut cur = self.current.lock().unwrap();
            match cur.get(&ty) {
                Some(c) if c.generation().number >= g.number => return Ok(None),
                _ => {
                    cur.insert(ty.clone(), new.clone());
                }
            }
        }
        self.model.adopted(&ty, &old, &new);
        self.stats.generations_adopted.inc();
        tracing::info!(
            "{ty}: now serving catalog generation {} ({}; was {} with {})",
            g.number,
            self.model.describe(&g.catalog),
            old.generation().number,
            self.model.describe(&old.generation().catalog)
        );
        Ok(Some(Change { old, new }))
    }

    /// Searches the source again for a resolved tile-year and publishes what is new; then
    /// serves the latest generation.
    pub fn refresh(&self, ty: &TileYear) -> Result<Option<Change<M::State>>> {
        self.stats.refreshes.inc();
        let t0 = std::time::Instant::now();
        let r = (|| -> Result<Option<Change<M::State>>> {
            let Some(p) = self
                .model
                .prepare(self.store.as_ref(), ty, &self.tracker.fence)?
            else {
                return Ok(None);
            };
            if p.published {
                tracing::info!(
                    "{ty}: published catalog generation {} from {}",
                    p.generation.number,
                    self.model.source_name()
                );
                self.model.refreshed(ty, &p.merge);
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

    /// How often the store is polled for other processes' generations: the fence's check age
    /// (at least 100 ms).
    pub fn poll_period(&self) -> std::time::Duration {
        self.tracker
            .fence
            .check_age()
            .max(std::time::Duration::from_millis(100))
    }
}

impl<M: YearModel> LivingYears for Years<M> {
    fn resolved_years(&self) -> Vec<TileYear> {
        self.current.lock().unwrap().keys().cloned().collect()
    }

    fn refresh_year(&self, ty: &TileYear) -> Result<Option<Vec<String>>> {
        Ok(self
            .refresh(ty)?
            .map(|c| self.model.changed_paths(&c.old, &c.new)))
    }

    fn poll_year(&self, ty: &TileYear) -> Result<Option<Vec<String>>> {
        Ok(self
            .adopt_latest(ty)?
            .map(|c| self.model.changed_paths(&c.old, &c.new)))
    }
}
