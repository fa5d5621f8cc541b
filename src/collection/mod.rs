//! The collection interface: what a collection says about itself, behind one trait
//! ([`Opener`], one per collection, as xcube's data-store plug-ins have one opener per data
//! source). A collection is one folder (`s2`, `s1`) that implements it; `crate::registry` is the
//! only place that lists them, and the commands (`cli`, `info`) reach a collection only through
//! this trait.
//!
//! What a collection says: how its tiles are named, how a tile-year's items are found and merged
//! into a time axis, its groups, variables and layout, how one stored object is computed, and the
//! cube a mount serves from that. What it reuses rather than says: catalog generations and the
//! fence (`generation`), writeback (`writeback`), refresh and the FUSE adapter (`fs`), caches and
//! single flight (`util`), intake's parts (`intake`) and the stores (`store`).

pub mod info;
pub mod variable;

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use serde_json::Value;

pub use info::{InfoRow, Projection};
pub use variable::Variable;

use crate::fs::refresh::RefreshPolicy;
use crate::fs::CubeView;
use crate::generation::Fence;
use crate::intake::Regions;
use crate::key::TileYear;
use crate::source::CdseOptions;
use crate::store::Store;
use crate::writeback::Limits;

/// One collection, as the commands see it.
pub trait Opener: Send + Sync {
    /// The name on the command line and in the store's root group (`sentinel-2-l1c`).
    fn name(&self) -> &'static str;

    /// The tiles `--tiles` names (tile names of the collection's grid, or named sets), checked.
    fn tiles(&self, arg: &str) -> Result<Vec<String>>;

    /// What a mount serves without `--tiles` (`None`: the option is required).
    fn default_tiles(&self) -> Option<&'static str>;

    /// The cube a mount serves over `store` (which holds this collection or nothing yet).
    fn open_cube(&self, req: &MountRequest, store: Arc<dyn Store>) -> Result<Arc<dyn CubeView>>;

    /// Bulk intake into `store`: one converter for every tile-year of the run.
    fn intake<'a>(
        &self,
        req: &IntakeRequest,
        store: &'a dyn Store,
    ) -> Result<Box<dyn YearIntake + 'a>>;

    /// `datacube info`: one row per tile-year and group of the store.
    fn info_rows(&self, store: &dyn Store) -> Result<Vec<InfoRow>>;

    /// The store's layout, and the object count of a full tile set in it projected from `rows`
    /// over `years` years, for `info`'s summary (`None`s where the collection has one layout).
    fn layout_summary(
        &self,
        _store: &dyn Store,
        _rows: &[InfoRow],
        _years: u64,
    ) -> Result<(Option<String>, Option<Projection>)> {
        Ok((None, None))
    }
}

/// What `datacube mount` asks of a collection (parsed and checked by the command line).
#[derive(Debug, Clone)]
pub struct MountRequest {
    /// `--source`: a local archive or mirror, or a remote service (each collection says which).
    pub source: String,
    /// How to reach remote services: endpoints, quotas, retries, the disk cache.
    pub remote: CdseOptions,
    pub tiles: Vec<String>,
    pub years: Vec<i32>,
    /// Memory for the cube's caches, bytes.
    pub cache_bytes: usize,
    /// Concurrent materializations and store reads.
    pub workers: usize,
    pub fence: Fence,
    pub refresh: RefreshPolicy,
    pub writeback: Limits,
    /// `--layout`, for a new store (`None`: the collection's default; a store keeps its own).
    pub layout: Option<String>,
    /// `--view`: how the mount presents the store's arrays.
    pub view: View,
}

/// How a mount presents its arrays (`--view`). Whatever the view, the store and everything the
/// mount computes and writes back are the store's own layout: a view changes only what readers
/// of the mount see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// As stored: a sharded array is served as its `sharding_indexed` metadata and shard objects.
    #[default]
    Native,
    /// Every sharded array as a plain chunked array whose chunks are the shards' inner chunks,
    /// byte for byte (the inner chunk grid and codecs; a chunk file is an inner chunk's byte
    /// range in its shard), for readers that do not know sharding (GDAL before 3.13).
    Chunked,
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            View::Native => "native",
            View::Chunked => "chunked",
        })
    }
}

impl std::str::FromStr for View {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "native" => Ok(View::Native),
            "chunked" => Ok(View::Chunked),
            _ => Err(format!("unknown view {s:?} (native, chunked)")),
        }
    }
}

/// What `datacube intake` asks of a collection.
#[derive(Debug, Clone)]
pub struct IntakeRequest {
    pub source: String,
    pub remote: CdseOptions,
    /// First and last day whose time chunks are converted (`None`: the whole year).
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    /// `--resolutions`: the groups to convert (`None`: all).
    pub groups: Option<Vec<String>>,
    /// Cap of the decoded-source cache, bytes.
    pub memory_bytes: usize,
    pub progress: bool,
    pub fence: Fence,
    pub layout: Option<String>,
}

/// A collection's intake of one tile-year at a time.
pub trait YearIntake {
    /// Converts this process's share (`regions`) of `ty`. Fails with `intake::NoScenes` when
    /// the source has nothing for it.
    fn run(&mut self, ty: &TileYear, regions: Regions) -> Result<IntakeOutcome>;
}

/// What an intake of one tile-year did.
#[derive(Debug, Clone, Default)]
pub struct IntakeOutcome {
    /// The report, printed to stdout.
    pub report: String,
    /// Objects that could not be computed (printed to stderr; the run fails): rerun after fixing
    /// the input.
    pub errors: Vec<String>,
}

/// The collection a store holds, from its root group (`None` for an empty store).
pub fn name_of_store(store: &dyn Store) -> Result<Option<String>> {
    let Some(bytes) = store.get("zarr.json")? else {
        return Ok(None);
    };
    let root: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: zarr.json", store.describe()))?;
    let name = root["attributes"]["datacube"]["collection"]
        .as_str()
        .with_context(|| {
            format!(
                "{}: zarr.json has no attributes.datacube.collection (not a datacube store)",
                store.describe()
            )
        })?;
    Ok(Some(name.to_string()))
}

/// Fails with a clear message unless the store is empty or holds collection `name`.
pub fn check_store(store: &dyn Store, name: &str) -> Result<()> {
    match name_of_store(store)? {
        Some(found) if found != name => anyhow::bail!(
            "{}: the store holds collection {found}, not {name} (pass --collection {found}, or use another store)",
            store.describe()
        ),
        _ => Ok(()),
    }
}
