//! The registry of collections: the one place that lists them. A store holds exactly one
//! collection, recorded in its root group's attributes (`datacube.collection`); opening it as
//! another is an error, and a store made before collections existed (Sentinel-2 L1C only)
//! already carries `sentinel-2-l1c` there. Everything a collection is lives behind its
//! [`Opener`](crate::collection::Opener).

use std::fmt;
use std::str::FromStr;

use anyhow::Result;

use crate::collection::Opener;
use crate::store::Store;

/// The collections datacube knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Collection {
    /// Sentinel-2 MSI Level-1C from CDSE (SAFE products, JP2 band files, MGRS tiles).
    #[default]
    Sentinel2L1c,
    /// Sentinel-2 MSI Level-2A from CDSE: surface reflectance and the scene classification (SCL).
    Sentinel2L2a,
    /// Sentinel-1 σ⁰ backscatter (VV, VH) from EODC (GeoTIFFs on Equi7Grid T3 tiles).
    Sentinel1Sig0,
}

impl Collection {
    pub const ALL: [Collection; 3] = [
        Collection::Sentinel2L1c,
        Collection::Sentinel2L2a,
        Collection::Sentinel1Sig0,
    ];

    /// What the collection is and does.
    pub fn opener(self) -> &'static dyn Opener {
        match self {
            Collection::Sentinel2L1c => &crate::s2::opener::SENTINEL_2_L1C,
            Collection::Sentinel2L2a => &crate::s2::opener::SENTINEL_2_L2A,
            Collection::Sentinel1Sig0 => &crate::s1::opener::Sentinel1Sig0,
        }
    }

    /// The name used on the command line and in the store (`sentinel-2-l1c`).
    pub fn name(self) -> &'static str {
        self.opener().name()
    }

    /// The collection a store holds, from its root group (`None` for an empty store).
    pub fn of_store(store: &dyn Store) -> Result<Option<Collection>> {
        crate::collection::name_of_store(store)?
            .map(|n| {
                n.parse()
                    .map_err(|e: String| anyhow::anyhow!("{}: zarr.json: {e}", store.describe()))
            })
            .transpose()
    }

    /// Fails with a clear message unless the store is empty or holds this collection.
    pub fn check_store(self, store: &dyn Store) -> Result<()> {
        crate::collection::check_store(store, self.name())
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

/// `--collection` on the command line: its values, and `--help`'s list of them, come from
/// [`Collection::ALL`], so the help never falls behind the registry.
impl clap::ValueEnum for Collection {
    fn value_variants<'a>() -> &'a [Self] {
        &Collection::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
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
        assert!(
            e.contains("sentinel-2-l1c or sentinel-2-l2a or sentinel-1-sig0"),
            "{e}"
        );
    }

    #[test]
    fn a_store_holds_one_collection() {
        let store = MemStore::new();
        assert_eq!(Collection::of_store(&store).unwrap(), None);
        Collection::Sentinel1Sig0.check_store(&store).unwrap();
        store
            .put(
                "zarr.json",
                &crate::s2::layout::root_group_file(
                    crate::s2::chunking::Chunking::Chunked,
                    crate::s2::product::ProductLevel::L1C,
                ),
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
