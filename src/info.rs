//! `datacube info`: what a store holds, per tile, year and resolution.

use anyhow::Result;
use serde::Serialize;

use crate::key::TileYear;
use crate::s2::bands::Resolution;
use crate::s2::layout::DataGeometry;
use crate::store::{ChunkRecord, Store};

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

/// CSC Allas's limit of objects per bucket (a Roihu scratch quota is about the same in files).
pub const OBJECT_LIMIT: u64 = 500_000;

/// The whole store at a glance (a cluster run's progress).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub tile_years: usize,
    pub chunks_total: u64,
    pub chunks_done: u64,
    pub chunks_missing: u64,
    /// Fraction of all chunks done.
    pub progress: f64,
    pub bytes: u64,
    /// Objects (files) the store holds: the rows' plus the tile-year groups and catalog
    /// generations, and the root groups.
    pub objects: u64,
    pub object_limit: u64,
    /// Objects per tile-year (`TILE/YEAR` → count, everything under it included).
    pub tile_year_objects: std::collections::BTreeMap<String, u64>,
    /// The store's layout (Sentinel-2 stores).
    pub layout: Option<String>,
    /// What the Finland tile set would hold in this layout (Sentinel-2 stores with a tile-year).
    pub projection: Option<Projection>,
}

/// The object count of full tile-years of the Finland tile set, projected from the layout and
/// from what this store's tile-years hold besides data objects (metadata, records, catalog
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

/// Acquisitions of one tile in a year (two satellites, 5-day revisit, overlapping orbits).
pub const SCENES_PER_YEAR: u64 = 192;

/// Data objects of a full tile-year (10980 × 10980 at 10 m) of `scenes` scenes in `chunking`.
pub fn data_objects_per_tile_year(chunking: crate::s2::chunking::Chunking, scenes: u64) -> u64 {
    Resolution::ALL
        .iter()
        .map(|&res| {
            let side = 109_800 / res.metres() as u64;
            let n = side.div_ceil(chunking.space(res));
            scenes.div_ceil(res.time_chunk()) * n * n
        })
        .sum()
}

#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub rows: Vec<InfoRow>,
    pub summary: Summary,
}

/// `info` plus the summary.
/// `info` plus the summary; the projection covers `project_years` years (default: the span of
/// the store's years, at least one).
pub fn info_with_summary(store: &dyn Store, project_years: Option<u64>) -> Result<Info> {
    let rows = info(store)?;
    let mut tile_year_objects = std::collections::BTreeMap::new();
    let mut data_objects = 0u64;
    for r in &rows {
        *tile_year_objects
            .entry(format!("{}/{}", r.tile, r.year))
            .or_insert(0) += r.objects;
        data_objects += r.chunks_data as u64;
    }
    let mut tys = std::collections::BTreeSet::new();
    let mut extra = 1u64; // the root group
    let mut tiles = std::collections::BTreeSet::new();
    for r in &rows {
        if tys.insert((r.tile.clone(), r.year)) {
            let ty = TileYear::new(&r.tile, r.year);
            // The year group and the catalog generations with their markers.
            let n = 1 + store.list_dir(&ty.generations_dir())?.len() as u64;
            extra += n;
            *tile_year_objects.get_mut(&ty.to_string()).expect("row") += n;
        }
        tiles.insert(r.tile.clone());
    }
    extra += tiles.len() as u64;
    let total: u64 = rows.iter().map(|r| r.chunks_total).sum();
    let missing: u64 = rows.iter().map(|r| r.chunks_missing).sum();
    let summary = Summary {
        tile_years: tys.len(),
        chunks_total: total,
        chunks_done: total - missing,
        chunks_missing: missing,
        progress: if total == 0 {
            1.0
        } else {
            (total - missing) as f64 / total as f64
        },
        bytes: rows.iter().map(|r| r.bytes).sum(),
        objects: rows.iter().map(|r| r.objects).sum::<u64>() + extra,
        object_limit: OBJECT_LIMIT,
        layout: None,
        projection: None,
        tile_year_objects,
    };
    let mut summary = summary;
    let s1 = crate::collection::Collection::of_store(store)?
        == Some(crate::collection::Collection::Sentinel1Sig0);
    if !s1 {
        let chunking = crate::s2::chunking::Chunking::of_store(store)?
            .unwrap_or(crate::s2::chunking::Chunking::Chunked);
        summary.layout = Some(chunking.to_string());
        if !tys.is_empty() {
            let n_ty = tys.len() as u64;
            let all: u64 = summary.tile_year_objects.values().sum();
            let years = project_years.unwrap_or_else(|| {
                let ys: Vec<i32> = tys.iter().map(|(_, y)| *y).collect();
                (ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1) as u64
            });
            let data = data_objects_per_tile_year(chunking, SCENES_PER_YEAR);
            let other = (all - data_objects).div_ceil(n_ty);
            let tiles = crate::s2::tiles::FINLAND.len();
            summary.projection = Some(Projection {
                tiles,
                years,
                scenes_per_year: SCENES_PER_YEAR,
                data_objects_per_tile_year: data,
                other_objects_per_tile_year: other,
                objects: (data + other) * tiles as u64 * years + 1 + tiles as u64,
                object_limit: OBJECT_LIMIT,
            });
        }
    }
    Ok(Info { rows, summary })
}

pub fn info(store: &dyn Store) -> Result<Vec<InfoRow>> {
    if crate::collection::Collection::of_store(store)?
        == Some(crate::collection::Collection::Sentinel1Sig0)
    {
        return info_s1(store);
    }
    let chunking = crate::s2::chunking::Chunking::of_store(store)?
        .unwrap_or(crate::s2::chunking::Chunking::Chunked);
    let mut rows = Vec::new();
    for ty in tile_years(store)? {
        let (tile, y) = (ty.tile.clone(), ty.year);
        let Some(generation) =
            crate::generation::latest::<crate::s2::catalog::Catalog>(store, &ty)?
        else {
            continue;
        };
        let catalog = &generation.catalog;
        let layout = crate::s2::layout::YearLayout::build(catalog, chunking)?;
        for res in Resolution::ALL {
            let geom = DataGeometry::new(catalog, res, chunking)?;
            let record = ChunkRecord::load_valid(store, &ty, res, catalog)?;
            let group = format!("{ty}/{}/", res.name());
            let metadata = layout
                .files
                .keys()
                .filter(|k| k.starts_with(&group))
                .count();
            let objects = record.count(false) as u64
                + metadata as u64
                + crate::store::record_files(store, &ty, res)? as u64;
            let total = geom.total_chunks();
            rows.push(InfoRow {
                tile: tile.clone(),
                year: y,
                resolution: res.name().into(),
                scenes: catalog.scenes.len(),
                shape: geom.shape().to_vec(),
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

/// The tile-year directories of a store (`TILE/YEAR`), whatever their collection.
fn tile_years(store: &dyn Store) -> Result<Vec<TileYear>> {
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

/// Rows of a Sentinel-1 store: one per tile-year (its `20m` group); a chunk is a shard region
/// (the five arrays' shards of one time chunk and 2500 × 2500 square), objects are counted by
/// listing the shard directories.
fn info_s1(store: &dyn Store) -> Result<Vec<InfoRow>> {
    use crate::s1::{catalog::S1Catalog, shard::SHARDS_PER_SIDE, GROUP, TILE_PX, VARIABLES};
    let mut rows = Vec::new();
    for ty in tile_years(store)? {
        let (tile, y) = (ty.tile.clone(), ty.year);
        let Some(catalog) = S1Catalog::load(store, &ty)? else {
            continue;
        };
        let fp_of = |t: u64| (t < catalog.time_chunks()).then(|| catalog.fingerprint(t));
        let record = ChunkRecord::load_matching(store, &ty, Resolution::R20, &fp_of)?;
        let mut objects = crate::store::record_files(store, &ty, Resolution::R20)? as u64;
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

/// A plain-text table of the rows and the summary.
pub fn table(info: &Info) -> String {
    let mut out = format!(
        "{:<10} {:>4} {:>4} {:>6} {:>24} {:>8} {:>8} {:>8} {:>8} {:>12} {:>8}\n",
        "tile",
        "year",
        "res",
        "scenes",
        "shape",
        "chunks",
        "data",
        "empty",
        "missing",
        "bytes",
        "objects"
    );
    for r in &info.rows {
        out.push_str(&format!(
            "{:<10} {:>4} {:>4} {:>6} {:>24} {:>8} {:>8} {:>8} {:>8} {:>12} {:>8}\n",
            r.tile,
            r.year,
            r.resolution,
            r.scenes,
            format!("{:?}", r.shape),
            r.chunks_total,
            r.chunks_data,
            r.chunks_empty,
            r.chunks_missing,
            r.bytes,
            r.objects
        ));
    }
    let s = &info.summary;
    out.push_str(&format!(
        "{} tile-year(s): {} of {} chunks done ({:.1} %), {:.1} GiB; {} objects = {:.2} % of Allas's {} per bucket\n",
        s.tile_years,
        s.chunks_done,
        s.chunks_total,
        100.0 * s.progress,
        s.bytes as f64 / (1u64 << 30) as f64,
        s.objects,
        100.0 * s.objects as f64 / s.object_limit as f64,
        s.object_limit
    ));
    for (ty, n) in &s.tile_year_objects {
        out.push_str(&format!("{ty}: {n} objects\n"));
    }
    if let Some(l) = &s.layout {
        out.push_str(&format!("layout: {l}\n"));
    }
    if let Some(p) = &s.projection {
        out.push_str(&format!(
            "projected, Finland ({} tiles) x {} year(s) of {} scenes: {} data + {} other objects per tile-year, {} objects = {:.1} % of {} per bucket{}\n",
            p.tiles,
            p.years,
            p.scenes_per_year,
            p.data_objects_per_tile_year,
            p.other_objects_per_tile_year,
            p.objects,
            100.0 * p.objects as f64 / p.object_limit as f64,
            p.object_limit,
            if p.objects > p.object_limit { " (over the limit)" } else { "" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s2::chunking::Chunking;

    #[test]
    fn full_tile_year_object_counts_match_the_grid_arithmetic() {
        // 10 m: 10 time chunks × 22²; 20 m: 5 × 22²; 60 m: 3 × 15² (the issue's ~8 000 a year).
        assert_eq!(
            data_objects_per_tile_year(Chunking::Chunked, 192),
            10 * 484 + 5 * 484 + 3 * 225
        );
        // Shards of 1024/512/256: 11², 11², 8².
        assert_eq!(
            data_objects_per_tile_year(Chunking::SHARDED, 192),
            10 * 121 + 5 * 121 + 3 * 64
        );
        let big: Chunking = "sharded:2048/128".parse().unwrap();
        assert_eq!(
            data_objects_per_tile_year(big, 192),
            10 * 36 + 5 * 36 + 3 * 16
        );
    }
}
