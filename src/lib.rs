//! datacube: a virtual Sentinel-2 L1C datacube (Zarr v3) over SAFE archives or CDSE.
//!
//! Data flows catalog → source → raster → chunk → cache → fs (FUSE), with writeback to the store;
//! `intake` drives catalog → store in bulk. Every module except the store and source backends (and
//! `remote`, their clients) is independent of paths and protocols; `util` holds the primitives they
//! share (byte-capped LRU, single flight, counters, fault injection). docs/design.md has the whole
//! design; the benchmark and the fixture writer are in the `datacube-tools` crate.

pub mod bands;
pub(crate) mod cache;
pub mod catalog;
pub(crate) mod chunk;
pub mod chunking;
pub mod cli;
pub mod collection;
pub mod fs;
pub mod generation;
pub(crate) mod info;
pub mod intake;
pub mod key;
pub mod layout;
pub mod progress;
pub mod raster;
pub mod remote;
pub mod s1;
pub mod safe;
pub mod scene;
pub(crate) mod shard;
pub mod source;
pub mod stac;
pub mod store;
pub(crate) mod tiles;
pub mod util;
pub mod writeback;
pub mod zarr_json;
