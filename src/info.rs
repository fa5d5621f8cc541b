//! `datacube info`: what a store holds, per tile, year and resolution.

use anyhow::Result;
use serde::Serialize;

use crate::bands::Resolution;
use crate::key::TileYear;
use crate::layout::DataGeometry;
use crate::store::{ChunkRecord, Store};

#[derive(Debug, Clone, Serialize)]
pub struct InfoRow {
    pub tile: String,
    pub year: i32,
    pub resolution: String,
    pub scenes: usize,
    pub shape: [u64; 4],
    pub chunks_total: u64,
    pub chunks_data: usize,
    pub chunks_empty: usize,
    pub chunks_missing: u64,
    pub bytes: u64,
}

pub fn info(store: &dyn Store) -> Result<Vec<InfoRow>> {
    let mut rows = Vec::new();
    for tile in store.list_dir("")? {
        if tile.starts_with('.') || tile == "zarr.json" {
            continue;
        }
        for year in store.list_dir(&tile)? {
            let Ok(y) = year.parse::<i32>() else { continue };
            let ty = TileYear::new(&tile, y);
            let Some(generation) = crate::generation::latest(store, &ty)? else {
                continue;
            };
            let catalog = &generation.catalog;
            for res in Resolution::ALL {
                let geom = DataGeometry::new(catalog, res)?;
                let record = ChunkRecord::load_valid(store, &ty, res, catalog)?;
                let total = geom.total_chunks();
                rows.push(InfoRow {
                    tile: tile.clone(),
                    year: y,
                    resolution: res.name().into(),
                    scenes: catalog.scenes.len(),
                    shape: geom.shape(),
                    chunks_total: total,
                    chunks_data: record.count(false),
                    chunks_empty: record.count(true),
                    chunks_missing: total.saturating_sub(record.chunks.len() as u64),
                    bytes: record.data_bytes(),
                });
            }
        }
    }
    Ok(rows)
}

/// A plain-text table of the rows.
pub fn table(rows: &[InfoRow]) -> String {
    let mut out = format!(
        "{:<6} {:>4} {:>4} {:>6} {:>24} {:>8} {:>8} {:>8} {:>8} {:>12}\n",
        "tile", "year", "res", "scenes", "shape", "chunks", "data", "empty", "missing", "bytes"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<6} {:>4} {:>4} {:>6} {:>24} {:>8} {:>8} {:>8} {:>8} {:>12}\n",
            r.tile,
            r.year,
            r.resolution,
            r.scenes,
            format!("{:?}", r.shape),
            r.chunks_total,
            r.chunks_data,
            r.chunks_empty,
            r.chunks_missing,
            r.bytes
        ));
    }
    out
}
