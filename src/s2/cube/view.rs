//! A Sentinel-2 tile-year as the generic tree sees it (its pixel arrays and their object grids,
//! `crate::cube::tree::YearTree`), and its objects as the generic cube asks for them
//! ([`S2Objects`], `crate::cube::Objects`). In the chunked view of a sharded store
//! (`--view chunked`) the documents are the view's and an object path names an inner chunk:
//! `c/T/0/Y/X` is inner chunk `(Y % n, X % n)` of shard `c/T/0/(Y / n)/(X / n)`, `n` inner
//! chunks per shard side; its directories list the inner chunks of computed shards whose index
//! the mount holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::resolver::ChunkResolver;
use super::year::{S2Years, YearState};
use crate::cube::tree::{ObjectGrid, YearTree};
use crate::cube::Objects;
use crate::fs::attr::{Attr, FsError};
use crate::fs::view::{AttrDone, ContentDone};
use crate::key::{ChunkIndex, ChunkKey};
use crate::s2::array::PixelArray;
use crate::source::BandSource;

impl YearTree for YearState {
    type Array = PixelArray;

    fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        YearState::files(self)
    }

    fn object_array(&self, path: &str) -> Option<(PixelArray, ObjectGrid)> {
        let a = PixelArray::from_path(path)?;
        if !self.ctx.has_array(a) {
            return None;
        }
        let g = self.ctx.geometry(a);
        let counts = match self.ctx.chunking.inner_space(a.res) {
            // The chunked view's grid: inner chunks.
            Some(inner) if self.is_chunked_view() => [
                g.chunk_counts()[0],
                g.grid.nrows.div_ceil(inner),
                g.grid.ncols.div_ceil(inner),
            ],
            _ => g.chunk_counts(),
        };
        Some((
            a,
            ObjectGrid {
                counts,
                band_level: a.has_bands(),
            },
        ))
    }
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

/// One object file of a Sentinel-2 mount.
pub enum S2Object {
    /// A chunk or shard of the store's layout.
    Chunk(Arc<YearState>, ChunkKey),
    /// A chunk of the chunked view: inner chunk `pos` (C order over the shard's inner grid) of
    /// the shard `ChunkKey`.
    Inner(Arc<YearState>, ChunkKey, usize),
}

/// Sentinel-2's objects: the chunk resolver, and the source (for its I/O counters).
pub struct S2Objects {
    chunks: Arc<ChunkResolver>,
    source: Arc<dyn BandSource>,
}

impl S2Objects {
    pub(super) fn new(chunks: Arc<ChunkResolver>, source: Arc<dyn BandSource>) -> Self {
        S2Objects { chunks, source }
    }
}

impl Objects for S2Objects {
    type Model = S2Years;
    type Object = S2Object;

    fn object(&self, ys: Arc<YearState>, array: PixelArray, idx: ChunkIndex) -> S2Object {
        if ys.is_chunked_view() {
            let per = ys.ctx.chunking.inner_per_side(array.res);
            let (shard, pos) = inner_of(idx, per);
            let key = ys.tile_year().array_chunk(array, shard);
            S2Object::Inner(ys, key, pos)
        } else {
            let key = ys.tile_year().array_chunk(array, idx);
            S2Object::Chunk(ys, key)
        }
    }

    fn lookup(&self, object: S2Object, done: AttrDone) {
        match object {
            S2Object::Chunk(ys, key) => self.chunks.attr(ys, key, done),
            S2Object::Inner(ys, shard, pos) => self.chunks.inner_attr(ys, shard, pos, done),
        }
    }

    fn getattr(&self, object: &S2Object) -> Result<Attr, FsError> {
        match object {
            S2Object::Chunk(ys, key) => self.chunks.known_attr(ys, key),
            S2Object::Inner(ys, shard, pos) => self.chunks.known_inner_attr(ys, shard, *pos),
        }
    }

    fn open(&self, object: S2Object, done: ContentDone) {
        match object {
            S2Object::Chunk(ys, key) => self.chunks.content(ys, key, done),
            S2Object::Inner(ys, shard, pos) => self.chunks.inner_content(ys, shard, pos, done),
        }
    }

    /// Computed chunks with a file; in the chunked view, the inner chunks present in the
    /// computed shards whose index the resolver holds in memory (listing never reads the store).
    fn listed(&self, ys: &YearState, array: PixelArray) -> Vec<ChunkIndex> {
        let computed = ys.computed(array);
        if !ys.is_chunked_view() {
            return computed;
        }
        let per = ys.ctx.chunking.inner_per_side(array.res);
        computed
            .into_iter()
            .flat_map(|s| {
                let ranges = self.chunks.known_index(ys, array, s).unwrap_or_default();
                (0..ranges.len() as u64)
                    .filter(move |k| ranges[*k as usize].is_some())
                    .map(move |k| ChunkIndex {
                        t: s.t,
                        y: s.y * per + k / per,
                        x: s.x * per + k % per,
                    })
            })
            .collect()
    }

    fn stats_json(&self) -> Map<String, Value> {
        let mut m = self.chunks.stats_json();
        m.insert("source_io".into(), self.source.stats());
        m
    }

    fn shutdown(&self) {
        self.chunks.shutdown();
    }

    fn flush(&self) {
        self.chunks.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_of_the_chunked_view_is_an_inner_chunk_of_its_shard() {
        let idx = |t, y, x| ChunkIndex { t, y, x };
        assert_eq!(inner_of(idx(1, 9, 17), 8), (idx(1, 1, 2), 9));
        assert_eq!(inner_of(idx(0, 7, 7), 8), (idx(0, 0, 0), 63));
    }
}
