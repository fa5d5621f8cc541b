//! `datacube info` of a Sentinel-1 store: one row per tile-year (its `20m` group); a chunk is a
//! shard region (the five arrays' shards of one time chunk and 2500 × 2500 square), objects are
//! counted by listing the shard directories.

use anyhow::Result;

use crate::collection::info::{tile_years, InfoRow};
use crate::s1::catalog::S1Catalog;
use crate::s1::shard::SHARDS_PER_SIDE;
use crate::s1::{GROUP, TILE_PX, VARIABLES};
use crate::store::{ChunkRecord, Store};

/// One row per tile-year.
pub fn rows(store: &dyn Store) -> Result<Vec<InfoRow>> {
    let mut rows = Vec::new();
    for ty in tile_years(store)? {
        let (tile, y) = (ty.tile.clone(), ty.year);
        let Some(catalog) = S1Catalog::load(store, &ty)? else {
            continue;
        };
        let fp_of = |t: u64| (t < catalog.time_chunks()).then(|| catalog.fingerprint(t));
        let record = ChunkRecord::load_matching(store, &ty, GROUP, &fp_of)?;
        let mut objects = crate::store::record_files(store, &ty, GROUP)? as u64;
        let group = format!("{ty}/{GROUP}");
        objects += crate::s1::layout::build(&catalog)?
            .keys()
            .filter(|k| k.starts_with(&group))
            .count() as u64;
        for v in &VARIABLES {
            let c = format!("{group}/{}/c", v.name);
            for t in store.list_dir(&c)? {
                for sy in store.list_dir(&format!("{c}/{t}"))? {
                    objects += store.list_dir(&format!("{c}/{t}/{sy}"))?.len() as u64;
                }
            }
        }
        let total = catalog.time_chunks() * SHARDS_PER_SIDE * SHARDS_PER_SIDE;
        rows.push(InfoRow {
            tile: tile.clone(),
            year: y,
            resolution: GROUP.into(),
            scenes: catalog.days.len(),
            shape: vec![catalog.days.len() as u64, TILE_PX, TILE_PX],
            chunks_total: total,
            chunks_data: record.count(false),
            chunks_empty: record.count(true),
            chunks_missing: total.saturating_sub(record.chunks.len() as u64),
            bytes: record.data_bytes(),
            objects,
        });
    }
    Ok(rows)
}
