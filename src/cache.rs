//! The in-memory cache of encoded chunks: an LRU (the `lru` crate) capped in bytes.
//!
//! Entries are `Arc<[u8]>`, shared with open file handles and the writeback queue, so a chunk is
//! never copied on its way from the encoder to the reader and the store. The cap is checked on
//! every insert; an object bigger than the whole cap is not cached at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lru::LruCache;

/// Encoded chunk bytes, shared.
pub type Bytes = std::sync::Arc<[u8]>;

struct Inner {
    lru: LruCache<String, Bytes>,
    bytes: usize,
}

/// Hit, miss and eviction counters.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
}

pub struct ChunkCache {
    inner: Mutex<Inner>,
    capacity: usize,
    pub stats: CacheStats,
}

impl ChunkCache {
    pub fn new(capacity_bytes: usize) -> Self {
        ChunkCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            capacity: capacity_bytes,
            stats: CacheStats::default(),
        }
    }

    /// The cached bytes of `key` (marks it most recently used).
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let hit = self.inner.lock().unwrap().lru.get(key).cloned();
        let counter = if hit.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Caches `bytes` under `key`, evicting least recently used entries to stay within the cap.
    pub fn insert(&self, key: &str, bytes: Bytes) {
        if bytes.len() > self.capacity {
            return;
        }
        let mut g = self.inner.lock().unwrap();
        g.bytes += bytes.len();
        if let Some(old) = g.lru.put(key.to_string(), bytes) {
            g.bytes -= old.len();
        }
        while g.bytes > self.capacity {
            match g.lru.pop_lru() {
                Some((_, old)) => {
                    g.bytes -= old.len();
                    self.stats.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
    }

    /// (entries, bytes) currently held.
    pub fn usage(&self) -> (usize, usize) {
        let g = self.inner.lock().unwrap();
        (g.lru.len(), g.bytes)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize, v: u8) -> Bytes {
        vec![v; n].into()
    }

    #[test]
    fn stays_within_cap_and_evicts_lru() {
        let c = ChunkCache::new(100);
        c.insert("a", b(40, 1));
        c.insert("b", b(40, 2));
        assert_eq!(c.get("a").unwrap()[0], 1); // a is now most recent
        c.insert("c", b(40, 3)); // evicts b
        assert!(c.get("b").is_none());
        assert_eq!(c.get("a").unwrap()[0], 1);
        assert_eq!(c.get("c").unwrap()[0], 3);
        assert_eq!(c.usage(), (2, 80));
        assert_eq!(c.stats.evictions.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats.hits.load(Ordering::Relaxed), 3);
        assert_eq!(c.stats.misses.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn replaces_and_skips_oversized() {
        let c = ChunkCache::new(100);
        c.insert("a", b(40, 1));
        c.insert("a", b(60, 2));
        assert_eq!(c.usage(), (1, 60));
        c.insert("huge", b(101, 9));
        assert!(c.get("huge").is_none());
        assert_eq!(c.usage(), (1, 60));
    }
}
