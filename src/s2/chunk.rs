//! Chunk materialization: (tile, year, resolution, chunk index) → encoded object bytes, or "all fill".
//!
//! The object is a chunk (chunked layout) or a shard (sharded layout, `crate::s2::chunking`): the
//! same `time × all bands × y × x` block, encoded by zarrs with the `data` array's own codec chain
//! — for a shard, `sharding_indexed`, which leaves all-fill inner chunks out and appends the index.
//! An object is assembled from exactly the JP2 windows it covers (through the shared
//! `RasterReader`, so a JP2 tile is decoded once for all the objects inside it).

use std::sync::Arc;

use anyhow::{Context, Result};
use rayon::prelude::*;
use zarrs::array::Array;
use zarrs::storage::store::MemoryStore;

use crate::raster::{RasterReader, Window};
use crate::s2::bands::Resolution;
use crate::s2::catalog::Catalog;
use crate::s2::chunking::Chunking;
use crate::s2::layout::{DataGeometry, YearLayout};
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
    geometries: Vec<DataGeometry>,
    encoders: Vec<Array<MemoryStore>>,
    /// Sharded layout: per resolution, the inner chunk's encoder and the shard index's.
    shard_encoders: Vec<Option<(Array<MemoryStore>, Array<MemoryStore>)>>,
}

impl YearContext {
    pub fn new(catalog: Arc<Catalog>, chunking: Chunking) -> Result<Self> {
        let layout = YearLayout::build(&catalog, chunking)?;
        let mut geometries = Vec::new();
        let mut encoders = Vec::new();
        let mut shard_encoders = Vec::new();
        for res in Resolution::ALL {
            shard_encoders.push(match chunking.inner_shape(res) {
                None => None,
                Some(inner) => {
                    let meta = serde_json::json!({
                        "zarr_format": 3, "node_type": "array", "shape": inner, "data_type": "uint16",
                        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": inner}},
                        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                        "fill_value": 0, "codecs": crate::s2::chunking::pixel_codecs(), "attributes": {}
                    });
                    let per = chunking.space(res) / inner[2];
                    Some((
                        array_from_json(Arc::new(MemoryStore::new()), "/inner", &meta)?,
                        crate::shard::index_encoder(&[1, 1, per, per])?,
                    ))
                }
            });
            geometries.push(DataGeometry::new(&catalog, res, chunking)?);
            let meta = &layout.data_metadata[res.index()];
            encoders.push(array_from_json(
                Arc::new(MemoryStore::new()),
                "/data",
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

    pub fn geometry(&self, res: Resolution) -> &DataGeometry {
        &self.geometries[res.index()]
    }

    /// Checks that a chunk index lies inside the array's chunk grid.
    pub fn check_index(&self, res: Resolution, idx: ChunkIndex) -> Result<()> {
        let [nt, ny, nx] = self.geometry(res).chunk_counts();
        if idx.t >= nt || idx.y >= ny || idx.x >= nx {
            anyhow::bail!("chunk {idx} of {res} is outside the chunk grid [{nt}, 1, {ny}, {nx}]");
        }
        Ok(())
    }

    /// Decodes and assembles the chunk into a C-order `[ct, nb, cs, cs]` buffer (edges zero).
    pub fn assemble(
        &self,
        source: &dyn BandSource,
        raster: &RasterReader,
        res: Resolution,
        idx: ChunkIndex,
    ) -> Result<Vec<u16>> {
        self.check_index(res, idx)?;
        let geom = self.geometry(res);
        let [ct, nb, cs, _] = geom.object;
        let (ct, nb, cs) = (ct as usize, nb as usize, cs as usize);
        let mut buf = vec![0u16; ct * nb * cs * cs];
        let t0 = idx.t as usize * ct;
        let t1 = (t0 + ct).min(geom.scenes as usize);
        let y0 = idx.y as usize * cs;
        let x0 = idx.x as usize * cs;
        let h = cs.min(geom.grid.nrows as usize - y0);
        let w = cs.min(geom.grid.ncols as usize - x0);
        let bands = res.bands();
        let scenes = &self.catalog.scenes[t0..t1];
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

    /// Encodes an assembled chunk with the array's codecs (`Empty` if all fill).
    pub fn encode(&self, res: Resolution, buf: Vec<u16>) -> Result<ChunkOutcome> {
        if buf.iter().all(|v| *v == 0) {
            return Ok(ChunkOutcome::Empty);
        }
        if let Some((inner, index)) = &self.shard_encoders[res.index()] {
            return self.encode_shard(res, &buf, inner, index);
        }
        let encoded =
            crate::shard::encode_with(&self.encoders[res.index()], bytemuck::cast_slice(&buf))
                .context("encoding chunk")?;
        Ok(ChunkOutcome::Data(encoded))
    }

    /// Encodes an assembled shard: its inner chunks in parallel, each cut out of `buf`, then
    /// assembled in C order with their index (`crate::shard`), so the bytes depend only on the
    /// pixels. An all-fill inner chunk is left out.
    fn encode_shard(
        &self,
        res: Resolution,
        buf: &[u16],
        inner: &Array<MemoryStore>,
        index: &Array<MemoryStore>,
    ) -> Result<ChunkOutcome> {
        let [ct, nb, s, _] = self.geometry(res).object;
        let (planes, s) = ((ct * nb) as usize, s as usize);
        let i = self.chunking.inner_space(res).expect("sharded") as usize;
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
                crate::shard::encode_with(inner, bytemuck::cast_slice(&v)).map(Some)
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
        res: Resolution,
        idx: ChunkIndex,
    ) -> Result<ChunkOutcome> {
        let buf = self.assemble(source, raster, res, idx)?;
        self.encode(res, buf)
    }
}
