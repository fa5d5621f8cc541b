//! What the FUSE adapter needs of a cube, whatever its collection: [`CubeView`]. The Sentinel-2
//! cube ([`super::Cube`]) and the Sentinel-1 cube ([`super::S1Cube`]) implement it; `fuse` and
//! `serve` know only this trait.

use std::sync::Arc;

use super::attr::{Attr, CubeStats, FsError, Kind};
use super::content::Content;
use super::refresh::{OnChange, Refresher};

pub type AttrDone = Box<dyn FnOnce(Result<Attr, FsError>) + Send>;
pub type ContentDone = Box<dyn FnOnce(Result<Content, FsError>) + Send>;

/// A virtual cube as a tree of files, answered without FUSE.
pub trait CubeView: Send + Sync + 'static {
    /// Runs `answer` at once, or on a pool if the path's tile-year must be resolved first (so no
    /// FUSE thread waits on a catalog search).
    fn when_year_ready(&self, path: &str, answer: Box<dyn FnOnce() + Send>);
    /// Attributes of `path`; may start materializing it (`done` is called when known).
    fn lookup(&self, path: &str, done: AttrDone);
    /// Attributes of a node already looked up (never starts work).
    fn getattr(&self, path: &str) -> Result<Attr, FsError>;
    /// The content of the file at `path` now, for a READ (the kernel opens files without us).
    fn open(&self, path: &str, done: ContentDone);
    /// Children of a directory (without `.`/`..`); never starts chunk work.
    fn list(&self, path: &str) -> Result<Vec<(String, Kind)>, FsError>;
    /// Request counters the FUSE adapter adds to (reads, bytes served).
    fn stats(&self) -> &CubeStats;
    /// The document served as `.datacube/stats.json`.
    fn stats_json(&self) -> Vec<u8>;
    /// Starts the background refresh of resolved years, if this cube refreshes.
    fn start_refresher(self: Arc<Self>, on_change: OnChange) -> Option<Refresher>;
    /// Finishes queued work and writes everything computed to the store.
    fn shutdown(&self);
    /// Waits until every computed chunk is in the store.
    fn flush(&self);
}
