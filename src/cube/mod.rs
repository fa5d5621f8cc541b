//! A mounted cube, written once for every collection: the tree of files (`tree`), the year
//! lifecycle (`years`) and the answers to the FUSE adapter's requests ([`Cube`], a
//! `fs::CubeView`), without FUSE. A collection brings what is its own: its years
//! (`years::YearModel`: how a search becomes a catalog generation, what a tile-year serves under
//! one) and its objects ([`Objects`]: how one object file is answered — from its caches, the
//! writeback queue, the store, or computed). Anything that may take long runs on a pool and
//! answers through a completion, so FUSE threads stay free.

pub mod tree;
pub mod years;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::fs::attr::{Attr, CubeStats, FsError, Kind};
use crate::fs::content::Content;
use crate::fs::pool::WorkPool;
use crate::fs::refresh::{LivingYears, OnChange, RefreshPolicy, Refresher};
use crate::fs::view::{AttrDone, ContentDone, CubeView};
use crate::key::{ChunkIndex, TileYear};
use tree::{Resolved, Tree, YearTree};
use years::{Change, YearModel, Years};

/// A collection's tile-year state.
pub type State<O> = <<O as Objects>::Model as YearModel>::State;
/// How a collection names one of its arrays.
pub type ArrayOf<O> = <State<O> as YearTree>::Array;

/// What a collection says about its object files (chunks or shards of its time-chunked arrays).
pub trait Objects: Send + Sync + 'static {
    type Model: YearModel;
    /// One object file as a request names it.
    type Object: Send + 'static;

    /// The object at `idx` of `array` in a resolved tile-year.
    fn object(&self, year: Arc<State<Self>>, array: ArrayOf<Self>, idx: ChunkIndex)
        -> Self::Object;
    /// Its attributes; may start computing it (`done` is called when known; `NotFound` when it
    /// has no file: all fill).
    fn lookup(&self, object: Self::Object, done: AttrDone);
    /// Its attributes if already known (never starts work).
    fn getattr(&self, object: &Self::Object) -> Result<Attr, FsError>;
    /// Its content now, for a READ.
    fn open(&self, object: Self::Object, done: ContentDone);
    /// The objects of `array` known to have a file under `year`: what a listing shows (from
    /// memory only).
    fn listed(&self, year: &State<Self>, array: ArrayOf<Self>) -> Vec<ChunkIndex>;
    /// The collection's sections of the statistics document; its `fs` section is merged with
    /// the cube's.
    fn stats_json(&self) -> Map<String, Value>;
    /// Finishes queued work and writes everything computed to the store.
    fn shutdown(&self);
    /// Waits until every computed object is in the store.
    fn flush(&self);
}

/// A collection's cube: tree, years and objects over one store.
pub struct Cube<O: Objects> {
    tree: Tree,
    years: Arc<Years<O::Model>>,
    pub objects: O,
    /// Resolves tile-years (a catalog search; with a remote source, a STAC search and metadata
    /// downloads), so no FUSE thread waits on one.
    year_pool: WorkPool,
    refresh: RefreshPolicy,
    /// Fixed facts of the statistics document (store, source, layout, …).
    about: Map<String, Value>,
    started: chrono::DateTime<chrono::Utc>,
    /// The stats file's length: the longest it had to be, so it never shrinks (`stats_file`).
    stats_file_len: AtomicUsize,
    pub stats: CubeStats,
}

/// Room for the stats document to grow (counters gain digits, sections appear) before its file
/// must grow by a page.
const STATS_HEADROOM: usize = 2048;

impl<O: Objects> Cube<O> {
    /// `about`: what the statistics document says of the cube besides its counters.
    pub fn assemble(
        tree: Tree,
        years: Years<O::Model>,
        objects: O,
        refresh: RefreshPolicy,
        about: Map<String, Value>,
    ) -> Self {
        Cube {
            tree,
            years: Arc::new(years),
            objects,
            year_pool: WorkPool::new("resolve-year", 2),
            refresh,
            about,
            started: chrono::Utc::now(),
            stats_file_len: AtomicUsize::new(0),
            stats: CubeStats::default(),
        }
    }

    pub fn years(&self) -> &Years<O::Model> {
        &self.years
    }

    /// Runs `answer` (a request about `path`) at once, unless answering may first have to
    /// resolve the path's tile-year: then on the year pool, so the calling FUSE thread is free.
    pub fn when_year_ready(&self, path: &str, answer: impl FnOnce() + Send + 'static) {
        match self.tree.tile_year_of(path) {
            Some(ty) if self.years.pending(&ty) => self.year_pool.spawn(answer),
            _ => answer(),
        }
    }

    fn resolve(&self, path: &str) -> Result<Resolved<State<O>>, FsError> {
        self.tree.resolve(&|ty| self.years.get(ty), path)
    }

    /// Attributes of `path`; an object not computed yet is computed first (on the
    /// collection's pool; `done` is called from there).
    pub fn lookup(&self, path: &str, done: impl FnOnce(Result<Attr, FsError>) + Send + 'static) {
        self.stats.lookups.inc();
        match self.resolve(path) {
            Err(e) => done(Err(e)),
            Ok(Resolved::Dir) => done(Ok(Attr::dir())),
            Ok(Resolved::File(a, _)) => done(Ok(a)),
            Ok(Resolved::Stats) => done(Ok(stats_attr(&self.stats_file()))),
            Ok(Resolved::Object(ys, a, idx)) => {
                let o = self.objects.object(ys, a, idx);
                self.objects.lookup(o, Box::new(done))
            }
        }
    }

    /// Attributes of a node already looked up (never starts work).
    pub fn getattr(&self, path: &str) -> Result<Attr, FsError> {
        match self.resolve(path)? {
            Resolved::Dir => Ok(Attr::dir()),
            Resolved::File(a, _) => Ok(a),
            Resolved::Stats => Ok(stats_attr(&self.stats_file())),
            Resolved::Object(ys, a, idx) => self.objects.getattr(&self.objects.object(ys, a, idx)),
        }
    }

    /// The content of the file at `path` now (for the stats file, a fresh document).
    pub fn open(&self, path: &str, done: impl FnOnce(Result<Content, FsError>) + Send + 'static) {
        match self.resolve(path) {
            Err(e) => done(Err(e)),
            Ok(Resolved::Dir) => done(Err(FsError::IsDir)),
            Ok(Resolved::File(_, b)) => done(Ok(b.into())),
            Ok(Resolved::Stats) => done(Ok(Content::Bytes(self.stats_file().into()))),
            Ok(Resolved::Object(ys, a, idx)) => {
                let o = self.objects.object(ys, a, idx);
                self.objects.open(o, Box::new(done))
            }
        }
    }

    /// Children of the directory at `path`: (name, kind), without `.`/`..`. Never starts
    /// object work: object directories list only objects known to exist.
    pub fn list(&self, path: &str) -> Result<Vec<(String, Kind)>, FsError> {
        self.tree.list(
            &|ty| self.years.get(ty),
            &|ys, a| self.objects.listed(ys, a),
            path,
        )
    }

    /// The statistics document served as `.datacube/stats.json`.
    pub fn stats_json(&self) -> Vec<u8> {
        let mut sections = self.objects.stats_json();
        let mut fs = self.stats.to_json();
        fs.extend(self.years.stats.to_json());
        fs.extend(self.years.tracker.stats.to_json());
        fs.extend(self.years.model.stats_json());
        if let Some(Value::Object(own)) = sections.remove("fs") {
            fs.extend(own);
        }
        let mut doc = Map::new();
        doc.insert("started".into(), self.started.to_rfc3339().into());
        doc.extend(self.about.clone());
        doc.insert("tiles".into(), self.tree.tiles().len().into());
        doc.insert(
            "years".into(),
            json!([self.tree.years().first(), self.tree.years().last()]),
        );
        doc.insert("fs".into(), fs.into());
        doc.extend(sections);
        let mut v = serde_json::to_vec_pretty(&Value::Object(doc)).expect("JSON");
        v.push(b'\n');
        v
    }

    /// The stats file's content: the document, padded with spaces (which JSON allows after a
    /// value) to whole 4 KiB pages, with room to grow. A reader of the mount may take the file's
    /// size from one GETATTR and its bytes from a later READ (the kernel opens files without
    /// asking the daemon, see `fs::fuse`); with one length for every snapshot, the bytes it gets
    /// are one whole document, never a cut or zero-filled one. The length only ever grows, by
    /// whole pages, when a document outgrows its headroom (in practice never after the first).
    pub fn stats_file(&self) -> Vec<u8> {
        let mut v = self.stats_json();
        let want = (v.len() + STATS_HEADROOM).next_multiple_of(4096);
        let len = self
            .stats_file_len
            .fetch_max(want, Ordering::Relaxed)
            .max(want);
        v.pop(); // the final newline goes after the padding
        v.resize(len - 1, b' ');
        v.push(b'\n');
        v
    }

    /// The tile-years resolved so far that have items.
    pub fn resolved_years(&self) -> Vec<TileYear> {
        self.years.resolved_years()
    }

    /// Searches the source again for a resolved tile-year, publishes what is new and serves it.
    pub fn refresh_year(&self, ty: &TileYear) -> Result<Option<Change<State<O>>>> {
        self.years.refresh(ty)
    }

    /// Serves the store's latest catalog generation of `ty` if another process published one.
    pub fn poll_year(&self, ty: &TileYear) -> Result<Option<Change<State<O>>>> {
        self.years.adopt_latest(ty)
    }

    /// Finishes queued work and writes everything computed to the store.
    pub fn shutdown(&self) {
        self.year_pool.shutdown();
        self.objects.shutdown();
    }

    /// Waits until every computed object is in the store (for tests and benchmarks).
    pub fn flush(&self) {
        self.objects.flush();
    }
}

/// The stats file's attributes for one snapshot of its content.
fn stats_attr(content: &[u8]) -> Attr {
    Attr {
        kind: Kind::File,
        size: content.len() as u64,
        volatile: true,
    }
}

impl<O: Objects> CubeView for Cube<O> {
    fn when_year_ready(&self, path: &str, answer: Box<dyn FnOnce() + Send>) {
        Cube::when_year_ready(self, path, answer)
    }

    fn lookup(&self, path: &str, done: AttrDone) {
        Cube::lookup(self, path, done)
    }

    fn getattr(&self, path: &str) -> Result<Attr, FsError> {
        Cube::getattr(self, path)
    }

    fn open(&self, path: &str, done: ContentDone) {
        Cube::open(self, path, done)
    }

    fn list(&self, path: &str) -> Result<Vec<(String, Kind)>, FsError> {
        Cube::list(self, path)
    }

    fn stats(&self) -> &CubeStats {
        &self.stats
    }

    fn stats_json(&self) -> Vec<u8> {
        Cube::stats_json(self)
    }

    fn start_refresher(self: Arc<Self>, on_change: OnChange) -> Option<Refresher> {
        Some(Refresher::start(
            self.years.clone(),
            self.refresh,
            self.years.poll_period(),
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
