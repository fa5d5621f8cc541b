//! The time axis of an S1 tile-year: one entry per UTC day with at least one slice, each day holding
//! its slices in merge priority order. Persisted in the store like the S2 catalog, as generation 1
//! of the tile-year's catalog chain (`TILE/YEAR/.datacube/catalog/00000001.json`).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::item::Slice;
use super::TIME_CHUNK;
use crate::key::TileYear;
use crate::store::Store;

/// One entry of the time axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    /// Days since 2014-10-01 (the `time` value).
    pub day: i32,
    /// In merge priority order: sensing time, then item id (see [`super::merge`]).
    pub slices: Vec<Slice>,
}

/// The persisted catalog of one S1 tile-year.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct S1Catalog {
    pub collection: String,
    pub tile: String,
    pub year: i32,
    pub created: String,
    pub updated: String,
    pub days: Vec<Day>,
}

/// What merging a search into a tile-year's catalog found (`S1Catalog::merge`).
#[derive(Debug, Default)]
pub struct Merged {
    /// `None` only without a base and without items.
    pub catalog: Option<S1Catalog>,
    /// Days appended after the last one.
    pub appended: usize,
    /// Whether a day already on the axis gained or replaced a slice.
    pub changed: bool,
    /// Days before the axis end that were not inserted (time-axis values).
    pub late: Vec<i32>,
    /// Items replaced by a newer data version of the same slice (old id → new id).
    pub superseded: Vec<(String, String)>,
    /// Items outside the tile or year asked for.
    pub ignored: usize,
}

impl Merged {
    /// Whether the merged catalog differs from the base.
    pub fn grows(&self) -> bool {
        self.appended > 0 || self.changed
    }
}

/// What building a catalog from search results found.
#[derive(Debug, Default)]
pub struct Built {
    pub catalog: Option<S1Catalog>,
    /// Items replaced by a newer data version of the same slice (old id → new id).
    pub superseded: Vec<(String, String)>,
    /// Items outside the tile or year asked for (a search returns whatever intersects).
    pub ignored: usize,
}

impl S1Catalog {
    /// Groups slices into days: keeps those of `tile` sensed in UTC `year`, keeps only the newest
    /// data version of each slice, orders each day's slices by (sensing time, id).
    pub fn build(tile: &str, year: i32, slices: Vec<Slice>) -> Built {
        let mut built = Built::default();
        let mut by_identity: BTreeMap<(String, i64, u32), Slice> = BTreeMap::new();
        for s in slices {
            if s.tile != tile || super::year_of_day(s.day()) != year {
                built.ignored += 1;
                continue;
            }
            match by_identity.get(&s.identity()) {
                Some(old)
                    if (old.version.as_str(), old.id.as_str())
                        >= (s.version.as_str(), s.id.as_str()) =>
                {
                    if old.id != s.id {
                        built.superseded.push((s.id.clone(), old.id.clone()));
                    }
                }
                Some(old) => {
                    built.superseded.push((old.id.clone(), s.id.clone()));
                    by_identity.insert(s.identity(), s);
                }
                None => {
                    by_identity.insert(s.identity(), s);
                }
            }
        }
        if by_identity.is_empty() {
            return built;
        }
        let mut days: BTreeMap<i32, Vec<Slice>> = BTreeMap::new();
        for s in by_identity.into_values() {
            days.entry(s.day()).or_default().push(s);
        }
        let now = crate::s2::scene::iso_ms(crate::generation::now_ms());
        built.catalog = Some(S1Catalog {
            collection: super::NAME.to_string(),
            tile: tile.to_string(),
            year,
            created: now.clone(),
            updated: now,
            days: days
                .into_iter()
                .map(|(day, mut slices)| {
                    slices.sort_by(|a, b| (a.sensing_s, &a.id).cmp(&(b.sensing_s, &b.id)));
                    Day { day, slices }
                })
                .collect(),
        });
        built
    }

    pub fn tile_year(&self) -> TileYear {
        TileYear::new(&self.tile, self.year)
    }

    /// Merges a search's slices into the catalog a tile-year has (`base`), under the rule every
    /// collection follows: a time index, once given, never moves.
    /// - slices of a day already on the axis join it (a late slice, or a newer data version of one
    ///   of its slices, changes that day, so its time chunk is computed again);
    /// - days after the last one are appended;
    /// - a day before the last one that is not on the axis (published out of order, after a later
    ///   day) is not inserted: it would move every later index. It is reported (`late`).
    ///
    /// Slices the base has but the search no longer returns stay: a day's content only grows.
    pub fn merge(base: Option<&S1Catalog>, tile: &str, year: i32, found: Vec<Slice>) -> Merged {
        let Some(base) = base else {
            let built = S1Catalog::build(tile, year, found);
            return Merged {
                catalog: built.catalog,
                superseded: built.superseded,
                ignored: built.ignored,
                ..Default::default()
            };
        };
        let last = base.days.last().map_or(i32::MIN, |d| d.day);
        let on_axis: std::collections::BTreeSet<i32> = base.days.iter().map(|d| d.day).collect();
        let mut late = std::collections::BTreeSet::new();
        let mut all: Vec<Slice> = base.days.iter().flat_map(|d| d.slices.clone()).collect();
        for s in found {
            let d = s.day();
            if d < last && !on_axis.contains(&d) && s.tile == tile {
                if super::year_of_day(d) == year {
                    late.insert(d);
                }
                continue;
            }
            all.push(s);
        }
        let built = S1Catalog::build(tile, year, all);
        let mut catalog = built.catalog.expect("the base's slices are kept");
        catalog.created = base.created.clone();
        let appended = catalog.days.iter().filter(|d| d.day > last).count();
        let changed = catalog
            .days
            .iter()
            .any(|d| d.day <= last && base.days.iter().find(|b| b.day == d.day) != Some(d));
        if appended == 0 && !changed {
            catalog.updated = base.updated.clone();
        }
        Merged {
            catalog: Some(catalog),
            appended,
            changed,
            late: late.into_iter().collect(),
            superseded: built.superseded,
            ignored: built.ignored,
        }
    }

    /// Number of time chunks (shards along `time`).
    pub fn time_chunks(&self) -> u64 {
        (self.days.len() as u64).div_ceil(TIME_CHUNK)
    }

    /// The days of time chunk `t`.
    pub fn chunk_days(&self, t: u64) -> &[Day] {
        let start = ((t * TIME_CHUNK) as usize).min(self.days.len());
        let end = (start + TIME_CHUNK as usize).min(self.days.len());
        &self.days[start..end]
    }

    /// A hash of the slices of time chunk `t` (which the chunk's values are a function of).
    pub fn fingerprint(&self, t: u64) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for d in self.chunk_days(t) {
            h.update(d.day.to_le_bytes());
            for s in &d.slices {
                h.update(s.id.as_bytes());
                h.update(b"\n");
            }
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn slice_count(&self) -> usize {
        self.days.iter().map(|d| d.slices.len()).sum()
    }

    /// The stored catalog of a tile-year (its latest generation), if any.
    pub fn load(store: &dyn Store, ty: &TileYear) -> Result<Option<S1Catalog>> {
        Ok(crate::generation::latest::<S1Catalog>(store, ty)?.map(|g| g.catalog))
    }

    /// Stores this catalog as the tile-year's first generation unless one exists; returns the one
    /// the store holds afterwards (another process's, if it was first).
    pub fn publish(self, store: &dyn Store) -> Result<S1Catalog> {
        let ty = self.tile_year();
        let fence = crate::generation::Fence::default();
        if let Some(g) = crate::generation::try_publish(store, None, self, BTreeMap::new(), &fence)?
        {
            return Ok(g.catalog);
        }
        S1Catalog::load(store, &ty)?.with_context(|| {
            format!(
                "{}: {} vanished after a lost create",
                store.describe(),
                ty.generation_key(1)
            )
        })
    }
}

/// The S1 time axis under the consistency protocol: the five arrays of the one group are cut
/// into time chunks of [`TIME_CHUNK`] days (`ARRAY/c/T/Y/X`).
impl crate::generation::AxisCatalog for S1Catalog {
    fn tile_year(&self) -> TileYear {
        S1Catalog::tile_year(self)
    }

    fn time_chunked_arrays(&self) -> Vec<(&'static str, String, usize)> {
        super::VARIABLES
            .iter()
            .map(|v| (super::GROUP, format!("{}/{}", super::GROUP, v.name), 2))
            .collect()
    }

    fn time_chunks(&self, _group: &str) -> u64 {
        S1Catalog::time_chunks(self)
    }

    fn fingerprint(&self, _group: &str, t: u64) -> String {
        S1Catalog::fingerprint(self, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(id: &str, tile: &str, t: &str, orbit: u32, version: &str) -> Slice {
        Slice {
            id: id.into(),
            tile: tile.into(),
            sensing_s: chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp(),
            relative_orbit: orbit,
            orbit_state: "ascending".into(),
            platform: "S1A".into(),
            version: version.into(),
            assets: Default::default(),
        }
    }

    #[test]
    fn days_group_slices_and_newer_versions_win() {
        let t = "E048N015T3";
        let slices = vec![
            slice("c", t, "2024-01-20T16:52:11Z", 146, "V1M1R2"),
            slice("a", t, "2024-01-20T16:51:46Z", 146, "V1M1R2"),
            slice("m", t, "2024-01-20T05:25:53Z", 168, "V1M1R2"),
            slice("old", t, "2024-01-21T05:00:00Z", 168, "V1M1R1"),
            slice("new", t, "2024-01-21T05:00:00Z", 168, "V1M1R2"),
            slice(
                "other-tile",
                "E051N015T3",
                "2024-01-20T16:51:46Z",
                146,
                "V1M1R2",
            ),
            slice("other-year", t, "2023-12-31T23:59:59Z", 146, "V1M1R2"),
            slice("next-year", t, "2025-01-01T00:00:00Z", 146, "V1M1R2"),
        ];
        let built = S1Catalog::build(t, 2024, slices);
        assert_eq!(built.ignored, 3);
        assert_eq!(
            built.superseded,
            vec![("old".to_string(), "new".to_string())]
        );
        let c = built.catalog.unwrap();
        let ids: Vec<Vec<&str>> = c
            .days
            .iter()
            .map(|d| d.slices.iter().map(|s| s.id.as_str()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["m", "a", "c"], vec!["new"]]);
        assert_eq!(super::super::iso_day(c.days[0].day), "2024-01-20");
        assert_eq!(c.time_chunks(), 1);
    }

    #[test]
    fn published_once() {
        let store = crate::store::MemStore::new();
        let t = "E048N015T3";
        let mk = |id: &str| {
            S1Catalog::build(
                t,
                2024,
                vec![slice(id, t, "2024-01-20T16:52:11Z", 146, "V1M1R2")],
            )
            .catalog
            .unwrap()
        };
        let first = mk("first").publish(&store).unwrap();
        assert_eq!(first.days[0].slices[0].id, "first");
        let second = mk("second").publish(&store).unwrap();
        assert_eq!(second, first);
        assert_eq!(
            S1Catalog::load(&store, &first.tile_year()).unwrap(),
            Some(first)
        );
    }
}
