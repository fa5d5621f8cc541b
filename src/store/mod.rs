//! The persistent Zarr store: a directory (`dir`) or an S3 bucket (`s3`). Only the backends here
//! know paths or S3.
//!
//! Keys are `/`-separated paths relative to the store root, exactly the Zarr keys
//! (`35VLH/2024/10m/data/c/0/0/1/2`). Every write is atomic: a reader (or a crash) sees the old
//! object or the new one, never a torn one.

mod dir;
mod record;
mod s3;

use anyhow::Result;

pub use dir::{atomic_write, DirStore};
pub use record::{ChunkEntry, ChunkRecord};
pub use s3::S3Store;

use crate::remote::s3::S3Options;

/// A key-value view of a Zarr store.
pub trait Store: Send + Sync {
    /// The object at `key`, or `None` if absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Writes `bytes` at `key` atomically.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Removes `key` (absent is fine).
    fn delete(&self, key: &str) -> Result<()>;
    /// Names of the immediate children of a prefix (`""` for the root), sorted.
    fn list_dir(&self, prefix: &str) -> Result<Vec<String>>;
    /// Human-readable location, for messages.
    fn describe(&self) -> String;
    /// Removes temporary objects left under `prefix` by a killed writer; returns how many.
    fn sweep_temp(&self, _prefix: &str) -> Result<usize> {
        Ok(0)
    }
}

/// Opens a store from its command-line spelling: a directory, or `s3://bucket/prefix` (reached
/// with `s3`: profile, endpoint).
pub fn open(spec: &str, s3: &S3Options) -> Result<Box<dyn Store>> {
    if spec.starts_with("s3://") {
        return Ok(Box::new(S3Store::open(spec, s3)?));
    }
    Ok(Box::new(DirStore::create(spec)?))
}

/// Rejects keys that could escape the store or are not plain Zarr keys.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        || key.contains('\0')
    {
        anyhow::bail!("invalid store key {key:?}");
    }
    Ok(())
}
