//! The writeback queue: every chunk the mount materializes is persisted to the store by a writer
//! thread, so nothing is computed twice, not even across restarts.
//!
//! Bounded in jobs and bytes: a full queue blocks the producer (back-pressure, never a drop).
//! Chunk files are written atomically first, then the batch's entries are added to the chunk
//! records (also atomic), so after a crash every recorded chunk has its file. Queued bytes stay
//! readable through `pending` until they are in the store. Transient store failures (throttling,
//! 5xx) are retried with the remote retry policy while the chunk stays readable from the queue;
//! a permanent failure, or one that outlasts the retries, is counted and logged, and the chunk is
//! left unrecorded (it is computed again when next needed). `close` drains the queue.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::cache::Bytes;
use crate::key::ChunkKey;
use crate::remote::retry::RetryPolicy;
use crate::store::{with_retries, ChunkEntry, ChunkRecord, Store};

/// What to persist for one chunk.
#[derive(Debug, Clone)]
pub enum WriteEntry {
    /// Encoded bytes: write the chunk file, then record it.
    Data(Bytes),
    /// All fill: record only (no file, by Zarr's missing-chunk rule).
    Empty,
    /// The file is already in the store (found there unrecorded): record only.
    Stored(u64),
}

#[derive(Debug, Clone)]
pub struct WriteJob {
    pub key: ChunkKey,
    pub entry: WriteEntry,
}

impl WriteJob {
    fn bytes(&self) -> usize {
        match &self.entry {
            WriteEntry::Data(b) => b.len(),
            _ => 0,
        }
    }
}

/// Queue bounds and persistence.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_jobs: usize,
    pub max_bytes: usize,
    /// Pause before each batch: a test hook to hold chunks in the queue (zero in production).
    pub batch_delay: std::time::Duration,
    /// How transient store failures are retried.
    pub retry: RetryPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_jobs: 256,
            max_bytes: 256 << 20,
            batch_delay: std::time::Duration::ZERO,
            retry: RetryPolicy::default(),
        }
    }
}

crate::counters! {
    /// What the writer did.
    pub struct WritebackStats {
        enqueued,
        chunks_written,
        bytes_written,
        records_saved,
        /// Failures that were given up on (permanent, or transient past the retries).
        errors,
        /// Times a producer waited on a full queue.
        full_waits,
    }
}

struct State {
    queue: VecDeque<WriteJob>,
    /// Jobs queued or being written, and their bytes (the bounds count both).
    jobs: usize,
    bytes: usize,
    closed: bool,
    /// Chunk → bytes not yet in the store.
    pending: HashMap<ChunkKey, Bytes>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    store: Arc<dyn Store>,
    limits: Limits,
    stats: WritebackStats,
}

pub struct Writeback {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writeback {
    pub fn start(store: Arc<dyn Store>, limits: Limits) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                jobs: 0,
                bytes: 0,
                closed: false,
                pending: HashMap::new(),
            }),
            changed: Condvar::new(),
            store,
            limits,
            stats: WritebackStats::default(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || writer(&s))
            .expect("spawning the writeback thread");
        Writeback {
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues a job, waiting while the queue is full. Returns false if the queue is closed.
    pub fn push(&self, job: WriteJob) -> bool {
        let n = job.bytes();
        let mut g = self.shared.state.lock().unwrap();
        let full = |g: &State| {
            g.jobs > 0
                && (g.jobs >= self.shared.limits.max_jobs
                    || g.bytes + n > self.shared.limits.max_bytes)
        };
        if full(&g) && !g.closed {
            self.shared.stats.full_waits.inc();
        }
        while full(&g) && !g.closed {
            g = self.shared.changed.wait(g).unwrap();
        }
        if g.closed {
            return false;
        }
        if let WriteEntry::Data(b) = &job.entry {
            g.pending.insert(job.key.clone(), b.clone());
        }
        g.jobs += 1;
        g.bytes += n;
        g.queue.push_back(job);
        self.shared.stats.enqueued.inc();
        self.shared.changed.notify_all();
        true
    }

    /// Bytes of a chunk that is queued but not yet in the store.
    pub fn pending(&self, key: &ChunkKey) -> Option<Bytes> {
        self.shared.state.lock().unwrap().pending.get(key).cloned()
    }

    /// (jobs, bytes) queued or being written.
    pub fn depth(&self) -> (usize, usize) {
        let g = self.shared.state.lock().unwrap();
        (g.jobs, g.bytes)
    }

    pub fn stats(&self) -> &WritebackStats {
        &self.shared.stats
    }

    /// The statistics served in `stats.json`.
    pub fn to_json(&self) -> serde_json::Value {
        let (jobs, bytes) = self.depth();
        let mut m = serde_json::Map::new();
        m.insert("queue_jobs".into(), jobs.into());
        m.insert("queue_bytes".into(), bytes.into());
        m.extend(self.shared.stats.to_json());
        serde_json::Value::Object(m)
    }

    /// Waits until everything queued so far is in the store.
    pub fn flush(&self) {
        let mut g = self.shared.state.lock().unwrap();
        while g.jobs > 0 {
            g = self.shared.changed.wait(g).unwrap();
        }
    }

    /// Stops accepting jobs, writes everything queued, and joins the writer.
    pub fn close(&self) {
        self.shared.state.lock().unwrap().closed = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.close();
    }
}

const BATCH: usize = 64;

fn writer(s: &Shared) {
    let mut records: HashMap<String, ChunkRecord> = HashMap::new();
    loop {
        let batch: Vec<WriteJob> = {
            let mut g = s.state.lock().unwrap();
            while g.queue.is_empty() && !g.closed {
                g = s.changed.wait(g).unwrap();
            }
            if g.queue.is_empty() {
                return;
            }
            let n = g.queue.len().min(BATCH);
            g.queue.drain(..n).collect()
        };
        if !s.limits.batch_delay.is_zero() {
            std::thread::sleep(s.limits.batch_delay);
        }
        // A panic while writing (a store bug) must not stop the writer: every queued job would
        // wait forever. The batch counts as failed; its chunks stay unrecorded.
        let write = std::panic::AssertUnwindSafe(|| write_batch(s, &batch, &mut records));
        if let Err(panic) = std::panic::catch_unwind(write) {
            s.stats.errors.inc();
            records.clear();
            tracing::error!(
                "writeback: writing a batch of {} chunk(s) panicked: {}",
                batch.len(),
                crate::util::panic_message(&panic)
            );
        }
        let mut g = s.state.lock().unwrap();
        for job in &batch {
            if let WriteEntry::Data(b) = &job.entry {
                if g.pending.get(&job.key).is_some_and(|p| Arc::ptr_eq(p, b)) {
                    g.pending.remove(&job.key);
                }
            }
            g.jobs -= 1;
            g.bytes -= job.bytes();
        }
        s.changed.notify_all();
    }
}

fn write_batch(s: &Shared, batch: &[WriteJob], records: &mut HashMap<String, ChunkRecord>) {
    let store = s.store.as_ref();
    let retry = &s.limits.retry;
    let failed = |what: &str, e: anyhow::Error| {
        s.stats.errors.inc();
        tracing::error!("writeback: {what} in {}: {e:#}", store.describe());
    };
    let mut entries: BTreeMap<String, Vec<(crate::key::ChunkIndex, ChunkEntry)>> = BTreeMap::new();
    for job in batch {
        let entry = match &job.entry {
            WriteEntry::Data(b) => {
                let key = job.key.to_string();
                if let Err(e) = with_retries(retry, &format!("PUT {key}"), || store.put(&key, b)) {
                    failed(&format!("writing {key}"), e);
                    continue;
                }
                s.stats.chunks_written.inc();
                s.stats.bytes_written.add(b.len() as u64);
                ChunkEntry::Data {
                    bytes: b.len() as u64,
                }
            }
            WriteEntry::Empty => ChunkEntry::Empty,
            WriteEntry::Stored(n) => ChunkEntry::Data { bytes: *n },
        };
        entries
            .entry(job.key.tile_year().record_key(job.key.res))
            .or_default()
            .push((job.key.idx, entry));
    }
    for (key, new) in entries {
        let record = match records.get_mut(&key) {
            Some(r) => r,
            None => match with_retries(retry, &format!("GET {key}"), || {
                ChunkRecord::load(store, &key)
            }) {
                Ok(r) => records.entry(key.clone()).or_insert(r),
                Err(e) => {
                    failed(&format!("reading chunk record {key}"), e);
                    continue;
                }
            },
        };
        for (idx, entry) in new {
            record.chunks.insert(idx, entry);
        }
        match with_retries(retry, &format!("PUT {key}"), || record.save(store, &key)) {
            Ok(()) => s.stats.records_saved.inc(),
            Err(e) => failed(&format!("saving chunk record {key}"), e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DirStore;

    fn job(rel: &str, entry: WriteEntry) -> WriteJob {
        WriteJob {
            key: format!("35VLH/2024/60m/data/{rel}").parse().unwrap(),
            entry,
        }
    }

    fn idx(rel: &str) -> crate::key::ChunkIndex {
        rel.parse().unwrap()
    }

    #[test]
    fn writes_files_then_records_and_drains_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DirStore::create(dir.path()).unwrap());
        let wb = Writeback::start(
            store.clone(),
            Limits {
                max_jobs: 2,
                max_bytes: 1 << 20,
                ..Default::default()
            },
        );
        for i in 0..20u8 {
            let bytes: Bytes = vec![i; 10 + i as usize].into();
            assert!(wb.push(job(&format!("c/0/0/0/{i}"), WriteEntry::Data(bytes))));
        }
        assert!(wb.push(job("c/1/0/0/0", WriteEntry::Empty)));
        wb.close();
        assert!(!wb.push(job("c/1/0/0/1", WriteEntry::Empty)));
        let rec =
            ChunkRecord::load(store.as_ref(), "35VLH/2024/.datacube/chunks-60m.json").unwrap();
        assert_eq!(rec.chunks.len(), 21);
        for i in 0..20u8 {
            let key = format!("35VLH/2024/60m/data/c/0/0/0/{i}");
            assert_eq!(store.get(&key).unwrap().unwrap(), vec![i; 10 + i as usize]);
            assert_eq!(
                rec.chunks[&idx(&format!("c/0/0/0/{i}"))],
                ChunkEntry::Data {
                    bytes: 10 + i as u64
                }
            );
        }
        assert_eq!(rec.chunks[&idx("c/1/0/0/0")], ChunkEntry::Empty);
        assert_eq!(wb.depth(), (0, 0));
        assert!(wb.stats().full_waits.get() > 0, "bound of 2 jobs held");
    }
}
