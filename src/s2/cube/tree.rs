//! The generated tree: what a path of the mount is, and what a directory lists. Group and array
//! metadata and coordinate files come from the tile-year's layout; chunk directories list only the
//! chunks known to be computed, so listing never starts work. In the chunked view of a sharded
//! store (`--view chunked`) the documents are the view's and a chunk path names an inner chunk:
//! `c/T/0/Y/X` is inner chunk `(Y % n, X % n)` of shard `c/T/0/(Y / n)/(X / n)`, `n` inner
//! chunks per shard side; its directories list the inner chunks of computed shards whose index
//! the mount holds.

use std::collections::HashMap;
use std::sync::Arc;

use super::year::{ShardIndex, YearState, Years};
use crate::cache::Bytes;
use crate::collection::View;
use crate::fs::attr::{Attr, FsError, Kind};
use crate::fs::node::{classify, static_children, Node, STATS_DIR};
use crate::key::{canonical_u64, ChunkIndex, ChunkKey, TileYear};
use crate::s2::array::PixelArray;
use crate::s2::product::ProductLevel;
use std::collections::BTreeMap;

/// What a path resolves to.
pub enum Resolved {
    Dir,
    /// A generated file: its attributes and bytes.
    File(Attr, Bytes),
    /// The live statistics file (its content is made by the caller, per request).
    Stats,
    Chunk(Arc<YearState>, ChunkKey),
    /// A chunk of the chunked view: inner chunk `pos` (C order over the shard's inner grid) of
    /// the shard `ChunkKey`.
    Inner(Arc<YearState>, ChunkKey, usize),
}

/// What a listing may know of a shard's index without reading it: the resolver's in-memory
/// indexes (`ChunkResolver::known_index`).
pub type IndexOf<'a> = &'a dyn Fn(&YearState, PixelArray, ChunkIndex) -> Option<ShardIndex>;

pub struct Tree {
    tiles: Vec<String>,
    years: Vec<i32>,
    root_meta: Bytes,
    tile_meta: HashMap<String, Bytes>,
}

/// Splits a chunk of the chunked view into its shard and its position in it (C order over the
/// shard's `per` × `per` inner grid).
pub fn inner_of(idx: ChunkIndex, per: u64) -> (ChunkIndex, usize) {
    let shard = ChunkIndex {
        t: idx.t,
        y: idx.y / per,
        x: idx.x / per,
    };
    (shard, ((idx.y % per) * per + idx.x % per) as usize)
}

impl Tree {
    pub fn new(
        tiles: Vec<String>,
        years: Vec<i32>,
        chunking: crate::s2::chunking::Chunking,
        view: View,
        level: ProductLevel,
    ) -> anyhow::Result<Self> {
        let mut tile_meta = HashMap::new();
        for t in &tiles {
            let epsg = crate::s2::tiles::utm_epsg(t)?;
            tile_meta.insert(
                t.clone(),
                crate::s2::layout::tile_group_file(t, epsg).into(),
            );
        }
        Ok(Tree {
            root_meta: crate::s2::layout::root_group_view_file(chunking, level, view).into(),
            tile_meta,
            tiles,
            years,
        })
    }

    /// The tile-year `path` lies in, if any.
    pub fn tile_year_of(&self, path: &str) -> Option<TileYear> {
        match classify(path, &self.tiles, &self.years)? {
            Node::Year(t, y)
            | Node::InYear {
                tile: t, year: y, ..
            } => Some(TileYear::new(t, y)),
            _ => None,
        }
    }

    /// What `path` is (resolving its tile-year first if it lies in one).
    pub fn resolve(&self, years: &Years, path: &str) -> Result<Resolved, FsError> {
        let node = classify(path, &self.tiles, &self.years).ok_or(FsError::NotFound)?;
        let file = |b: &Bytes| Resolved::File(Attr::file(b.len() as u64), b.clone());
        Ok(match node {
            Node::Root | Node::StatsDir | Node::Tile(_) | Node::Year(..) => Resolved::Dir,
            Node::RootMeta => file(&self.root_meta),
            Node::TileMeta(t) => file(&self.tile_meta[t]),
            Node::StatsFile => Resolved::Stats,
            Node::InYear { tile, year, rest } => {
                let (ys, node) = in_year(years, path, tile, year, rest)?;
                match node {
                    YearNode::StaticFile => {
                        let b: Bytes = ys.files()[path].as_slice().into();
                        file(&b)
                    }
                    YearNode::StaticDir | YearNode::ChunkDir => Resolved::Dir,
                    YearNode::Chunk(array, idx) if ys.is_chunked_view() => {
                        let per = ys.ctx.chunking.inner_per_side(array.res);
                        let (shard, pos) = inner_of(idx, per);
                        let key = ys.tile_year().array_chunk(array, shard);
                        Resolved::Inner(ys, key, pos)
                    }
                    YearNode::Chunk(array, idx) => {
                        let key = ys.tile_year().array_chunk(array, idx);
                        Resolved::Chunk(ys, key)
                    }
                }
            }
        })
    }

    /// Children of the directory at `path`: (name, kind), without `.`/`..`. In the chunked
    /// view, a chunk directory lists the inner chunks of the shards whose index `index_of`
    /// holds.
    pub fn list(
        &self,
        years: &Years,
        path: &str,
        index_of: IndexOf,
    ) -> Result<Vec<(String, Kind)>, FsError> {
        let node = classify(path, &self.tiles, &self.years).ok_or(FsError::NotFound)?;
        let dir = |n: &str| (n.to_string(), Kind::Dir);
        let file = |n: &str| (n.to_string(), Kind::File);
        Ok(match node {
            Node::Root => {
                let mut v = vec![file("zarr.json"), dir(STATS_DIR)];
                v.extend(self.tiles.iter().map(|t| dir(t)));
                v
            }
            Node::StatsDir => vec![file("stats.json")],
            Node::Tile(_) => {
                let mut v = vec![file("zarr.json")];
                v.extend(self.years.iter().map(|y| dir(&y.to_string())));
                v
            }
            Node::Year(tile, year) => match years.get(&TileYear::new(tile, year))? {
                None => vec![],
                Some(ys) => to_kinds(static_children(path, ys.files())),
            },
            Node::InYear { tile, year, rest } => {
                let (ys, node) = in_year(years, path, tile, year, rest)?;
                let children = |array: PixelArray, rel: &str| {
                    if ys.is_chunked_view() {
                        let per = ys.ctx.chunking.inner_per_side(array.res);
                        ys.inner_chunk_children(array, rel, per, &|s| index_of(&ys, array, s))
                    } else {
                        ys.chunk_children(array, rel)
                    }
                };
                match node {
                    YearNode::StaticFile | YearNode::Chunk(..) => return Err(FsError::NotDir),
                    YearNode::StaticDir => {
                        let mut v = to_kinds(static_children(path, ys.files()));
                        if let Some(array) = PixelArray::from_path(rest) {
                            if children(array, "c").is_some_and(|c| !c.is_empty()) {
                                v.push(dir("c"));
                            }
                        }
                        v
                    }
                    YearNode::ChunkDir => {
                        let (array, rel) = chunk_dir_rel(rest).ok_or(FsError::NotFound)?;
                        children(array, rel).ok_or(FsError::NotFound)?
                    }
                }
            }
            Node::RootMeta | Node::TileMeta(_) | Node::StatsFile => {
                return Err(FsError::NotDir);
            }
        })
    }
}

/// The resolved tile-year of a path below it, and what the path names there.
fn in_year(
    years: &Years,
    path: &str,
    tile: &str,
    year: i32,
    rest: &str,
) -> Result<(Arc<YearState>, YearNode), FsError> {
    let ys = years
        .get(&TileYear::new(tile, year))?
        .ok_or(FsError::NotFound)?;
    let node = classify_in_year(path, rest, ys.files(), |a| {
        ys.ctx.has_array(a).then(|| {
            let g = ys.ctx.geometry(a);
            match ys.ctx.chunking.inner_space(a.res) {
                // The chunked view's grid: inner chunks.
                Some(inner) if ys.is_chunked_view() => [
                    g.chunk_counts()[0],
                    g.grid.nrows.div_ceil(inner),
                    g.grid.ncols.div_ceil(inner),
                ],
                _ => g.chunk_counts(),
            }
        })
    })
    .ok_or(FsError::NotFound)?;
    Ok((ys, node))
}

fn to_kinds(v: Vec<(String, bool)>) -> Vec<(String, Kind)> {
    v.into_iter()
        .map(|(n, d)| (n, if d { Kind::Dir } else { Kind::File }))
        .collect()
}

/// `10m/data/c/3/0` → (10 m data, `c/3/0`).
fn chunk_dir_rel(rest: &str) -> Option<(PixelArray, &str)> {
    let (res, tail) = rest.split_once('/')?;
    let (name, rel) = tail.split_once('/')?;
    Some((PixelArray::named(res, name)?, rel))
}

/// Nodes below a year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YearNode {
    /// A generated metadata or coordinate file (bytes in the year's layout).
    StaticFile,
    StaticDir,
    /// A directory of a pixel array's chunk tree (`c`, `c/T`, `c/T/0`, `c/T/0/Y` of `data`;
    /// `c`, `c/T`, `c/T/Y` of `scl`).
    ChunkDir,
    Chunk(PixelArray, ChunkIndex),
}

/// Classifies `key` (the full path) below a resolved year. `files` is the year layout's files;
/// `counts(array)` gives a pixel array's chunk grid `[nt, ny, nx]` (`None`: the level has no
/// such array).
pub fn classify_in_year(
    key: &str,
    rest: &str,
    files: &BTreeMap<String, Vec<u8>>,
    counts: impl Fn(PixelArray) -> Option<[u64; 3]>,
) -> Option<YearNode> {
    if files.contains_key(key) {
        return Some(YearNode::StaticFile);
    }
    let mut parts: Vec<&str> = rest.split('/').collect();
    let array = (parts.len() >= 3 && parts[2] == "c")
        .then(|| PixelArray::named(parts[0], parts[1]))
        .flatten();
    if let Some(array) = array {
        let [nt, ny, nx] = counts(array)?;
        // `scl` keys have no band level: read `c/T/Y/X` as `data`'s `c/T/0/Y/X`.
        if !array.has_bands() && parts.len() >= 5 {
            parts.insert(4, "0");
        }
        let res = array;
        let idx = |i: usize, n: u64| canonical_u64(parts[i]).filter(|v| *v < n);
        return match parts.len() {
            3 => Some(YearNode::ChunkDir),
            4 => idx(3, nt).map(|_| YearNode::ChunkDir),
            5 => (idx(3, nt).is_some() && parts[4] == "0").then_some(YearNode::ChunkDir),
            6 => (idx(3, nt).is_some() && parts[4] == "0" && idx(5, ny).is_some())
                .then_some(YearNode::ChunkDir),
            7 if parts[4] == "0" => Some(YearNode::Chunk(
                res,
                ChunkIndex {
                    t: idx(3, nt)?,
                    y: idx(5, ny)?,
                    x: idx(6, nx)?,
                },
            )),
            _ => None,
        };
    }
    let prefix = format!("{key}/");
    files
        .range(prefix.clone()..)
        .next()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|_| YearNode::StaticDir)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fs::node::tests::files;
    use crate::s2::bands::Resolution::R10;

    #[test]
    fn a_chunk_of_the_chunked_view_is_an_inner_chunk_of_its_shard() {
        let idx = |t, y, x| ChunkIndex { t, y, x };
        assert_eq!(inner_of(idx(1, 9, 17), 8), (idx(1, 1, 2), 9));
        assert_eq!(inner_of(idx(0, 7, 7), 8), (idx(0, 0, 0), 63));
    }

    #[test]
    fn classifies_below_a_year() {
        let f = files();
        let counts = |_| Some([2u64, 3, 3]);
        let c = |rest: &str| classify_in_year(&format!("35VLH/2024/{rest}"), rest, &f, counts);
        assert_eq!(c("zarr.json"), Some(YearNode::StaticFile));
        assert_eq!(c("10m"), Some(YearNode::StaticDir));
        assert_eq!(c("10m/time/c"), Some(YearNode::StaticDir));
        assert_eq!(c("10m/time/c/0"), Some(YearNode::StaticFile));
        assert_eq!(c("10m/data/c"), Some(YearNode::ChunkDir));
        assert_eq!(c("10m/data/c/1/0/2"), Some(YearNode::ChunkDir));
        assert_eq!(
            c("10m/data/c/1/0/2/0"),
            Some(YearNode::Chunk(
                PixelArray::data(R10),
                ChunkIndex { t: 1, y: 2, x: 0 }
            ))
        );
        assert_eq!(c("10m/scl/c/1/2"), Some(YearNode::ChunkDir));
        assert_eq!(
            c("10m/scl/c/1/2/0"),
            Some(YearNode::Chunk(
                PixelArray::scl(R10),
                ChunkIndex { t: 1, y: 2, x: 0 }
            ))
        );
        let no_scl = |rest: &str| {
            classify_in_year(&format!("35VLH/2024/{rest}"), rest, &f, |a| {
                a.has_bands().then_some([2u64, 3, 3])
            })
        };
        assert_eq!(no_scl("10m/scl/c/1/2/0"), None, "an L1C cube has no scl");
        for bad in [
            "10m/data/c/2",
            "10m/data/c/1/1",
            "10m/data/c/1/0/3/0",
            "10m/data/c/1/0/2/00",
            "10m/data/c/1/0/2/0/0",
            "15m/data/c",
            "10m/nope",
            "10m/data/c/-1",
            "10m/scl/c/1/0/2/0",
            "60m/scl/c/1/2/0",
        ] {
            assert_eq!(c(bad), None, "{bad}");
        }
    }
}
