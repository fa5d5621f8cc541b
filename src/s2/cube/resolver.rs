//! Chunk files of the mount: where a chunk's bytes come from, computed at most once.
//!
//! Tiers, in order: the year's record of computed chunks (an all-fill chunk is known to have no
//! file) → the chunk cache → the writeback queue → the store (recorded chunks only) →
//! materialization from the source. Cache, queue and flights are keyed by the chunk and the
//! fingerprint of its time chunk, so a chunk of an older catalog generation is never served for a
//! newer one (no invalidation race: old entries simply stop being asked for).
//! Requests for one chunk share one flight: the first starts a job on the worker pool, later ones
//! join its waiters, so no thread waits on a chunk. A job that fails or panics answers `Io` to
//! every waiter, logs one line naming the chunk, and leaves nothing cached or persisted.
//!
//! The chunked view (`--view chunked`) serves a chunk file per inner chunk of a shard: the shard
//! goes through the same tiers and flight (it is what is computed, cached, written back and
//! recorded), and the file is the inner chunk's byte range in it, found by the shard's index
//! (decoded once per shard and fingerprint, CRC32C checked, kept in a bounded LRU): sliced from a
//! shard in memory, or, for a shard in the store, the index and then the inner chunk read by
//! range (the inner chunk is then cached like a chunk of a chunked store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use zarrs::array::Array;
use zarrs::storage::store::MemoryStore;

use super::year::{ShardIndex, YearState};
use crate::cache::{Bytes, ChunkCache};
use crate::fs::attr::{Attr, FsError};
use crate::fs::content::{Content, StoredObject};
use crate::fs::pool::WorkPool;
pub use crate::fs::resolver_stats::ResolverStats;
use crate::generation::Tracker;
use crate::key::{ChunkIndex, ChunkKey};
use crate::raster::RasterReader;
use crate::s2::array::PixelArray;
use crate::s2::chunk::ChunkOutcome;
use crate::source::BandSource;
use crate::store::{ChunkEntry, RecordWriter, Store};
use crate::util::SingleFlight;
use crate::writeback::{Limits, WriteEntry, WriteJob, Writeback};

/// The chunk cache's key: the chunk and the fingerprint of its time chunk.
fn cache_key(key: &ChunkKey, fp: &str) -> String {
    format!("{key}#{fp}")
}

/// The chunk cache's key of inner chunk `pos` of a shard, read from the store for the chunked
/// view.
fn inner_cache_key(shard: &ChunkKey, fp: &str, pos: usize) -> String {
    format!("{shard}#{fp}#{pos}")
}

/// A chunk as the resolver found it.
#[derive(Clone)]
pub enum ChunkState {
    /// Its bytes, in memory.
    Data(Bytes),
    /// A shard in the store, opened for reads by range.
    Stored(Arc<StoredObject>),
    Empty,
}

impl ChunkState {
    fn content(self) -> std::result::Result<Content, FsError> {
        match self {
            ChunkState::Data(b) => Ok(Content::Bytes(b)),
            ChunkState::Stored(o) => Ok(Content::Stored(o)),
            ChunkState::Empty => Err(FsError::NotFound),
        }
    }
}

type Done<T> = Box<dyn FnOnce(std::result::Result<T, FsError>) + Send>;

/// How the resolver is set up.
pub struct ResolverConfig {
    pub chunk_cache_bytes: usize,
    pub decode_cache_bytes: usize,
    pub workers: usize,
    pub writeback: Limits,
}

/// Shards kept open in the store for ranged reads (a Zarr reader opens a shard once for its index
/// and once per inner chunk; this spares a HEAD or an `open(2)` each time). Bounded, since each
/// holds a file descriptor in a directory store.
const OPEN_OBJECTS: usize = 256;

/// Shard indexes kept for the chunked view (~1 KiB each): a chunk's size without a store read,
/// and what its directory lists.
const SHARD_INDEXES: usize = 16_384;

crate::counters! {
    /// What the chunked view (`--view chunked`) did (`fs` in stats.json).
    pub struct ViewStats {
        /// Inner chunks served as chunk files (opens answered with their bytes).
        view_chunks_served,
        /// Shard indexes decoded (from a shard in memory, or read from the store).
        view_indexes_decoded,
        /// Of those, read from the store by range (the index alone, at the shard's end).
        view_index_reads,
        /// Inner chunks read from the store by range (exactly their bytes).
        view_chunk_reads,
    }
}

/// Shard index decoders by (`PixelArray::index`, inner chunks per side).
type IndexDecoders = Mutex<HashMap<(usize, u64), Arc<Array<MemoryStore>>>>;

/// A chunk of the chunked view: its size, and its bytes when asked for.
struct InnerChunk {
    len: u64,
    bytes: Option<Bytes>,
}

pub struct ChunkResolver {
    store: Arc<dyn Store>,
    /// Opened shards by cache key (chunk and fingerprint). A shard rewritten under the same
    /// fingerprint has the same bytes, so a kept version stays right while its fingerprint does.
    open_objects: Mutex<lru::LruCache<String, Arc<StoredObject>>>,
    source: Arc<dyn BandSource>,
    raster: RasterReader,
    decode_cache_bytes: usize,
    cache: ChunkCache,
    writeback: Writeback,
    flights: Arc<SingleFlight<(ChunkKey, String), ChunkState, FsError>>,
    pool: WorkPool,
    pub stats: Arc<ResolverStats>,
    /// The chunked view: decoded shard indexes by cache key (a shard's bytes are fixed by its
    /// fingerprint, so are its index's), and index decoders by (array, inner chunks per side).
    indexes: Mutex<lru::LruCache<String, ShardIndex>>,
    index_decoders: IndexDecoders,
    pub view_stats: ViewStats,
}

impl ChunkResolver {
    pub fn new(
        store: Arc<dyn Store>,
        source: Arc<dyn BandSource>,
        cfg: ResolverConfig,
        tracker: Arc<Tracker<crate::s2::catalog::Catalog>>,
        records: Arc<RecordWriter>,
    ) -> Self {
        ChunkResolver {
            raster: RasterReader::new(cfg.decode_cache_bytes),
            decode_cache_bytes: cfg.decode_cache_bytes,
            cache: ChunkCache::new(cfg.chunk_cache_bytes),
            writeback: Writeback::start(store.clone(), tracker, records, cfg.writeback),
            flights: Arc::new(SingleFlight::new()),
            open_objects: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(OPEN_OBJECTS).unwrap(),
            )),
            pool: WorkPool::new("materialize", cfg.workers),
            stats: Arc::default(),
            indexes: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(SHARD_INDEXES).unwrap(),
            )),
            index_decoders: Mutex::default(),
            view_stats: ViewStats::default(),
            store,
            source,
        }
    }

    /// Attributes of chunk `key`, computing it first if nothing is known of it.
    pub fn attr(self: &Arc<Self>, ys: Arc<YearState>, key: ChunkKey, done: Done<Attr>) {
        match ys.known(key.array, key.idx) {
            Some(ChunkEntry::Data { bytes }) => done(Ok(Attr::file(bytes))),
            Some(ChunkEntry::Empty) => done(Err(FsError::NotFound)),
            None => self.flight(
                ys,
                key,
                Box::new(move |r| done(r.and_then(|s| s.content()).map(|c| Attr::file(c.len())))),
            ),
        }
    }

    /// Attributes of a chunk already looked up (never starts work).
    pub fn known_attr(&self, ys: &YearState, key: &ChunkKey) -> std::result::Result<Attr, FsError> {
        match ys.known(key.array, key.idx) {
            Some(ChunkEntry::Data { bytes }) => Ok(Attr::file(bytes)),
            _ => Err(FsError::NotFound),
        }
    }

    /// The content of chunk `key`.
    pub fn content(self: &Arc<Self>, ys: Arc<YearState>, key: ChunkKey, done: Done<Content>) {
        let fp = ys.fingerprint(key.array, key.idx.t);
        if let Some(b) = self
            .cache
            .get(&cache_key(&key, fp))
            .or_else(|| self.writeback.pending(&key.to_string(), fp))
        {
            return done(Ok(Content::Bytes(b)));
        }
        if let Some(o) = self.open_objects.lock().unwrap().get(&cache_key(&key, fp)) {
            return done(Ok(Content::Stored(o.clone())));
        }
        self.flight(
            ys,
            key,
            Box::new(move |r| done(r.and_then(|s| s.content()))),
        );
    }

    /// Attributes of chunk `pos` (inner chunk, C order) of the chunked view's shard `shard`,
    /// computing the shard first if nothing is known of it (see `inner`).
    pub fn inner_attr(
        self: &Arc<Self>,
        ys: Arc<YearState>,
        shard: ChunkKey,
        pos: usize,
        done: Done<Attr>,
    ) {
        self.inner(
            ys,
            shard,
            pos,
            false,
            Box::new(move |r| {
                done(r.and_then(|c| Ok(Attr::file(c.ok_or(FsError::NotFound)?.len))))
            }),
        );
    }

    /// Attributes of a chunk of the chunked view already looked up (never starts work: from
    /// the shard's index in memory).
    pub fn known_inner_attr(
        &self,
        ys: &YearState,
        shard: &ChunkKey,
        pos: usize,
    ) -> std::result::Result<Attr, FsError> {
        let range = self
            .known_index(ys, shard.array, shard.idx)
            .and_then(|index| index.get(pos).cloned().flatten())
            .ok_or(FsError::NotFound)?;
        Ok(Attr::file(range.end - range.start))
    }

    /// The content of chunk `pos` of the chunked view's shard `shard`: the inner chunk's bytes.
    pub fn inner_content(
        self: &Arc<Self>,
        ys: Arc<YearState>,
        shard: ChunkKey,
        pos: usize,
        done: Done<Content>,
    ) {
        let stats = self.clone();
        self.inner(
            ys,
            shard,
            pos,
            true,
            Box::new(move |r| {
                done(r.and_then(|c| {
                    let bytes = c.and_then(|c| c.bytes).ok_or(FsError::NotFound)?;
                    stats.view_stats.view_chunks_served.inc();
                    Ok(Content::Bytes(bytes))
                }))
            }),
        );
    }

    /// The shard index of `idx` if this resolver holds it (memory only: for listings).
    pub fn known_index(
        &self,
        ys: &YearState,
        array: PixelArray,
        idx: ChunkIndex,
    ) -> Option<ShardIndex> {
        let key = ys.tile_year().array_chunk(array, idx);
        let ck = cache_key(&key, ys.fingerprint(array, idx.t));
        self.indexes.lock().unwrap().get(&ck).cloned()
    }

    /// An inner chunk of a shard, through the shard's tiers: known all-fill (`None`, no file);
    /// the shard in memory (cache or writeback queue: sliced); the inner chunk itself in the
    /// cache (read from the store before); else the shard's flight, which finds it in memory,
    /// opens it in the store (then only its index and, for `bytes`, the inner chunk are read,
    /// by range, on the worker pool, and the inner chunk cached) or materializes it. The size
    /// alone comes from a known index without a flight.
    fn inner(
        self: &Arc<Self>,
        ys: Arc<YearState>,
        shard: ChunkKey,
        pos: usize,
        bytes: bool,
        done: Done<Option<InnerChunk>>,
    ) {
        if let Some(ChunkEntry::Empty) = ys.known(shard.array, shard.idx) {
            return done(Ok(None));
        }
        let fp = ys.fingerprint(shard.array, shard.idx.t).to_string();
        if let Some(b) = self
            .cache
            .get(&cache_key(&shard, &fp))
            .or_else(|| self.writeback.pending(&shard.to_string(), &fp))
        {
            return done(self.slice(&ys, &shard, &b, pos));
        }
        if let Some(b) = self.cache.get(&inner_cache_key(&shard, &fp, pos)) {
            let len = b.len() as u64;
            return done(Ok(Some(InnerChunk {
                len,
                bytes: Some(b),
            })));
        }
        if !bytes {
            if let Some(index) = self.known_index(&ys, shard.array, shard.idx) {
                let len = index.get(pos).cloned().flatten().map(|r| r.end - r.start);
                return done(Ok(len.map(|len| InnerChunk { len, bytes: None })));
            }
        }
        let me = self.clone();
        self.flight(
            ys.clone(),
            shard.clone(),
            Box::new(move |r| match r {
                Err(e) => done(Err(e)),
                Ok(ChunkState::Empty) => done(Ok(None)),
                Ok(ChunkState::Data(b)) => done(me.slice(&ys, &shard, &b, pos)),
                // Ranged reads block: on the pool, so that the waiters of one flight do not
                // queue behind each other on the thread that completes it.
                Ok(ChunkState::Stored(o)) => me.clone().pool.spawn(move || {
                    done(me.read_inner(&ys, &shard, &o, pos, bytes));
                }),
            }),
        );
    }

    /// An inner chunk of a shard in memory.
    fn slice(
        &self,
        ys: &YearState,
        shard: &ChunkKey,
        object: &Bytes,
        pos: usize,
    ) -> std::result::Result<Option<InnerChunk>, FsError> {
        let index = match self.known_index(ys, shard.array, shard.idx) {
            Some(index) => index,
            None => {
                let n = crate::shard::index_len(self.inner_count(ys, shard)) as usize;
                let tail = object
                    .len()
                    .checked_sub(n)
                    .map(|at| &object[at..])
                    .ok_or_else(|| {
                        FsError::io(anyhow::anyhow!(
                            "{shard}: {} bytes, shorter than its index",
                            object.len()
                        ))
                    })?;
                self.decode_index(ys, shard, tail, object.len() as u64)?
            }
        };
        Ok(index.get(pos).cloned().flatten().map(|r| InnerChunk {
            len: r.end - r.start,
            bytes: Some(object[r.start as usize..r.end as usize].into()),
        }))
    }

    /// An inner chunk of a shard opened in the store: its index (known, or read by range at the
    /// shard's end), then, for `bytes`, exactly its range.
    fn read_inner(
        &self,
        ys: &YearState,
        shard: &ChunkKey,
        object: &Arc<StoredObject>,
        pos: usize,
        bytes: bool,
    ) -> std::result::Result<Option<InnerChunk>, FsError> {
        let total = Content::Stored(object.clone()).len();
        let index = match self.known_index(ys, shard.array, shard.idx) {
            Some(index) => index,
            None => {
                let n = crate::shard::index_len(self.inner_count(ys, shard));
                let at = total.checked_sub(n).ok_or_else(|| {
                    FsError::io(anyhow::anyhow!(
                        "{shard}: {total} bytes, shorter than its index"
                    ))
                })?;
                let tail = read_exactly(object, shard, at, n)?;
                self.view_stats.view_index_reads.inc();
                self.decode_index(ys, shard, &tail, total)?
            }
        };
        let Some(r) = index.get(pos).cloned().flatten() else {
            return Ok(None);
        };
        let len = r.end - r.start;
        if !bytes {
            return Ok(Some(InnerChunk { len, bytes: None }));
        }
        // Read whole, as a reader wants it, and cached like a chunk of a chunked store: an
        // open of the file again costs no store read.
        let b: Bytes = read_exactly(object, shard, r.start, len)?.into();
        self.view_stats.view_chunk_reads.inc();
        let fp = ys.fingerprint(shard.array, shard.idx.t);
        self.cache
            .insert(&inner_cache_key(shard, fp, pos), b.clone());
        Ok(Some(InnerChunk {
            len,
            bytes: Some(b),
        }))
    }

    /// Inner chunks per shard of `shard`'s array.
    fn inner_count(&self, ys: &YearState, shard: &ChunkKey) -> u64 {
        ys.ctx.chunking.inner_per_side(shard.array.res).pow(2)
    }

    /// Decodes (CRC32C checked) and keeps the index of `shard`, whose last bytes are `tail`.
    fn decode_index(
        &self,
        ys: &YearState,
        shard: &ChunkKey,
        tail: &[u8],
        object_len: u64,
    ) -> std::result::Result<ShardIndex, FsError> {
        let per = ys.ctx.chunking.inner_per_side(shard.array.res);
        let decoder = {
            let mut decoders = self.index_decoders.lock().unwrap();
            match decoders.entry((shard.array.index(), per)) {
                std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    // The shard's inner grid: one inner chunk along time (and bands).
                    let grid = if shard.array.has_bands() {
                        vec![1, 1, per, per]
                    } else {
                        vec![1, per, per]
                    };
                    let d = crate::shard::index_encoder(&grid).map_err(FsError::io)?;
                    e.insert(Arc::new(d)).clone()
                }
            }
        };
        let index: ShardIndex = crate::shard::decode_index(&decoder, tail, object_len)
            .map_err(|e| FsError::io(e.context(format!("the index of {shard}"))))?
            .into();
        self.view_stats.view_indexes_decoded.inc();
        let fp = ys.fingerprint(shard.array, shard.idx.t);
        self.indexes
            .lock()
            .unwrap()
            .put(cache_key(shard, fp), index.clone());
        Ok(index)
    }

    /// Joins the flight for `key`, starting one on the worker pool if none is in the air.
    fn flight(self: &Arc<Self>, ys: Arc<YearState>, key: ChunkKey, waiter: Done<ChunkState>) {
        let flight = (
            key.clone(),
            ys.fingerprint(key.array, key.idx.t).to_string(),
        );
        let Some(leader) = self.flights.join(flight, waiter) else {
            return;
        };
        let me = self.clone();
        self.pool.spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| me.settle(&ys, &key));
            let result = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
                me.stats.materialize_errors.inc();
                Err(FsError::io(anyhow::anyhow!(
                    "materializing {key}: panicked: {}",
                    crate::util::panic_message(&panic)
                )))
            });
            leader.complete(result);
        });
    }

    /// Produces a chunk: from what is known (cache, queue, store) or by materializing it. Runs on
    /// the worker pool, inside the chunk's flight.
    fn settle(&self, ys: &YearState, key: &ChunkKey) -> std::result::Result<ChunkState, FsError> {
        let fp = ys.fingerprint(key.array, key.idx.t);
        match ys.known(key.array, key.idx) {
            Some(ChunkEntry::Empty) => return Ok(ChunkState::Empty),
            Some(ChunkEntry::Data { bytes }) => {
                if let Some(b) = self
                    .cache
                    .get(&cache_key(key, fp))
                    .or_else(|| self.writeback.pending(&key.to_string(), fp))
                {
                    return Ok(ChunkState::Data(b));
                }
                let found = if ys.ctx.chunking.is_sharded() {
                    self.open_store(key, fp, bytes)?
                } else {
                    self.read_store(key, fp)?
                };
                match found {
                    Some(state) => return Ok(state),
                    None => tracing::warn!(
                        "{key} is recorded but missing from {}; computing it again",
                        self.store.describe()
                    ),
                }
            }
            // Not recorded: a file in the store may be stale (written under an older catalog
            // generation by a process that died before it could learn so), so it is computed
            // again, and rewritten.
            None => {}
        }
        let (state, entry, write) = self.materialize(ys, key)?;
        self.writeback
            .push(WriteJob::object(key, write, fp.to_string()));
        ys.record(key.array, key.idx, entry);
        Ok(state)
    }

    /// Computes a chunk from the source and caches it.
    fn materialize(
        &self,
        ys: &YearState,
        key: &ChunkKey,
    ) -> std::result::Result<(ChunkState, ChunkEntry, WriteEntry), FsError> {
        struct InFlight<'a>(&'a ResolverStats);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.inflight.sub(1);
            }
        }
        self.stats.inflight.inc();
        let _in_flight = InFlight(&self.stats);
        let t0 = Instant::now();
        let outcome = ys
            .ctx
            .materialize(self.source.as_ref(), &self.raster, key.array, key.idx)
            .with_context(|| format!("materializing {key}"));
        self.stats
            .materialize_micros
            .add(t0.elapsed().as_micros() as u64);
        let r = match outcome {
            Err(e) => {
                self.stats.materialize_errors.inc();
                return Err(FsError::io(e));
            }
            Ok(ChunkOutcome::Data(v)) => {
                let b: Bytes = v.into();
                self.stats.materializations.inc();
                self.stats.materialized_bytes.add(b.len() as u64);
                self.stats
                    .inner_chunks_materialized
                    .add(ys.ctx.chunking.inner_chunks_in(key.res(), &b));
                self.cache.insert(
                    &cache_key(key, ys.fingerprint(key.array, key.idx.t)),
                    b.clone(),
                );
                let n = b.len() as u64;
                (
                    ChunkState::Data(b.clone()),
                    ChunkEntry::Data { bytes: n },
                    WriteEntry::Data(b),
                )
            }
            Ok(ChunkOutcome::Empty) => {
                self.stats.materializations.inc();
                self.stats.materialized_empty.inc();
                (ChunkState::Empty, ChunkEntry::Empty, WriteEntry::Empty)
            }
        };
        tracing::debug!("{key}: materialized in {:.2} s", t0.elapsed().as_secs_f64());
        Ok(r)
    }

    /// Reads a recorded chunk whole from the store, and caches it.
    fn read_store(
        &self,
        key: &ChunkKey,
        fp: &str,
    ) -> std::result::Result<Option<ChunkState>, FsError> {
        match self.store.get(&key.to_string()) {
            Ok(Some(v)) => {
                self.stats.store_reads.inc();
                self.stats.store_read_bytes.add(v.len() as u64);
                let b: Bytes = v.into();
                self.cache.insert(&cache_key(key, fp), b.clone());
                Ok(Some(ChunkState::Data(b)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.stats.store_errors.inc();
                Err(FsError::io(e.context(format!(
                    "reading {key} from {}",
                    self.store.describe()
                ))))
            }
        }
    }

    /// Opens a recorded shard in the store for reads by range. A stored object of another size
    /// than the record's is not the recorded one (the record and the object are written by the
    /// same process, the object first): it is computed again, like a missing one.
    fn open_store(
        &self,
        key: &ChunkKey,
        fp: &str,
        recorded: u64,
    ) -> std::result::Result<Option<ChunkState>, FsError> {
        let ck = cache_key(key, fp);
        if let Some(o) = self.open_objects.lock().unwrap().get(&ck) {
            return Ok(Some(ChunkState::Stored(o.clone())));
        }
        match self.store.open_object(&key.to_string()) {
            Ok(Some(r)) if r.len() == recorded => {
                self.stats.store_opens.inc();
                let what = format!("{key} in {}", self.store.describe());
                let o = Arc::new(StoredObject::new(what, r, self.stats.clone()));
                self.open_objects.lock().unwrap().put(ck, o.clone());
                Ok(Some(ChunkState::Stored(o)))
            }
            Ok(Some(r)) => {
                tracing::warn!(
                    "{key} in {} has {} bytes where {recorded} are recorded",
                    self.store.describe(),
                    r.len()
                );
                Ok(None)
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.stats.store_errors.inc();
                Err(FsError::io(e.context(format!(
                    "opening {key} in {}",
                    self.store.describe()
                ))))
            }
        }
    }

    /// Counters for the `fs` section of `stats.json`, and the sections of the caches and queue.
    pub fn stats_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fs = self.stats.to_json();
        let micros = fs.remove("materialize_micros").and_then(|v| v.as_u64());
        fs.insert(
            "materialize_seconds".into(),
            (micros.unwrap_or(0) as f64 / 1e6).into(),
        );
        fs.insert(
            "single_flight_joins".into(),
            self.flights.joins.get().into(),
        );
        fs.extend(self.view_stats.to_json());
        let mut m = serde_json::Map::new();
        m.insert("fs".into(), fs.into());
        m.insert("chunk_cache".into(), self.cache.to_json());
        m.insert(
            "decoded_tiles".into(),
            self.raster.to_json(self.decode_cache_bytes),
        );
        m.insert("writeback".into(), self.writeback.to_json());
        m
    }

    /// Finishes queued work and writes everything computed to the store.
    pub fn shutdown(&self) {
        self.pool.shutdown();
        self.writeback.close();
    }

    /// Waits until every computed chunk is in the store.
    pub fn flush(&self) {
        self.writeback.flush();
    }
}

/// `len` bytes of a stored object from `offset`, all of them (a shorter answer is an error).
fn read_exactly(
    object: &StoredObject,
    shard: &ChunkKey,
    offset: u64,
    len: u64,
) -> std::result::Result<Vec<u8>, FsError> {
    let b = object.read(offset, len as usize)?;
    if b.len() as u64 != len {
        return Err(FsError::io(anyhow::anyhow!(
            "{shard}: a read of {len} bytes at {offset} returned {}",
            b.len()
        )));
    }
    Ok(b)
}
