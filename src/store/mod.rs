//! The persistent Zarr store: a directory (`dir`) or an S3 bucket (`s3`). Only the backends here
//! know paths or S3.
//!
//! Keys are `/`-separated paths relative to the store root, exactly the Zarr keys
//! (`35VLH/2024/10m/data/c/0/0/1/2`). Every write is atomic: a reader (or a crash) sees the old
//! object or the new one, never a torn one.
//!
//! Many processes on many hosts share a store with no lock. Besides atomic PUTs the backends
//! offer one primitive, create-if-absent (`Store::put_if_absent`), on which the consistency
//! model rests (docs/design.md §5, `crate::generation`): catalog generations are created with it
//! and never rewritten; chunk files are written only by a process that checked, just before, that
//! the latest generation gives the chunk's time chunk the products it was computed from; each
//! writer rewrites only its own record file (`record`); a generation's changed chunk files are
//! deleted only after a grace period in which every stale write has landed. A reader of the
//! store alone may see the newest scenes as fill while they are being rewritten, but once the
//! writers have stopped never a chunk that disagrees with the metadata beside it.

pub mod conformance;
mod dir;
mod faulty;
mod memory;
mod object;
mod record;
mod s3;

use anyhow::Result;

pub use crate::util::temp_files::{writer_gone, writer_id};
pub use dir::{atomic_write, DirStore};
pub use faulty::{FaultyStore, StoreOp};
pub use memory::MemStore;
pub use object::{clip, InMemory, ObjectReader};
pub use record::{record_files, ChunkEntry, ChunkRecord, RecordWriter};
pub use s3::S3Store;

use crate::remote::s3::S3Options;

/// A key-value view of a Zarr store.
pub trait Store: Send + Sync {
    /// The object at `key`, or `None` if absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Writes `bytes` at `key` atomically.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Writes `bytes` at `key` only if no object is there: `Ok(true)` if this call created it,
    /// `Ok(false)` if one existed. Atomic against every writer of the store — of several
    /// processes racing on one key, on any host, exactly one gets `true` — so catalog generations
    /// need no lock (directory: `link(2)`, which NFS and Lustre keep atomic; S3: `If-None-Match: *`).
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool>;
    /// Removes `key` (absent is fine).
    fn delete(&self, key: &str) -> Result<()>;
    /// Names of the immediate children of a prefix (`""` for the root), sorted.
    fn list_dir(&self, prefix: &str) -> Result<Vec<String>>;
    /// The object at `key`, pinned for reads by byte range (`ObjectReader`), or `None` if absent.
    /// The default reads it whole; backends that can read ranges override it.
    fn open_object(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>> {
        Ok(self
            .get(key)?
            .map(|b| Box::new(InMemory(b)) as Box<dyn ObjectReader>))
    }
    /// Human-readable location, for messages.
    fn describe(&self) -> String;
    /// Removes temporary objects left under `prefix` by a killed writer; returns how many.
    fn sweep_temp(&self, _prefix: &str) -> Result<usize> {
        Ok(0)
    }
}

/// A store failure that may succeed when repeated (throttling, a 5xx, a timeout, a broken
/// connection). Backends put it in an error's chain; writers retry those and nothing else.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

/// Whether `e` (or one of its causes) is a `Transient` failure.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Transient>())
}

/// Runs a store call under `policy`, retrying transient failures.
pub fn with_retries<T>(
    policy: &crate::remote::retry::RetryPolicy,
    what: &str,
    mut call: impl FnMut() -> Result<T>,
) -> Result<T> {
    use crate::remote::retry::Failure;
    policy
        .run_blocking(what, || {
            call().map_err(|e| {
                if is_transient(&e) {
                    Failure::Transient {
                        error: e,
                        retry_after: None,
                    }
                } else {
                    Failure::Permanent(e)
                }
            })
        })
        .map_err(|(e, n)| {
            if n > 1 {
                e.context(format!("{what}: gave up after {n} attempts"))
            } else {
                e
            }
        })
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
