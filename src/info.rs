//! `datacube info`: what a store holds, per tile, year and group (rows from the store's
//! collection), and the whole store at a glance.

use anyhow::Result;
use serde::Serialize;

pub use crate::collection::info::{InfoRow, Projection, OBJECT_LIMIT};
use crate::key::TileYear;
use crate::registry::Collection;
use crate::store::Store;

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
    /// The store's layout (collections with a choice of layouts).
    pub layout: Option<String>,
    /// What a full tile set would hold in this layout (collections that project one).
    pub projection: Option<Projection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub rows: Vec<InfoRow>,
    pub summary: Summary,
}

/// `info` plus the summary; the projection covers `project_years` years (default: the span of
/// the store's years, at least one).
pub fn info_with_summary(store: &dyn Store, project_years: Option<u64>) -> Result<Info> {
    let opener = Collection::of_store(store)?.unwrap_or_default().opener();
    let rows = opener.info_rows(store)?;
    let mut tile_year_objects = std::collections::BTreeMap::new();
    for r in &rows {
        *tile_year_objects
            .entry(format!("{}/{}", r.tile, r.year))
            .or_insert(0) += r.objects;
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
    let years = project_years.unwrap_or_else(|| {
        let ys: Vec<i32> = tys.iter().map(|(_, y)| *y).collect();
        match (ys.iter().min(), ys.iter().max()) {
            (Some(a), Some(b)) => (b - a + 1) as u64,
            _ => 1,
        }
    });
    let (layout, projection) = opener.layout_summary(store, &rows, years)?;
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
        layout,
        projection,
        tile_year_objects,
    };
    Ok(Info { rows, summary })
}

/// A plain-text table of the rows and the summary.
pub fn table(info: &Info) -> String {
    let mut out = format!(
        "{:<10} {:>4} {:>7} {:>6} {:>24} {:>8} {:>8} {:>8} {:>8} {:>12} {:>8}\n",
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
            "{:<10} {:>4} {:>7} {:>6} {:>24} {:>8} {:>8} {:>8} {:>8} {:>12} {:>8}\n",
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
