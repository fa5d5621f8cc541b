//! What a READ of a file of the mount is answered from: bytes in memory (metadata, a cached or
//! freshly computed chunk) or a stored object read by byte range.
//!
//! A shard is tens of megabytes of which a Zarr reader wants the index and a few inner chunks,
//! so a shard that is in the store but not in the chunk cache is not fetched whole: a
//! `StoredObject` pins one version of it (`store::ObjectReader`; the resolver keeps the opened
//! ones by key and fingerprint) and each read fetches its own range. Such reads may block on the
//! store, so the FUSE adapter runs them on its read pool.

use std::sync::Arc;

use super::attr::FsError;
use super::resolver_stats::ResolverStats;
use crate::cache::Bytes;
use crate::store::ObjectReader;

/// The content of a file, as a READ finds it.
#[derive(Clone)]
pub enum Content {
    /// In memory: reads are slices of it.
    Bytes(Bytes),
    /// A version of a stored object: reads go to the store.
    Stored(Arc<StoredObject>),
}

impl Content {
    /// The file's size.
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Stored(o) => o.reader.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `size` bytes from `offset` (blocking on the store for stored objects).
    pub fn read(&self, offset: u64, size: usize) -> Result<Vec<u8>, FsError> {
        match self {
            Content::Bytes(b) => {
                let r = crate::store::clip(b.len() as u64, offset, size);
                Ok(b[r.start as usize..r.end as usize].to_vec())
            }
            Content::Stored(o) => o.read(offset, size),
        }
    }
}

impl From<Bytes> for Content {
    fn from(b: Bytes) -> Self {
        Content::Bytes(b)
    }
}

/// A stored chunk file opened for ranged reads, and where its reads are counted.
pub struct StoredObject {
    /// The chunk's key and the store, for messages.
    what: String,
    reader: Box<dyn ObjectReader>,
    stats: Arc<ResolverStats>,
}

impl StoredObject {
    pub fn new(what: String, reader: Box<dyn ObjectReader>, stats: Arc<ResolverStats>) -> Self {
        StoredObject {
            what,
            reader,
            stats,
        }
    }

    /// One ranged read; a failure is answered `Io` with the key, and nothing is kept of it (the
    /// reader may read again).
    pub fn read(&self, offset: u64, size: usize) -> Result<Vec<u8>, FsError> {
        match self.reader.read_at(offset, size) {
            Ok(b) => {
                self.stats.store_range_reads.inc();
                self.stats.store_read_bytes.add(b.len() as u64);
                Ok(b)
            }
            Err(e) => {
                self.stats.store_errors.inc();
                Err(FsError::io(e.context(format!("reading {}", self.what))))
            }
        }
    }
}
