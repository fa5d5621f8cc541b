//! One version of a stored object, pinned when it is opened and read by byte range.
//!
//! A sharded chunk file is tens of megabytes, of which a reader wants an index and a few inner
//! chunks. The mount serves such files from the store by range instead of fetching them whole,
//! and one open file must not mix two versions of an object (its index from one shard, its inner
//! chunks from a rewritten one). Each backend pins what it opened: the directory store keeps the
//! file descriptor (a rename over the name leaves the open file intact), the S3 store sends the
//! ETag it saw with every ranged GET (`If-Match`), the memory store keeps a copy. A read of a pinned
//! version that is gone fails with an error naming the key; it never returns other bytes.

use anyhow::Result;

/// A pinned version of one object.
pub trait ObjectReader: Send + Sync {
    /// The object's size in bytes.
    fn len(&self) -> u64;
    /// Whether the object is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Up to `len` bytes from `offset`: fewer only at the end of the object, none past it.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>>;
}

/// The bytes `[offset, offset + len)` of an object of `size` bytes, clipped to the object.
pub fn clip(size: u64, offset: u64, len: usize) -> std::ops::Range<u64> {
    let start = offset.min(size);
    start..start.saturating_add(len as u64).min(size)
}

/// An object held in memory (the fallback for backends without ranged reads, and `MemStore`).
pub struct InMemory(pub Vec<u8>);

impl ObjectReader for InMemory {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let r = clip(self.len(), offset, len);
        Ok(self.0[r.start as usize..r.end as usize].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_clipped_to_the_object() {
        let o = InMemory((0..10u8).collect());
        assert_eq!(o.read_at(2, 3).unwrap(), [2, 3, 4]);
        assert_eq!(o.read_at(8, 5).unwrap(), [8, 9]);
        assert!(o.read_at(10, 5).unwrap().is_empty());
        assert!(o.read_at(99, 5).unwrap().is_empty());
        assert_eq!(clip(10, u64::MAX, usize::MAX), 10..10);
    }
}
