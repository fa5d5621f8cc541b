//! Sentinel-1 σ⁰ backscatter from EODC (STAC collection `SENTINEL1_SIG0_20M`): the second
//! collection. One cube per Equi7Grid T3 tile and year at `TILE/YEAR/20m/`, with a daily time axis
//! (one entry per UTC day with at least one item), the polarisations `VV` and `VH` as int16 dB×10
//! arrays, and per-pixel arrays naming the slice each value came from.
//!
//! - [`grid`]: Equi7Grid EU T3 tiles (names, CRS, transform).
//! - [`item`]: EODC STAC items → [`item::Slice`] (one GRD slice clipped to a tile).
//! - [`catalog`]: slices → days (the time axis), deduplication, fingerprints.
//! - [`merge`]: the same-day merge rule.
//! - [`layout`]: the Zarr v3 documents (sharded arrays, CF attributes).
//! - [`shard`]: materialization of one shard region (all five arrays).
//! - [`source`]: item search and GeoTIFF windows (local mirror or HTTPS).
//! - [`intake`]: bulk materialization into a store.
//! - [`cube`]: the tile-years as a tree of files for the mount (no FUSE: `fs` serves it).

pub mod catalog;
pub mod cube;
pub mod grid;
pub mod info;
pub mod intake;
pub mod item;
pub mod layout;
pub mod merge;
pub mod opener;
pub mod shard;
pub mod source;

use crate::collection::variable::Variable;

/// The only resolution group of the S1 cube.
pub const GROUP: &str = "20m";
/// Pixel size (metres).
pub const GSD: f64 = 20.0;
/// Pixels per tile side (300 km at 20 m).
pub const TILE_PX: u64 = 15000;
/// Days per chunk (and shard) along `time`.
pub const TIME_CHUNK: u64 = 30;
/// Pixels per shard side.
pub const SHARD_PX: u64 = 2500;
/// Pixels per inner chunk side.
pub const INNER_PX: u64 = 500;
/// Fill of the polarisation arrays (the GeoTIFF nodata).
pub const NODATA: i16 = -9999;
/// Fill of `sensing_date` (seconds since the epoch below; no S1 value can be older).
pub const NO_DATE: i64 = -1;
/// Fill of the orbit number arrays (orbits count from 1).
pub const NO_ORBIT: i64 = 0;
/// The epoch of `time` and `sensing_date`: 2014-10-01T00:00:00Z, as Unix seconds.
pub const EPOCH_UNIX_S: i64 = 1_412_121_600;
/// The collection's name (command line, store root).
pub const NAME: &str = "sentinel-1-sig0";
/// STAC API and collection of the source.
pub const STAC_API: &str = "https://stac.eodc.eu/api/v1";
pub const STAC_COLLECTION: &str = "SENTINEL1_SIG0_20M";
/// Polarisations, in the order of everything that lists them.
pub const POLARISATIONS: [&str; 2] = ["VV", "VH"];

/// The five arrays materialized on demand, in the order [`shard`] produces them.
pub const VARIABLES: [Variable; 5] = [
    Variable {
        name: "VV",
        dtype: "int16",
        fill: NODATA as i64,
        scale: 0.1,
        units: "dB",
    },
    Variable {
        name: "VH",
        dtype: "int16",
        fill: NODATA as i64,
        scale: 0.1,
        units: "dB",
    },
    Variable {
        name: "sensing_date",
        dtype: "int64",
        fill: NO_DATE,
        scale: 1.0,
        units: "seconds since 2014-10-01T00:00:00",
    },
    Variable {
        name: "absolute_orbit_number",
        dtype: "int32",
        fill: NO_ORBIT,
        scale: 1.0,
        units: "1",
    },
    Variable {
        name: "relative_orbit_number",
        dtype: "int16",
        fill: NO_ORBIT,
        scale: 1.0,
        units: "1",
    },
];

/// Unix seconds → days since 2014-10-01 (the `time` value of that UTC day).
pub fn day_of(unix_s: i64) -> i32 {
    (unix_s - EPOCH_UNIX_S).div_euclid(86_400) as i32
}

/// The UTC calendar year of a `time` value.
pub fn year_of_day(day: i32) -> i32 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp(EPOCH_UNIX_S + day as i64 * 86_400, 0)
        .unwrap_or_default()
        .year()
}

/// ISO date of a `time` value (`2024-01-20`).
pub fn iso_day(day: i32) -> String {
    chrono::DateTime::from_timestamp(EPOCH_UNIX_S + day as i64 * 86_400, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_2014_10_01() {
        let t = chrono::DateTime::parse_from_rfc3339("2014-10-01T00:00:00Z").unwrap();
        assert_eq!(t.timestamp(), EPOCH_UNIX_S);
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-20T16:51:46Z").unwrap();
        assert_eq!(iso_day(day_of(t.timestamp())), "2024-01-20");
        assert_eq!(year_of_day(day_of(t.timestamp())), 2024);
        assert_eq!(day_of(EPOCH_UNIX_S - 1), -1);
    }
}
