//! The generated tree of every collection: what a path of the mount is, and what a directory
//! lists. Above the year level it is fixed by the mount's tiles and years; below it, the
//! tile-year's documents (group and array metadata, coordinate chunks) are files, and each
//! time-chunked array's object tree follows the Zarr v3 default chunk key grammar: `c/T/Y/X`,
//! or `c/T/0/Y/X` for an array with a band dimension of one chunk. Object directories list only
//! the objects a collection knows to exist, so listing never starts work.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::cache::Bytes;
use crate::fs::attr::{Attr, FsError, Kind};
use crate::fs::node::{classify, static_children, Node, STATS_DIR};
use crate::key::{canonical_u64, ChunkIndex, TileYear};

/// What the tree needs of a resolved tile-year.
pub trait YearTree {
    /// How the collection names one of its time-chunked arrays.
    type Array: Copy + Send + 'static;
    /// The year's documents, by path from the mount root (`35VLH/2024/10m/data/zarr.json`).
    fn files(&self) -> &BTreeMap<String, Vec<u8>>;
    /// The time-chunked array at `path` below the tile-year (`10m/data`), with its object grid
    /// as the mount presents it (`None`: no such array in this year).
    fn object_array(&self, path: &str) -> Option<(Self::Array, ObjectGrid)>;
}

/// The grid of an array's object files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectGrid {
    /// Objects along time, y and x.
    pub counts: [u64; 3],
    /// Whether the key has a band level (always chunk 0: `c/T/0/Y/X`).
    pub band_level: bool,
}

/// A tile-year's state, resolved on first use (`None`: the source has no items for it).
pub type YearOf<'a, S> = &'a dyn Fn(&TileYear) -> Result<Option<Arc<S>>, FsError>;

/// What a path resolves to.
pub enum Resolved<S: YearTree> {
    Dir,
    /// A generated file: its attributes and bytes.
    File(Attr, Bytes),
    /// The live statistics file (its content is made per request).
    Stats,
    /// An object file of a resolved tile-year: its array and index.
    Object(Arc<S>, S::Array, ChunkIndex),
}

/// Nodes below a year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YearNode<A> {
    /// A document (bytes in the year's files).
    StaticFile,
    StaticDir,
    /// A directory of an array's object tree (`c`, `c/T`, `c/T/0`, `c/T/0/Y`; without the
    /// band level `c`, `c/T`, `c/T/Y`).
    ObjectDir,
    Object(A, ChunkIndex),
}

/// The fixed levels of the tree and the documents above the years.
pub struct Tree {
    tiles: Vec<String>,
    years: Vec<i32>,
    root_meta: Bytes,
    tile_meta: HashMap<String, Bytes>,
}

impl Tree {
    /// `root_meta`: the root group's document; `tile_meta`: each tile's group document.
    pub fn new(
        tiles: Vec<String>,
        years: Vec<i32>,
        root_meta: Vec<u8>,
        tile_meta: HashMap<String, Vec<u8>>,
    ) -> Self {
        Tree {
            root_meta: root_meta.into(),
            tile_meta: tile_meta.into_iter().map(|(t, b)| (t, b.into())).collect(),
            tiles,
            years,
        }
    }

    pub fn tiles(&self) -> &[String] {
        &self.tiles
    }

    pub fn years(&self) -> &[i32] {
        &self.years
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

    /// What `path` is; `year` gives a tile-year's state, resolving it first if needed
    /// (`None`: the source has no items for it).
    pub fn resolve<S: YearTree>(
        &self,
        year: YearOf<S>,
        path: &str,
    ) -> Result<Resolved<S>, FsError> {
        let node = classify(path, &self.tiles, &self.years).ok_or(FsError::NotFound)?;
        let file = |b: &Bytes| Resolved::File(Attr::file(b.len() as u64), b.clone());
        Ok(match node {
            Node::Root | Node::StatsDir | Node::Tile(_) | Node::Year(..) => Resolved::Dir,
            Node::RootMeta => file(&self.root_meta),
            Node::TileMeta(t) => file(self.tile_meta.get(t).ok_or(FsError::NotFound)?),
            Node::StatsFile => Resolved::Stats,
            Node::InYear {
                tile,
                year: y,
                rest,
            } => {
                let (ys, node) = in_year(year, path, tile, y, rest)?;
                match node {
                    YearNode::StaticFile => file(&ys.files()[path].as_slice().into()),
                    YearNode::StaticDir | YearNode::ObjectDir => Resolved::Dir,
                    YearNode::Object(a, idx) => Resolved::Object(ys, a, idx),
                }
            }
        })
    }

    /// Children of the directory at `path`: (name, kind), without `.`/`..`. An object
    /// directory lists the objects `listed(year, array)` says exist.
    pub fn list<S: YearTree>(
        &self,
        year: YearOf<S>,
        listed: &dyn Fn(&S, S::Array) -> Vec<ChunkIndex>,
        path: &str,
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
            Node::Year(tile, y) => match year(&TileYear::new(tile, y))? {
                None => vec![],
                Some(ys) => to_kinds(static_children(path, ys.files())),
            },
            Node::InYear {
                tile,
                year: y,
                rest,
            } => {
                let (ys, node) = in_year(year, path, tile, y, rest)?;
                match node {
                    YearNode::StaticFile | YearNode::Object(..) => return Err(FsError::NotDir),
                    YearNode::StaticDir => {
                        let mut v = to_kinds(static_children(path, ys.files()));
                        if let Some((a, _)) = ys.object_array(rest) {
                            if !listed(&ys, a).is_empty() {
                                v.push(dir("c"));
                            }
                        }
                        v
                    }
                    YearNode::ObjectDir => {
                        let (array, rel) = object_dir_rel(rest).ok_or(FsError::NotFound)?;
                        let (a, grid) = ys.object_array(array).ok_or(FsError::NotFound)?;
                        object_dir_children(grid, rel, listed(&ys, a).into_iter())
                            .ok_or(FsError::NotFound)?
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
fn in_year<S: YearTree>(
    year: YearOf<S>,
    path: &str,
    tile: &str,
    y: i32,
    rest: &str,
) -> Result<(Arc<S>, YearNode<S::Array>), FsError> {
    let ys = year(&TileYear::new(tile, y))?.ok_or(FsError::NotFound)?;
    let node = classify_in_year(ys.as_ref(), path, rest).ok_or(FsError::NotFound)?;
    Ok((ys, node))
}

fn to_kinds(v: Vec<(String, bool)>) -> Vec<(String, Kind)> {
    v.into_iter()
        .map(|(n, d)| (n, if d { Kind::Dir } else { Kind::File }))
        .collect()
}

/// `10m/data/c/3/0` → (`10m/data`, `c/3/0`): split at the first segment `c` below the array.
fn object_dir_rel(rest: &str) -> Option<(&str, &str)> {
    let mut at = 0;
    for seg in rest.split('/') {
        if seg == "c" && at > 0 {
            return Some((&rest[..at - 1], &rest[at..]));
        }
        at += seg.len() + 1;
    }
    None
}

/// Classifies `key` (the full path; `rest` the part below the tile-year) in a resolved year.
pub fn classify_in_year<S: YearTree + ?Sized>(
    year: &S,
    key: &str,
    rest: &str,
) -> Option<YearNode<S::Array>> {
    let files = year.files();
    if files.contains_key(key) {
        return Some(YearNode::StaticFile);
    }
    if let Some((array, rel)) = object_dir_rel(rest) {
        if let Some((a, grid)) = year.object_array(array) {
            return classify_object(grid, rel).map(|n| match n {
                Some(idx) => YearNode::Object(a, idx),
                None => YearNode::ObjectDir,
            });
        }
    }
    let prefix = format!("{key}/");
    files
        .range(prefix.clone()..)
        .next()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|_| YearNode::StaticDir)
}

/// `rel` (`c/…`) in an array's object tree: `Some(None)` a directory, `Some(Some(idx))` an
/// object, `None` nothing.
fn classify_object(grid: ObjectGrid, rel: &str) -> Option<Option<ChunkIndex>> {
    let mut parts: Vec<&str> = rel.split('/').collect();
    // Read `c/T/Y/X` as `c/T/0/Y/X`.
    if !grid.band_level && parts.len() >= 3 {
        parts.insert(2, "0");
    }
    let [nt, ny, nx] = grid.counts;
    let idx = |i: usize, n: u64| canonical_u64(parts[i]).filter(|v| *v < n);
    match parts.len() {
        1 => Some(None),
        2 => idx(1, nt).map(|_| None),
        3 => (idx(1, nt).is_some() && parts[2] == "0").then_some(None),
        4 => (idx(1, nt).is_some() && parts[2] == "0" && idx(3, ny).is_some()).then_some(None),
        5 if parts[2] == "0" => Some(Some(ChunkIndex {
            t: idx(1, nt)?,
            y: idx(3, ny)?,
            x: idx(4, nx)?,
        })),
        _ => None,
    }
}

/// Names directly below the object directory `rel` of an array with `grid` that lead to
/// `objects`, with their kinds.
fn object_dir_children(
    grid: ObjectGrid,
    rel: &str,
    objects: impl Iterator<Item = ChunkIndex>,
) -> Option<Vec<(String, Kind)>> {
    let mut parts: Vec<&str> = rel.split('/').collect();
    if !grid.band_level && parts.len() >= 2 {
        parts.insert(2, "0");
    }
    let num = |i: usize| canonical_u64(parts[i]);
    let names: BTreeSet<u64> = match parts.as_slice() {
        ["c"] => objects.map(|i| i.t).collect(),
        ["c", _] if grid.band_level => {
            let t = num(1)?;
            objects.filter(|i| i.t == t).map(|_| 0).collect()
        }
        ["c", _, "0"] => {
            let t = num(1)?;
            objects.filter(|i| i.t == t).map(|i| i.y).collect()
        }
        ["c", _, "0", _] => {
            let (t, y) = (num(1)?, num(3)?);
            objects
                .filter(|i| i.t == t && i.y == y)
                .map(|i| i.x)
                .collect()
        }
        _ => return None,
    };
    // c/T/0/Y (c/T/Y) holds object files; every level above holds directories.
    let kind = if parts.len() == 4 {
        Kind::File
    } else {
        Kind::Dir
    };
    Some(names.into_iter().map(|n| (n.to_string(), kind)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fs::node::tests::files;

    /// A year with `10m/data` (band level) and `10m/scl` (none), 2 × 3 × 3 objects each.
    struct Year(BTreeMap<String, Vec<u8>>);

    impl YearTree for Year {
        type Array = &'static str;
        fn files(&self) -> &BTreeMap<String, Vec<u8>> {
            &self.0
        }
        fn object_array(&self, path: &str) -> Option<(&'static str, ObjectGrid)> {
            let counts = [2, 3, 3];
            match path {
                "10m/data" => Some((
                    "data",
                    ObjectGrid {
                        counts,
                        band_level: true,
                    },
                )),
                "10m/scl" => Some((
                    "scl",
                    ObjectGrid {
                        counts,
                        band_level: false,
                    },
                )),
                _ => None,
            }
        }
    }

    #[test]
    fn classifies_below_a_year() {
        let y = Year(files());
        let c = |rest: &str| classify_in_year(&y, &format!("35VLH/2024/{rest}"), rest);
        let idx = |t, y, x| ChunkIndex { t, y, x };
        assert_eq!(c("zarr.json"), Some(YearNode::StaticFile));
        assert_eq!(c("10m"), Some(YearNode::StaticDir));
        assert_eq!(c("10m/time/c"), Some(YearNode::StaticDir));
        assert_eq!(c("10m/time/c/0"), Some(YearNode::StaticFile));
        assert_eq!(c("10m/data/c"), Some(YearNode::ObjectDir));
        assert_eq!(c("10m/data/c/1/0/2"), Some(YearNode::ObjectDir));
        assert_eq!(
            c("10m/data/c/1/0/2/0"),
            Some(YearNode::Object("data", idx(1, 2, 0)))
        );
        assert_eq!(c("10m/scl/c/1/2"), Some(YearNode::ObjectDir));
        assert_eq!(
            c("10m/scl/c/1/2/0"),
            Some(YearNode::Object("scl", idx(1, 2, 0)))
        );
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

    #[test]
    fn an_object_directory_lists_what_leads_to_known_objects() {
        let idx = |t, y, x| ChunkIndex { t, y, x };
        let known = [idx(0, 1, 2), idx(1, 0, 0), idx(1, 0, 2), idx(1, 2, 1)];
        let g = |band_level| ObjectGrid {
            counts: [2, 3, 3],
            band_level,
        };
        let names = |grid, rel| {
            object_dir_children(grid, rel, known.iter().copied())
                .unwrap()
                .into_iter()
                .map(|(n, k)| format!("{n}{}", if k == Kind::Dir { "/" } else { "" }))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(names(g(true), "c"), "0/ 1/");
        assert_eq!(names(g(true), "c/1"), "0/");
        assert_eq!(names(g(true), "c/1/0"), "0/ 2/");
        assert_eq!(names(g(true), "c/1/0/0"), "0 2");
        assert_eq!(names(g(false), "c/1"), "0/ 2/");
        assert_eq!(names(g(false), "c/1/0"), "0 2");
        assert_eq!(names(g(false), "c/0/1"), "2");
    }
}
