//! The generated tree: what a path of the mount is, and what a directory lists. Group and array
//! metadata and coordinate files come from the tile-year's layout; chunk directories list only the
//! chunks known to be computed, so listing never starts work.

use std::collections::HashMap;
use std::sync::Arc;

use super::attr::{Attr, FsError, Kind};
use super::node::{classify, classify_in_year, static_children, Node, YearNode, STATS_DIR};
use super::year::{YearState, Years};
use crate::cache::Bytes;
use crate::key::{ChunkKey, TileYear, DATA_ARRAY};
use crate::s2::bands::Resolution;

/// What a path resolves to.
pub enum Resolved {
    Dir,
    /// A generated file: its attributes and bytes.
    File(Attr, Bytes),
    /// The live statistics file (its content is made by the caller, per request).
    Stats,
    Chunk(Arc<YearState>, ChunkKey),
}

pub struct Tree {
    tiles: Vec<String>,
    years: Vec<i32>,
    root_meta: Bytes,
    tile_meta: HashMap<String, Bytes>,
}

impl Tree {
    pub fn new(
        tiles: Vec<String>,
        years: Vec<i32>,
        chunking: crate::s2::chunking::Chunking,
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
            root_meta: crate::s2::layout::root_group_file(chunking).into(),
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
                let files = &ys.ctx.layout.files;
                match node {
                    YearNode::StaticFile => {
                        let b: Bytes = files[path].as_slice().into();
                        file(&b)
                    }
                    YearNode::StaticDir | YearNode::ChunkDir => Resolved::Dir,
                    YearNode::Chunk(res, idx) => {
                        let key = ys.tile_year().chunk(res, idx);
                        Resolved::Chunk(ys, key)
                    }
                }
            }
        })
    }

    /// Children of the directory at `path`: (name, kind), without `.`/`..`.
    pub fn list(&self, years: &Years, path: &str) -> Result<Vec<(String, Kind)>, FsError> {
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
                Some(ys) => to_kinds(static_children(path, &ys.ctx.layout.files)),
            },
            Node::InYear { tile, year, rest } => {
                let (ys, node) = in_year(years, path, tile, year, rest)?;
                let files = &ys.ctx.layout.files;
                match node {
                    YearNode::StaticFile | YearNode::Chunk(..) => return Err(FsError::NotDir),
                    YearNode::StaticDir => {
                        let mut v = to_kinds(static_children(path, files));
                        if let Some(res) = data_array_res(rest) {
                            if ys.chunk_children(res, "c").is_some_and(|c| !c.is_empty()) {
                                v.push(dir("c"));
                            }
                        }
                        v
                    }
                    YearNode::ChunkDir => {
                        let (res, rel) = chunk_dir_rel(rest).ok_or(FsError::NotFound)?;
                        ys.chunk_children(res, rel).ok_or(FsError::NotFound)?
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
    let node = classify_in_year(path, rest, &ys.ctx.layout.files, |r| {
        ys.ctx.geometry(r).chunk_counts()
    })
    .ok_or(FsError::NotFound)?;
    Ok((ys, node))
}

fn to_kinds(v: Vec<(String, bool)>) -> Vec<(String, Kind)> {
    v.into_iter()
        .map(|(n, d)| (n, if d { Kind::Dir } else { Kind::File }))
        .collect()
}

fn resolution(name: &str) -> Option<Resolution> {
    Resolution::ALL.into_iter().find(|r| r.name() == name)
}

/// `10m/data` → 10 m (the directory that holds the chunk tree `c`).
fn data_array_res(rest: &str) -> Option<Resolution> {
    let (res, tail) = rest.split_once('/')?;
    (tail == DATA_ARRAY).then(|| resolution(res)).flatten()
}

/// `10m/data/c/3/0` → (10 m, `c/3/0`).
fn chunk_dir_rel(rest: &str) -> Option<(Resolution, &str)> {
    let (res, tail) = rest.split_once('/')?;
    let rel = tail.strip_prefix(DATA_ARRAY)?.strip_prefix('/')?;
    Some((resolution(res)?, rel))
}
