//! The CDSE STAC API v1: the item model (`item`) and the search client (`client`).

pub mod client;
mod item;

pub use item::{eodata_key, StacItem, EODATA};
