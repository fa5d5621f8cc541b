//! The virtual datacube as a filesystem, without FUSE: path → attributes, directory listings and
//! file bytes. The FUSE adapter (`fs::fuse`) only maps inodes and replies; everything testable
//! lives here.
//!
//! Chunk files are resolved in this order: the in-memory record of the year (loaded from the
//! store's chunk record, updated as chunks are computed) → the chunk cache → the writeback queue →
//! the store → materialization from the source. Requests for one chunk share one flight: the
//! first starts a job on the worker pool, later ones join its list of waiters, so nothing waits on
//! a thread and a chunk is computed at most once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use super::node::{classify, classify_in_year, static_children, Node, YearNode, STATS_DIR};
use super::pool::WorkPool;
use super::stats::{add, bump, CubeStats};
use crate::bands::Resolution;
use crate::cache::{Bytes, ChunkCache};
use crate::catalog::Catalog;
use crate::chunk::{ChunkIndex, ChunkOutcome, YearContext};
use crate::raster::RasterReader;
use crate::source::BandSource;
use crate::store::{ChunkEntry, ChunkRecord, Store};
use crate::writeback::{Limits, WriteEntry, WriteJob, Writeback};

/// How the mount is set up.
#[derive(Debug, Clone)]
pub struct CubeConfig {
    pub tiles: Vec<String>,
    pub years: Vec<i32>,
    /// Cap of the encoded-chunk LRU.
    pub chunk_cache_bytes: usize,
    /// Cap of the decoded JP2 tile LRU.
    pub decode_cache_bytes: usize,
    /// Worker threads driving materializations and store reads.
    pub workers: usize,
    pub writeback: Limits,
}

impl CubeConfig {
    /// Splits one memory budget (`--cache-size`) so that everything the daemon buffers fits in it:
    /// decoded JP2 tiles get a quarter (at most 1 GiB: every band tile of a 20 m time chunk), each
    /// concurrent materialization a reserve for its buffers (assembled chunk, encoder output, the
    /// cached copy), and the encoded-chunk LRU the rest (at least 64 MiB).
    /// Returns (chunk cache, decoded-tile cache).
    pub fn split_budget(total: usize, workers: usize) -> (usize, usize) {
        let decode = (total / 4).min(1 << 30);
        let in_flight = workers * 3 * max_raw_chunk_bytes();
        let chunks = total.saturating_sub(decode + in_flight).max(64 << 20);
        (chunks, decode)
    }
}

/// The largest decoded chunk of any resolution, bytes.
fn max_raw_chunk_bytes() -> usize {
    Resolution::ALL
        .iter()
        .map(|r| r.chunk_shape().iter().product::<u64>() as usize * 2)
        .max()
        .unwrap_or(0)
}

/// Why a request failed; the FUSE layer maps these to errno values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    NotDir,
    IsDir,
    /// Materialization or store failure (logged where it happened).
    Io,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Attributes of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub kind: Kind,
    pub size: u64,
    /// Content changes while mounted (the stats file): never cache it.
    pub volatile: bool,
}

impl Attr {
    fn dir() -> Self {
        Attr {
            kind: Kind::Dir,
            size: 0,
            volatile: false,
        }
    }
    fn file(size: u64) -> Self {
        Attr {
            kind: Kind::File,
            size,
            volatile: false,
        }
    }
}

/// A resolved tile-year: its context and what is known of its chunks.
struct YearState {
    ctx: YearContext,
    /// Per resolution: chunk key (`c/t/0/y/x`) → entry, for every chunk known to be computed.
    known: [Mutex<BTreeMap<String, ChunkEntry>>; 3],
}

type YearSlot = Arc<OnceLock<std::result::Result<Option<Arc<YearState>>, String>>>;

/// A computed chunk.
#[derive(Clone)]
pub enum ChunkState {
    Data(Bytes),
    Empty,
}

type Waiter = Box<dyn FnOnce(std::result::Result<ChunkState, FsError>) + Send>;

enum Resolved {
    Dir,
    /// A generated file: its attributes and where its bytes are.
    File(Attr, Content),
    Chunk(Arc<YearState>, Resolution, ChunkIndex),
}

enum Content {
    Shared(Bytes),
    /// A metadata or coordinate file in the year's layout (the path is the key).
    YearFile(Arc<YearState>),
}

pub struct Cube {
    cfg: CubeConfig,
    store: Arc<dyn Store>,
    source: Arc<dyn BandSource>,
    raster: RasterReader,
    cache: ChunkCache,
    writeback: Writeback,
    years: Mutex<HashMap<(String, i32), YearSlot>>,
    flights: Mutex<HashMap<String, Vec<Waiter>>>,
    pool: WorkPool,
    /// Resolves tile-years (a catalog scan; with CDSE, a STAC search and metadata downloads),
    /// so no FUSE thread waits on one.
    resolver: WorkPool,
    root_meta: Bytes,
    tile_meta: HashMap<String, Bytes>,
    started: chrono::DateTime<chrono::Utc>,
    pub stats: CubeStats,
}

impl Cube {
    pub fn new(
        cfg: CubeConfig,
        store: Arc<dyn Store>,
        source: Arc<dyn BandSource>,
    ) -> Result<Arc<Self>> {
        let mut tile_meta = HashMap::new();
        for t in &cfg.tiles {
            let epsg = crate::tiles::utm_epsg(t)?;
            tile_meta.insert(t.clone(), crate::layout::tile_group_file(t, epsg).into());
        }
        Ok(Arc::new(Cube {
            raster: RasterReader::new(cfg.decode_cache_bytes),
            cache: ChunkCache::new(cfg.chunk_cache_bytes),
            writeback: Writeback::start(store.clone(), cfg.writeback),
            pool: WorkPool::new("materialize", cfg.workers),
            resolver: WorkPool::new("resolve-year", 2),
            years: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            root_meta: crate::layout::root_group_file().into(),
            tile_meta,
            started: chrono::Utc::now(),
            stats: CubeStats::default(),
            cfg,
            store,
            source,
        }))
    }

    pub fn config(&self) -> &CubeConfig {
        &self.cfg
    }

    /// Runs `answer` (a request about `path`) at once, unless answering may first have to resolve
    /// the path's tile-year: then on the resolver pool, so the calling FUSE thread is free.
    pub fn when_year_ready(&self, path: &str, answer: impl FnOnce() + Send + 'static) {
        if self.year_pending(path) {
            self.resolver.spawn(answer);
        } else {
            answer();
        }
    }

    /// Whether `path` lies in a tile-year not resolved yet.
    fn year_pending(&self, path: &str) -> bool {
        let (tile, year) = match classify(path, &self.cfg.tiles, &self.cfg.years) {
            Some(Node::Year(t, y))
            | Some(Node::InYear {
                tile: t, year: y, ..
            }) => (t, y),
            _ => return false,
        };
        !self
            .years
            .lock()
            .unwrap()
            .get(&(tile.to_string(), year))
            .is_some_and(|slot| slot.get().is_some_and(|r| r.is_ok()))
    }

    /// Attributes of `path`; a chunk not computed yet is materialized first (on the worker pool;
    /// `done` is called from there).
    pub fn lookup(
        self: &Arc<Self>,
        path: &str,
        done: impl FnOnce(std::result::Result<Attr, FsError>) + Send + 'static,
    ) {
        bump(&self.stats.lookups);
        match self.resolve(path) {
            Err(e) => done(Err(e)),
            Ok(Resolved::Dir) => done(Ok(Attr::dir())),
            Ok(Resolved::File(a, _)) => done(Ok(a)),
            Ok(Resolved::Chunk(ys, res, idx)) => {
                let known = ys.known[res.index()]
                    .lock()
                    .unwrap()
                    .get(&idx.to_string())
                    .copied();
                match known {
                    Some(ChunkEntry::Data { bytes }) => done(Ok(Attr::file(bytes))),
                    Some(ChunkEntry::Empty) => done(Err(FsError::NotFound)),
                    None => self.flight(path, ys, res, idx, chunk_attr(done)),
                }
            }
        }
    }

    /// Attributes of a node already looked up (never starts work).
    pub fn getattr(&self, path: &str) -> std::result::Result<Attr, FsError> {
        match self.resolve(path)? {
            Resolved::Dir => Ok(Attr::dir()),
            Resolved::File(a, _) => Ok(a),
            Resolved::Chunk(ys, res, idx) => {
                match ys.known[res.index()].lock().unwrap().get(&idx.to_string()) {
                    Some(ChunkEntry::Data { bytes }) => Ok(Attr::file(*bytes)),
                    _ => Err(FsError::NotFound),
                }
            }
        }
    }

    /// The whole content of the file at `path` (a snapshot for the stats file).
    pub fn open(
        self: &Arc<Self>,
        path: &str,
        done: impl FnOnce(std::result::Result<Bytes, FsError>) + Send + 'static,
    ) {
        bump(&self.stats.opens);
        match self.resolve(path) {
            Err(e) => done(Err(e)),
            Ok(Resolved::Dir) => done(Err(FsError::IsDir)),
            Ok(Resolved::File(_, Content::Shared(b))) => done(Ok(b)),
            Ok(Resolved::File(_, Content::YearFile(ys))) => match ys.ctx.layout.files.get(path) {
                Some(b) => done(Ok(b.as_slice().into())),
                None => done(Err(FsError::NotFound)),
            },
            Ok(Resolved::Chunk(ys, res, idx)) => {
                if let Some(b) = self
                    .cache
                    .get(path)
                    .or_else(|| self.writeback.pending(path))
                {
                    return done(Ok(b));
                }
                self.flight(
                    path,
                    ys,
                    res,
                    idx,
                    Box::new(move |r| {
                        done(r.and_then(|s| match s {
                            ChunkState::Data(b) => Ok(b),
                            ChunkState::Empty => Err(FsError::NotFound),
                        }))
                    }),
                );
            }
        }
    }

    /// Children of the directory at `path`: (name, kind), without `.`/`..`. Never starts
    /// chunk work: chunk directories list only chunks already computed.
    pub fn list(&self, path: &str) -> std::result::Result<Vec<(String, Kind)>, FsError> {
        let node = classify(path, &self.cfg.tiles, &self.cfg.years).ok_or(FsError::NotFound)?;
        let dir = |n: &str| (n.to_string(), Kind::Dir);
        let file = |n: &str| (n.to_string(), Kind::File);
        Ok(match node {
            Node::Root => {
                let mut v = vec![file("zarr.json"), dir(STATS_DIR)];
                v.extend(self.cfg.tiles.iter().map(|t| dir(t)));
                v
            }
            Node::StatsDir => vec![file("stats.json")],
            Node::Tile(_) => {
                let mut v = vec![file("zarr.json")];
                v.extend(self.cfg.years.iter().map(|y| dir(&y.to_string())));
                v
            }
            Node::Year(tile, year) => match self.year(tile, year)? {
                None => vec![],
                Some(ys) => to_kinds(static_children(path, &ys.ctx.layout.files)),
            },
            Node::InYear { tile, year, rest } => {
                let ys = self.year(tile, year)?.ok_or(FsError::NotFound)?;
                let files = &ys.ctx.layout.files;
                match classify_in_year(path, rest, files, |r| ys.ctx.geometry(r).chunk_counts())
                    .ok_or(FsError::NotFound)?
                {
                    YearNode::StaticFile | YearNode::Chunk(..) => return Err(FsError::NotDir),
                    YearNode::StaticDir => {
                        let mut v = to_kinds(static_children(path, files));
                        if let Some(res) = data_array_res(rest) {
                            if known_children(&ys, res, "c").next().is_some() {
                                v.push(dir("c"));
                            }
                        }
                        v
                    }
                    YearNode::ChunkDir => {
                        let (res, rel) = chunk_dir_rel(rest).ok_or(FsError::NotFound)?;
                        let depth = rel.split('/').count();
                        known_children(&ys, res, rel)
                            .map(|n| {
                                // c/T/0/Y/X: the fourth level below `c` holds chunk files.
                                let kind = if depth == 4 { Kind::File } else { Kind::Dir };
                                (n, kind)
                            })
                            .collect()
                    }
                }
            }
            Node::RootMeta | Node::TileMeta(_) | Node::StatsFile => {
                return Err(FsError::NotDir);
            }
        })
    }

    /// The statistics document served as `.datacube/stats.json`.
    pub fn stats_json(&self) -> Vec<u8> {
        use std::sync::atomic::Ordering::Relaxed;
        let (entries, bytes) = self.cache.usage();
        let (queue_jobs, queue_bytes) = self.writeback.depth();
        let wb = self.writeback.stats();
        let doc = json!({
            "started": self.started.to_rfc3339(),
            "store": self.store.describe(),
            "source": self.source.describe(),
            "source_io": self.source.stats(),
            "tiles": self.cfg.tiles.len(),
            "years": [self.cfg.years.first(), self.cfg.years.last()],
            "fs": self.stats.to_json(),
            "chunk_cache": {
                "entries": entries,
                "bytes": bytes,
                "capacity": self.cache.capacity(),
                "hits": self.cache.stats.hits.load(Relaxed),
                "misses": self.cache.stats.misses.load(Relaxed),
                "evictions": self.cache.stats.evictions.load(Relaxed),
            },
            "decoded_tiles": {
                "decodes": self.raster.stats.decodes.load(Relaxed),
                "hits": self.raster.stats.hits.load(Relaxed),
                "bytes": self.raster.cached_bytes(),
                "capacity": self.cfg.decode_cache_bytes,
            },
            "writeback": {
                "queue_jobs": queue_jobs,
                "queue_bytes": queue_bytes,
                "enqueued": wb.enqueued.load(Relaxed),
                "chunks_written": wb.chunks_written.load(Relaxed),
                "bytes_written": wb.bytes_written.load(Relaxed),
                "records_saved": wb.records_saved.load(Relaxed),
                "errors": wb.errors.load(Relaxed),
                "full_waits": wb.waits.load(Relaxed),
            },
        });
        let mut v = serde_json::to_vec_pretty(&doc).expect("JSON");
        v.push(b'\n');
        v
    }

    /// Finishes queued work and writes everything computed to the store.
    pub fn shutdown(&self) {
        self.resolver.shutdown();
        self.pool.shutdown();
        self.writeback.close();
    }

    /// Waits until every computed chunk is in the store (for tests and benchmarks).
    pub fn flush(&self) {
        self.writeback.flush();
    }

    fn resolve(&self, path: &str) -> std::result::Result<Resolved, FsError> {
        let node = classify(path, &self.cfg.tiles, &self.cfg.years).ok_or(FsError::NotFound)?;
        let shared =
            |b: &Bytes| Resolved::File(Attr::file(b.len() as u64), Content::Shared(b.clone()));
        Ok(match node {
            Node::Root | Node::StatsDir | Node::Tile(_) | Node::Year(..) => Resolved::Dir,
            Node::RootMeta => shared(&self.root_meta),
            Node::TileMeta(t) => shared(&self.tile_meta[t]),
            Node::StatsFile => {
                // One snapshot gives both the size and the content.
                let b: Bytes = self.stats_json().into();
                let attr = Attr {
                    kind: Kind::File,
                    size: b.len() as u64,
                    volatile: true,
                };
                Resolved::File(attr, Content::Shared(b))
            }
            Node::InYear { tile, year, rest } => {
                let ys = self.year(tile, year)?.ok_or(FsError::NotFound)?;
                let files = &ys.ctx.layout.files;
                match classify_in_year(path, rest, files, |r| ys.ctx.geometry(r).chunk_counts())
                    .ok_or(FsError::NotFound)?
                {
                    YearNode::StaticFile => {
                        let attr = Attr::file(files[path].len() as u64);
                        Resolved::File(attr, Content::YearFile(ys))
                    }
                    YearNode::StaticDir | YearNode::ChunkDir => Resolved::Dir,
                    YearNode::Chunk(res, idx) => Resolved::Chunk(ys, res, idx),
                }
            }
        })
    }

    /// The tile-year, resolved once per mount (`None`: no scenes). A failure is logged and not
    /// remembered, so a later request retries.
    fn year(&self, tile: &str, year: i32) -> std::result::Result<Option<Arc<YearState>>, FsError> {
        let slot = self
            .years
            .lock()
            .unwrap()
            .entry((tile.to_string(), year))
            .or_default()
            .clone();
        let r = slot
            .get_or_init(|| match self.resolve_year(tile, year) {
                Ok(ys) => {
                    bump(&self.stats.years_resolved);
                    Ok(ys.map(Arc::new))
                }
                Err(e) => {
                    bump(&self.stats.year_errors);
                    let msg = format!("{e:#}");
                    tracing::error!("resolving {tile}/{year}: {msg}");
                    Err(msg)
                }
            })
            .clone();
        if r.is_err() {
            let mut g = self.years.lock().unwrap();
            if g.get(&(tile.to_string(), year))
                .is_some_and(|s| Arc::ptr_eq(s, &slot))
            {
                g.remove(&(tile.to_string(), year));
            }
        }
        r.map_err(|_| FsError::Io)
    }

    /// Loads the persisted catalog, or resolves it from the source and persists it; makes sure
    /// the store holds the generated metadata; loads the chunk records.
    fn resolve_year(&self, tile: &str, year: i32) -> Result<Option<YearState>> {
        let store = self.store.as_ref();
        let swept = store.sweep_temp(&format!("{tile}/{year}"))?;
        if swept > 0 {
            tracing::info!(
                "{tile}/{year}: removed {swept} temporary file(s) of an interrupted run"
            );
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
                    "{tile}/{year}: {} scenes (catalog from the store)",
                    ctx.catalog.scenes.len()
                );
                ctx
            }
            None => {
                let scan = self.source.scan(tile, year)?;
                for e in &scan.errors {
                    tracing::warn!("{tile}/{year}: skipped: {e}");
                }
                if scan.scenes.is_empty() {
                    tracing::info!("{tile}/{year}: no scenes in {}", self.source.describe());
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
                    "{tile}/{year}: {} scenes (catalog resolved from {} and persisted)",
                    ctx.catalog.scenes.len(),
                    self.source.describe()
                );
                ctx
            }
        };
        let load = |res: Resolution| -> Result<Mutex<BTreeMap<String, ChunkEntry>>> {
            let key = ChunkRecord::key(tile, year, res.name());
            Ok(Mutex::new(ChunkRecord::load(store, &key)?.chunks))
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

    /// Joins the flight for chunk `key`, starting one if none is in the air.
    fn flight(
        self: &Arc<Self>,
        key: &str,
        ys: Arc<YearState>,
        res: Resolution,
        idx: ChunkIndex,
        waiter: Waiter,
    ) {
        {
            let mut f = self.flights.lock().unwrap();
            if let Some(waiters) = f.get_mut(key) {
                bump(&self.stats.single_flight_joins);
                waiters.push(waiter);
                return;
            }
            f.insert(key.to_string(), vec![waiter]);
        }
        let me = self.clone();
        let key = key.to_string();
        self.pool.spawn(move || {
            let result = me.settle(&key, &ys, res, idx);
            let waiters = me.flights.lock().unwrap().remove(&key).unwrap_or_default();
            for w in waiters {
                w(result.clone());
            }
        });
    }

    /// Produces a chunk: from what is known (cache, queue, store) or by materializing it. Runs on
    /// the worker pool, inside the chunk's flight.
    fn settle(
        &self,
        key: &str,
        ys: &YearState,
        res: Resolution,
        idx: ChunkIndex,
    ) -> std::result::Result<ChunkState, FsError> {
        let rel = idx.to_string();
        let known = ys.known[res.index()].lock().unwrap().get(&rel).copied();
        let tile = &ys.ctx.catalog.tile;
        let year = ys.ctx.catalog.year;
        match known {
            Some(ChunkEntry::Empty) => return Ok(ChunkState::Empty),
            Some(ChunkEntry::Data { .. }) => {
                if let Some(b) = self.cache.get(key).or_else(|| self.writeback.pending(key)) {
                    return Ok(ChunkState::Data(b));
                }
                match self.read_store(key)? {
                    Some(b) => return Ok(ChunkState::Data(b)),
                    None => tracing::warn!(
                        "{key} is recorded but missing from {}; computing it again",
                        self.store.describe()
                    ),
                }
            }
            None => {
                // Written by a run that died before recording it: complete (atomic write).
                if let Some(b) = self.read_store(key)? {
                    ys.known[res.index()].lock().unwrap().insert(
                        rel.clone(),
                        ChunkEntry::Data {
                            bytes: b.len() as u64,
                        },
                    );
                    self.writeback.push(WriteJob {
                        tile: tile.clone(),
                        year,
                        res,
                        rel,
                        entry: WriteEntry::Stored(b.len() as u64),
                    });
                    return Ok(ChunkState::Data(b));
                }
            }
        }
        bump(&self.stats.inflight);
        let t0 = Instant::now();
        let outcome = ys
            .ctx
            .materialize(self.source.as_ref(), &self.raster, res, idx)
            .with_context(|| format!("materializing {key}"));
        self.stats
            .inflight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        add(
            &self.stats.materialize_micros,
            t0.elapsed().as_micros() as u64,
        );
        let (state, entry, write) = match outcome {
            Err(e) => {
                bump(&self.stats.materialize_errors);
                tracing::error!("{e:#}");
                return Err(FsError::Io);
            }
            Ok(ChunkOutcome::Data(v)) => {
                let b: Bytes = v.into();
                bump(&self.stats.materializations);
                add(&self.stats.materialized_bytes, b.len() as u64);
                self.cache.insert(key, b.clone());
                (
                    ChunkState::Data(b.clone()),
                    ChunkEntry::Data {
                        bytes: b.len() as u64,
                    },
                    WriteEntry::Data(b),
                )
            }
            Ok(ChunkOutcome::Empty) => {
                bump(&self.stats.materializations);
                bump(&self.stats.materialized_empty);
                (ChunkState::Empty, ChunkEntry::Empty, WriteEntry::Empty)
            }
        };
        self.writeback.push(WriteJob {
            tile: tile.clone(),
            year,
            res,
            rel: rel.clone(),
            entry: write,
        });
        ys.known[res.index()].lock().unwrap().insert(rel, entry);
        tracing::debug!("{key}: materialized in {:.2} s", t0.elapsed().as_secs_f64());
        Ok(state)
    }

    fn read_store(&self, key: &str) -> std::result::Result<Option<Bytes>, FsError> {
        match self.store.get(key) {
            Ok(Some(v)) => {
                bump(&self.stats.store_reads);
                add(&self.stats.store_read_bytes, v.len() as u64);
                let b: Bytes = v.into();
                self.cache.insert(key, b.clone());
                Ok(Some(b))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                bump(&self.stats.store_errors);
                tracing::error!("reading {key} from {}: {e:#}", self.store.describe());
                Err(FsError::Io)
            }
        }
    }
}

fn chunk_attr(done: impl FnOnce(std::result::Result<Attr, FsError>) + Send + 'static) -> Waiter {
    Box::new(move |r| {
        done(r.and_then(|s| match s {
            ChunkState::Data(b) => Ok(Attr::file(b.len() as u64)),
            ChunkState::Empty => Err(FsError::NotFound),
        }))
    })
}

fn to_kinds(v: Vec<(String, bool)>) -> Vec<(String, Kind)> {
    v.into_iter()
        .map(|(n, d)| (n, if d { Kind::Dir } else { Kind::File }))
        .collect()
}

/// `10m/data` → 10 m (the directory that holds the chunk tree `c`).
fn data_array_res(rest: &str) -> Option<Resolution> {
    let (res, tail) = rest.split_once('/')?;
    (tail == "data")
        .then(|| Resolution::ALL.into_iter().find(|r| r.name() == res))
        .flatten()
}

/// `10m/data/c/3/0` → (10 m, `c/3/0`).
fn chunk_dir_rel(rest: &str) -> Option<(Resolution, &str)> {
    let (res, tail) = rest.split_once('/')?;
    let rel = tail.strip_prefix("data/")?;
    Some((Resolution::ALL.into_iter().find(|r| r.name() == res)?, rel))
}

/// Names directly below `rel` (`c`, `c/T`, ...) that lead to computed data chunks.
fn known_children(ys: &YearState, res: Resolution, rel: &str) -> impl Iterator<Item = String> {
    let prefix = format!("{rel}/");
    let known = ys.known[res.index()].lock().unwrap();
    let names: BTreeSet<String> = known
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, e)| matches!(e, ChunkEntry::Data { .. }))
        .filter_map(|(k, _)| k[prefix.len()..].split('/').next().map(str::to_string))
        .collect();
    names.into_iter()
}
