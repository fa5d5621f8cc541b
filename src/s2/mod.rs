//! Sentinel-2 MSI Level-1C from CDSE: the first collection. One cube per MGRS tile and year at
//! `TILE/YEAR/{10m,20m,60m}/`, each group a `data` array (time, band, y, x) of the band files'
//! digital numbers at their native resolution, with coordinates and per-scene metadata.
//!
//! - [`bands`]: the thirteen bands and the three resolution groups.
//! - [`array`]: the pixel arrays of a group (`data`; L2A's `scl`), each its own unit of work.
//! - [`tiles`]: MGRS tile names, their UTM zones, named tile sets.
//! - [`safe`]: the SAFE product's metadata files (`MTD_MSIL1C.xml`, `MTD_TL.xml`).
//! - [`stac`]: CDSE STAC items and the search of one tile-year.
//! - [`scene`]: one product as the catalog keeps it, whatever it came from.
//! - [`catalog`]: scenes → the time axis (dedup by baseline, late scenes, fingerprints).
//! - [`chunking`]: the layouts (`chunked`, `sharded`) and their codecs.
//! - [`layout`]: the Zarr v3 documents of a tile-year.
//! - [`chunk`]: one stored object (chunk or shard) computed from the band files.
//! - [`intake`]: bulk materialization into a store.
//! - [`cube`]: the tile-years as a tree of files for the mount (no FUSE: `fs` serves it).
//!
//! The band files themselves come through `crate::source` (local SAFE archive or CDSE), which
//! alone knows paths, S3 and HTTP.

pub mod array;
pub mod bands;
pub mod catalog;
pub(crate) mod chunk;
pub mod chunking;
pub mod cube;
pub mod info;
pub mod intake;
pub mod layout;
pub mod opener;
pub mod product;
pub mod safe;
pub mod scene;
pub mod stac;
pub(crate) mod tiles;
