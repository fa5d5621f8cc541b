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
//!
//! Create-if-absent must therefore tell its caller the truth even when the store's answer is
//! lost: an S3 client retries a conditional PUT whose answer it did not get, and the retry meets
//! the object the first attempt wrote (412); Ceph RGW may answer a lost race with a 5xx. The rule
//! (`create`): every create carries a token unique to the call, kept with the object (S3 user
//! metadata), and an answer other than a plain success is settled by reading the object back —
//! our token means we created it, another token or none means another writer did, an absent
//! object means nothing landed yet (the create is tried again, then a `Transient` error). The
//! directory and memory stores decide locally and atomically, so their answers are never lost.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod create;
mod dir;
#[cfg(any(test, feature = "testing"))]
mod faulty;
#[cfg(any(test, feature = "testing"))]
mod memory;
mod object;
mod record;
mod s3;

use anyhow::Result;

pub use crate::util::temp_files::{writer_gone, writer_id};
pub use dir::{atomic_write, DirStore};
#[cfg(any(test, feature = "testing"))]
pub use faulty::{FaultyStore, StoreOp};
#[cfg(any(test, feature = "testing"))]
pub use memory::MemStore;
pub use object::{clip, InMemory, ObjectReader};
pub use record::{record_files, ChunkEntry, ChunkRecord, RecordGroup, RecordWriter};
pub use s3::S3Store;

pub use create::Creator;

use crate::remote::s3::S3Options;

/// How long one store call may take before it fails: the consistency protocol's default check
/// age (`generation::Fence`), so that a write that hangs fails (and is retried after a fresh
/// check) instead of landing after the invalidation meant to follow it.
pub const MAX_CALL: std::time::Duration = std::time::Duration::from_secs(15);

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
    ///
    /// The answer holds even when the store's own answer was lost: "exists" or a transient failure
    /// is settled by reading back the object's creation token (`create::put_if_absent`), so a
    /// create whose success answer was lost and retried into a 412 is still `true`, and a lost
    /// race answered with a 5xx is still `false`. An object that stays absent after such answers
    /// gives a `Transient` error (retry the call); never a guess.
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool>;
    /// One conditional create carrying `token` (`create::token`), answered as the store saw it:
    /// `Ok(false)` may be our own object after a lost answer, and a transient error may follow a
    /// create that landed. A store that can lose answers (S3) keeps `token` with the object for
    /// `creator`, and implements `put_if_absent` with `create::put_if_absent` on top of this; a
    /// store whose answers are definitive may ignore the token (the default does).
    fn try_create(&self, key: &str, bytes: &[u8], token: &str) -> Result<bool> {
        let _ = token;
        self.put_if_absent(key, bytes)
    }
    /// Who created the object at `key`: the token its `try_create` carried, `Unmarked` for an
    /// object without one (written by `put`, or by a store that keeps no tokens), or `Absent`.
    fn creator(&self, key: &str) -> Result<Creator> {
        Ok(match self.open_object(key)? {
            None => Creator::Absent,
            Some(_) => Creator::Unmarked,
        })
    }
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
