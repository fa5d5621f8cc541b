//! Decoding windows of band JP2 files with GDAL, through a cache of decoded JP2 tiles.
//!
//! A window read is split on the file's own tiling (1024×1024 for Sentinel-2): every JP2 tile it
//! touches is decoded whole, once, and kept in a byte-capped LRU, so neighbouring chunks (four
//! 512-px chunks per tile at 10 m, 64 per tile at 60 m) never decode the same tile twice.
//! Concurrent requests for one tile wait for a single decode (single flight).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{anyhow, Context, Result};
use gdal::Dataset;

use crate::util::{ByteLru, SingleFlight};

/// Size and tiling of a band file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RasterInfo {
    pub width: usize,
    pub height: usize,
    pub block_w: usize,
    pub block_h: usize,
}

/// A pixel window of a band file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
    pub h: usize,
}

/// A decoded JP2 tile (clipped at the image edge).
#[derive(Debug)]
pub struct Block {
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
    pub h: usize,
    pub data: Vec<u16>,
}

type BlockKey = (PathBuf, usize, usize);

crate::counters! {
    /// What the decoded-tile cache did (hits and evictions are the LRU's).
    pub struct RasterStats { decodes }
}

/// Reads windows of band files; shareable across threads.
pub struct RasterReader {
    blocks: Mutex<ByteLru<BlockKey, Arc<Block>>>,
    flights: Arc<SingleFlight<BlockKey, Arc<Block>, String>>,
    infos: Mutex<HashMap<PathBuf, RasterInfo>>,
    pub stats: RasterStats,
}

impl RasterReader {
    /// `capacity_bytes`: the most decoded data kept.
    pub fn new(capacity_bytes: usize) -> Self {
        RasterReader {
            blocks: Mutex::new(ByteLru::unpinned(capacity_bytes, |b: &Arc<Block>| {
                b.data.len() * 2
            })),
            flights: Arc::new(SingleFlight::new()),
            infos: Mutex::new(HashMap::new()),
            stats: RasterStats::default(),
        }
    }

    /// Size and tiling of `path` (cached).
    pub fn info(&self, path: &Path) -> Result<RasterInfo> {
        if let Some(i) = self.infos.lock().unwrap().get(path) {
            return Ok(*i);
        }
        let ds = open(path)?;
        let band = ds
            .rasterband(1)
            .with_context(|| format!("{}: no band 1", path.display()))?;
        let (w, h) = ds.raster_size();
        let (bw, bh) = band.block_size();
        let info = RasterInfo {
            width: w,
            height: h,
            block_w: bw.max(1),
            block_h: bh.max(1),
        };
        self.infos.lock().unwrap().insert(path.to_path_buf(), info);
        Ok(info)
    }

    /// Copies the window (`x0`, `y0`, `w`, `h`) of `path` into `out` (row stride `stride`).
    /// The window must lie inside the image.
    pub fn read_window(
        &self,
        path: &Path,
        win: Window,
        out: &mut [u16],
        stride: usize,
    ) -> Result<()> {
        let Window { x0, y0, w, h } = win;
        let info = self.info(path)?;
        if x0 + w > info.width || y0 + h > info.height {
            anyhow::bail!(
                "{}: window {x0},{y0} {w}x{h} outside the {}x{} image",
                path.display(),
                info.width,
                info.height
            );
        }
        for by in y0 / info.block_h..(y0 + h).div_ceil(info.block_h) {
            for bx in x0 / info.block_w..(x0 + w).div_ceil(info.block_w) {
                let block = self.block(path, &info, bx, by)?;
                let cx0 = x0.max(block.x0);
                let cx1 = (x0 + w).min(block.x0 + block.w);
                let cy0 = y0.max(block.y0);
                let cy1 = (y0 + h).min(block.y0 + block.h);
                for y in cy0..cy1 {
                    let src =
                        &block.data[(y - block.y0) * block.w + (cx0 - block.x0)..][..cx1 - cx0];
                    out[(y - y0) * stride + (cx0 - x0)..][..cx1 - cx0].copy_from_slice(src);
                }
            }
        }
        Ok(())
    }

    /// The decoded tile (`bx`, `by`) of `path`, decoding it at most once while it is cached
    /// (concurrent requests share one decode).
    pub fn block(
        &self,
        path: &Path,
        info: &RasterInfo,
        bx: usize,
        by: usize,
    ) -> Result<Arc<Block>> {
        let key: BlockKey = (path.to_path_buf(), bx, by);
        if let Some(b) = self.blocks.lock().unwrap().get(&key) {
            return Ok(b);
        }
        self.flights
            .run(key.clone(), || {
                // Decoded by a flight that ended between our miss and our join?
                if let Some(b) = self.blocks.lock().unwrap().get(&key) {
                    return Ok(b);
                }
                self.stats.decodes.inc();
                let b = decode_block(path, info, bx, by)
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"))?;
                self.blocks.lock().unwrap().insert(key.clone(), b.clone());
                Ok(b)
            })
            .map_err(|e| anyhow!(e))
    }

    /// The statistics served in `stats.json`.
    pub fn to_json(&self, capacity: usize) -> serde_json::Value {
        let g = self.blocks.lock().unwrap();
        serde_json::json!({
            "decodes": self.stats.decodes.get(),
            "hits": g.stats.hits.get(),
            "evictions": g.stats.evictions.get(),
            "bytes": g.bytes(),
            "capacity": capacity,
        })
    }

    pub fn cached_bytes(&self) -> usize {
        self.blocks.lock().unwrap().bytes()
    }
}

fn open(path: &Path) -> Result<Dataset> {
    crate::source::vsi::take_error();
    Dataset::open(path)
        .map_err(|e| crate::source::vsi::with_cause(e.into()))
        .with_context(|| format!("{}: cannot open with GDAL", path.display()))
}

fn decode_block(path: &Path, info: &RasterInfo, bx: usize, by: usize) -> Result<Block> {
    let x0 = bx * info.block_w;
    let y0 = by * info.block_h;
    let w = info.block_w.min(info.width - x0);
    let h = info.block_h.min(info.height - y0);
    let data = read_direct(path, x0, y0, w, h)?;
    Ok(Block { x0, y0, w, h, data })
}

/// Decodes one window straight through GDAL, without any cache: the oracle and the decode floor.
pub fn read_direct(path: &Path, x0: usize, y0: usize, w: usize, h: usize) -> Result<Vec<u16>> {
    let ds = open(path)?;
    let band = ds
        .rasterband(1)
        .with_context(|| format!("{}: no band 1", path.display()))?;
    let mut data = vec![0u16; w * h];
    band.read_into_slice::<u16>((x0 as isize, y0 as isize), (w, h), (w, h), &mut data, None)
        .map_err(|e| crate::source::vsi::with_cause(e.into()))
        .with_context(|| format!("{}: decoding window {x0},{y0} {w}x{h}", path.display()))?;
    Ok(data)
}

/// Process-wide GDAL settings: a small GDAL block cache (we cache decoded tiles ourselves) and
/// quiet stderr.
pub fn configure_gdal() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = gdal::config::set_config_option("GDAL_CACHEMAX", "64");
        let _ = gdal::config::set_config_option("CPL_LOG", "/dev/null");
        let _ = gdal::config::set_config_option("GDAL_PAM_ENABLED", "NO");
        // Parallelism is ours (one decode per worker thread), in intake and in the floor alike.
        let _ = gdal::config::set_config_option("GDAL_NUM_THREADS", "1");
    });
}

impl RasterReader {
    /// Decodes (into the cache) every tile of `path` that the window touches, without copying.
    pub fn prefetch(&self, path: &Path, win: Window) -> Result<()> {
        let Window { x0, y0, w, h } = win;
        let info = self.info(path)?;
        let x1 = (x0 + w).min(info.width);
        let y1 = (y0 + h).min(info.height);
        for by in y0 / info.block_h..y1.div_ceil(info.block_h) {
            for bx in x0 / info.block_w..x1.div_ceil(info.block_w) {
                self.block(path, &info, bx, by)?;
            }
        }
        Ok(())
    }
}

/// A one-band uint16 GDAL dataset in memory holding `values` (`n`×`n`, row-major) on the grid
/// `geotransform` in `EPSG:epsg`: what the fixture writers turn into JP2s and GeoTIFFs.
pub fn mem_dataset(
    values: Vec<u16>,
    n: usize,
    geotransform: [f64; 6],
    epsg: u32,
) -> Result<Dataset> {
    let mem = gdal::DriverManager::get_driver_by_name("MEM")?;
    let mut ds = mem.create_with_band_type::<u16, _>("", n, n, 1)?;
    ds.set_geo_transform(&geotransform)?;
    ds.set_spatial_ref(&gdal::spatial_ref::SpatialRef::from_epsg(epsg)?)?;
    {
        let mut band = ds.rasterband(1)?;
        let mut buf = gdal::raster::Buffer::new((n, n), values);
        band.write((0, 0), (n, n), &mut buf)?;
    }
    Ok(ds)
}
