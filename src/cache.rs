//! The in-memory cache of encoded chunks: the shared byte-capped LRU (`util::ByteLru`).
//!
//! Entries are `Arc<[u8]>`, shared with open file handles and the writeback queue, so a chunk is
//! never copied on its way from the encoder to the reader and the store. The cap is checked on
//! every insert; an object bigger than the whole cap is not cached at all.

use std::sync::Mutex;

use crate::util::ByteLru;

/// Encoded chunk bytes, shared.
pub type Bytes = std::sync::Arc<[u8]>;

pub struct ChunkCache {
    inner: Mutex<ByteLru<String, Bytes>>,
}

impl ChunkCache {
    pub fn new(capacity_bytes: usize) -> Self {
        ChunkCache {
            inner: Mutex::new(ByteLru::unpinned(capacity_bytes, |b: &Bytes| b.len())),
        }
    }

    /// The cached bytes of `key` (marks it most recently used).
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.inner.lock().unwrap().get(key)
    }

    /// Caches `bytes` under `key`, evicting least recently used entries to stay within the cap.
    pub fn insert(&self, key: &str, bytes: Bytes) {
        self.inner.lock().unwrap().insert(key.to_string(), bytes);
    }

    /// The statistics served in `stats.json`.
    pub fn to_json(&self) -> serde_json::Value {
        let g = self.inner.lock().unwrap();
        let mut m = g.stats.to_json();
        m.insert("entries".into(), g.len().into());
        m.insert("bytes".into(), g.bytes().into());
        m.insert("capacity".into(), g.capacity().into());
        serde_json::Value::Object(m)
    }
}
