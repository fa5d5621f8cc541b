//! The scenes of a tile-year: found by scanning a local SAFE archive or searching STAC (the sources),
//! deduplicated, sorted, and persisted in the store so a scene keeps its time index forever.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::s2::array::PixelArray;
use crate::s2::bands::Resolution;
use crate::s2::product::ProductLevel;
use crate::s2::scene::Scene;
use crate::store::Store;

/// The persisted time axis of one tile-year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub tile: String,
    pub year: i32,
    pub epsg: u32,
    /// When the catalog was first resolved (ISO 8601 UTC).
    pub created: String,
    /// When scenes were last appended.
    pub updated: String,
    /// In time-axis order.
    pub scenes: Vec<Scene>,
}

impl Catalog {
    /// The processing level of the catalog's products (L1C for an empty one).
    pub fn level(&self) -> ProductLevel {
        self.scenes.first().map_or(ProductLevel::L1C, |s| s.level)
    }

    /// The store's current catalog of a tile-year (its latest generation), if it has one.
    pub fn load(store: &dyn Store, tile: &str, year: i32) -> Result<Option<Catalog>> {
        Ok(
            crate::generation::latest::<Catalog>(store, &crate::key::TileYear::new(tile, year))?
                .map(|g| g.catalog),
        )
    }

    /// The fingerprint of time chunk `t` of `res`: a hash of the product ids it holds. A chunk's
    /// values are a function of exactly these products, so a chunk computed under one catalog
    /// is valid under another iff the fingerprints agree (an append changes only the last,
    /// partial time chunk; a reprocessed product only its own).
    pub fn fingerprint(&self, res: Resolution, t: u64) -> String {
        use sha2::Digest;
        let ct = res.time_chunk() as usize;
        let start = (t as usize).saturating_mul(ct).min(self.scenes.len());
        let end = (start + ct).min(self.scenes.len());
        let mut h = sha2::Sha256::new();
        for s in &self.scenes[start..end] {
            h.update(s.product_id.as_bytes());
            h.update(b"\n");
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Number of time chunks of `res`.
    pub fn time_chunks(&self, res: Resolution) -> u64 {
        (self.scenes.len() as u64).div_ceil(res.time_chunk())
    }

    /// Time chunks of `res` whose contents differ between `self` and `newer`.
    pub fn changed_time_chunks(&self, newer: &Catalog, res: Resolution) -> Vec<u64> {
        (0..self.time_chunks(res).max(newer.time_chunks(res)))
            .filter(|&t| {
                t >= self.time_chunks(res)
                    || t >= newer.time_chunks(res)
                    || self.fingerprint(res, t) != newer.fingerprint(res, t)
            })
            .collect()
    }
}

impl crate::generation::AxisCatalog for Catalog {
    fn tile_year(&self) -> crate::key::TileYear {
        crate::key::TileYear::new(&self.tile, self.year)
    }

    /// Each pixel array of the level (`10m/data/c/T/0/Y/X`, L2A's `10m/scl/c/T/Y/X`), each its
    /// own unit (`PixelArray::unit`).
    fn time_chunked_arrays(&self) -> Vec<(&'static str, String, usize)> {
        PixelArray::of_level(self.level())
            .into_iter()
            .map(|a| (a.unit(), a.path().to_string(), a.levels_below_time()))
            .collect()
    }

    fn time_chunks(&self, group: &str) -> u64 {
        self.time_chunks(unit_resolution(group))
    }

    fn fingerprint(&self, group: &str, t: u64) -> String {
        self.fingerprint(unit_resolution(group), t)
    }
}

/// The resolution of a unit of this collection (the protocol only asks about the units
/// `time_chunked_arrays` named). An `scl` array is cut along time as its group's `data`, so
/// its time chunks and fingerprints are those of the resolution.
fn unit_resolution(unit: &str) -> Resolution {
    PixelArray::from_unit(unit)
        .unwrap_or_else(|| panic!("not a Sentinel-2 unit: {unit:?}"))
        .res
}

/// What a source scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Deduplicated, sorted by sensing time.
    pub scenes: Vec<Scene>,
    /// Products dropped because a newer baseline of the same datatake exists.
    pub superseded: Vec<String>,
    /// Products that could not be read (each message names the file).
    pub errors: Vec<String>,
}

/// Scans `<root>/Sentinel-2/MSI/L1C/<year>/MM/DD/*.SAFE` for products of `tile`.
pub fn scan_safe_archive(
    root: &Path,
    level: crate::s2::product::ProductLevel,
    tile: &str,
    year: i32,
) -> Result<ScanResult> {
    let level_dir = root.join(format!("Sentinel-2/MSI/{level}"));
    if !level_dir.is_dir() {
        anyhow::bail!(
            "{}: no such directory (expected a SAFE archive of {level} products with the CDSE layout)",
            level_dir.display()
        );
    }
    let year_dir = level_dir.join(year.to_string());
    if !year_dir.is_dir() {
        // No acquisitions that year in this archive.
        return Ok(ScanResult::default());
    }
    let needle = format!("_T{tile}_");
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for month in sorted_dirs(&year_dir)? {
        for day in sorted_dirs(&month)? {
            for product in sorted_dirs(&day)? {
                let name = product
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if !name.ends_with(".SAFE") || !name.contains(&needle) {
                    continue;
                }
                let key = product
                    .strip_prefix(root)
                    .unwrap_or(&product)
                    .to_string_lossy()
                    .into_owned();
                match crate::s2::safe::read_any_product(&product, &key) {
                    Ok(scene) if scene.tile == tile && scene.level == level => found.push(scene),
                    Ok(_) => {}
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
    }
    let (scenes, superseded) = deduplicate(found);
    Ok(ScanResult {
        scenes,
        superseded,
        errors,
    })
}

fn sorted_dirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// Keeps one product per datatake (same tile and sensing start): the newest baseline, then the
/// newest generation. Returns the kept scenes sorted by sensing time and the dropped product ids.
pub fn deduplicate(scenes: Vec<Scene>) -> (Vec<Scene>, Vec<String>) {
    let mut by_take: BTreeMap<(i64, String), Vec<Scene>> = BTreeMap::new();
    for s in scenes {
        by_take
            .entry((s.sensing_time_ms, s.tile.clone()))
            .or_default()
            .push(s);
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (_, mut group) in by_take {
        group.sort_by(|a, b| {
            (a.baseline_number(), a.discriminator().to_string())
                .cmp(&(b.baseline_number(), b.discriminator().to_string()))
        });
        let newest = group.pop().expect("non-empty group");
        dropped.extend(group.into_iter().map(|s| s.product_id));
        kept.push(newest);
    }
    (kept, dropped)
}

/// How a fresh scan was merged into the persisted axis.
#[derive(Debug, Default)]
pub struct MergeReport {
    /// Length of the axis before the merge.
    pub previous_len: usize,
    /// Scenes appended at the end.
    pub appended: usize,
    /// Scenes older than the end of the axis: reported, not inserted (indices never move).
    pub late: Vec<String>,
    /// Scenes replaced in place by a newer processing baseline of the same datatake (same
    /// sensing time, so the same time index): (old product id, new product id).
    pub replaced: Vec<(String, String)>,
}

/// Merges `fresh` (sorted, deduplicated) into `existing`: the axis only grows at the end.
pub fn merge(
    existing: Option<Catalog>,
    fresh: Vec<Scene>,
    tile: &str,
    year: i32,
) -> Result<(Catalog, MergeReport)> {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut report = MergeReport::default();
    let mut cat = match existing {
        Some(c) => c,
        None => {
            let epsg = fresh.first().map(|s| s.epsg).unwrap_or(0);
            Catalog {
                tile: tile.into(),
                year,
                epsg,
                created: now.clone(),
                updated: now.clone(),
                scenes: Vec::new(),
            }
        }
    };
    report.previous_len = cat.scenes.len();
    let known: BTreeMap<i64, usize> = cat
        .scenes
        .iter()
        .enumerate()
        .map(|(i, s)| (s.sensing_time_ms, i))
        .collect();
    let last = cat
        .scenes
        .last()
        .map(|s| s.sensing_time_ms)
        .unwrap_or(i64::MIN);
    for s in fresh {
        if s.epsg != cat.epsg {
            anyhow::bail!(
                "{}: EPSG:{} differs from the tile's EPSG:{}",
                s.product_id,
                s.epsg,
                cat.epsg
            );
        }
        if let Some(&i) = known.get(&s.sensing_time_ms) {
            let old = &cat.scenes[i];
            // Newest baseline wins, then the newest generation (as in `deduplicate`).
            if (s.baseline_number(), s.discriminator())
                > (old.baseline_number(), old.discriminator())
            {
                report
                    .replaced
                    .push((old.product_id.clone(), s.product_id.clone()));
                cat.scenes[i] = s;
            }
        } else if s.sensing_time_ms > last {
            cat.scenes.push(s);
            report.appended += 1;
        } else {
            report.late.push(s.product_id);
        }
    }
    if (report.appended > 0 || !report.replaced.is_empty()) && report.previous_len > 0 {
        cat.updated = now;
    }
    Ok((cat, report))
}

/// A resolution group's `data` chunk records, under Sentinel-2 catalogs.
impl crate::store::RecordGroup for Resolution {
    type Catalog = Catalog;
    fn group_name(self) -> &'static str {
        self.name()
    }
}

/// A pixel array's chunk records, under Sentinel-2 catalogs.
impl crate::store::RecordGroup for PixelArray {
    type Catalog = Catalog;
    fn group_name(self) -> &'static str {
        self.unit()
    }
}
