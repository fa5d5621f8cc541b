//! What `datacube info` shows of a collection's store: a row per tile-year and group, and the
//! projection of a full tile set. The summary and table are generic (`crate::info`).

use anyhow::Result;
use serde::Serialize;

use crate::key::TileYear;
use crate::store::Store;

#[derive(Debug, Clone, Serialize)]
pub struct InfoRow {
    pub tile: String,
    pub year: i32,
    pub resolution: String,
    pub scenes: usize,
    /// Shape of the data arrays (`[time, band, y, x]` for S2, `[time, y, x]` for S1).
    pub shape: Vec<u64>,
    pub chunks_total: u64,
    pub chunks_data: usize,
    pub chunks_empty: usize,
    pub chunks_missing: u64,
    pub bytes: u64,
    /// Objects of this resolution group: chunk files, metadata and coordinate files, record files.
    pub objects: u64,
}

/// The object count of full tile-years of a named tile set, projected from the layout and from
/// what this store's tile-years hold besides data objects (metadata, records, catalog
/// generations). Every data object is counted as present (an upper bound: a tile's all-fill
/// objects are not stored).
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    pub tiles: usize,
    pub years: u64,
    pub scenes_per_year: u64,
    pub data_objects_per_tile_year: u64,
    pub other_objects_per_tile_year: u64,
    pub objects: u64,
    pub object_limit: u64,
}

/// CSC Allas's limit of objects per bucket (a Roihu scratch quota is about the same in files).
pub const OBJECT_LIMIT: u64 = 500_000;

/// The tile-year directories of a store (`TILE/YEAR`), whatever their collection.
pub fn tile_years(store: &dyn Store) -> Result<Vec<TileYear>> {
    let mut out = Vec::new();
    for tile in store.list_dir("")? {
        if tile.starts_with('.') || tile == "zarr.json" {
            continue;
        }
        for year in store.list_dir(&tile)? {
            if let Ok(y) = year.parse::<i32>() {
                out.push(TileYear::new(&tile, y));
            }
        }
    }
    Ok(out)
}
