//! `datacube info` of a Sentinel-2 store: a row per tile-year and pixel array (`10m`, … for
//! `data`; `10m/scl`, `20m/scl` for L2A's scene classification), and the object count of the
//! Finland tile set projected in the store's layout.

use anyhow::Result;

use crate::collection::info::{tile_years, InfoRow, Projection, OBJECT_LIMIT};
use crate::s2::array::PixelArray;
use crate::s2::catalog::Catalog;
use crate::s2::chunking::array_shape;
use crate::s2::chunking::Chunking;
use crate::s2::layout::{DataGeometry, YearLayout};
use crate::s2::product::ProductLevel;
use crate::store::{ChunkRecord, Store};

/// Acquisitions of one tile in a year (two satellites, 5-day revisit, overlapping orbits).
pub const SCENES_PER_YEAR: u64 = 192;

/// Pixel-array objects of a full tile-year (10980 × 10980 at 10 m) of `scenes` scenes of
/// `level` in `chunking`.
pub fn data_objects_per_tile_year(chunking: Chunking, scenes: u64, level: ProductLevel) -> u64 {
    PixelArray::of_level(level)
        .iter()
        .map(|a| {
            let res = a.res;
            let side = 109_800 / res.metres() as u64;
            let n = side.div_ceil(chunking.space(res));
            scenes.div_ceil(res.time_chunk()) * n * n
        })
        .sum()
}

fn chunking_of(store: &dyn Store) -> Result<Chunking> {
    Ok(Chunking::of_store(store)?.unwrap_or(Chunking::Chunked))
}

/// One row per tile-year and resolution.
pub fn rows(store: &dyn Store) -> Result<Vec<InfoRow>> {
    let chunking = chunking_of(store)?;
    let mut rows = Vec::new();
    for ty in tile_years(store)? {
        let Some(generation) = crate::generation::latest::<Catalog>(store, &ty)? else {
            continue;
        };
        let catalog = &generation.catalog;
        let layout = YearLayout::build(catalog, chunking)?;
        for array in PixelArray::of_level(catalog.level()) {
            let geom = DataGeometry::new(catalog, array, chunking)?;
            let record = ChunkRecord::load_valid(store, &ty, array.unit(), catalog)?;
            // A group's metadata documents count in its `data` row.
            let group = format!("{ty}/{}/", array.res.name());
            let metadata = if array.has_bands() {
                layout
                    .files
                    .keys()
                    .filter(|k| k.starts_with(&group))
                    .count()
            } else {
                0
            };
            let objects = record.count(false) as u64
                + metadata as u64
                + crate::store::record_files(store, &ty, array.unit())? as u64;
            let total = geom.total_chunks();
            rows.push(InfoRow {
                tile: ty.tile.clone(),
                year: ty.year,
                resolution: if array.has_bands() {
                    array.res.name().into()
                } else {
                    array.path().into()
                },
                scenes: catalog.scenes.len(),
                shape: array_shape(array, geom.shape()),
                chunks_total: total,
                chunks_data: record.count(false),
                chunks_empty: record.count(true),
                chunks_missing: total.saturating_sub(record.chunks.len() as u64),
                bytes: record.data_bytes(),
                objects,
            });
        }
    }
    Ok(rows)
}

/// The store's layout, and what the Finland tile set would hold in it over `years` years, with
/// the non-data objects per tile-year taken from `rows` (and the generations they list).
pub fn layout_summary(
    store: &dyn Store,
    rows: &[InfoRow],
    years: u64,
) -> Result<(Option<String>, Option<Projection>)> {
    let chunking = chunking_of(store)?;
    let mut tys = std::collections::BTreeSet::new();
    let mut all = 0u64;
    let mut data_objects = 0u64;
    for r in rows {
        all += r.objects;
        data_objects += r.chunks_data as u64;
        if tys.insert((r.tile.clone(), r.year)) {
            let ty = crate::key::TileYear::new(&r.tile, r.year);
            all += 1 + store.list_dir(&ty.generations_dir())?.len() as u64;
        }
    }
    if tys.is_empty() {
        return Ok((Some(chunking.to_string()), None));
    }
    let level = crate::collection::name_of_store(store)?
        .and_then(|n| ProductLevel::from_stac_collection(&n))
        .unwrap_or_default();
    let data = data_objects_per_tile_year(chunking, SCENES_PER_YEAR, level);
    let other = (all - data_objects).div_ceil(tys.len() as u64);
    let tiles = crate::s2::tiles::FINLAND.len();
    let projection = Projection {
        tiles,
        years,
        scenes_per_year: SCENES_PER_YEAR,
        data_objects_per_tile_year: data,
        other_objects_per_tile_year: other,
        objects: (data + other) * tiles as u64 * years + 1 + tiles as u64,
        object_limit: OBJECT_LIMIT,
    };
    Ok((Some(chunking.to_string()), Some(projection)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_tile_year_object_counts_match_the_grid_arithmetic() {
        // 10 m: 10 time chunks × 22²; 20 m: 5 × 22²; 60 m: 3 × 15² (the issue's ~8 000 a year).
        assert_eq!(
            data_objects_per_tile_year(Chunking::Chunked, 192, ProductLevel::L1C),
            10 * 484 + 5 * 484 + 3 * 225
        );
        // L2A adds scl at 10 m and 20 m, on the same grids.
        assert_eq!(
            data_objects_per_tile_year(Chunking::Chunked, 192, ProductLevel::L2A),
            2 * (10 * 484 + 5 * 484) + 3 * 225
        );
        // Shards of 1024/512/256: 11², 11², 8².
        assert_eq!(
            data_objects_per_tile_year(Chunking::SHARDED, 192, ProductLevel::L1C),
            10 * 121 + 5 * 121 + 3 * 64
        );
        let big: Chunking = "sharded:2048/128".parse().unwrap();
        assert_eq!(
            data_objects_per_tile_year(big, 192, ProductLevel::L1C),
            10 * 36 + 5 * 36 + 3 * 16
        );
    }
}
