//! A byte-capped, least-recently-used cache of whole remote objects on a local disk.
//!
//! Objects live under `ROOT/<key>` (the bucket's own key layout, so a cached file is recognisable).
//! A download goes to `<key>.part-<host>-<pid>-<n>` and is renamed into place only once complete and checked,
//! so a crash or a failed transfer never leaves a partial object where a reader would trust it;
//! `.part-` files of processes that are gone are removed when the cache opens (those of live
//! processes sharing the cache are left alone). Concurrent requests for one key wait for
//! a single download. A file handed out is pinned (never evicted) until its `LocalFile` is dropped,
//! so GDAL never sees a file vanish under it; the cap can be exceeded only by pinned files.
//!
//! Thrash is watched, not guessed: the cache keeps the size of every distinct object it has served
//! since it opened (its *working set*: what is being read). When that exceeds the cap, what is
//! evicted may be needed again and downloaded twice: the cache says so once in the log and in its
//! statistics (`working_set_bytes`, `over_cap`), and counts the downloads of objects it had
//! already held (`refetches`, `refetched_bytes`).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::LocalFile;
use crate::util::{temp_files, ByteLru, SingleFlight};

const PART: &str = ".part-";

struct Entry {
    path: PathBuf,
    size: u64,
}

crate::counters! {
    /// Downloads (hits and evictions are the LRU's).
    pub struct DiskCacheStats {
        fetches,
        fetched_bytes,
        /// Downloads of objects this cache had held before (evicted since).
        refetches,
        refetched_bytes,
        /// Bytes of the distinct objects served since the cache opened.
        working_set_bytes,
    }
}

/// The default cap of a source cache at `dir`: room for a whole tile-year of band files (~115 GB
/// for 192 Sentinel-2 scenes) where the disk allows — the smaller of 128 GiB and half the free
/// space of the filesystem `dir` is on (at least 1 GiB).
pub fn default_capacity(dir: &Path) -> u64 {
    const MOST: u64 = 128 << 30;
    let mut d = Some(dir);
    while let Some(p) = d {
        if let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid C string and a zeroed statvfs for the call to fill.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
                let free = st.f_bavail as u64 * st.f_frsize as u64;
                return (free / 2).clamp(1 << 30, MOST);
            }
        }
        d = p.parent();
    }
    MOST
}

pub struct DiskCache {
    root: PathBuf,
    /// Pinned = handed out in a `LocalFile` still alive (the LRU holds the only other reference).
    files: Mutex<ByteLru<String, Arc<Entry>>>,
    /// One download at a time per key; a failed download leaves its error for those who waited
    /// on it (they fail with it rather than each retrying in turn).
    flights: Arc<SingleFlight<String, Arc<Entry>, String>>,
    capacity: u64,
    /// Size of every distinct object served since opening, by key hash (16 bytes per object).
    seen: Mutex<HashMap<u64, u64>>,
    over_cap: AtomicBool,
    pub stats: DiskCacheStats,
}

fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn weigh(e: &Arc<Entry>) -> usize {
    e.size as usize
}

fn pinned(e: &Arc<Entry>) -> bool {
    Arc::strong_count(e) > 1
}

/// The top-level directory of the cache that holds durable tile-part indexes (`tile_parts`):
/// kept beside the cached files, not managed by the LRU.
pub const INDEX_DIR: &str = "j2k-index";

impl DiskCache {
    /// Opens (creating) the cache at `root`, adopting the complete files already there (oldest
    /// modification first in eviction order) and removing partial downloads.
    pub fn open(root: &Path, capacity: u64) -> Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("source cache {}: cannot create", root.display()))?;
        let mut found = Vec::new();
        walk(root, &mut |p, meta| {
            // Durable files kept beside the cache by its users (tile-part indexes) are not its own.
            if p.strip_prefix(root)
                .is_ok_and(|rel| rel.starts_with(INDEX_DIR))
            {
                return;
            }
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            if let Some(i) = name.find(PART) {
                // A live download (another process sharing the cache) is left alone.
                if temp_files::abandoned(&name[i + PART.len()..], p) {
                    let _ = std::fs::remove_file(p);
                }
            } else if let Ok(rel) = p.strip_prefix(root) {
                let key = rel.to_string_lossy().into_owned();
                found.push((meta.modified().ok(), key, p.to_path_buf(), meta.len()));
            }
        })
        .with_context(|| format!("source cache {}: cannot list", root.display()))?;
        found.sort();
        let cache = DiskCache {
            root: root.to_path_buf(),
            files: Mutex::new(ByteLru::new(capacity as usize, weigh, pinned)),
            flights: Arc::new(SingleFlight::new()),
            capacity,
            seen: Mutex::new(HashMap::new()),
            over_cap: AtomicBool::new(false),
            stats: DiskCacheStats::default(),
        };
        for (_, key, path, size) in found {
            let evicted = cache
                .files
                .lock()
                .unwrap()
                .insert(key, Arc::new(Entry { path, size }));
            remove_files(evicted);
        }
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes held on disk.
    pub fn bytes(&self) -> u64 {
        self.files.lock().unwrap().bytes() as u64
    }

    /// (hits, evictions) of the cache.
    pub fn lru_counts(&self) -> (u64, u64) {
        let g = self.files.lock().unwrap();
        (g.stats.hits.get(), g.stats.evictions.get())
    }

    fn lookup(&self, key: &str) -> Option<Arc<Entry>> {
        let e = self.files.lock().unwrap().get(key);
        if let Some(e) = &e {
            self.served(key, e.size, false);
        }
        e
    }

    /// Whether the objects served so far exceed the cap (said once in the log when it happens).
    pub fn over_cap(&self) -> bool {
        self.over_cap.load(Ordering::Relaxed)
    }

    /// Notes that `key` (`size` bytes) was served, `downloaded` now.
    fn served(&self, key: &str, size: u64, downloaded: bool) {
        let before = self.seen.lock().unwrap().insert(key_hash(key), size);
        match before {
            Some(_) if downloaded => {
                self.stats.refetches.inc();
                self.stats.refetched_bytes.add(size);
            }
            Some(_) => {}
            None => {
                self.stats.working_set_bytes.add(size);
                if self.stats.working_set_bytes.get() > self.capacity
                    && !self.over_cap.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        "source cache {}: the files read so far ({:.1} GB) exceed its cap \
                         ({:.1} GB, --source-cache-size): files evicted now are downloaded \
                         again when read again (stats: source_io.cache_refetches)",
                        self.root.display(),
                        self.stats.working_set_bytes.get() as f64 / 1e9,
                        self.capacity as f64 / 1e9
                    );
                }
            }
        }
    }

    /// The cached object `key` if present (pinned while the `LocalFile` lives), without fetching.
    pub fn peek(&self, key: &str) -> Option<LocalFile> {
        self.lookup(key)
            .map(|e| LocalFile::pinned(e.path.clone(), e))
    }

    /// The cached object `key`, fetched first if absent: `fetch(temp_path)` writes the complete,
    /// checked object to `temp_path` and returns its size.
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<LocalFile>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<u64>>,
    {
        crate::store::check_key(key)?;
        if let Some(e) = self.lookup(key) {
            return Ok(LocalFile::pinned(e.path.clone(), e));
        }
        let download = async {
            // Whoever flew before us may have fetched it meanwhile.
            if let Some(e) = self.lookup(key) {
                return Ok(e);
            }
            self.download(key, fetch)
                .await
                .map_err(|e| format!("{e:#}"))
        };
        let entry = self
            .flights
            .run_async(key.to_string(), download)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(LocalFile::pinned(entry.path.clone(), entry))
    }

    async fn download<F, Fut>(&self, key: &str, fetch: F) -> Result<Arc<Entry>>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<u64>>,
    {
        let path = self.root.join(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("source cache: creating {}", dir.display()))?;
        }
        let tmp = PathBuf::from(format!(
            "{}{PART}{}",
            path.display(),
            temp_files::owner_tag()
        ));
        let result = fetch(tmp.clone()).await.and_then(|size| {
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("source cache: renaming into {}", path.display()))?;
            Ok(size)
        });
        let size = match result {
            Ok(size) => size,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        self.stats.fetches.inc();
        self.stats.fetched_bytes.add(size);
        self.served(key, size, true);
        let entry = Arc::new(Entry { path, size });
        // The clone we return pins the entry through the insert's eviction.
        let evicted = self
            .files
            .lock()
            .unwrap()
            .insert(key.to_string(), entry.clone());
        remove_files(evicted);
        Ok(entry)
    }
}

/// Deletes the files of evicted entries.
fn remove_files(evicted: Vec<(String, Arc<Entry>)>) {
    for (_, e) in evicted {
        if let Err(err) = std::fs::remove_file(&e.path) {
            tracing::warn!("source cache: removing {}: {err}", e.path.display());
        }
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        if meta.is_dir() {
            walk(&e.path(), f)?;
        } else if meta.is_file() {
            f(&e.path(), &meta);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn put(cache: &DiskCache, key: &str, n: usize) -> Result<LocalFile> {
        crate::remote::block_on(cache.get_or_fetch(key, |tmp| async move {
            std::fs::write(&tmp, vec![7u8; n])?;
            Ok(n as u64)
        }))
    }

    #[test]
    fn a_working_set_beyond_the_cap_is_said_once_and_refetches_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 250).unwrap();
        for k in ["a", "b"] {
            drop(put(&cache, k, 100).unwrap());
        }
        drop(put(&cache, "a", 100).unwrap()); // a hit: the same object, not more working set
        assert_eq!(cache.stats.working_set_bytes.get(), 200);
        assert!(!cache.over_cap());
        drop(put(&cache, "c", 100).unwrap()); // 300 > 250: b (least recent) goes
        assert!(cache.over_cap());
        assert_eq!(cache.stats.refetches.get(), 0);
        drop(put(&cache, "b", 100).unwrap()); // downloaded a second time
        assert_eq!(
            (
                cache.stats.refetches.get(),
                cache.stats.refetched_bytes.get(),
                cache.stats.fetches.get(),
                cache.stats.working_set_bytes.get()
            ),
            (1, 100, 4, 300)
        );
    }

    #[test]
    fn the_default_cap_is_half_the_free_space_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let cap = default_capacity(&dir.path().join("not/yet/made"));
        assert!((1 << 30..=128 << 30).contains(&cap), "{cap}");
    }

    #[test]
    fn waiters_share_one_download_and_its_failure() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        let calls = AtomicU64::new(0);
        let fetch = |ok: bool| {
            let calls = &calls;
            move |tmp: PathBuf| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                if !ok {
                    anyhow::bail!("server down");
                }
                std::fs::write(&tmp, b"abc")?;
                Ok(3)
            }
        };
        let r = crate::remote::block_on(futures::future::join_all(
            (0..5).map(|_| cache.get_or_fetch("k/1", fetch(false))),
        ));
        assert!(r
            .iter()
            .all(|r| r.as_ref().unwrap_err().to_string().contains("server down")));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one attempt for five waiters"
        );
        // The failure is not remembered: the next request downloads again.
        let r = crate::remote::block_on(futures::future::join_all(
            (0..5).map(|_| cache.get_or_fetch("k/1", fetch(true))),
        ));
        assert!(r.iter().all(|r| r.is_ok()));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn evicts_least_recently_used_unpinned_files_and_never_keeps_partials() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 250).unwrap();
        drop(put(&cache, "a/1", 100).unwrap());
        let pinned = put(&cache, "a/2", 100).unwrap();
        drop(put(&cache, "a/1", 0).unwrap()); // a hit: refreshes a/1, nothing fetched
        assert_eq!(cache.stats.fetches.get(), 2);
        drop(put(&cache, "b/3", 100).unwrap()); // 300 > 250: a/2 is LRU but pinned, a/1 goes
        assert!(!dir.path().join("a/1").exists());
        assert!(pinned.exists() && dir.path().join("b/3").exists());
        assert_eq!(cache.bytes(), 200);
        // A failed fetch leaves nothing behind and caches nothing.
        let err = crate::remote::block_on(cache.get_or_fetch("c/4", |tmp| async move {
            std::fs::write(&tmp, b"half")?;
            anyhow::bail!("connection reset")
        }))
        .unwrap_err();
        assert!(err.to_string().contains("connection reset"));
        let mut names = Vec::new();
        walk(dir.path(), &mut |p, _| names.push(p.to_path_buf())).unwrap();
        names.sort();
        assert_eq!(names, vec![dir.path().join("a/2"), dir.path().join("b/3")]);
        // Reopening adopts what is there and removes stray partial files.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let host = temp_files::hostname();
        let stale = format!("b/x.part-{host}-{dead}-2");
        let live = format!("b/y.part-{host}-{}-3", std::process::id());
        std::fs::write(dir.path().join(&stale), b"x").unwrap();
        std::fs::write(dir.path().join(&live), b"y").unwrap();
        drop(pinned);
        drop(cache);
        let cache = DiskCache::open(dir.path(), 250).unwrap();
        assert_eq!(cache.bytes(), 200);
        assert!(!dir.path().join(&stale).exists());
        assert!(
            dir.path().join(&live).exists(),
            "a live download is left alone"
        );
        assert!(put(&cache, "../x", 1).is_err());
    }
}
