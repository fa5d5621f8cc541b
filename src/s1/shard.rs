//! Materialization of one shard region: time chunk `t` × a 2500 × 2500 pixel square, for all five
//! arrays at once (they come from the same slice windows). Each 500 × 500 inner chunk is merged day
//! by day ([`super::merge`]) and encoded with the inner codecs by zarrs; the shard object is the
//! inner chunks followed by their index (`sharding_indexed`, index at the end, CRC32C), the index
//! encoded by zarrs too. An inner chunk that is all fill is left out of its shard (index entry
//! 2⁶⁴−1), and a shard with no inner chunk is not stored at all (Zarr's rule for an all-fill chunk).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use zarrs::array::Array;
use zarrs::storage::store::MemoryStore;

use super::catalog::S1Catalog;
use super::item::Slice;
use super::merge::{DayWindow, SliceWindow};
use super::{INNER_PX, SHARD_PX, TILE_PX, TIME_CHUNK, VARIABLES};
use crate::zarr_json::array_from_json;

/// Reads slice windows: the GeoTIFFs of a source, or the fixture formula in tests.
pub trait SliceReader: Send + Sync {
    /// Row-major window `w` × `h` at (`x0`, `y0`) of polarisation `pol` (index into
    /// [`super::POLARISATIONS`]) of `slice`; `None` if the file says the window holds no data
    /// (without decoding it). Errors name the item and the file.
    fn window(
        &self,
        slice: &Slice,
        pol: usize,
        x0: u64,
        y0: u64,
        w: u64,
        h: u64,
    ) -> Result<Option<Vec<i16>>>;
    /// The slice's absolute orbit number (the GeoTIFF tag `abs_orbit_number`).
    fn absolute_orbit(&self, slice: &Slice) -> Result<i32>;
}

/// Shards per tile side.
pub const SHARDS_PER_SIDE: u64 = TILE_PX / SHARD_PX;
const INNER_PER_SHARD: u64 = SHARD_PX / INNER_PX;
const INNER_LEN: usize = (TIME_CHUNK * INNER_PX * INNER_PX) as usize;
const DAY_LEN: usize = (INNER_PX * INNER_PX) as usize;

/// Position of a shard region in a tile-year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardPos {
    pub t: u64,
    pub y: u64,
    pub x: u64,
}

/// The five shard objects of one region (`None`: all fill, no object), in [`VARIABLES`] order.
pub type ShardSet = [Option<Vec<u8>>; 5];

/// The codec chains, built once per process.
pub struct Encoders {
    inner: Vec<Array<MemoryStore>>,
    index: Array<MemoryStore>,
}

impl Encoders {
    pub fn new() -> Result<Self> {
        let inner = VARIABLES
            .iter()
            .map(|v| {
                array_from_json(
                    Arc::new(MemoryStore::new()),
                    "/inner",
                    &super::layout::inner_chunk_metadata(v),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let n = INNER_PER_SHARD;
        let index = crate::shard::index_encoder(&[1, n, n])?;
        Ok(Encoders { inner, index })
    }

    fn encode(array: &Array<MemoryStore>, bytes: &[u8]) -> Result<Vec<u8>> {
        crate::shard::encode_with(array, bytes)
    }
}

thread_local! {
    static INNER_POOL: std::cell::RefCell<Option<Inner>> = const { std::cell::RefCell::new(None) };
}

/// One merged inner chunk of the five arrays ([time, y, x], days beyond the catalog are fill).
struct Inner {
    vv: Vec<i16>,
    vh: Vec<i16>,
    sensing: Vec<i64>,
    absolute_orbit: Vec<i32>,
    relative_orbit: Vec<i16>,
}

impl Inner {
    /// A buffer of this thread's pool (reset to fill), or a new one: an inner chunk is 135 MB,
    /// and allocating it afresh for every inner chunk costs more in page faults than the merge.
    fn take() -> Self {
        match INNER_POOL.with(|p| p.borrow_mut().take()) {
            Some(mut i) => {
                i.vv.fill(VARIABLES[0].fill as i16);
                i.vh.fill(VARIABLES[1].fill as i16);
                i.sensing.fill(VARIABLES[2].fill);
                i.absolute_orbit.fill(VARIABLES[3].fill as i32);
                i.relative_orbit.fill(VARIABLES[4].fill as i16);
                i
            }
            None => Inner::fill(),
        }
    }

    /// Returns the buffer to this thread's pool.
    fn give_back(self) {
        INNER_POOL.with(|p| *p.borrow_mut() = Some(self));
    }

    fn fill() -> Self {
        let d = DayWindow::fill(INNER_LEN);
        Inner {
            vv: d.vv,
            vh: d.vh,
            sensing: d.sensing,
            absolute_orbit: d.absolute_orbit,
            relative_orbit: d.relative_orbit,
        }
    }

    fn set_day(&mut self, i: usize, d: &DayWindow) {
        let r = i * DAY_LEN..(i + 1) * DAY_LEN;
        self.vv[r.clone()].copy_from_slice(&d.vv);
        self.vh[r.clone()].copy_from_slice(&d.vh);
        self.sensing[r.clone()].copy_from_slice(&d.sensing);
        self.absolute_orbit[r.clone()].copy_from_slice(&d.absolute_orbit);
        self.relative_orbit[r].copy_from_slice(&d.relative_orbit);
    }

    /// Encoded inner chunk per variable (`None` if all fill).
    fn encode(&self, enc: &Encoders) -> Result<[Option<Vec<u8>>; 5]> {
        fn one<T: bytemuck::NoUninit + PartialEq>(
            a: &Array<MemoryStore>,
            v: &[T],
            fill: T,
        ) -> Result<Option<Vec<u8>>> {
            if v.iter().all(|x| *x == fill) {
                return Ok(None);
            }
            // Native order is little-endian on every platform GDAL and we build for (the
            // `bytes` codec's `endian: little`); no copy.
            Encoders::encode(a, bytemuck::cast_slice(v)).map(Some)
        }
        let f = |i: usize| VARIABLES[i].fill;
        Ok([
            one(&enc.inner[0], &self.vv, f(0) as i16)?,
            one(&enc.inner[1], &self.vh, f(1) as i16)?,
            one(&enc.inner[2], &self.sensing, f(2))?,
            one(&enc.inner[3], &self.absolute_orbit, f(3) as i32)?,
            one(&enc.inner[4], &self.relative_orbit, f(4) as i16)?,
        ])
    }
}

/// Absolute orbits of the slices, read once per process (one tag per file).
#[derive(Default)]
pub struct OrbitCache(Mutex<HashMap<String, i32>>);

impl OrbitCache {
    pub fn get(&self, reader: &dyn SliceReader, s: &Slice) -> Result<i32> {
        if let Some(o) = self.0.lock().unwrap().get(&s.id) {
            return Ok(*o);
        }
        let o = reader.absolute_orbit(s)?;
        self.0.lock().unwrap().insert(s.id.clone(), o);
        Ok(o)
    }
}

/// Materializes the five shards of region `pos`.
pub fn materialize(
    catalog: &S1Catalog,
    reader: &dyn SliceReader,
    orbits: &OrbitCache,
    enc: &Encoders,
    pos: ShardPos,
) -> Result<ShardSet> {
    if pos.t >= catalog.time_chunks() || pos.y >= SHARDS_PER_SIDE || pos.x >= SHARDS_PER_SIDE {
        bail!(
            "shard {}/{}/{} is outside {}/{} ({} time chunks, {SHARDS_PER_SIDE}×{SHARDS_PER_SIDE} shards)",
            pos.t,
            pos.y,
            pos.x,
            catalog.tile,
            catalog.year,
            catalog.time_chunks()
        );
    }
    let days = catalog.chunk_days(pos.t);
    let epoch = super::EPOCH_UNIX_S;
    let mut meta = Vec::new();
    for d in days {
        for s in &d.slices {
            meta.push((s.id.clone(), orbits.get(reader, s)?));
        }
    }
    let abs: HashMap<String, i32> = meta.into_iter().collect();
    let n = INNER_PER_SHARD;
    // Inner rows in parallel: a row of inner chunks reads the same source strips.
    let rows: Vec<Vec<[Option<Vec<u8>>; 5]>> = (0..n)
        .into_par_iter()
        .map(|iy| {
            (0..n)
                .map(|ix| {
                    let x0 = pos.x * SHARD_PX + ix * INNER_PX;
                    let y0 = pos.y * SHARD_PX + iy * INNER_PX;
                    // Allocated on the first data: most inner chunks of a tile are empty on most
                    // days (a slice covers part of a tile).
                    let mut inner: Option<Inner> = None;
                    for (i, d) in days.iter().enumerate() {
                        let mut day: Option<DayWindow> = None;
                        for s in &d.slices {
                            let vv = reader.window(s, 0, x0, y0, INNER_PX, INNER_PX)?;
                            let vh = reader.window(s, 1, x0, y0, INNER_PX, INNER_PX)?;
                            if vv.is_none() && vh.is_none() {
                                continue;
                            }
                            let nodata = || vec![super::NODATA; DAY_LEN];
                            let complete = day.get_or_insert_with(|| DayWindow::fill(DAY_LEN)).add(
                                &SliceWindow {
                                    vv: &vv.unwrap_or_else(nodata),
                                    vh: &vh.unwrap_or_else(nodata),
                                    sensing: s.sensing_s - epoch,
                                    absolute_orbit: abs[&s.id],
                                    relative_orbit: s.relative_orbit as i16,
                                },
                            );
                            if complete {
                                break; // later slices can no longer contribute
                            }
                        }
                        if let Some(day) = day {
                            inner.get_or_insert_with(Inner::take).set_day(i, &day);
                        }
                    }
                    match inner {
                        Some(inner) => {
                            let r = inner.encode(enc);
                            inner.give_back();
                            r
                        }
                        None => Ok(Default::default()),
                    }
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out: ShardSet = Default::default();
    for (v, slot) in out.iter_mut().enumerate() {
        let chunks: Vec<Option<&[u8]>> = rows
            .iter()
            .flat_map(|r| r.iter().map(|c| c[v].as_deref()))
            .collect();
        *slot = crate::shard::assemble(&enc.index, &chunks)
            .with_context(|| format!("assembling shard of {}", VARIABLES[v].name))?;
    }
    Ok(out)
}

/// Every shard region of a tile-year, in (t, y, x) order.
pub fn all_positions(catalog: &S1Catalog) -> Vec<ShardPos> {
    let mut v = Vec::new();
    for t in 0..catalog.time_chunks() {
        for y in 0..SHARDS_PER_SIDE {
            for x in 0..SHARDS_PER_SIDE {
                v.push(ShardPos { t, y, x });
            }
        }
    }
    v
}
