//! The virtual datacube as a filesystem, without FUSE: path → attributes, directory listings and
//! file bytes. The FUSE adapter (`fs::fuse`) only maps inodes and replies; everything testable
//! lives here, split by noun: `tree` (what a path is, what a directory lists), `year` (the
//! tile-years, resolved once), `resolver` (chunk bytes through the cache tiers, single flight,
//! materialization, writeback). `Cube` composes them and keeps FUSE threads free: anything that
//! may take long runs on a pool and answers through a completion.

pub(crate) mod resolver;
pub(crate) mod tree;
pub(crate) mod year;

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;

use crate::collection::View;
pub use crate::fs::attr::{Attr, CubeStats, FsError, Kind};
use crate::fs::content::Content;
use crate::fs::pool::WorkPool;
pub use crate::fs::refresh::RefreshPolicy;
use crate::generation::{Fence, Tracker};
use crate::s2::bands::Resolution;
use crate::source::BandSource;
use crate::store::{RecordWriter, Store};
use crate::writeback::Limits;
use resolver::{ChunkResolver, ResolverConfig};
use tree::{Resolved, Tree};
use year::Years;

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
    /// Timing of the store's consistency protocol.
    pub fence: Fence,
    /// Which resolved years are searched again, how often.
    pub refresh: RefreshPolicy,
    /// The layout for a new store (`None`: the default); an existing store keeps its own, and
    /// asking for another is an error.
    pub layout: Option<crate::s2::chunking::Chunking>,
}

impl CubeConfig {
    /// Splits one memory budget (`--cache-size`) so that everything the daemon buffers fits in it:
    /// decoded JP2 tiles get a quarter (at most 1 GiB: every band tile of a 20 m time chunk), each
    /// concurrent materialization a reserve for its buffers (assembled chunk, encoder output, the
    /// cached copy), and the encoded-chunk LRU the rest (at least 64 MiB).
    /// Returns (chunk cache, decoded-tile cache).
    pub fn split_budget(
        total: usize,
        workers: usize,
        chunking: crate::s2::chunking::Chunking,
    ) -> (usize, usize) {
        let decode = (total / 4).min(1 << 30);
        let in_flight = workers * 3 * max_raw_object_bytes(chunking);
        let chunks = total.saturating_sub(decode + in_flight).max(64 << 20);
        (chunks, decode)
    }
}

/// The largest decoded object (chunk or shard) of any resolution, bytes (L1C's `data`, which
/// has the most bands; an `scl` object is one plane).
fn max_raw_object_bytes(chunking: crate::s2::chunking::Chunking) -> usize {
    Resolution::ALL
        .iter()
        .map(|r| chunking.object_shape(*r).iter().product::<u64>() as usize * 2)
        .max()
        .unwrap_or(0)
}

/// The Sentinel-2 cube: tree, years and chunk resolver over one store and one source.
pub struct Cube {
    cfg: CubeConfig,
    tree: Tree,
    years: Years,
    chunks: Arc<ChunkResolver>,
    /// Resolves tile-years (a catalog scan; with CDSE, a STAC search and metadata downloads),
    /// so no FUSE thread waits on one.
    year_pool: WorkPool,
    store_name: String,
    source: Arc<dyn BandSource>,
    started: chrono::DateTime<chrono::Utc>,
    chunking: crate::s2::chunking::Chunking,
    /// What the mount presents (`Native` for a chunked store).
    view: View,
    pub stats: CubeStats,
}

impl Cube {
    /// The cube presenting the store's arrays as stored (`View::Native`).
    pub fn new(
        cfg: CubeConfig,
        store: Arc<dyn Store>,
        source: Arc<dyn BandSource>,
    ) -> Result<Arc<Self>> {
        Self::with_view(cfg, View::Native, store, source)
    }

    /// The cube presenting the store's arrays through `view` (`--view`): `Chunked` serves a
    /// sharded store's arrays as chunked by their inner chunks (a chunked store is served as
    /// it is either way). The store, the objects computed and written back and the records are
    /// the store's layout's whatever the view.
    pub fn with_view(
        cfg: CubeConfig,
        view: View,
        store: Arc<dyn Store>,
        source: Arc<dyn BandSource>,
    ) -> Result<Arc<Self>> {
        let level = source.level();
        crate::collection::check_store(store.as_ref(), level.stac_collection())?;
        let chunking = crate::s2::layout::establish(store.as_ref(), cfg.layout, level)?;
        let tracker = Arc::new(Tracker::new(
            cfg.fence,
            crate::s2::layout::metadata_files(chunking),
        ));
        let records = Arc::new(RecordWriter::new());
        let chunks = ChunkResolver::new(
            store.clone(),
            source.clone(),
            ResolverConfig {
                chunk_cache_bytes: cfg.chunk_cache_bytes,
                decode_cache_bytes: cfg.decode_cache_bytes,
                workers: cfg.workers,
                writeback: cfg.writeback,
            },
            tracker.clone(),
            records.clone(),
        );
        if chunking.effective_view(view) != view {
            tracing::info!("the store is {chunking}: --view {view} serves it as it is");
        }
        let view = chunking.effective_view(view);
        if view != View::Native {
            tracing::info!("serving the {view} view of the {chunking} layout");
        }
        Ok(Arc::new(Cube {
            tree: Tree::new(cfg.tiles.clone(), cfg.years.clone(), chunking, view, level)?,
            years: Years::new(
                store.clone(),
                source.clone(),
                tracker,
                chunking,
                view,
                records,
            ),
            chunks: Arc::new(chunks),
            year_pool: WorkPool::new("resolve-year", 2),
            store_name: store.describe(),
            source,
            started: chrono::Utc::now(),
            chunking,
            view,
            stats: CubeStats::default(),
            cfg,
        }))
    }

    pub fn config(&self) -> &CubeConfig {
        &self.cfg
    }

    /// Runs `answer` (a request about `path`) at once, unless answering may first have to resolve
    /// the path's tile-year: then on the year pool, so the calling FUSE thread is free.
    pub fn when_year_ready(&self, path: &str, answer: impl FnOnce() + Send + 'static) {
        match self.tree.tile_year_of(path) {
            Some(ty) if self.years.pending(&ty) => self.year_pool.spawn(answer),
            _ => answer(),
        }
    }

    /// Attributes of `path`; a chunk not computed yet is materialized first (on the worker pool;
    /// `done` is called from there).
    pub fn lookup(
        &self,
        path: &str,
        done: impl FnOnce(std::result::Result<Attr, FsError>) + Send + 'static,
    ) {
        self.stats.lookups.inc();
        match self.resolve(path) {
            Err(e) => done(Err(e)),
            Ok(Resolved::Dir) => done(Ok(Attr::dir())),
            Ok(Resolved::File(a, _)) => done(Ok(a)),
            Ok(Resolved::Stats) => done(Ok(self.stats_attr(&self.stats_json()))),
            Ok(Resolved::Chunk(ys, key)) => self.chunks.attr(ys, key, Box::new(done)),
            Ok(Resolved::Inner(ys, shard, pos)) => {
                self.chunks.inner_attr(ys, shard, pos, Box::new(done))
            }
        }
    }

    /// Attributes of a node already looked up (never starts work).
    pub fn getattr(&self, path: &str) -> std::result::Result<Attr, FsError> {
        match self.resolve(path)? {
            Resolved::Dir => Ok(Attr::dir()),
            Resolved::File(a, _) => Ok(a),
            Resolved::Stats => Ok(self.stats_attr(&self.stats_json())),
            Resolved::Chunk(ys, key) => self.chunks.known_attr(&ys, &key),
            Resolved::Inner(ys, shard, pos) => self.chunks.known_inner_attr(&ys, &shard, pos),
        }
    }

    /// The content of the file at `path` while it is open (a snapshot for the stats file).
    pub fn open(
        &self,
        path: &str,
        done: impl FnOnce(std::result::Result<Content, FsError>) + Send + 'static,
    ) {
        self.stats.opens.inc();
        match self.resolve(path) {
            Err(e) => done(Err(e)),
            Ok(Resolved::Dir) => done(Err(FsError::IsDir)),
            Ok(Resolved::File(_, b)) => done(Ok(b.into())),
            Ok(Resolved::Stats) => done(Ok(Content::Bytes(self.stats_json().into()))),
            Ok(Resolved::Chunk(ys, key)) => self.chunks.content(ys, key, Box::new(done)),
            Ok(Resolved::Inner(ys, shard, pos)) => {
                self.chunks.inner_content(ys, shard, pos, Box::new(done))
            }
        }
    }

    /// Children of the directory at `path`: (name, kind), without `.`/`..`. Never starts
    /// chunk work: chunk directories list only chunks already computed (in the chunked view,
    /// the inner chunks of computed shards whose index the mount holds).
    pub fn list(&self, path: &str) -> std::result::Result<Vec<(String, Kind)>, FsError> {
        self.tree.list(&self.years, path, &|ys, array, idx| {
            self.chunks.known_index(ys, array, idx)
        })
    }

    fn resolve(&self, path: &str) -> std::result::Result<Resolved, FsError> {
        self.tree.resolve(&self.years, path)
    }

    /// The stats file's attributes for one snapshot of its content.
    fn stats_attr(&self, content: &[u8]) -> Attr {
        Attr {
            kind: Kind::File,
            size: content.len() as u64,
            volatile: true,
        }
    }

    /// The statistics document served as `.datacube/stats.json`.
    pub fn stats_json(&self) -> Vec<u8> {
        let mut sections = self.chunks.stats_json();
        if let Some(serde_json::Value::Object(fs)) = sections.get_mut("fs") {
            fs.extend(self.stats.to_json());
            fs.extend(self.years.stats.to_json());
            fs.extend(self.years.tracker.stats.to_json());
        }
        let mut doc = json!({
            "started": self.started.to_rfc3339(),
            "store": self.store_name,
            "source": self.source.describe(),
            "source_io": self.source.stats(),
            "tiles": self.cfg.tiles.len(),
            // What `fs.materializations` and the chunk files count: chunks, or shards.
            "layout": self.chunking.to_string(),
            "object": if self.chunking.inner_space(Resolution::R10).is_some() { "shard" } else { "chunk" },
            // What readers of the mount see: the store's objects, or the chunked view's chunks.
            "view": self.view.to_string(),
            "years": [self.cfg.years.first(), self.cfg.years.last()],
        });
        if let serde_json::Value::Object(m) = &mut doc {
            m.extend(sections);
        }
        let mut v = serde_json::to_vec_pretty(&doc).expect("JSON");
        v.push(b'\n');
        v
    }

    /// The tile-years resolved so far that have scenes.
    pub fn resolved_years(&self) -> Vec<crate::key::TileYear> {
        self.years
            .resolved()
            .iter()
            .map(|y| y.tile_year())
            .collect()
    }

    /// Searches the source again for a resolved tile-year, publishes what is new and serves it.
    pub fn refresh_year(&self, ty: &crate::key::TileYear) -> Result<Option<year::Change>> {
        self.years.refresh(ty)
    }

    /// Serves the store's latest catalog generation of `ty` if another process published one.
    pub fn poll_year(&self, ty: &crate::key::TileYear) -> Result<Option<year::Change>> {
        self.years.adopt_latest(ty)
    }

    /// Finishes queued work and writes everything computed to the store.
    pub fn shutdown(&self) {
        self.year_pool.shutdown();
        self.chunks.shutdown();
    }

    /// Waits until every computed chunk is in the store (for tests and benchmarks).
    pub fn flush(&self) {
        self.chunks.flush();
    }
}

impl crate::fs::refresh::LivingYears for Cube {
    fn resolved_years(&self) -> Vec<crate::key::TileYear> {
        Cube::resolved_years(self)
    }

    fn refresh_year(&self, ty: &crate::key::TileYear) -> Result<Option<Vec<String>>> {
        Ok(Cube::refresh_year(self, ty)?.map(|c| c.paths()))
    }

    fn poll_year(&self, ty: &crate::key::TileYear) -> Result<Option<Vec<String>>> {
        Ok(Cube::poll_year(self, ty)?.map(|c| c.paths()))
    }
}

impl crate::fs::view::CubeView for Cube {
    fn when_year_ready(&self, path: &str, answer: Box<dyn FnOnce() + Send>) {
        Cube::when_year_ready(self, path, answer)
    }

    fn lookup(&self, path: &str, done: crate::fs::view::AttrDone) {
        Cube::lookup(self, path, done)
    }

    fn getattr(&self, path: &str) -> std::result::Result<Attr, FsError> {
        Cube::getattr(self, path)
    }

    fn open(&self, path: &str, done: crate::fs::view::ContentDone) {
        Cube::open(self, path, done)
    }

    fn list(&self, path: &str) -> std::result::Result<Vec<(String, Kind)>, FsError> {
        Cube::list(self, path)
    }

    fn stats(&self) -> &CubeStats {
        &self.stats
    }

    fn stats_json(&self) -> Vec<u8> {
        Cube::stats_json(self)
    }

    fn start_refresher(
        self: Arc<Self>,
        on_change: crate::fs::refresh::OnChange,
    ) -> Option<crate::fs::refresh::Refresher> {
        let poll = self
            .cfg
            .fence
            .check_age()
            .max(std::time::Duration::from_millis(100));
        Some(crate::fs::refresh::Refresher::start(
            self.clone(),
            self.cfg.refresh,
            poll,
            on_change,
        ))
    }

    fn shutdown(&self) {
        Cube::shutdown(self)
    }

    fn flush(&self) {
        Cube::flush(self)
    }
}
