//! The Sentinel-1 σ⁰ cube as a tree of files (`datacube mount --collection sentinel-1-sig0`):
//! `/TILE/YEAR/20m/` with the sharded arrays of `crate::s1::layout`.
//!
//! Same semantics as the Sentinel-2 cube: metadata and coordinates are generated from the
//! tile-year's catalog (resolved once, on a pool, from the store or else the source); a shard
//! file is materialized on its first lookup, on the worker pool, under single flight per shard
//! *region* (the five arrays of a region come from the same slice windows, so one computation
//! answers all five); encoded shards are kept in a byte-capped LRU and written back to the store
//! by a writer thread (each object atomically, then the region is recorded); a region recorded in
//! the store is read from it. A shard whose every value is fill has no object: its lookup answers
//! ENOENT, which Zarr readers take as fill. A failed materialization answers EIO (logged with the
//! shard, item and file), caches and persists nothing, and the next read tries again.
//!
//! Unlike the Sentinel-2 cube, an S1 tile-year's catalog is fixed once published: the mount does
//! not refresh it (README, "Sentinel-1 σ⁰").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::json;

use super::content::Content;
use super::cube::{Attr, CubeStats, FsError, Kind};
use super::node::{classify, static_children, Node, STATS_DIR};
use super::pool::WorkPool;
use super::refresh::{OnChange, Refresher};
use super::view::{AttrDone, ContentDone, CubeView};
use crate::bands::Resolution;
use crate::cache::Bytes;
use crate::key::{canonical_u64, ChunkIndex, TileYear};
use crate::s1::catalog::S1Catalog;
use crate::s1::grid::Equi7Tile;
use crate::s1::shard::{self, Encoders, OrbitCache, ShardPos, SHARDS_PER_SIDE};
use crate::s1::source::{GdalReader, S1Source};
use crate::s1::{layout, GROUP, VARIABLES};
use crate::store::{ChunkEntry, ChunkRecord, RecordWriter, Store};
use crate::util::{ByteLru, SingleFlight};

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
}

crate::counters! {
    /// What the S1 cube did for shard requests.
    pub struct S1Stats {
        shard_requests, from_cache, from_pending, from_store, materialized, materialize_errors,
        store_errors, flight_joins, written, write_errors, years_resolved, year_errors
    }
}

/// One resolved tile-year.
struct S1Year {
    catalog: Arc<S1Catalog>,
    files: BTreeMap<String, Vec<u8>>,
    /// Regions recorded in the store under this catalog (their objects are read from it).
    done: Mutex<HashSet<ShardPos>>,
}

type Region = (TileYear, ShardPos);
type ShardBytes = Arc<[Option<Bytes>; 5]>;
/// One shard object (`None`: all fill, no object).
type Shard = Option<Bytes>;
type ShardDone = Box<dyn FnOnce(Result<Shard, FsError>) + Send>;
/// The writeback thread and its queue of (region, fingerprint of its time chunk).
type Writer = (Sender<(Region, String)>, std::thread::JoinHandle<()>);

struct Shared {
    store: Arc<dyn Store>,
    source: S1Source,
    reader: GdalReader,
    orbits: OrbitCache,
    encoders: Encoders,
    cache: Mutex<ByteLru<(Region, usize), Shard>>,
    /// Materialized regions not yet written back.
    pending: Mutex<HashMap<Region, ShardBytes>>,
    /// Sizes of the shard objects known to exist (what chunk directories list; getattr).
    sizes: Mutex<HashMap<(Region, usize), u64>>,
    flights: Arc<SingleFlight<Region, ShardBytes, FsError>>,
    /// Regions written and recorded by this mount (read back from the store once evicted).
    written: Mutex<HashSet<Region>>,
    records: RecordWriter,
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
    workers: WorkPool,
    writeback: Mutex<Option<Writer>>,
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
        crate::collection::Collection::Sentinel1Sig0.check_store(store.as_ref())?;
        let shared = Arc::new(Shared {
            reader: source.reader(),
            store,
            source,
            orbits: OrbitCache::default(),
            encoders: Encoders::new()?,
            cache: Mutex::new(ByteLru::unpinned(cfg.cache_bytes, |b: &Shard| {
                b.as_ref().map_or(64, |b| b.len() + 64)
            })),
            pending: Mutex::new(HashMap::new()),
            sizes: Mutex::new(HashMap::new()),
            flights: Arc::new(SingleFlight::new()),
            written: Mutex::new(HashSet::new()),
            records: RecordWriter::new(),
            stats: S1Stats::default(),
        });
        let (tx, rx) = channel::<(Region, String)>();
        let w = shared.clone();
        let thread = std::thread::Builder::new()
            .name("s1-writeback".into())
            .spawn(move || {
                for (region, fp) in rx {
                    write_back(&w, region, &fp);
                }
            })?;
        Ok(Arc::new(S1Cube {
            tile_names: cfg.tiles.iter().map(|t| t.to_string()).collect(),
            years: Mutex::new(HashMap::new()),
            year_flights: Arc::new(SingleFlight::new()),
            year_pool: WorkPool::new("s1-year", 2),
            workers: WorkPool::new("s1-shard", cfg.workers),
            writeback: Mutex::new(Some((tx, thread))),
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

    /// The tile-year, resolved once: the stored catalog, else one built from the source and
    /// published. `None` when the source has no items for it.
    fn year(&self, ty: &TileYear) -> Result<Option<Arc<S1Year>>, FsError> {
        if let Some(y) = self.years.lock().unwrap().get(ty) {
            return Ok(y.clone());
        }
        let r = self.year_flights.run(ty.clone(), || {
            self.resolve_year(ty).map_err(|e| {
                tracing::error!("{ty}: resolving the tile-year: {e:#}");
                format!("{e:#}")
            })
        });
        match r {
            Ok(y) => {
                self.years.lock().unwrap().insert(ty.clone(), y.clone());
                Ok(y)
            }
            Err(_) => {
                self.shared.stats.year_errors.inc();
                Err(FsError::Io)
            }
        }
    }

    fn resolve_year(&self, ty: &TileYear) -> Result<Option<Arc<S1Year>>> {
        let tile: Equi7Tile = ty.tile.parse().map_err(anyhow::Error::msg)?;
        let store = self.shared.store.as_ref();
        let catalog = match crate::s1::intake::prepare(store, &self.shared.source, tile, ty.year) {
            Ok((c, _)) => c,
            Err(e) if e.is::<crate::intake::NoScenes>() => return Ok(None),
            Err(e) => return Err(e),
        };
        let fp_of = |t: u64| (t < catalog.time_chunks()).then(|| catalog.fingerprint(t));
        let record = ChunkRecord::load_matching(store, ty, Resolution::R20, &fp_of)?;
        let done = record
            .chunks
            .keys()
            .map(|i| ShardPos {
                t: i.t,
                y: i.y,
                x: i.x,
            })
            .collect();
        // The store is a Zarr store of its own (readable without the mount, and `datacube info`
        // knows its collection): its metadata and coordinates are written as intake writes them.
        let files = layout::build(&catalog)?;
        for (key, bytes) in &files {
            if store.get(key)?.as_deref() != Some(&bytes[..]) {
                store.put(key, bytes)?;
            }
        }
        self.shared.stats.years_resolved.inc();
        Ok(Some(Arc::new(S1Year {
            files,
            catalog: Arc::new(catalog),
            done: Mutex::new(done),
        })))
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
                let sizes = self.shared.sizes.lock().unwrap();
                let mut names: Vec<String> = sizes
                    .keys()
                    .filter(|((r, p), vi)| r == ty && *vi == v && f(p).is_some())
                    .filter_map(|((_, p), _)| f(p))
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

    /// One shard object: cache → pending writeback → store (recorded regions) → materialization.
    fn shard(&self, ty: TileYear, year: Arc<S1Year>, pos: ShardPos, v: usize, done: ShardDone) {
        let sh = &self.shared;
        sh.stats.shard_requests.inc();
        let region = (ty, pos);
        if let Some(b) = sh.cache.lock().unwrap().get(&(region.clone(), v)) {
            sh.stats.from_cache.inc();
            return done(Ok(b));
        }
        if let Some(set) = sh.pending.lock().unwrap().get(&region) {
            sh.stats.from_pending.inc();
            return done(Ok(set[v].clone()));
        }
        if year.done.lock().unwrap().contains(&pos) || sh.written.lock().unwrap().contains(&region)
        {
            let sh = self.shared.clone();
            return self.workers.spawn(move || {
                let key = key_of(&region, v);
                match sh.store.get(&key) {
                    Ok(b) => {
                        sh.stats.from_store.inc();
                        let b: Shard = b.map(Bytes::from);
                        sh.learn(&region, v, &b);
                        let _ = sh.cache.lock().unwrap().insert((region, v), b.clone());
                        done(Ok(b))
                    }
                    Err(e) => {
                        sh.stats.store_errors.inc();
                        tracing::error!("{}: reading {key}: {e:#}", sh.store.describe());
                        done(Err(FsError::Io))
                    }
                }
            });
        }
        let waiter: Box<dyn FnOnce(Result<ShardBytes, FsError>) + Send> =
            Box::new(move |r| done(r.map(|set| set[v].clone())));
        let Some(leader) = sh.flights.join(region.clone(), waiter) else {
            sh.stats.flight_joins.inc();
            return;
        };
        let sh = self.shared.clone();
        let tx = self.writeback.lock().unwrap().as_ref().map(|w| w.0.clone());
        self.workers.spawn(move || {
            let what = format!(
                "{}/{GROUP} shard region {}/{}/{}",
                region.0, pos.t, pos.y, pos.x
            );
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                shard::materialize(&year.catalog, &sh.reader, &sh.orbits, &sh.encoders, pos)
            }));
            let set = match r {
                Ok(Ok(set)) => set,
                Ok(Err(e)) => {
                    sh.stats.materialize_errors.inc();
                    tracing::error!("materializing {what}: {e:#}");
                    return leader.complete(Err(FsError::Io));
                }
                Err(_) => {
                    sh.stats.materialize_errors.inc();
                    tracing::error!("materializing {what}: panicked");
                    return leader.complete(Err(FsError::Io));
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
            sh.pending
                .lock()
                .unwrap()
                .insert(region.clone(), set.clone());
            let fp = year.catalog.fingerprint(pos.t);
            match tx {
                Some(tx) if tx.send((region.clone(), fp.clone())).is_ok() => {}
                _ => write_back(&sh, region, &fp),
            }
            leader.complete(Ok(set));
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
    let (ty, p) = region;
    layout::shard_key(&ty.tile, ty.year, VARIABLES[v].name, p.t, p.y, p.x)
}

impl Shared {
    fn learn(&self, region: &Region, v: usize, b: &Shard) {
        if let Some(b) = b {
            self.sizes
                .lock()
                .unwrap()
                .insert((region.clone(), v), b.len() as u64);
        }
    }
}

/// Writes a materialized region's objects, then records it (a region is recorded only when all
/// its objects are in the store).
fn write_back(sh: &Shared, region: Region, fp: &str) {
    let Some(set) = sh.pending.lock().unwrap().get(&region).cloned() else {
        return;
    };
    let (ty, pos) = &region;
    let mut total = 0u64;
    let mut ok = true;
    for (v, b) in set.iter().enumerate() {
        let key = key_of(&region, v);
        let r = match b {
            Some(b) => {
                total += b.len() as u64;
                sh.store.put(&key, b)
            }
            None => Ok(()),
        };
        if let Err(e) = r {
            tracing::error!("{}: writing {key}: {e:#}", sh.store.describe());
            ok = false;
        }
    }
    if ok {
        let entry = if total == 0 {
            ChunkEntry::Empty
        } else {
            ChunkEntry::Data { bytes: total }
        };
        let idx = ChunkIndex {
            t: pos.t,
            y: pos.y,
            x: pos.x,
        };
        sh.records.add(ty, Resolution::R20, idx, entry, fp);
        match sh.records.save(sh.store.as_ref(), ty, Resolution::R20) {
            Ok(()) => {
                sh.stats.written.inc();
                sh.written.lock().unwrap().insert(region.clone());
            }
            Err(e) => {
                tracing::error!("{}: recording {ty} region: {e:#}", sh.store.describe());
                ok = false;
            }
        }
    }
    if !ok {
        sh.stats.write_errors.inc();
    }
    sh.pending.lock().unwrap().remove(&region);
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
            Resolved::Shard(ty, _, pos, v) => self
                .shared
                .sizes
                .lock()
                .unwrap()
                .get(&((ty, pos), v))
                .map(|s| Attr::file(*s))
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
            "collection": crate::s1::FACTS.name,
            "store": sh.store.describe(),
            "source": sh.source.describe(),
            "tiles": self.tile_names.len(),
            "years": [self.cfg.years.first(), self.cfg.years.last()],
            "fs": self.fs_stats.to_json(),
            "shards": sh.stats.to_json(),
            "cache": {"bytes": cache.bytes(), "capacity": cache.capacity(), "entries": cache.len()},
            "writeback": {"pending_regions": sh.pending.lock().unwrap().len()},
        });
        let mut v = serde_json::to_vec_pretty(&doc).expect("JSON");
        v.push(b'\n');
        v
    }

    fn start_refresher(self: Arc<Self>, _on_change: OnChange) -> Option<Refresher> {
        None
    }

    fn shutdown(&self) {
        self.year_pool.shutdown();
        self.workers.shutdown();
        if let Some((tx, thread)) = self.writeback.lock().unwrap().take() {
            drop(tx);
            let _ = thread.join();
        }
    }

    fn flush(&self) {
        while !self.shared.pending.lock().unwrap().is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

fn stats_attr(content: &[u8]) -> Attr {
    Attr {
        kind: Kind::File,
        size: content.len() as u64,
        volatile: true,
    }
}
