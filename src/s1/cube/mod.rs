//! The Sentinel-1 σ⁰ cube as a tree of files (`datacube mount --collection sentinel-1-sig0`):
//! `/TILE/YEAR/20m/` with the sharded arrays of `crate::s1::layout`.
//!
//! It lives on the same core as the Sentinel-2 cube: its tile-years go through the shared year
//! lifecycle (`crate::cube::years`: resolved once, on a pool, from the store's latest catalog
//! generation or else the source, then moved to newer generations as a refresh of this mount or
//! another process publishes them — new days appended, late slices merged into their day;
//! `year` says what is Sentinel-1's in that), and every object is persisted by the shared
//! `writeback` queue (bounded, retried, each PUT fenced against the latest generation, the
//! region recorded after its objects).
//!
//! What is its own: a shard file is materialized on its first lookup, on the worker pool, under
//! single flight per shard *region* (the five arrays of a region come from the same slice
//! windows, so one computation answers all five). Caches, flights and the queue are keyed by the
//! region and the fingerprint of its time chunk, so a region of an older generation is never
//! served for a newer one. A shard whose every value is fill has no object: its lookup answers
//! ENOENT, which Zarr readers take as fill. A failed materialization answers EIO (logged with the
//! shard, item and file), caches and persists nothing, and the next read tries again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::cache::Bytes;
use crate::cube::tree::{ObjectGrid, YearTree};
use crate::cube::Objects;
use crate::fs::attr::{Attr, FsError};
use crate::fs::content::Content;
use crate::fs::pool::WorkPool;
use crate::fs::refresh::RefreshPolicy;
use crate::fs::view::{AttrDone, ContentDone};
use crate::generation::{Fence, Tracker};
use crate::key::{ChunkIndex, TileYear};
use crate::s1::catalog::S1Catalog;
use crate::s1::grid::Equi7Tile;
use crate::s1::shard::{self, Encoders, OrbitCache, ShardPos, SHARDS_PER_SIDE};
use crate::s1::source::{GdalReader, S1Source};
use crate::s1::{layout, GROUP, VARIABLES};
use crate::store::{ChunkEntry, RecordWriter, Store};
use crate::util::{ByteLru, SingleFlight};
use crate::writeback::{Limits, WriteJob, Writeback};

pub mod year;
use year::{Known, S1Year, S1Years, Years};

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
    /// What the S1 cube did for shard requests.
    pub struct S1Stats {
        shard_requests, from_cache, from_pending, from_store, materialized, materialize_errors,
        store_errors, flight_joins,
        /// Stored objects that were not what this mount computed (missing, or another size):
        /// computed again.
        recomputed,
    }
}

/// A shard region under one catalog: tile-year, position, fingerprint of its time chunk.
pub type Region = (TileYear, ShardPos, String);
type ShardBytes = Arc<[Option<Bytes>; 5]>;
/// One shard object (`None`: all fill, no object).
type Shard = Option<Bytes>;
type ShardDone = Box<dyn FnOnce(Result<Shard, FsError>) + Send>;

struct Shared {
    store: Arc<dyn Store>,
    reader: GdalReader,
    orbits: OrbitCache,
    encoders: Encoders,
    cache: Mutex<ByteLru<(Region, usize), Shard>>,
    /// What is known of each object: its size, or `None` for all fill (computed here, or read
    /// from the store). Listings and getattr answer from it.
    known: Arc<Known>,
    flights: Arc<SingleFlight<Region, ShardBytes, FsError>>,
    workers: WorkPool,
    writeback: Writeback,
    stats: S1Stats,
}

/// The Sentinel-1 cube.
pub type S1Cube = crate::cube::Cube<S1Objects>;

impl S1Cube {
    pub fn new(cfg: S1Config, store: Arc<dyn Store>, source: S1Source) -> Result<Arc<Self>> {
        crate::collection::check_store(store.as_ref(), crate::s1::NAME)?;
        let tracker: Arc<Tracker<S1Catalog>> = Arc::new(crate::s1::intake::tracker(cfg.fence));
        let shared = Arc::new(Shared {
            reader: source.reader(),
            writeback: Writeback::start(
                store.clone(),
                tracker.clone(),
                Arc::new(RecordWriter::new()),
                cfg.writeback,
            ),
            store: store.clone(),
            orbits: OrbitCache::default(),
            encoders: Encoders::new()?,
            cache: Mutex::new(ByteLru::unpinned(cfg.cache_bytes, |b: &Shard| {
                b.as_ref().map_or(64, |b| b.len() + 64)
            })),
            known: Arc::default(),
            flights: Arc::new(SingleFlight::new()),
            workers: WorkPool::new("s1-shard", cfg.workers),
            stats: S1Stats::default(),
        });
        let years = Years::new(
            store.clone(),
            S1Years::new(source.clone(), shared.known.clone()),
            tracker,
        );
        let tile_names: Vec<String> = cfg.tiles.iter().map(|t| t.to_string()).collect();
        let tile_meta = cfg
            .tiles
            .iter()
            .map(|t| (t.to_string(), layout::tile_group_file(*t)))
            .collect();
        let tree = crate::cube::tree::Tree::new(
            tile_names,
            cfg.years.clone(),
            layout::root_group_file(),
            tile_meta,
        );
        let mut about = Map::new();
        about.insert("collection".into(), crate::s1::NAME.into());
        about.insert("store".into(), store.describe().into());
        about.insert("source".into(), source.describe().into());
        about.insert("object".into(), "shard".into());
        Ok(Arc::new(crate::cube::Cube::assemble(
            tree,
            years,
            S1Objects { shared },
            cfg.refresh,
            about,
        )))
    }
}

impl YearTree for S1Year {
    /// The variable's index in `VARIABLES`.
    type Array = usize;

    fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }

    fn object_array(&self, path: &str) -> Option<(usize, ObjectGrid)> {
        let name = path.strip_prefix(GROUP)?.strip_prefix('/')?;
        let v = VARIABLES.iter().position(|v| v.name == name)?;
        Some((
            v,
            ObjectGrid {
                counts: [self.catalog.time_chunks(), SHARDS_PER_SIDE, SHARDS_PER_SIDE],
                band_level: false,
            },
        ))
    }
}

/// One shard file of the S1 mount: variable `v` of the region at `pos`.
pub struct S1Object {
    ty: TileYear,
    year: Arc<S1Year>,
    pos: ShardPos,
    v: usize,
}

/// Sentinel-1's objects: shards computed per region (the five arrays of a region come from the
/// same slice windows, so one computation answers all five).
pub struct S1Objects {
    shared: Arc<Shared>,
}

impl Objects for S1Objects {
    type Model = S1Years;
    type Object = S1Object;

    fn object(&self, year: Arc<S1Year>, v: usize, idx: ChunkIndex) -> S1Object {
        S1Object {
            ty: year.generation.tile_year(),
            year,
            pos: ShardPos {
                t: idx.t,
                y: idx.y,
                x: idx.x,
            },
            v,
        }
    }

    fn lookup(&self, o: S1Object, done: AttrDone) {
        Shared::shard(
            &self.shared,
            o.ty,
            o.year,
            o.pos,
            o.v,
            Box::new(move |r| {
                done(r.and_then(|b| {
                    b.map(|b| Attr::file(b.len() as u64))
                        .ok_or(FsError::NotFound)
                }))
            }),
        )
    }

    fn getattr(&self, o: &S1Object) -> Result<Attr, FsError> {
        let region = (o.ty.clone(), o.pos, o.year.fp(o.pos.t).to_string());
        self.shared
            .known
            .lock()
            .unwrap()
            .get(&(region, o.v))
            .copied()
            .flatten()
            .map(Attr::file)
            .ok_or(FsError::NotFound)
    }

    fn open(&self, o: S1Object, done: ContentDone) {
        Shared::shard(
            &self.shared,
            o.ty,
            o.year,
            o.pos,
            o.v,
            Box::new(move |r| done(r.and_then(|b| b.map(Content::Bytes).ok_or(FsError::NotFound)))),
        )
    }

    /// Shards known to have an object under the year's generation.
    fn listed(&self, y: &S1Year, v: usize) -> Vec<ChunkIndex> {
        let ty = y.generation.tile_year();
        let known = self.shared.known.lock().unwrap();
        known
            .iter()
            .filter(|(((r, p, fp), vi), size)| {
                *r == ty && *vi == v && size.is_some() && fp.as_str() == y.fp(p.t)
            })
            .map(|(((_, p, _), _), _)| ChunkIndex {
                t: p.t,
                y: p.y,
                x: p.x,
            })
            .collect()
    }

    fn stats_json(&self) -> Map<String, Value> {
        let sh = &self.shared;
        let cache = sh.cache.lock().unwrap();
        let doc = json!({
            "shards": sh.stats.to_json(),
            "cache": {"bytes": cache.bytes(), "capacity": cache.capacity(), "entries": cache.len()},
            "writeback": sh.writeback.to_json(),
        });
        match doc {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn shutdown(&self) {
        self.shared.workers.shutdown();
        self.shared.writeback.close();
    }

    fn flush(&self) {
        self.shared.writeback.flush();
    }
}

fn key_of(region: &Region, v: usize) -> String {
    let (ty, p, _) = region;
    layout::shard_key(&ty.tile, ty.year, VARIABLES[v].name, p.t, p.y, p.x)
}

impl Shared {
    /// One shard object: cache → writeback queue → store (regions computed under this
    /// generation) → materialization.
    fn shard(
        sh: &Arc<Shared>,
        ty: TileYear,
        year: Arc<S1Year>,
        pos: ShardPos,
        v: usize,
        done: ShardDone,
    ) {
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
