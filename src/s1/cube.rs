//! The Sentinel-1 σ⁰ cube as a tree of files (`datacube mount --collection sentinel-1-sig0`):
//! `/TILE/YEAR/20m/` with the sharded arrays of `crate::s1::layout`.
//!
//! It lives on the same core as the Sentinel-2 cube: a tile-year is served under the store's
//! latest catalog generation (`generation`, resolved once, on a pool, from the store or else the
//! source and published), moved to newer generations as a refresh of this mount or another
//! process publishes them (`refresh::LivingYears`: new days appended, late slices merged into
//! their day), and every object is persisted by the shared `writeback` queue (bounded, retried,
//! each PUT fenced against the latest generation, the region recorded after its objects).
//!
//! What is its own: a shard file is materialized on its first lookup, on the worker pool, under
//! single flight per shard *region* (the five arrays of a region come from the same slice
//! windows, so one computation answers all five). Caches, flights and the queue are keyed by the
//! region and the fingerprint of its time chunk, so a region of an older generation is never
//! served for a newer one. A shard whose every value is fill has no object: its lookup answers
//! ENOENT, which Zarr readers take as fill. A failed materialization answers EIO (logged with the
//! shard, item and file), caches and persists nothing, and the next read tries again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::json;

use crate::cache::Bytes;
use crate::fs::attr::{Attr, CubeStats, FsError, Kind};
use crate::fs::content::Content;
use crate::fs::node::{classify, static_children, Node, STATS_DIR};
use crate::fs::pool::WorkPool;
use crate::fs::refresh::{LivingYears, OnChange, RefreshPolicy, Refresher};
use crate::fs::view::{AttrDone, ContentDone, CubeView};
use crate::generation::{Fence, Generation, Tracker};
use crate::key::{canonical_u64, ChunkIndex, TileYear};
use crate::s1::catalog::S1Catalog;
use crate::s1::grid::Equi7Tile;
use crate::s1::shard::{self, Encoders, OrbitCache, ShardPos, SHARDS_PER_SIDE};
use crate::s1::source::{GdalReader, S1Source};
use crate::s1::{layout, GROUP, VARIABLES};
use crate::store::{ChunkEntry, ChunkRecord, RecordWriter, Store};
use crate::util::{ByteLru, SingleFlight};
use crate::writeback::{Limits, WriteJob, Writeback};

/// How the S1 mount is set up.
#[derive(Debug, Clone)]
pub struct S1Config {
    pub tiles: Vec<Equi7Tile>,
    pub years: Vec<i32>,
    /// Cap of the encoded-shard LRU.
    pub cache_bytes: usize,
    /// Concurrent materializations and store reads (each materialization also uses rayon's
    /// threads for its inner chunks).
    pub workers: usize,
    /// Timing of the store's consistency protocol.
    pub fence: Fence,
    /// Which resolved years are searched again, how often.
    pub refresh: RefreshPolicy,
    pub writeback: Limits,
}

crate::counters! {
    /// What the S1 cube did for shard requests and its years.
    pub struct S1Stats {
        shard_requests, from_cache, from_pending, from_store, materialized, materialize_errors,
        store_errors, flight_joins, years_resolved, year_errors, refreshes, refresh_errors,
        generations_adopted,
        /// Stored objects that were not what this mount computed (missing, or another size):
        /// computed again.
        recomputed,
    }
}

/// One resolved tile-year under one catalog generation.
struct S1Year {
    generation: Arc<Generation<S1Catalog>>,
    catalog: Arc<S1Catalog>,
    /// Per time chunk: `S1Catalog::fingerprint`.
    fingerprints: Vec<String>,
    files: BTreeMap<String, Vec<u8>>,
    /// Regions known to be computed under this generation (recorded in the store, or computed
    /// by this mount): their objects are read from the cache, the queue or the store.
    done: Mutex<HashSet<ShardPos>>,
}

impl S1Year {
    fn fp(&self, t: u64) -> &str {
        self.fingerprints.get(t as usize).map_or("", |s| s.as_str())
    }
}

/// A shard region under one catalog: tile-year, position, fingerprint of its time chunk.
type Region = (TileYear, ShardPos, String);
type ShardBytes = Arc<[Option<Bytes>; 5]>;
/// One shard object (`None`: all fill, no object).
type Shard = Option<Bytes>;
type ShardDone = Box<dyn FnOnce(Result<Shard, FsError>) + Send>;

struct Shared {
    store: Arc<dyn Store>,
    source: S1Source,
    reader: GdalReader,
    orbits: OrbitCache,
    encoders: Encoders,
    cache: Mutex<ByteLru<(Region, usize), Shard>>,
    /// What is known of each object: its size, or `None` for all fill (computed here, or read
    /// from the store). Listings and getattr answer from it.
    known: Mutex<HashMap<(Region, usize), Option<u64>>>,
    flights: Arc<SingleFlight<Region, ShardBytes, FsError>>,
    workers: WorkPool,
    writeback: Writeback,
    tracker: Arc<Tracker<S1Catalog>>,
    stats: S1Stats,
}

/// The S1 cube.
pub struct S1Cube {
    cfg: S1Config,
    tile_names: Vec<String>,
    shared: Arc<Shared>,
    years: Mutex<HashMap<TileYear, Option<Arc<S1Year>>>>,
    year_flights: Arc<SingleFlight<TileYear, Option<Arc<S1Year>>, String>>,
    year_pool: WorkPool,
    started: chrono::DateTime<chrono::Utc>,
    fs_stats: CubeStats,
}

/// What a path inside a tile-year is.
enum InYear {
    File(Bytes),
    Dir,
    /// `ARR/c`, `ARR/c/T`, `ARR/c/T/Y`: the known shards below, as (name, kind).
    ShardDir(Vec<String>),
    Shard(ShardPos, usize),
}

impl S1Cube {
    pub fn new(cfg: S1Config, store: Arc<dyn Store>, source: S1Source) -> Result<Arc<Self>> {
        crate::collection::check_store(store.as_ref(), crate::s1::NAME)?;
        let tracker = Arc::new(crate::s1::intake::tracker(cfg.fence));
        let shared = Arc::new(Shared {
            reader: source.reader(),
            writeback: Writeback::start(
                store.clone(),
                tracker.clone(),
                Arc::new(RecordWriter::new()),
                cfg.writeback,
            ),
            store,
            source,
            orbits: OrbitCache::default(),
            encoders: Encoders::new()?,
            cache: Mutex::new(ByteLru::unpinned(cfg.cache_bytes, |b: &Shard| {
                b.as_ref().map_or(64, |b| b.len() + 64)
            })),
            known: Mutex::new(HashMap::new()),
            flights: Arc::new(SingleFlight::new()),
            workers: WorkPool::new("s1-shard", cfg.workers),
            tracker,
            stats: S1Stats::default(),
        });
        Ok(Arc::new(S1Cube {
            tile_names: cfg.tiles.iter().map(|t| t.to_string()).collect(),
            years: Mutex::new(HashMap::new()),
            year_flights: Arc::new(SingleFlight::new()),
            year_pool: WorkPool::new("s1-year", 2),
            started: chrono::Utc::now(),
            fs_stats: CubeStats::default(),
            shared,
            cfg,
        }))
    }

    fn tile_year_of(&self, path: &str) -> Option<TileYear> {
        match classify(path, &self.tile_names, &self.cfg.years)? {
            Node::Year(t, y)
            | Node::InYear {
                tile: t, year: y, ..
            } => Some(TileYear::new(t, y)),
            _ => None,
        }
    }

    /// The tile-year, resolved once: the store's latest generation, else one built from the
    /// source and published. `None` when the source has no items for it.
    fn year(&self, ty: &TileYear) -> Result<Option<Arc<S1Year>>, FsError> {
        if let Some(y) = self.years.lock().unwrap().get(ty) {
            return Ok(y.clone());
        }
        let r = self.year_flights.run(ty.clone(), || {
            self.resolve_year(ty)
                .map_err(|e| format!("{ty}: resolving the tile-year: {e:#}"))
        });
        match r {
            Ok(y) => {
                let mut years = self.years.lock().unwrap();
                // A refresh may have moved it on meanwhile.
                let y = years.entry(ty.clone()).or_insert(y).clone();
                Ok(y)
            }
            Err(msg) => {
                self.shared.stats.year_errors.inc();
                Err(FsError::io(anyhow::anyhow!(msg)))
            }
        }
    }

    fn resolve_year(&self, ty: &TileYear) -> Result<Option<Arc<S1Year>>> {
        let tile: Equi7Tile = ty.tile.parse().map_err(anyhow::Error::msg)?;
        let store = self.shared.store.as_ref();
        let swept = store.sweep_temp(&ty.to_string())?;
        if swept > 0 {
            tracing::info!("{ty}: removed {swept} temporary file(s) of an interrupted run");
        }
        let generation = match crate::generation::latest::<S1Catalog>(store, ty)? {
            Some(g) => {
                if !g.has_changes() {
                    // The store is a Zarr store of its own (readable without the mount, and
                    // `datacube info` knows its collection): repair what an older run lacks.
                    for (key, bytes) in layout::build(&g.catalog)? {
                        if store.get(&key)?.as_deref() != Some(&bytes[..]) {
                            store.put(&key, &bytes)?;
                        }
                    }
                }
                Arc::new(g)
            }
            None => {
                match crate::s1::intake::prepare(
                    store,
                    &self.shared.source,
                    tile,
                    ty.year,
                    &self.cfg.fence,
                ) {
                    Ok(p) => {
                        self.after_publish(&p);
                        p.generation
                    }
                    Err(e) if e.is::<crate::intake::NoScenes>() => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        };
        self.shared.tracker.seed(generation.clone());
        tracing::info!(
            "{ty}: {} days, {} slices (catalog generation {})",
            generation.catalog.days.len(),
            generation.catalog.slice_count(),
            generation.number
        );
        self.shared.stats.years_resolved.inc();
        Ok(Some(Arc::new(self.year_state(generation)?)))
    }

    /// The state of a tile-year under `g`: its documents and the regions recorded under it.
    fn year_state(&self, g: Arc<Generation<S1Catalog>>) -> Result<S1Year> {
        let catalog = Arc::new(g.catalog.clone());
        let fingerprints: Vec<String> = (0..catalog.time_chunks())
            .map(|t| catalog.fingerprint(t))
            .collect();
        let fp_of = |t: u64| fingerprints.get(t as usize).cloned();
        let record =
            ChunkRecord::load_matching(self.shared.store.as_ref(), &g.tile_year(), GROUP, &fp_of)?;
        let done = record
            .chunks
            .keys()
            .map(|i| ShardPos {
                t: i.t,
                y: i.y,
                x: i.x,
            })
            .collect();
        Ok(S1Year {
            files: layout::build(&catalog)?,
            fingerprints,
            catalog,
            generation: g,
            done: Mutex::new(done),
        })
    }

    /// Starts the invalidation of a generation this mount published with changes (not fatal if
    /// it fails: whoever next needs the changed regions performs it).
    fn after_publish(&self, p: &crate::s1::intake::Prepared) {
        if p.published {
            self.shared
                .tracker
                .invalidate_in_background(self.shared.store.clone(), p.generation.clone());
        }
    }

    /// Serves `g` for `ty` if it is newer than the generation served; the paths that changed.
    fn adopt(&self, ty: &TileYear, g: Arc<Generation<S1Catalog>>) -> Result<Option<Vec<String>>> {
        let old = match self.years.lock().unwrap().get(ty) {
            Some(Some(y)) => y.clone(),
            _ => return Ok(None),
        };
        if old.generation.number >= g.number {
            return Ok(None);
        }
        let new = Arc::new(self.year_state(g)?);
        {
            let mut years = self.years.lock().unwrap();
            if let Some(Some(c)) = years.get(ty) {
                if c.generation.number >= new.generation.number {
                    return Ok(None);
                }
            }
            years.insert(ty.clone(), Some(new.clone()));
        }
        // Objects of time chunks this generation changed are never asked for again.
        self.shared
            .known
            .lock()
            .unwrap()
            .retain(|((t, p, fp), _), _| t != ty || fp.as_str() == new.fp(p.t));
        self.shared.stats.generations_adopted.inc();
        tracing::info!(
            "{ty}: now serving catalog generation {} ({} days, was {} with {})",
            new.generation.number,
            new.catalog.days.len(),
            old.generation.number,
            old.catalog.days.len()
        );
        Ok(Some(changed_paths(ty, &old, &new)))
    }

    /// What `rest` (the path below `TILE/YEAR/`) is.
    fn in_year(&self, ty: &TileYear, y: &S1Year, path: &str, rest: &str) -> Option<InYear> {
        if let Some(b) = y.files.get(path) {
            return Some(InYear::File(b.as_slice().into()));
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let var = VARIABLES.iter().position(|v| parts.get(1) == Some(&v.name));
        if let (Some(v), true) = (
            var,
            parts.len() >= 3 && parts[0] == GROUP && parts[2] == "c",
        ) {
            let nt = y.catalog.time_chunks();
            let idx = |i: usize, n: u64| canonical_u64(parts[i]).filter(|x| *x < n);
            let known = |f: &dyn Fn(&ShardPos) -> Option<String>| {
                let known = self.shared.known.lock().unwrap();
                let mut names: Vec<String> = known
                    .iter()
                    .filter(|(((r, p, fp), vi), size)| {
                        r == ty && *vi == v && size.is_some() && fp.as_str() == y.fp(p.t)
                    })
                    .filter_map(|(((_, p, _), _), _)| f(p))
                    .collect();
                names.sort_by_key(|n| canonical_u64(n));
                names.dedup();
                names
            };
            return match parts.len() {
                3 => Some(InYear::ShardDir(known(&|p| Some(p.t.to_string())))),
                4 => {
                    let t = idx(3, nt)?;
                    Some(InYear::ShardDir(known(&|p| {
                        (p.t == t).then(|| p.y.to_string())
                    })))
                }
                5 => {
                    let (t, sy) = (idx(3, nt)?, idx(4, SHARDS_PER_SIDE)?);
                    Some(InYear::ShardDir(known(&|p| {
                        (p.t == t && p.y == sy).then(|| p.x.to_string())
                    })))
                }
                6 => Some(InYear::Shard(
                    ShardPos {
                        t: idx(3, nt)?,
                        y: idx(4, SHARDS_PER_SIDE)?,
                        x: idx(5, SHARDS_PER_SIDE)?,
                    },
                    v,
                )),
                _ => None,
            };
        }
        let prefix = format!("{path}/");
        y.files
            .range(prefix.clone()..)
            .next()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|_| InYear::Dir)
    }

    fn resolve(&self, path: &str) -> Result<Resolved, FsError> {
        let node = classify(path, &self.tile_names, &self.cfg.years).ok_or(FsError::NotFound)?;
        Ok(match node {
            Node::Root | Node::StatsDir | Node::Tile(_) | Node::Year(..) => Resolved::Dir,
            Node::RootMeta => Resolved::File(layout::root_group_file().into()),
            Node::TileMeta(t) => {
                let tile: Equi7Tile = t.parse().map_err(|_| FsError::NotFound)?;
                Resolved::File(layout::tile_group_file(tile).into())
            }
            Node::StatsFile => Resolved::Stats,
            Node::InYear { tile, year, rest } => {
                let ty = TileYear::new(tile, year);
                let y = self.year(&ty)?.ok_or(FsError::NotFound)?;
                match self.in_year(&ty, &y, path, rest).ok_or(FsError::NotFound)? {
                    InYear::File(b) => Resolved::File(b),
                    InYear::Dir => Resolved::Dir,
                    InYear::ShardDir(_) => Resolved::Dir,
                    InYear::Shard(pos, v) => Resolved::Shard(ty, y, pos, v),
                }
            }
        })
    }

    /// One shard object: cache → writeback queue → store (regions computed under this
    /// generation) → materialization.
    fn shard(&self, ty: TileYear, year: Arc<S1Year>, pos: ShardPos, v: usize, done: ShardDone) {
        let sh = &self.shared;
        sh.stats.shard_requests.inc();
        let fp = year.fp(pos.t).to_string();
        let region: Region = (ty, pos, fp.clone());
        if let Some(b) = sh.cache.lock().unwrap().get(&(region.clone(), v)) {
            sh.stats.from_cache.inc();
            return done(Ok(b));
        }
        let key = key_of(&region, v);
        if let Some(b) = sh.writeback.pending(&key, &fp) {
            sh.stats.from_pending.inc();
            return done(Ok(Some(b)));
        }
        let expected = sh.known.lock().unwrap().get(&(region.clone(), v)).copied();
        if expected == Some(None) {
            // Computed (or read) under this generation: all fill, no object.
            sh.stats.from_cache.inc();
            return done(Ok(None));
        }
        if !year.done.lock().unwrap().contains(&pos) {
            return Shared::materialize(sh, region, year, v, done);
        }
        let sh2 = sh.clone();
        sh.workers.spawn(move || match sh2.store.get(&key) {
            Ok(found) => {
                let agrees = match (&found, expected) {
                    (Some(b), Some(Some(n))) => b.len() as u64 == n,
                    (None, Some(Some(_))) => false,
                    _ => true,
                };
                if !agrees {
                    // This mount computed it, and its write failed or was fenced off.
                    sh2.stats.recomputed.inc();
                    tracing::warn!(
                        "{key} in {} is not what this mount computed; computing it again",
                        sh2.store.describe()
                    );
                    return Shared::materialize(&sh2, region, year, v, done);
                }
                sh2.stats.from_store.inc();
                let b: Shard = found.map(Bytes::from);
                sh2.learn(&region, v, &b);
                let _ = sh2.cache.lock().unwrap().insert((region, v), b.clone());
                done(Ok(b))
            }
            Err(e) => {
                sh2.stats.store_errors.inc();
                done(Err(FsError::io(e.context(format!(
                    "{}: reading {key}",
                    sh2.store.describe()
                )))))
            }
        });
    }
}

enum Resolved {
    Dir,
    File(Bytes),
    Stats,
    Shard(TileYear, Arc<S1Year>, ShardPos, usize),
}

fn key_of(region: &Region, v: usize) -> String {
    let (ty, p, _) = region;
    layout::shard_key(&ty.tile, ty.year, VARIABLES[v].name, p.t, p.y, p.x)
}

/// Paths whose content changed from `old` to `new`: the documents that differ, and the shard
/// directories (`ARRAY/c/T/`) of every time chunk whose slices differ.
fn changed_paths(ty: &TileYear, old: &S1Year, new: &S1Year) -> Vec<String> {
    let mut out: Vec<String> = new
        .files
        .iter()
        .filter(|(k, v)| old.files.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    let (n_old, n_new) = (old.fingerprints.len() as u64, new.fingerprints.len() as u64);
    for t in 0..n_old.max(n_new) {
        if t >= n_old || t >= n_new || old.fp(t) != new.fp(t) {
            for v in VARIABLES.iter() {
                out.push(format!("{ty}/{GROUP}/{}/c/{t}/", v.name));
            }
        }
    }
    out
}

impl Shared {
    fn learn(&self, region: &Region, v: usize, b: &Shard) {
        self.known
            .lock()
            .unwrap()
            .insert((region.clone(), v), b.as_ref().map(|b| b.len() as u64));
    }

    /// Computes a region under single flight, caches its five objects and queues them for the
    /// store; answers object `v`.
    fn materialize(sh: &Arc<Shared>, region: Region, year: Arc<S1Year>, v: usize, done: ShardDone) {
        let waiter: Box<dyn FnOnce(Result<ShardBytes, FsError>) + Send> =
            Box::new(move |r| done(r.map(|set| set[v].clone())));
        let Some(leader) = sh.flights.join(region.clone(), waiter) else {
            sh.stats.flight_joins.inc();
            return;
        };
        let sh2 = sh.clone();
        sh.workers.spawn(move || {
            let sh = sh2;
            let (ty, pos, fp) = region.clone();
            let what = format!("{ty}/{GROUP} shard region {}/{}/{}", pos.t, pos.y, pos.x);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                shard::materialize(&year.catalog, &sh.reader, &sh.orbits, &sh.encoders, pos)
            }));
            let set = match r {
                Ok(Ok(set)) => set,
                Ok(Err(e)) => {
                    sh.stats.materialize_errors.inc();
                    return leader
                        .complete(Err(FsError::io(e.context(format!("materializing {what}")))));
                }
                Err(panic) => {
                    sh.stats.materialize_errors.inc();
                    return leader.complete(Err(FsError::io(anyhow::anyhow!(
                        "materializing {what}: panicked: {}",
                        crate::util::panic_message(&panic)
                    ))));
                }
            };
            sh.stats.materialized.inc();
            let set: ShardBytes = Arc::new(set.map(|b| b.map(Bytes::from)));
            for (v, b) in set.iter().enumerate() {
                sh.learn(&region, v, b);
                let _ = sh
                    .cache
                    .lock()
                    .unwrap()
                    .insert((region.clone(), v), b.clone());
            }
            year.done.lock().unwrap().insert(pos);
            // Queued before the waiters are answered (as Sentinel-2 chunks are), so a `flush`
            // after a read covers what the read computed.
            let objects: Vec<(String, Bytes)> = set
                .iter()
                .enumerate()
                .filter_map(|(v, b)| b.clone().map(|b| (key_of(&region, v), b)))
                .collect();
            let total: u64 = objects.iter().map(|(_, b)| b.len() as u64).sum();
            sh.writeback.push(WriteJob {
                ty,
                group: GROUP,
                idx: ChunkIndex {
                    t: pos.t,
                    y: pos.y,
                    x: pos.x,
                },
                fp,
                objects,
                entry: if total == 0 {
                    ChunkEntry::Empty
                } else {
                    ChunkEntry::Data { bytes: total }
                },
            });
            leader.complete(Ok(set));
        });
    }
}

impl LivingYears for S1Cube {
    fn resolved_years(&self) -> Vec<TileYear> {
        self.years
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, y)| y.is_some())
            .map(|(ty, _)| ty.clone())
            .collect()
    }

    fn refresh_year(&self, ty: &TileYear) -> Result<Option<Vec<String>>> {
        self.shared.stats.refreshes.inc();
        let r = (|| {
            let tile: Equi7Tile = ty.tile.parse().map_err(anyhow::Error::msg)?;
            let p = crate::s1::intake::prepare(
                self.shared.store.as_ref(),
                &self.shared.source,
                tile,
                ty.year,
                &self.cfg.fence,
            )?;
            if p.published {
                tracing::info!(
                    "{ty}: published catalog generation {} ({} day(s) appended{})",
                    p.generation.number,
                    p.merge.appended,
                    if p.merge.changed {
                        ", days changed by late slices"
                    } else {
                        ""
                    }
                );
                self.after_publish(&p);
            }
            self.shared.tracker.seed(p.generation.clone());
            self.adopt(ty, p.generation)
        })();
        if r.is_err() {
            self.shared.stats.refresh_errors.inc();
        }
        r
    }

    fn poll_year(&self, ty: &TileYear) -> Result<Option<Vec<String>>> {
        match self.shared.tracker.latest(self.shared.store.as_ref(), ty)? {
            Some(g) => self.adopt(ty, g),
            None => Ok(None),
        }
    }
}

impl CubeView for S1Cube {
    fn when_year_ready(&self, path: &str, answer: Box<dyn FnOnce() + Send>) {
        match self.tile_year_of(path) {
            Some(ty) if !self.years.lock().unwrap().contains_key(&ty) => {
                self.year_pool.spawn(answer)
            }
            _ => answer(),
        }
    }

    fn lookup(&self, path: &str, done: AttrDone) {
        self.fs_stats.lookups.inc();
        match self.resolve(path) {
            Err(e) => done(Err(e)),
            Ok(Resolved::Dir) => done(Ok(Attr::dir())),
            Ok(Resolved::File(b)) => done(Ok(Attr::file(b.len() as u64))),
            Ok(Resolved::Stats) => done(Ok(stats_attr(&self.stats_json()))),
            Ok(Resolved::Shard(ty, y, pos, v)) => self.shard(
                ty,
                y,
                pos,
                v,
                Box::new(move |r| {
                    done(r.and_then(|b| {
                        b.map(|b| Attr::file(b.len() as u64))
                            .ok_or(FsError::NotFound)
                    }))
                }),
            ),
        }
    }

    fn getattr(&self, path: &str) -> Result<Attr, FsError> {
        match self.resolve(path)? {
            Resolved::Dir => Ok(Attr::dir()),
            Resolved::File(b) => Ok(Attr::file(b.len() as u64)),
            Resolved::Stats => Ok(stats_attr(&self.stats_json())),
            Resolved::Shard(ty, y, pos, v) => self
                .shared
                .known
                .lock()
                .unwrap()
                .get(&((ty.clone(), pos, y.fp(pos.t).to_string()), v))
                .copied()
                .flatten()
                .map(Attr::file)
                .ok_or(FsError::NotFound),
        }
    }

    fn open(&self, path: &str, done: ContentDone) {
        self.fs_stats.opens.inc();
        match self.resolve(path) {
            Err(e) => done(Err(e)),
            Ok(Resolved::Dir) => done(Err(FsError::IsDir)),
            Ok(Resolved::File(b)) => done(Ok(b.into())),
            Ok(Resolved::Stats) => done(Ok(Content::Bytes(self.stats_json().into()))),
            Ok(Resolved::Shard(ty, y, pos, v)) => self.shard(
                ty,
                y,
                pos,
                v,
                Box::new(move |r| {
                    done(r.and_then(|b| b.map(Content::Bytes).ok_or(FsError::NotFound)))
                }),
            ),
        }
    }

    fn list(&self, path: &str) -> Result<Vec<(String, Kind)>, FsError> {
        let node = classify(path, &self.tile_names, &self.cfg.years).ok_or(FsError::NotFound)?;
        let dir = |n: &str| (n.to_string(), Kind::Dir);
        let file = |n: &str| (n.to_string(), Kind::File);
        let kinds = |v: Vec<(String, bool)>| {
            v.into_iter()
                .map(|(n, d)| (n, if d { Kind::Dir } else { Kind::File }))
                .collect::<Vec<_>>()
        };
        Ok(match node {
            Node::Root => {
                let mut v = vec![file("zarr.json"), dir(STATS_DIR)];
                v.extend(self.tile_names.iter().map(|t| dir(t)));
                v
            }
            Node::StatsDir => vec![file("stats.json")],
            Node::Tile(_) => {
                let mut v = vec![file("zarr.json")];
                v.extend(self.cfg.years.iter().map(|y| dir(&y.to_string())));
                v
            }
            Node::Year(tile, year) => match self.year(&TileYear::new(tile, year))? {
                None => vec![],
                Some(y) => kinds(static_children(path, &y.files)),
            },
            Node::InYear { tile, year, rest } => {
                let ty = TileYear::new(tile, year);
                let y = self.year(&ty)?.ok_or(FsError::NotFound)?;
                match self.in_year(&ty, &y, path, rest).ok_or(FsError::NotFound)? {
                    InYear::File(_) | InYear::Shard(..) => return Err(FsError::NotDir),
                    InYear::Dir => {
                        let mut v = kinds(static_children(path, &y.files));
                        let is_array = rest
                            .strip_prefix(&format!("{GROUP}/"))
                            .is_some_and(|a| VARIABLES.iter().any(|v| v.name == a));
                        if is_array
                            && matches!(self.in_year(&ty, &y, &format!("{path}/c"), &format!("{rest}/c")), Some(InYear::ShardDir(c)) if !c.is_empty())
                        {
                            v.push(dir("c"));
                        }
                        v
                    }
                    InYear::ShardDir(names) => {
                        let leaf = rest.split('/').count() == 5;
                        names
                            .iter()
                            .map(|n| if leaf { file(n) } else { dir(n) })
                            .collect()
                    }
                }
            }
            Node::RootMeta | Node::TileMeta(_) | Node::StatsFile => return Err(FsError::NotDir),
        })
    }

    fn stats(&self) -> &CubeStats {
        &self.fs_stats
    }

    fn stats_json(&self) -> Vec<u8> {
        let sh = &self.shared;
        let cache = sh.cache.lock().unwrap();
        let doc = json!({
            "started": self.started.to_rfc3339(),
            "collection": crate::s1::NAME,
            "store": sh.store.describe(),
            "source": sh.source.describe(),
            "tiles": self.tile_names.len(),
            "years": [self.cfg.years.first(), self.cfg.years.last()],
            "fs": self.fs_stats.to_json(),
            "shards": sh.stats.to_json(),
            "cache": {"bytes": cache.bytes(), "capacity": cache.capacity(), "entries": cache.len()},
            "writeback": sh.writeback.to_json(),
            "generations": sh.tracker.stats.to_json(),
        });
        let mut v = serde_json::to_vec_pretty(&doc).expect("JSON");
        v.push(b'\n');
        v
    }

    fn start_refresher(self: Arc<Self>, on_change: OnChange) -> Option<Refresher> {
        let poll = self
            .cfg
            .fence
            .check_age()
            .max(std::time::Duration::from_millis(100));
        let policy = self.cfg.refresh;
        Some(Refresher::start(self, policy, poll, on_change))
    }

    fn shutdown(&self) {
        self.year_pool.shutdown();
        self.shared.workers.shutdown();
        self.shared.writeback.close();
    }

    fn flush(&self) {
        self.shared.writeback.flush();
    }
}

fn stats_attr(content: &[u8]) -> Attr {
    Attr {
        kind: Kind::File,
        size: content.len() as u64,
        volatile: true,
    }
}
