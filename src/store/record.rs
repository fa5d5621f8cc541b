//! The record of materialized chunks of one data array, so a partly filled store can tell an
//! all-fill chunk (not stored, by Zarr's missing-chunk rule) from one not computed yet.
//!
//! Every writer process keeps its own record file (`TileYear::record_file`), rewritten only by
//! it, so concurrent writers never lose each other's entries; the record is the union of the
//! files. Records are per tile-year and group (`10m`, `20m`), whatever the collection. Each entry
//! carries the fingerprint of the time chunk it was computed under (`AxisCatalog::fingerprint`)
//! and counts only while the latest catalog generation agrees, so an
//! entry made stale by a new generation needs no deletion by anyone. A chunk file is written
//! before its entry, so an entry always has its file; a file without an entry is computed again.
//! Files of writers that are gone are folded into a live writer's file and removed, so their
//! number stays about the number of live writers. A store made before per-writer records has one
//! record file (`TileYear::record_key`) whose entries count as computed under generation 1.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Store;
use crate::generation::AxisCatalog;
use crate::key::{ChunkIndex, TileYear};

/// A group whose chunks are recorded, typed: its name and the catalog its fingerprints come
/// from (so a record can be loaded under the store's latest generation by the group alone).
pub trait RecordGroup: Copy {
    type Catalog: AxisCatalog;
    fn group_name(self) -> &'static str;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ChunkEntry {
    /// Stored, `bytes` long.
    Data { bytes: u64 },
    /// Every value is the fill value: no file.
    Empty,
}

/// One entry of a record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recorded {
    #[serde(flatten)]
    entry: ChunkEntry,
    /// Fingerprint of the time chunk it was computed under (absent in a pre-generation record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fp: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RecordFile {
    #[serde(default)]
    owner: String,
    #[serde(default)]
    written_ms: i64,
    chunks: BTreeMap<ChunkIndex, Recorded>,
}

/// The chunks of one data array that count as computed under a catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkRecord {
    pub chunks: BTreeMap<ChunkIndex, ChunkEntry>,
}

fn read_file(store: &dyn Store, key: &str) -> Result<Option<RecordFile>> {
    match store.get(key)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{}: invalid chunk record {key}", store.describe())
        })?)),
    }
}

/// Every record file of `(ty, group)`: (key, owner as named by the key, content). The legacy
/// file comes first, with owner `""`.
fn read_all(
    store: &dyn Store,
    ty: &TileYear,
    group: &str,
) -> Result<Vec<(String, String, RecordFile)>> {
    let mut out = Vec::new();
    let legacy = ty.record_key(group);
    if let Some(f) = read_file(store, &legacy)? {
        out.push((legacy, String::new(), f));
    }
    for name in store.list_dir(&ty.records_dir(group))? {
        let Some(owner) = name.strip_suffix(".json") else {
            continue;
        };
        let key = ty.record_file(group, owner);
        // Removed by a compaction since the listing: its entries are in the compactor's file.
        if let Some(f) = read_file(store, &key)? {
            out.push((key, owner.to_string(), f));
        }
    }
    Ok(out)
}

/// Whether an entry computed under `fp` (None: under generation 1) counts under `catalog`.
struct Validity<'a, C: AxisCatalog> {
    store: &'a dyn Store,
    ty: &'a TileYear,
    group: &'a str,
    catalog: &'a C,
    first: Option<Option<C>>,
}

impl<'a, C: AxisCatalog> Validity<'a, C> {
    fn new(store: &'a dyn Store, ty: &'a TileYear, group: &'a str, catalog: &'a C) -> Self {
        Validity {
            store,
            ty,
            group,
            catalog,
            first: None,
        }
    }

    fn valid(&mut self, idx: ChunkIndex, fp: &Option<String>) -> Result<bool> {
        if idx.t >= self.catalog.time_chunks(self.group) {
            return Ok(false);
        }
        let current = self.catalog.fingerprint(self.group, idx.t);
        match fp {
            Some(fp) => Ok(*fp == current),
            None => {
                if self.first.is_none() {
                    self.first = Some(crate::generation::first_catalog::<C>(self.store, self.ty)?);
                }
                Ok(self.first.as_ref().unwrap().as_ref().is_some_and(|c| {
                    idx.t < c.time_chunks(self.group) && c.fingerprint(self.group, idx.t) == current
                }))
            }
        }
    }
}

impl ChunkRecord {
    /// The entries of every writer's record of `(ty, group)` that count under `catalog`.
    pub fn load_valid<C: AxisCatalog>(
        store: &dyn Store,
        ty: &TileYear,
        group: &str,
        catalog: &C,
    ) -> Result<Self> {
        let mut v = Validity::new(store, ty, group, catalog);
        let mut chunks = BTreeMap::new();
        for (_, _, file) in read_all(store, ty, group)? {
            for (idx, r) in file.chunks {
                if v.valid(idx, &r.fp)? {
                    chunks.insert(idx, r.entry);
                }
            }
        }
        Ok(ChunkRecord { chunks })
    }

    /// The entries of every writer's record of `(ty, group)` whose fingerprint is `fp_of(t)` of their
    /// time chunk (`None`: the time chunk does not exist). For collections whose catalogs have no
    /// pre-generation history (entries without a fingerprint never count).
    pub fn load_matching(
        store: &dyn Store,
        ty: &TileYear,
        group: &str,
        fp_of: &dyn Fn(u64) -> Option<String>,
    ) -> Result<Self> {
        let mut chunks = BTreeMap::new();
        for (_, _, file) in read_all(store, ty, group)? {
            for (idx, r) in file.chunks {
                if r.fp.is_some() && r.fp == fp_of(idx.t) {
                    chunks.insert(idx, r.entry);
                }
            }
        }
        Ok(ChunkRecord { chunks })
    }

    /// `load_valid` under the store's latest catalog generation (empty if it has none).
    pub fn load<G: RecordGroup>(store: &dyn Store, ty: &TileYear, group: G) -> Result<Self> {
        match crate::generation::latest::<G::Catalog>(store, ty)? {
            Some(g) => Self::load_valid(store, ty, group.group_name(), &g.catalog),
            None => Ok(Self::default()),
        }
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

/// The number of record files of `(ty, group)` (for `datacube info`'s object counts).
pub fn record_files(store: &dyn Store, ty: &TileYear, group: &str) -> Result<usize> {
    Ok(store.list_dir(&ty.records_dir(group))?.len()
        + usize::from(store.get(&ty.record_key(group))?.is_some()))
}

/// This process's record files: what it has computed, per tile-year and resolution.
pub struct RecordWriter {
    owner: String,
    own: Mutex<HashMap<(TileYear, &'static str), RecordFile>>,
}

impl Default for RecordWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordWriter {
    /// A writer named after this process (`host-pid-start`), plus a sequence number so that
    /// several writers in one process (tests, a library user) have files of their own.
    pub fn new() -> Self {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RecordWriter {
            owner: format!("{}_{n}", super::writer_id()),
            own: Mutex::new(HashMap::new()),
        }
    }

    /// Adds entries computed under fingerprint `fp` of their time chunk (not yet saved).
    pub fn add(
        &self,
        ty: &TileYear,
        group: &'static str,
        idx: ChunkIndex,
        entry: ChunkEntry,
        fp: &str,
    ) {
        let mut g = self.own.lock().unwrap();
        let f = g.entry((ty.clone(), group)).or_insert_with(|| RecordFile {
            owner: self.owner.clone(),
            ..Default::default()
        });
        f.chunks.insert(
            idx,
            Recorded {
                entry,
                fp: Some(fp.to_string()),
            },
        );
    }

    /// Writes this writer's record file of `(ty, group)` (atomically, whole).
    pub fn save(&self, store: &dyn Store, ty: &TileYear, group: &'static str) -> Result<()> {
        let bytes = {
            let mut g = self.own.lock().unwrap();
            let Some(f) = g.get_mut(&(ty.clone(), group)) else {
                return Ok(());
            };
            f.written_ms = crate::generation::now_ms();
            serde_json::to_vec(f)?
        };
        store.put(&ty.record_file(group, &self.owner), &bytes)
    }

    /// Folds the record files of writers that are gone (and a pre-generation record) into this
    /// writer's, keeping the entries that count under `catalog`; saves; then removes them.
    /// Returns how many files were removed.
    pub fn adopt_abandoned<C: AxisCatalog>(
        &self,
        store: &dyn Store,
        ty: &TileYear,
        group: &'static str,
        catalog: &C,
    ) -> Result<usize> {
        let mut v = Validity::new(store, ty, group, catalog);
        let mut gone = Vec::new();
        let mut adopted = Vec::new();
        for (key, owner, file) in read_all(store, ty, group)? {
            if owner == self.owner
                || !(owner.is_empty() || super::writer_gone(&owner, file.written_ms))
            {
                continue;
            }
            for (idx, r) in file.chunks {
                if v.valid(idx, &r.fp)? {
                    adopted.push((idx, r.entry));
                }
            }
            gone.push(key);
        }
        if gone.is_empty() {
            return Ok(0);
        }
        for (idx, entry) in adopted {
            let fp = catalog.fingerprint(group, idx.t);
            self.add(ty, group, idx, entry, &fp);
        }
        // Our file may not exist yet: make sure it does before the others go.
        {
            let mut g = self.own.lock().unwrap();
            g.entry((ty.clone(), group)).or_insert_with(|| RecordFile {
                owner: self.owner.clone(),
                ..Default::default()
            });
        }
        self.save(store, ty, group)?;
        for key in &gone {
            store.delete(key)?;
        }
        Ok(gone.len())
    }
}
