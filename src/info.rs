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
}

#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub rows: Vec<InfoRow>,
    pub summary: Summary,
}

/// `info` plus the summary.
pub fn info_with_summary(store: &dyn Store) -> Result<Info> {
    let rows = info(store)?;
    let mut tys = std::collections::BTreeSet::new();
    let mut extra = 1u64; // the root group
    let mut tiles = std::collections::BTreeSet::new();
    for r in &rows {
        if tys.insert((r.tile.clone(), r.year)) {
            let ty = TileYear::new(&r.tile, r.year);
            // The year group and the catalog generations with their markers.
            extra += 1 + store.list_dir(&ty.generations_dir())?.len() as u64;
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
    };
    Ok(Info { rows, summary })
}

pub fn info(store: &dyn Store) -> Result<Vec<InfoRow>> {
    if crate::collection::Collection::of_store(store)?
        == Some(crate::collection::Collection::Sentinel1Sig0)
    {
        return info_s1(store);
    }
    let mut rows = Vec::new();
    for ty in tile_years(store)? {
        let (tile, y) = (ty.tile.clone(), ty.year);
        let Some(generation) = crate::generation::latest(store, &ty)? else {
            continue;
        };
        let catalog = &generation.catalog;
        let layout = crate::layout::YearLayout::build(catalog)?;
        for res in Resolution::ALL {
            let geom = DataGeometry::new(catalog, res)?;
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
    out
}
