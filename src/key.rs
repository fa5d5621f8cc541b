//! Typed addresses in the store's namespace, each with one `Display` (its key) and one parser, so
//! the layout of keys lives in exactly one place.
//!
//! ```text
//! 35VLH/2024                                    TileYear
//! 35VLH/2024/.datacube/catalog/00000003.json   TileYear::generation_key (catalog generation 3)
//! 35VLH/2024/.datacube/catalog/00000003.done   TileYear::done_key (its invalidation finished)
//! 35VLH/2024/.datacube/records/10m/OWNER.json   TileYear::record_file (one writer's chunk record)
//! 35VLH/2024/.datacube/catalog.json             TileYear::catalog_key (stores made before generations)
//! 35VLH/2024/.datacube/chunks-10m.json          TileYear::record_key (idem)
//! c/3/0/1/2                                     ChunkIndex (relative to its array)
//! 35VLH/2024/10m/data/c/3/0/1/2                 ChunkKey
//! ```
//!
//! Chunk keys use Zarr's default chunk key encoding (`c` prefix, `/` separator) over the
//! `data` array's dimensions [time, band, y, x], whose band axis has a single chunk (always `0`).
//! Parsers accept only canonical keys (decimal without sign or leading zeros), so a key has one
//! spelling and the virtual tree has no aliases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::s2::array::{PixelArray, Var};
use crate::s2::bands::Resolution;

/// A decimal number in canonical form (no sign, no leading zeros), as Zarr writes chunk keys.
pub fn canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// One tile-year of the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileYear {
    pub tile: String,
    pub year: i32,
}

impl TileYear {
    pub fn new(tile: &str, year: i32) -> Self {
        TileYear {
            tile: tile.to_string(),
            year,
        }
    }

    /// The single catalog of a store made before catalog generations (read, never written).
    pub fn catalog_key(&self) -> String {
        format!("{self}/.datacube/catalog.json")
    }

    /// The single chunk record of a store made before per-writer records (read, never written).
    pub fn record_key(&self, group: &str) -> String {
        format!("{self}/.datacube/chunks-{group}.json")
    }

    /// The directory of catalog generations.
    pub fn generations_dir(&self) -> String {
        format!("{self}/.datacube/catalog")
    }

    /// Catalog generation `n` (1, 2, ...), created exclusively, never rewritten.
    pub fn generation_key(&self, n: u64) -> String {
        format!("{}/{n:08}.json", self.generations_dir())
    }

    /// The marker that generation `n`'s invalidation of changed chunks has finished.
    pub fn done_key(&self, n: u64) -> String {
        format!("{}/{n:08}.done", self.generations_dir())
    }

    /// The directory of per-writer chunk records of one group.
    pub fn records_dir(&self, group: &str) -> String {
        format!("{self}/.datacube/records/{group}")
    }

    /// The chunk record of writer `owner` for one group (rewritten only by that writer).
    pub fn record_file(&self, group: &str, owner: &str) -> String {
        format!("{}/{owner}.json", self.records_dir(group))
    }

    /// `TILE/YEAR/{array_path}/c/{t}`: the chunk directory of time chunk `t` of an array
    /// (`array_path` below the tile-year, e.g. `10m/data`).
    pub fn time_chunk_prefix(&self, array_path: &str, t: u64) -> String {
        format!("{self}/{array_path}/c/{t}")
    }

    /// An object of a resolution group's `data` array.
    pub fn chunk(&self, res: Resolution, idx: ChunkIndex) -> ChunkKey {
        self.array_chunk(PixelArray::data(res), idx)
    }

    /// An object of any pixel array.
    pub fn array_chunk(&self, array: PixelArray, idx: ChunkIndex) -> ChunkKey {
        ChunkKey {
            tile: self.tile.clone(),
            year: self.year,
            array,
            idx,
        }
    }
}

impl fmt::Display for TileYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tile, self.year)
    }
}

/// Index of a chunk of a `data` array: (time, y, x); the band axis has a single chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkIndex {
    pub t: u64,
    pub y: u64,
    pub x: u64,
}

impl fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c/{}/0/{}/{}", self.t, self.y, self.x)
    }
}

impl FromStr for ChunkIndex {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = || -> Option<ChunkIndex> {
            let p: Vec<&str> = s.split('/').collect();
            match p.as_slice() {
                ["c", t, "0", y, x] => Some(ChunkIndex {
                    t: canonical_u64(t)?,
                    y: canonical_u64(y)?,
                    x: canonical_u64(x)?,
                }),
                _ => None,
            }
        };
        parse().ok_or_else(|| format!("not a data chunk key (c/T/0/Y/X): {s:?}"))
    }
}

impl Serialize for ChunkIndex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChunkIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The full address of a pixel array's object: `TILE/YEAR/RES/data/c/T/0/Y/X`,
/// `TILE/YEAR/RES/scl/c/T/Y/X`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkKey {
    pub tile: String,
    pub year: i32,
    pub array: PixelArray,
    pub idx: ChunkIndex,
}

impl ChunkKey {
    pub fn tile_year(&self) -> TileYear {
        TileYear::new(&self.tile, self.year)
    }

    /// The resolution group.
    pub fn res(&self) -> Resolution {
        self.array.res
    }
}

impl ChunkIndex {
    /// The chunk's key below its array: `c/T/0/Y/X` for `data` (one chunk along `band`),
    /// `c/T/Y/X` for `scl`.
    pub fn key_in(&self, array: PixelArray) -> String {
        match array.var {
            Var::Data => self.to_string(),
            Var::Scl => format!("c/{}/{}/{}", self.t, self.y, self.x),
        }
    }

    /// Parses [`ChunkIndex::key_in`]'s spelling.
    pub fn parse_in(s: &str, array: PixelArray) -> Option<ChunkIndex> {
        match array.var {
            Var::Data => s.parse().ok(),
            Var::Scl => match s.split('/').collect::<Vec<_>>().as_slice() {
                ["c", t, y, x] => Some(ChunkIndex {
                    t: canonical_u64(t)?,
                    y: canonical_u64(y)?,
                    x: canonical_u64(x)?,
                }),
                _ => None,
            },
        }
    }
}

impl fmt::Display for ChunkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.tile,
            self.year,
            self.array.path(),
            self.idx.key_in(self.array)
        )
    }
}

impl FromStr for ChunkKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("not a chunk key (TILE/YEAR/RES/data/c/T/0/Y/X or TILE/YEAR/RES/scl/c/T/Y/X): {s:?}")
        };
        let mut parts = s.splitn(5, '/');
        let (Some(tile), Some(year), Some(res), Some(name), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        if tile.is_empty() {
            return Err(bad());
        }
        let array = PixelArray::named(res, name).ok_or_else(bad)?;
        Ok(ChunkKey {
            tile: tile.to_string(),
            year: canonical_u64(year)
                .and_then(|y| i32::try_from(y).ok())
                .ok_or_else(bad)?,
            array,
            idx: ChunkIndex::parse_in(rest, array).ok_or_else(bad)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_display_and_parse() {
        let ty = TileYear::new("35VLH", 2024);
        let k = ty.chunk(Resolution::R20, ChunkIndex { t: 3, y: 10, x: 0 });
        assert_eq!(k.to_string(), "35VLH/2024/20m/data/c/3/0/10/0");
        assert_eq!(k.to_string().parse::<ChunkKey>(), Ok(k.clone()));
        assert_eq!(k.idx.to_string().parse::<ChunkIndex>(), Ok(k.idx));
        assert_eq!(ty.record_key("60m"), "35VLH/2024/.datacube/chunks-60m.json");
        assert_eq!(ty.catalog_key(), "35VLH/2024/.datacube/catalog.json");
        assert_eq!(k.tile_year(), ty);
        let s = ty.array_chunk(PixelArray::scl(Resolution::R10), k.idx);
        assert_eq!(s.to_string(), "35VLH/2024/10m/scl/c/3/10/0");
        assert_eq!(s.to_string().parse::<ChunkKey>(), Ok(s));
        assert_eq!(
            serde_json::to_string(&k.idx).unwrap(),
            "\"c/3/0/10/0\"",
            "the record's JSON keeps its string keys"
        );
    }

    #[test]
    fn only_canonical_keys_parse() {
        for bad in [
            "35VLH/2024/20m/data/c/3/0/10",
            "35VLH/2024/20m/data/c/3/1/10/0",
            "35VLH/2024/20m/data/c/03/0/10/0",
            "35VLH/02024/20m/data/c/3/0/10/0",
            "35VLH/2024/20/data/c/3/0/10/0",
            "35VLH/2024/20m/time/c/3/0/10/0",
            "35VLH/2024/20m/data/c/3/0/10/0/0",
            "35VLH/2024/20m/data/c/+3/0/10/0",
            "/2024/20m/data/c/3/0/10/0",
            "35VLH/2024/20m/scl/c/3/0/10/0",
            "35VLH/2024/20m/scl/c/3/10",
        ] {
            assert!(bad.parse::<ChunkKey>().is_err(), "{bad}");
        }
        assert!("c/1/0/2".parse::<ChunkIndex>().is_err());
        assert_eq!(canonical_u64("0"), Some(0));
        assert_eq!(canonical_u64("00"), None);
    }
}
