//! Collections: what a cube is built from. A store holds exactly one collection, recorded in its
//! root group's attributes (`datacube.collection`); opening it as another is an error, and a store
//! made before collections existed (Sentinel-2 L1C only) already carries `sentinel-2-l1c` there.
//!
//! Each collection is described by one [`CollectionFacts`] table (source, grid, time-axis rule,
//! variables, chunking) and implemented by its own modules: Sentinel-2 L1C by `catalog`, `layout`,
//! `chunk` and the SAFE/CDSE sources; Sentinel-1 σ⁰ by [`crate::s1`].

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::store::Store;

/// The collections datacube knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Collection {
    /// Sentinel-2 MSI Level-1C from CDSE (SAFE products, JP2 band files, MGRS tiles).
    #[default]
    Sentinel2L1c,
    /// Sentinel-1 σ⁰ backscatter (VV, VH) from EODC (GeoTIFFs on Equi7Grid T3 tiles).
    Sentinel1Sig0,
}

/// How a collection's time axis is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeAxis {
    /// One entry per product (datatake sensing start).
    PerProduct,
    /// One entry per UTC day with at least one product; same-day products are merged.
    PerUtcDay,
}

/// One stored variable of a resolution group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variable {
    pub name: &'static str,
    pub dtype: &'static str,
    pub fill: i64,
    /// CF `scale_factor` (1 when the stored values are the physical ones).
    pub scale: f64,
    pub units: &'static str,
}

/// Everything about a collection a user or an operator reads off one table.
#[derive(Debug, Clone, Copy)]
pub struct CollectionFacts {
    pub name: &'static str,
    pub title: &'static str,
    pub stac_api: &'static str,
    pub stac_collection: &'static str,
    /// The grid tiles are named on.
    pub grid: &'static str,
    pub time_axis: TimeAxis,
    /// Resolution groups (`TILE/YEAR/<group>`).
    pub groups: &'static [&'static str],
    /// The variables whose chunks are materialized on demand (per group).
    pub variables: &'static [Variable],
    /// Chunk shape of a stored object (a shard when `inner_chunk` is set), `[time, …, y, x]`
    /// for the finest group.
    pub chunk: &'static [u64],
    /// Inner chunk shape of a shard (Zarr v3 `sharding_indexed`), if sharded.
    pub inner_chunk: Option<&'static [u64]>,
}

const S2_VARIABLES: &[Variable] = &[Variable {
    name: "data",
    dtype: "uint16",
    fill: 0,
    scale: 1.0,
    units: "1",
}];

impl Collection {
    pub const ALL: [Collection; 2] = [Collection::Sentinel2L1c, Collection::Sentinel1Sig0];

    /// The name used on the command line and in the store (`sentinel-2-l1c`).
    pub fn name(self) -> &'static str {
        self.facts().name
    }

    pub fn facts(self) -> &'static CollectionFacts {
        match self {
            Collection::Sentinel2L1c => &CollectionFacts {
                name: "sentinel-2-l1c",
                title: "Sentinel-2 L1C",
                stac_api: "https://stac.dataspace.copernicus.eu/v1",
                stac_collection: "sentinel-2-l1c",
                grid: "MGRS (UTM zones, 109.8 km tiles)",
                time_axis: TimeAxis::PerProduct,
                groups: &["10m", "20m", "60m"],
                variables: S2_VARIABLES,
                chunk: &[20, 4, 512, 512],
                inner_chunk: None,
            },
            Collection::Sentinel1Sig0 => &crate::s1::FACTS,
        }
    }

    /// The collection a store holds, from its root group (`None` for an empty store).
    pub fn of_store(store: &dyn Store) -> Result<Option<Collection>> {
        let Some(bytes) = store.get("zarr.json")? else {
            return Ok(None);
        };
        let root: Value = serde_json::from_slice(&bytes).context("store root zarr.json")?;
        let name = root["attributes"]["datacube"]["collection"]
            .as_str()
            .context(
                "store root zarr.json: no attributes.datacube.collection (not a datacube store)",
            )?;
        name.parse()
            .map(Some)
            .map_err(|e: String| anyhow::anyhow!("store root zarr.json: {e}"))
    }

    /// Fails with a clear message unless the store is empty or holds this collection.
    pub fn check_store(self, store: &dyn Store) -> Result<()> {
        match Collection::of_store(store)? {
            Some(found) if found != self => anyhow::bail!(
                "{}: the store holds collection {found}, not {self} (pass --collection {found}, or use another store)",
                store.describe()
            ),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Collection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Collection::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown collection {s:?} (expected {})",
                    Collection::ALL.map(|c| c.name()).join(" or ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for c in Collection::ALL {
            assert_eq!(c.name().parse::<Collection>(), Ok(c));
        }
        let e = "sentinel-3".parse::<Collection>().unwrap_err();
        assert!(e.contains("sentinel-2-l1c or sentinel-1-sig0"), "{e}");
    }

    #[test]
    fn a_store_holds_one_collection() {
        let store = MemStore::new();
        assert_eq!(Collection::of_store(&store).unwrap(), None);
        Collection::Sentinel1Sig0.check_store(&store).unwrap();
        store
            .put(
                "zarr.json",
                &crate::layout::root_group_file(crate::chunking::Chunking::Chunked),
            )
            .unwrap();
        assert_eq!(
            Collection::of_store(&store).unwrap(),
            Some(Collection::Sentinel2L1c)
        );
        Collection::Sentinel2L1c.check_store(&store).unwrap();
        let e = Collection::Sentinel1Sig0
            .check_store(&store)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds collection sentinel-2-l1c, not sentinel-1-sig0"),
            "{e}"
        );
    }
}
