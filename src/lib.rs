//! datacube: a virtual Sentinel-2 L1C datacube (Zarr v3) over SAFE archives or CDSE.
//!
//! Data flows catalog → source → raster → chunk → cache → fs (FUSE), with writeback to the store;
//! `intake` drives catalog → store in bulk. Every module
//! except the store and source backends is independent of paths and protocols.

pub mod bands;
pub(crate) mod cache;
pub mod catalog;
pub(crate) mod chunk;
pub mod cli;
pub mod fixture;
pub mod fs;
pub(crate) mod info;
pub mod intake;
pub mod key;
pub mod layout;
pub mod progress;
pub mod raster;
pub mod remote;
pub mod safe;
pub mod scene;
pub mod source;
pub mod stac;
pub mod store;
pub mod synth;
pub(crate) mod tiles;
pub mod util;
pub mod writeback;
