//! Sentinel-1 σ⁰ end to end: the synthetic EODC mirror → `datacube intake --collection
//! sentinel-1-sig0` → a sharded Zarr store whose every value (around every footprint) equals an
//! oracle of the same-day merge computed from the fixture formula; read with zarrs here and with
//! zarr-python/xarray/rioxarray in the venv. Bad input fails with the item and file named and
//! persists nothing partial.

mod common;

use common::s1::*;
use datacube::s1::fixture::{EAST, WEST};

#[test]
fn intaken_store_equals_the_merge_oracle() {
    let store = intaken_store();
    for tile in [WEST, EAST] {
        let n = assert_tile_matches_oracle(store, tile);
        assert!(n > 1_000_000, "{tile}: only {n} pixels compared");
        assert_eq!(
            stored_shards(store, tile),
            expected_shards(tile),
            "{tile}: shard objects"
        );
    }
}
