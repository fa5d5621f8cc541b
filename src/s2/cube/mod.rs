//! The Sentinel-2 cube: the generic cube (`crate::cube`: tree, year lifecycle, request
//! dispatch) with what is Sentinel-2's own, split by noun: `year` (a tile-year's state under one
//! generation, and the year model: scans merged by baseline), `view` (its pixel arrays as the
//! tree sees them, plain or in the chunked view), `resolver` (chunk and shard bytes through the
//! cache tiers, single flight, materialization, writeback).

pub(crate) mod resolver;
pub(crate) mod view;
pub(crate) mod year;

use std::sync::Arc;

use anyhow::Result;

use crate::collection::View;
pub use crate::fs::attr::{Attr, CubeStats, FsError, Kind};
pub use crate::fs::refresh::RefreshPolicy;
use crate::generation::{Fence, Tracker};
use crate::s2::bands::Resolution;
use crate::source::BandSource;
use crate::store::{RecordWriter, Store};
use crate::writeback::Limits;
use resolver::{ChunkResolver, ResolverConfig};
pub use view::{S2Object, S2Objects};
use year::{S2Years, Years};

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
pub type Cube = crate::cube::Cube<S2Objects>;

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
        let mut tile_meta = std::collections::HashMap::new();
        for t in &cfg.tiles {
            let epsg = crate::s2::tiles::utm_epsg(t)?;
            tile_meta.insert(t.clone(), crate::s2::layout::tile_group_file(t, epsg));
        }
        let tree = crate::cube::tree::Tree::new(
            cfg.tiles.clone(),
            cfg.years.clone(),
            crate::s2::layout::root_group_view_file(chunking, level, view),
            tile_meta,
        );
        let years = Years::new(
            store.clone(),
            S2Years::new(source.clone(), chunking, view, records),
            tracker,
        );
        let mut about = serde_json::Map::new();
        about.insert("collection".into(), level.stac_collection().into());
        about.insert("store".into(), store.describe().into());
        about.insert("source".into(), source.describe().into());
        // What `fs.materializations` and the chunk files count: chunks, or shards.
        about.insert("layout".into(), chunking.to_string().into());
        let object = if chunking.inner_space(Resolution::R10).is_some() {
            "shard"
        } else {
            "chunk"
        };
        about.insert("object".into(), object.into());
        // What readers of the mount see: the store's objects, or the chunked view's chunks.
        about.insert("view".into(), view.to_string().into());
        let objects = S2Objects::new(Arc::new(chunks), source);
        Ok(Arc::new(crate::cube::Cube::assemble(
            tree,
            years,
            objects,
            cfg.refresh,
            about,
        )))
    }
}
