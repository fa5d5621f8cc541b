//! datacube: a virtual Sentinel-2 L1C datacube (Zarr v3) over SAFE archives or CDSE.
//!
//! Data flows catalog → source → raster → chunk → cache → fs (FUSE), with writeback to the store;
//! `intake` drives catalog → store in bulk. Every module except the store and source backends (and
//! `remote`, their clients) is independent of paths and protocols; `util` holds the primitives they
//! share (byte-capped LRU, single flight, counters, fault injection). docs/design.md has the whole
//! design; the benchmark and the fixture writer are in the `datacube-tools` crate.

pub(crate) mod cache;
pub mod cli;
pub mod collection;
pub mod cube;
pub mod fs;
pub mod generation;
pub(crate) mod info;
pub mod intake;
pub mod key;
pub mod progress;
pub mod raster;
pub mod registry;
pub mod remote;
pub mod s1;
pub mod s2;
pub(crate) mod shard;
pub mod source;
pub mod store;
pub mod util;
pub mod writeback;
pub mod zarr_json;
