//! Chunk materialization: (tile, year, pixel array, chunk index) → encoded object bytes, or "all fill".
//!
//! The object is a chunk (chunked layout) or a shard (sharded layout, `crate::s2::chunking`): the
//! same `time × all bands × y × x` block (`time × y × x` for L2A's `scl`, from the SCL file,
//! repeated 2 × 2 at 10 m), encoded by zarrs with the array's own codec chain
//! — for a shard, `sharding_indexed`, which leaves all-fill inner chunks out and appends the index.
//! An object is assembled from exactly the JP2 windows it covers (through the shared
//! `RasterReader`, so a JP2 tile is decoded once for all the objects inside it).

use std::sync::Arc;

use anyhow::{Context, Result};
use rayon::prelude::*;
use zarrs::array::Array;
use zarrs::storage::store::MemoryStore;

use crate::raster::{RasterReader, Window};
use crate::s2::array::{PixelArray, Var};
use crate::s2::catalog::Catalog;
use crate::s2::chunking::array_shape;
use crate::s2::chunking::Chunking;
use crate::s2::layout::{DataGeometry, YearLayout};
use crate::s2::product::SCL_RESOLUTION;
use crate::source::BandSource;
use crate::zarr_json::array_from_json;

pub use crate::key::ChunkIndex;

/// The result of materializing a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Encoded bytes, ready to store or serve.
    Data(Vec<u8>),
    /// Every value is the fill value (0): by Zarr's rule, no object is stored.
    Empty,
}

/// Everything needed to build the chunks of one tile-year.
pub struct YearContext {
    pub catalog: Arc<Catalog>,
    pub chunking: Chunking,
    pub layout: YearLayout,
    /// Per pixel array of the level (index = `PixelArray::index`; `None`: not in the level).
    geometries: Vec<Option<DataGeometry>>,
    encoders: Vec<Option<Array<MemoryStore>>>,
    /// Sharded layout: per array, the inner chunk's encoder and the shard index's.
    shard_encoders: Vec<Option<(Array<MemoryStore>, Array<MemoryStore>)>>,
}

impl YearContext {
    pub fn new(catalog: Arc<Catalog>, chunking: Chunking) -> Result<Self> {
        let layout = YearLayout::build(&catalog, chunking)?;
        let level = catalog.level();
        let n = PixelArray::ALL.len();
        let (mut geometries, mut encoders, mut shard_encoders) =
            (vec![None; n], Vec::new(), Vec::new());
        encoders.resize_with(n, || None);
        shard_encoders.resize_with(n, || None);
        for array in PixelArray::of_level(level) {
            let i = array.index();
            if let Some(inner) = chunking.inner_planes(array, level) {
                let shape = array_shape(array, inner);
                let dtype = if array.has_bands() { "uint16" } else { "uint8" };
                let meta = serde_json::json!({
                    "zarr_format": 3, "node_type": "array", "shape": shape, "data_type": dtype,
                    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shape}},
                    "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                    "fill_value": 0, "codecs": crate::s2::chunking::pixel_codecs(array.value_bytes()), "attributes": {}
                });
                let per = chunking.space(array.res) / inner[2];
                let index_shape = if array.has_bands() {
                    vec![1, 1, per, per]
                } else {
                    vec![1, per, per]
                };
                shard_encoders[i] = Some((
                    array_from_json(Arc::new(MemoryStore::new()), "/inner", &meta)?,
                    crate::shard::index_encoder(&index_shape)?,
                ));
            }
            geometries[i] = Some(DataGeometry::new(&catalog, array, chunking)?);
            let meta = layout.array_metadata[i]
                .as_ref()
                .context("array metadata")?;
            encoders[i] = Some(array_from_json(
                Arc::new(MemoryStore::new()),
                &format!("/{}", array.name()),
                meta,
            )?);
        }
        Ok(YearContext {
            catalog,
            chunking,
            layout,
            geometries,
            encoders,
            shard_encoders,
        })
    }

    /// The geometry of a pixel array of the level (panics for an array the level does not
    /// have: callers only name arrays of the year's tree).
    pub fn geometry(&self, array: PixelArray) -> &DataGeometry {
        self.geometries[array.index()]
            .as_ref()
            .unwrap_or_else(|| panic!("{array}: not an array of this level"))
    }

    /// Whether the level has this array.
    pub fn has_array(&self, array: PixelArray) -> bool {
        self.geometries[array.index()].is_some()
    }

    /// Checks that a chunk index lies inside the array's chunk grid.
    pub fn check_index(&self, array: PixelArray, idx: ChunkIndex) -> Result<()> {
        if !self.has_array(array) {
            anyhow::bail!("{array}: no such array in a {} cube", self.catalog.level());
        }
        let [nt, ny, nx] = self.geometry(array).chunk_counts();
        if idx.t >= nt || idx.y >= ny || idx.x >= nx {
            anyhow::bail!(
                "chunk {} of {array} is outside the chunk grid [{nt}, {ny}, {nx}]",
                idx.key_in(array)
            );
        }
        Ok(())
    }

    /// Decodes and assembles the chunk into a C-order `[ct, planes, cs, cs]` buffer (edges
    /// zero).
    pub fn assemble(
        &self,
        source: &dyn BandSource,
        raster: &RasterReader,
        array: PixelArray,
        idx: ChunkIndex,
    ) -> Result<Vec<u16>> {
        self.check_index(array, idx)?;
        let geom = self.geometry(array);
        let [ct, nb, cs, _] = geom.object;
        let (ct, nb, cs) = (ct as usize, nb as usize, cs as usize);
        let mut buf = vec![0u16; ct * nb * cs * cs];
        let t0 = idx.t as usize * ct;
        let t1 = (t0 + ct).min(geom.scenes as usize);
        let y0 = idx.y as usize * cs;
        let x0 = idx.x as usize * cs;
        let h = cs.min(geom.grid.nrows as usize - y0);
        let w = cs.min(geom.grid.ncols as usize - x0);
        let scenes = &self.catalog.scenes[t0..t1];
        if array.var == Var::Scl {
            let window = Window { x0, y0, w, h };
            self.fill_scl(source, raster, array, scenes, window, &mut buf, cs)?;
            return Ok(buf);
        }
        let bands = self.catalog.level().res_bands(array.res);
        // Remote sources download the chunk's band files concurrently (up to their connection cap)
        // before the decodes start; local ones have nothing to do.
        let keys: Vec<&str> = scenes
            .iter()
            .flat_map(|s| bands.iter().map(move |b| s.band_key(b.id)))
            .collect();
        let window = Window { x0, y0, w, h };
        source.prefetch_window(&keys, window);
        // One (scene, band) plane per task: the JP2 decodes of a chunk spread over all cores.
        // Planes past the last scene stay zero (fill).
        buf.par_chunks_mut(cs * cs)
            .take(scenes.len() * nb)
            .enumerate()
            .try_for_each(|(plane, out)| -> Result<()> {
                let (scene, band) = (&scenes[plane / nb], &bands[plane % nb]);
                let key = scene.band_key(band.id);
                let what = || format!("scene {} band {} ({key})", scene.product_id, band.name);
                let path = source.open_window(key, window).with_context(what)?;
                let info = raster.info(&path).with_context(what)?;
                if info.width as u64 != geom.grid.ncols || info.height as u64 != geom.grid.nrows {
                    anyhow::bail!(
                        "{}: {}x{} pixels, but MTD_TL.xml says {}x{}",
                        path.display(),
                        info.width,
                        info.height,
                        geom.grid.ncols,
                        geom.grid.nrows
                    );
                }
                raster
                    .read_window(&path, window, out, cs)
                    .with_context(what)
            })?;
        Ok(buf)
    }

    /// Fills an `scl` object's `[ct, 1, cs, cs]` buffer for the pixels `object` (at the array's
    /// resolution) of `scenes`: the 20 m SCL window of each scene, each pixel repeated `f × f` for
    /// a finer group (f = 2 at 10 m).
    #[allow(clippy::too_many_arguments)]
    fn fill_scl(
        &self,
        source: &dyn BandSource,
        raster: &RasterReader,
        array: PixelArray,
        scenes: &[crate::s2::scene::Scene],
        object: Window,
        buf: &mut [u16],
        cs: usize,
    ) -> Result<()> {
        let f = (SCL_RESOLUTION.metres() / array.res.metres()) as usize;
        let Window { x0, y0, w, h } = object;
        // The 20 m window covering the object's pixels.
        let scl_grid = self.catalog.scenes[0].grid(SCL_RESOLUTION);
        let win = Window {
            x0: x0 / f,
            y0: y0 / f,
            w: (x0 + w).div_ceil(f).min(scl_grid.ncols as usize) - x0 / f,
            h: (y0 + h).div_ceil(f).min(scl_grid.nrows as usize) - y0 / f,
        };
        let keys: Vec<&str> = scenes.iter().filter_map(|s| s.scl_key.as_deref()).collect();
        source.prefetch_window(&keys, win);
        buf.par_chunks_mut(cs * cs)
            .take(scenes.len())
            .enumerate()
            .try_for_each(|(i, out)| -> Result<()> {
                let scene = &scenes[i];
                let key = scene
                    .scl_key
                    .as_deref()
                    .with_context(|| format!("scene {}: no SCL file", scene.product_id))?;
                let what = || format!("scene {} SCL ({key})", scene.product_id);
                let path = source.open_window(key, win).with_context(what)?;
                let info = raster.info(&path).with_context(what)?;
                if info.width as u64 != scl_grid.ncols || info.height as u64 != scl_grid.nrows {
                    anyhow::bail!(
                        "{}: {}x{} pixels, but MTD_TL.xml says {}x{} at {SCL_RESOLUTION}",
                        path.display(),
                        info.width,
                        info.height,
                        scl_grid.ncols,
                        scl_grid.nrows
                    );
                }
                if f == 1 {
                    return raster.read_window(&path, win, out, cs).with_context(what);
                }
                let mut coarse = vec![0u16; win.w * win.h];
                raster
                    .read_window(&path, win, &mut coarse, win.w)
                    .with_context(what)?;
                for r in 0..h {
                    let src = &coarse[((y0 + r) / f - win.y0) * win.w..][..win.w];
                    let dst = &mut out[r * cs..][..w];
                    for (c, v) in dst.iter_mut().enumerate() {
                        *v = src[(x0 + c) / f - win.x0];
                    }
                }
                Ok(())
            })?;
        Ok(())
    }

    /// Encodes an assembled chunk with the array's codecs (`Empty` if all fill).
    pub fn encode(&self, array: PixelArray, buf: Vec<u16>) -> Result<ChunkOutcome> {
        if buf.iter().all(|v| *v == 0) {
            return Ok(ChunkOutcome::Empty);
        }
        let bytes = |v: &[u16]| -> Vec<u8> {
            match array.var {
                Var::Data => bytemuck::cast_slice(v).to_vec(),
                // SCL classes fit a byte: GDAL read the Byte band into u16 unchanged.
                Var::Scl => v.iter().map(|x| *x as u8).collect(),
            }
        };
        if let Some((inner, index)) = &self.shard_encoders[array.index()] {
            return self.encode_shard(array, &buf, inner, index, &bytes);
        }
        let encoder = self.encoders[array.index()]
            .as_ref()
            .with_context(|| format!("{array}: no such array"))?;
        let encoded = crate::shard::encode_with(encoder, &bytes(&buf)).context("encoding chunk")?;
        Ok(ChunkOutcome::Data(encoded))
    }

    /// Encodes an assembled shard: its inner chunks in parallel, each cut out of `buf`, then
    /// assembled in C order with their index (`crate::shard`), so the bytes depend only on the
    /// pixels. An all-fill inner chunk is left out.
    fn encode_shard(
        &self,
        array: PixelArray,
        buf: &[u16],
        inner: &Array<MemoryStore>,
        index: &Array<MemoryStore>,
        bytes: &(dyn Fn(&[u16]) -> Vec<u8> + Sync),
    ) -> Result<ChunkOutcome> {
        let [ct, nb, s, _] = self.geometry(array).object;
        let (planes, s) = ((ct * nb) as usize, s as usize);
        let i = self.chunking.inner_space(array.res).expect("sharded") as usize;
        let per = s / i;
        let encoded = (0..per * per)
            .into_par_iter()
            .map(|k| -> Result<Option<Vec<u8>>> {
                let (y0, x0) = (k / per * i, k % per * i);
                let mut v = Vec::with_capacity(planes * i * i);
                for p in 0..planes {
                    for r in 0..i {
                        let at = (p * s + y0 + r) * s + x0;
                        v.extend_from_slice(&buf[at..at + i]);
                    }
                }
                if v.iter().all(|x| *x == 0) {
                    return Ok(None);
                }
                crate::shard::encode_with(inner, &bytes(&v)).map(Some)
            })
            .collect::<Result<Vec<_>>>()
            .context("encoding inner chunks")?;
        let refs: Vec<Option<&[u8]>> = encoded.iter().map(|c| c.as_deref()).collect();
        Ok(match crate::shard::assemble(index, &refs)? {
            Some(b) => ChunkOutcome::Data(b),
            None => ChunkOutcome::Empty,
        })
    }

    /// Materializes one chunk: assemble, then encode.
    pub fn materialize(
        &self,
        source: &dyn BandSource,
        raster: &RasterReader,
        array: PixelArray,
        idx: ChunkIndex,
    ) -> Result<ChunkOutcome> {
        let buf = self.assemble(source, raster, array, idx)?;
        self.encode(array, buf)
    }
}
