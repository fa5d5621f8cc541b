//! The record of materialized chunks of one data array, so a partly filled store can tell an
//! all-fill chunk (not stored, by Zarr's missing-chunk rule) from one not computed yet.
//!
//! Kept at `TileYear::record_key` (`TILE/YEAR/.datacube/chunks-RES.json`), sorted, rewritten atomically. A chunk file is
//! written before its entry, so after a crash an entry always has its file; a file without an entry
//! is simply recomputed (identically) on the next run.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::key::ChunkIndex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ChunkEntry {
    /// Stored, `bytes` long.
    Data { bytes: u64 },
    /// Every value is the fill value: no file.
    Empty,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Chunk (its key relative to the array, `c/0/0/1/2`, in JSON) → entry.
    pub chunks: BTreeMap<ChunkIndex, ChunkEntry>,
}

impl ChunkRecord {
    pub fn load(store: &dyn Store, key: &str) -> Result<Self> {
        match store.get(key)? {
            None => Ok(Self::default()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: invalid chunk record {key}", store.describe())),
        }
    }

    pub fn save(&self, store: &dyn Store, key: &str) -> Result<()> {
        store.put(key, &serde_json::to_vec_pretty(self)?)
    }

    pub fn data_bytes(&self) -> u64 {
        self.chunks
            .values()
            .map(|e| match e {
                ChunkEntry::Data { bytes } => *bytes,
                ChunkEntry::Empty => 0,
            })
            .sum()
    }

    pub fn count(&self, empty: bool) -> usize {
        self.chunks
            .values()
            .filter(|e| matches!(e, ChunkEntry::Empty) == empty)
            .count()
    }
}
