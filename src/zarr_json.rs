//! zarrs arrays made from the metadata documents this crate writes as JSON: one way to turn a
//! document into an encoder, which also validates it as Zarr v3.

use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::Value;
use zarrs::array::{Array, ArrayMetadata};

/// A zarrs array over `storage` from our metadata JSON (validates the JSON as Zarr v3 too).
pub fn array_from_json<S: ?Sized>(storage: Arc<S>, path: &str, meta: &Value) -> Result<Array<S>> {
    let md: ArrayMetadata = serde_json::from_value(meta.clone()).context("array metadata")?;
    Ok(Array::new_with_metadata(storage, path, md)?)
}
