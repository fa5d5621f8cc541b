//! How a Sentinel-2 store cuts its `data` arrays into objects: one object per chunk (`chunked`,
//! the layout of every store made before sharding) or one object per shard of inner chunks
//! (`sharded`, Zarr v3 `sharding_indexed`).
//!
//! Whatever the layout, the unit of work of intake and of the mount, of the single flight, of the
//! writeback and of the chunk records is the *object* (a chunk, or a shard), addressed by the same
//! `c/T/0/Y/X` keys; the layout decides only its extent along `y` and `x` and whether it holds
//! inner chunks. Along `time` an object always spans one time chunk (20/40/80 scenes), so a new
//! acquisition invalidates the same objects in both layouts (docs/design.md §5).
//!
//! A store records its layout in its root group (`attributes.datacube.layout`; absent means
//! `chunked`, so stores made before this field open unchanged, byte for byte). The first process to
//! create the root group fixes it (`Store::put_if_absent`); asking for another one later is an
//! error, never a mix.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::collection::View;
use crate::s2::array::PixelArray;
use crate::s2::bands::Resolution;
use crate::s2::product::ProductLevel;
use crate::store::Store;

/// The object layout of a Sentinel-2 store. Extents are in 10 m pixels; the 20 m and 60 m groups
/// use half and a quarter of them (as the chunked layout's 512/256/128), so one object covers the
/// same ground at 10 m and 20 m.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// One object per chunk of 512 × 512 (10 m).
    Chunked,
    /// One object per shard of `shard` × `shard` (10 m) holding inner chunks of `inner` × `inner`.
    Sharded { shard: u64, inner: u64 },
}

/// The chunked layout's extent at 10 m.
const CHUNK_10M: u64 = 512;

impl Chunking {
    /// The sharded layout new stores get: shards of 1024 (the JP2 tile, 10.24 km), inner chunks
    /// of 128 (1.28 km). Chosen by the benchmark in the README ("Choosing the layout").
    pub const SHARDED: Chunking = Chunking::Sharded {
        shard: 1024,
        inner: 128,
    };

    /// The layout of stores created without `--layout`.
    pub const DEFAULT: Chunking = Chunking::SHARDED;

    /// 1 at 10 m, 2 at 20 m, 4 at 60 m.
    fn divisor(res: Resolution) -> u64 {
        CHUNK_10M / res.space_chunk()
    }

    /// Whether objects are shards of inner chunks.
    pub fn is_sharded(self) -> bool {
        matches!(self, Chunking::Sharded { .. })
    }

    /// Extent of an object (a chunk or a shard) along `y` and `x`, in pixels of `res`.
    pub fn space(self, res: Resolution) -> u64 {
        match self {
            Chunking::Chunked => res.space_chunk(),
            Chunking::Sharded { shard, .. } => shard / Self::divisor(res),
        }
    }

    /// Extent of an inner chunk along `y` and `x` in pixels of `res` (`None`: not sharded).
    pub fn inner_space(self, res: Resolution) -> Option<u64> {
        match self {
            Chunking::Chunked => None,
            Chunking::Sharded { inner, .. } => Some(inner / Self::divisor(res)),
        }
    }

    /// Shape of an object of `res`'s L1C data array, `[time, band, y, x]`.
    pub fn object_shape(self, res: Resolution) -> [u64; 4] {
        self.object_planes(PixelArray::data(res), ProductLevel::L1C)
    }

    /// Shape of an inner chunk of `res`'s L1C data array, `[time, band, y, x]` (`None`: not
    /// sharded).
    pub fn inner_shape(self, res: Resolution) -> Option<[u64; 4]> {
        self.inner_planes(PixelArray::data(res), ProductLevel::L1C)
    }

    /// An object of any pixel array as `[time, planes, y, x]` (`scl`: one plane per scene), the
    /// shape its buffer is assembled in.
    pub fn object_planes(self, array: PixelArray, level: ProductLevel) -> [u64; 4] {
        let (res, s) = (array.res, self.space(array.res));
        [res.time_chunk(), array.planes(level), s, s]
    }

    /// An inner chunk of any pixel array as `[time, planes, y, x]` (`None`: not sharded).
    pub fn inner_planes(self, array: PixelArray, level: ProductLevel) -> Option<[u64; 4]> {
        let (res, i) = (array.res, self.inner_space(array.res)?);
        Some([res.time_chunk(), array.planes(level), i, i])
    }

    /// Inner chunks per shard (1 when not sharded).
    pub fn inner_per_object(self, res: Resolution) -> u64 {
        match self.inner_space(res) {
            Some(i) => (self.space(res) / i).pow(2),
            None => 1,
        }
    }

    /// Inner chunks stored in an encoded object of `res` (the entries of a shard's index that
    /// are not 2⁶⁴−1; 1 for a chunk). Reads only the index at the object's end.
    pub fn inner_chunks_in(self, res: Resolution, object: &[u8]) -> u64 {
        if self.inner_space(res).is_none() {
            return 1;
        }
        let n = self.inner_per_object(res) as usize;
        let len = n * 16 + 4; // (offset, length) per inner chunk, then the CRC32C
        let Some(index) = object.len().checked_sub(len).map(|at| &object[at..]) else {
            return 0;
        };
        index[..n * 16]
            .chunks_exact(16)
            .filter(|e| e[..8] != [0xff; 8])
            .count() as u64
    }

    /// A pixel array's `chunk_grid` and `codecs`.
    pub fn array_codecs(self, array: PixelArray, level: ProductLevel) -> (Value, Value) {
        let pixel_codecs = pixel_codecs(array.value_bytes());
        let shape = |p: [u64; 4]| array_shape(array, p);
        let grid = json!({"name": "regular", "configuration": {"chunk_shape": shape(self.object_planes(array, level))}});
        let codecs = match self.inner_planes(array, level) {
            None => pixel_codecs,
            Some(inner) => json!([{
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": shape(inner),
                    "codecs": pixel_codecs,
                    "index_codecs": crate::shard::index_codecs(),
                    "index_location": "end"
                }
            }]),
        };
        (grid, codecs)
    }

    /// A pixel array's `chunk_grid` and `codecs` as a mount with `view` presents them: the
    /// store's own, or, for a sharded array seen through the chunked view, the inner chunk
    /// grid and the inner chunks' codecs (so a chunk of the view is an inner chunk, byte for
    /// byte).
    pub fn presented_codecs(
        self,
        array: PixelArray,
        level: ProductLevel,
        view: View,
    ) -> (Value, Value) {
        match (view, self.inner_planes(array, level)) {
            (View::Chunked, Some(inner)) => (
                json!({"name": "regular", "configuration": {"chunk_shape": array_shape(array, inner)}}),
                pixel_codecs(array.value_bytes()),
            ),
            _ => self.array_codecs(array, level),
        }
    }

    /// Inner chunks per shard side (1 when not sharded): a chunk `(y, x)` of the chunked view
    /// is inner chunk `(y % n, x % n)` of shard `(y / n, x / n)`.
    pub fn inner_per_side(self, res: Resolution) -> u64 {
        self.inner_space(res).map_or(1, |i| self.space(res) / i)
    }

    /// The view a mount asking for `view` serves: a chunked store has nothing to present
    /// otherwise, so its chunked view is its native one.
    pub fn effective_view(self, view: View) -> View {
        if self.is_sharded() {
            view
        } else {
            View::Native
        }
    }

    /// What the root group records (`None` for `chunked`, which records nothing, as before).
    pub fn to_json(self) -> Option<Value> {
        match self {
            Chunking::Chunked => None,
            Chunking::Sharded { shard, inner } => Some(json!({
                "name": "sharded",
                "shard_px_10m": shard,
                "inner_chunk_px_10m": inner,
            })),
        }
    }

    /// The layout a root group's `attributes.datacube` records.
    pub fn from_root(datacube: &Value) -> Result<Self> {
        // A mount's chunked view says so in its root group: a copy of it is not a store (its
        // chunk files are inner chunks, under keys that name shards in the store's layout).
        if let Some(view) = datacube.get("view") {
            anyhow::bail!(
                "store root zarr.json records the view {view} of a mount (--view): a copy of a mount's view is not a store"
            );
        }
        let Some(l) = datacube.get("layout") else {
            return Ok(Chunking::Chunked);
        };
        let num = |k: &str| {
            l[k].as_u64()
                .with_context(|| format!("store root zarr.json: layout.{k} is not a number"))
        };
        match l["name"].as_str() {
            Some("sharded") => Chunking::sharded(num("shard_px_10m")?, num("inner_chunk_px_10m")?),
            Some("chunked") => Ok(Chunking::Chunked),
            other => anyhow::bail!("store root zarr.json: unknown layout {other:?}"),
        }
    }

    /// A sharded layout, if `shard` and `inner` (10 m pixels) make one: the inner chunk divides
    /// the shard, and both divide by 4 (the 60 m group's extents are a quarter).
    pub fn sharded(shard: u64, inner: u64) -> Result<Self> {
        if inner < 16
            || !shard.is_multiple_of(4)
            || !inner.is_multiple_of(4)
            || !shard.is_multiple_of(inner)
            || shard > 10980
        {
            anyhow::bail!(
                "sharded layout {shard}/{inner}: the inner chunk (at least 16) must divide the shard, both multiples of 4, the shard at most 10980"
            );
        }
        Ok(Chunking::Sharded { shard, inner })
    }

    /// The layout of the Sentinel-2 store `store` (`None` for an empty store).
    pub fn of_store(store: &dyn Store) -> Result<Option<Self>> {
        let Some(bytes) = store.get("zarr.json")? else {
            return Ok(None);
        };
        let root: Value = serde_json::from_slice(&bytes).context("store root zarr.json")?;
        Chunking::from_root(&root["attributes"]["datacube"]).map(Some)
    }
}

/// The codecs of a chunk, or of an inner chunk of a shard, of values of `typesize` bytes.
pub fn pixel_codecs(typesize: usize) -> Value {
    json!([
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "bitshuffle", "typesize": typesize, "blocksize": 0}}
    ])
}

/// The array's own shape of a `[time, planes, y, x]` block: itself for `data`, `[time, y, x]`
/// for `scl` (whose single plane has no dimension).
pub fn array_shape(array: PixelArray, p: [u64; 4]) -> Vec<u64> {
    if array.has_bands() {
        p.to_vec()
    } else {
        vec![p[0], p[2], p[3]]
    }
}

impl fmt::Display for Chunking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Chunking::Chunked => f.write_str("chunked"),
            c if c == Chunking::SHARDED => f.write_str("sharded"),
            Chunking::Sharded { shard, inner } => write!(f, "sharded:{shard}/{inner}"),
        }
    }
}

impl FromStr for Chunking {
    type Err = String;
    /// `chunked`, `sharded` (the default shard shape) or `sharded:SHARD/INNER` (10 m pixels).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "chunked" => Ok(Chunking::Chunked),
            "sharded" => Ok(Chunking::SHARDED),
            _ => {
                let bad =
                    || format!("unknown layout {s:?} (chunked, sharded, sharded:SHARD/INNER)");
                let spec = s.strip_prefix("sharded:").ok_or_else(bad)?;
                let (a, b) = spec.split_once('/').ok_or_else(bad)?;
                let (a, b) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                Chunking::sharded(a, b).map_err(|e| e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip_and_scale_by_resolution() {
        for s in ["chunked", "sharded", "sharded:2048/128", "sharded:1024/64"] {
            let c: Chunking = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
            let root = json!({"layout": c.to_json()});
            let back = match c.to_json() {
                None => Chunking::from_root(&json!({})).unwrap(),
                Some(_) => Chunking::from_root(&root).unwrap(),
            };
            assert_eq!(back, c);
        }
        let c = Chunking::SHARDED;
        assert_eq!(c.object_shape(Resolution::R10), [20, 4, 1024, 1024]);
        assert_eq!(c.inner_shape(Resolution::R20), Some([40, 6, 64, 64]));
        assert_eq!(c.inner_shape(Resolution::R60), Some([80, 3, 32, 32]));
        assert_eq!(c.inner_per_object(Resolution::R60), 64);
        // An index of 64 entries, two present, then a CRC32C.
        let mut shard = vec![7u8; 100];
        for i in 0..64u64 {
            let (o, l) = if i % 32 == 1 {
                (i, 1)
            } else {
                (u64::MAX, u64::MAX)
            };
            shard.extend(o.to_le_bytes());
            shard.extend(l.to_le_bytes());
        }
        shard.extend([0; 4]);
        assert_eq!(c.inner_chunks_in(Resolution::R60, &shard), 2);
        assert_eq!(c.inner_chunks_in(Resolution::R60, &shard[..10]), 0);
        assert_eq!(
            Chunking::Chunked.inner_chunks_in(Resolution::R60, &shard),
            1
        );
        assert_eq!(
            Chunking::Chunked.object_shape(Resolution::R20),
            Resolution::R20.chunk_shape()
        );
        // The chunked view: a sharded array presented by its inner chunks, with their codecs;
        // a chunked one as it is.
        use crate::s2::product::ProductLevel::{L1C, L2A};
        let data = PixelArray::data(Resolution::R10);
        let (grid, codecs) = c.presented_codecs(data, L1C, View::Chunked);
        assert_eq!(
            grid["configuration"]["chunk_shape"],
            json!([20, 4, 128, 128])
        );
        assert_eq!(codecs, pixel_codecs(2));
        let (grid, codecs) =
            c.presented_codecs(PixelArray::scl(Resolution::R20), L2A, View::Chunked);
        assert_eq!(grid["configuration"]["chunk_shape"], json!([40, 64, 64]));
        assert_eq!(codecs, pixel_codecs(1));
        assert_eq!(
            c.presented_codecs(data, L1C, View::Native),
            c.array_codecs(data, L1C)
        );
        assert_eq!(
            Chunking::Chunked.presented_codecs(data, L1C, View::Chunked),
            Chunking::Chunked.array_codecs(data, L1C)
        );
        assert_eq!(
            Chunking::Chunked.effective_view(View::Chunked),
            View::Native
        );
        assert_eq!(c.inner_per_side(Resolution::R20), 8);
        // A copy of a mount's view is not a store.
        let e =
            Chunking::from_root(&json!({"layout": c.to_json(), "view": "chunked"})).unwrap_err();
        assert!(e.to_string().contains("not a store"), "{e}");
        for bad in [
            "sharded:1000/128",
            "sharded:1024/96",
            "sharded:1024/8",
            "tiled",
        ] {
            assert!(bad.parse::<Chunking>().is_err(), "{bad}");
        }
    }
}
