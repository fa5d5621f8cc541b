//! The writeback queue: every object the mount materializes is persisted to the store by a writer
//! thread, so nothing is computed twice, not even across restarts. One queue serves every
//! collection: a job is one unit of computation (a Sentinel-2 chunk or shard; a Sentinel-1 shard
//! region, whose five arrays come from one merge) with its object files and its record entry.
//!
//! Bounded in jobs and bytes: a full queue blocks the producer (back-pressure, never a drop).
//! Before each chunk is written, the catalog generation it was computed under is checked against
//! the store's latest (`generation::Tracker::verdict`): a chunk made stale by a newer generation
//! is dropped, one whose time chunk is still fenced after a change is not written (it is
//! computed again when needed). Chunk files are written atomically first, then the batch's
//! entries are added to this process's record files (also atomic), so after a crash every
//! recorded chunk has its file. Queued bytes stay
//! readable through `pending` until they are in the store. Transient store failures (throttling,
//! 5xx) are retried with the remote retry policy while the chunk stays readable from the queue;
//! a permanent failure, or one that outlasts the retries, is counted and logged, and the chunk is
//! left unrecorded (it is computed again when next needed). `close` drains the queue.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::cache::Bytes;
use crate::generation::{Fencing, Verdict};
use crate::key::{ChunkIndex, ChunkKey, TileYear};
use crate::remote::retry::RetryPolicy;
use crate::store::{with_retries, ChunkEntry, RecordWriter, Store};

/// What to persist for one chunk.
#[derive(Debug, Clone)]
pub enum WriteEntry {
    /// Encoded bytes: write the chunk file, then record it.
    Data(Bytes),
    /// All fill: record only (no file, by Zarr's missing-chunk rule).
    Empty,
}

/// One unit of computation to persist: its object files (written first, each atomically), then
/// its entry in this process's record of `(ty, group)` at `idx`.
#[derive(Debug, Clone)]
pub struct WriteJob {
    pub ty: TileYear,
    /// The record group (`10m`, `20m`, …).
    pub group: &'static str,
    /// The unit's index in the record (its time chunk is `idx.t`).
    pub idx: ChunkIndex,
    /// Fingerprint of the unit's time chunk under the generation it was computed from.
    pub fp: String,
    /// (store key, bytes) of each object file; none when everything is fill.
    pub objects: Vec<(String, Bytes)>,
    /// What the record says of the unit.
    pub entry: ChunkEntry,
}

impl WriteJob {
    /// A Sentinel-2 chunk or shard: one object (none if all fill).
    pub fn object(key: &ChunkKey, entry: WriteEntry, fp: String) -> Self {
        let (objects, entry) = match entry {
            WriteEntry::Data(b) => {
                let n = b.len() as u64;
                (vec![(key.to_string(), b)], ChunkEntry::Data { bytes: n })
            }
            WriteEntry::Empty => (Vec::new(), ChunkEntry::Empty),
        };
        WriteJob {
            ty: key.tile_year(),
            group: key.array.unit(),
            idx: key.idx,
            fp,
            objects,
            entry,
        }
    }

    fn bytes(&self) -> usize {
        self.objects.iter().map(|(_, b)| b.len()).sum()
    }

    /// The unit, for messages: its single object's key, or the record entry.
    fn describe(&self) -> String {
        match self.objects.as_slice() {
            [(k, _)] => k.clone(),
            _ => format!("{}/{} unit {}", self.ty, self.group, self.idx),
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
        /// Chunks not written because a newer catalog generation changed their time chunk.
        stale_dropped,
        /// Chunks held back because their time chunk was still fenced after a change (written
        /// once it settles).
        deferred,
        /// Deferred chunks given up (too many held back, or the mount ended first).
        unsettled_dropped,
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
    /// (Object key, fingerprint) → bytes not yet in the store.
    pending: HashMap<(String, String), Bytes>,
    /// Jobs whose time chunk is still fenced after a catalog change, with when to look again.
    /// Outside the queue bounds (a refresh must not stall readers for the grace period), capped
    /// at `max_jobs` (beyond, a chunk is dropped and computed again when next needed).
    deferred: Vec<(Instant, WriteJob)>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    store: Arc<dyn Store>,
    tracker: Arc<dyn Fencing>,
    records: Arc<RecordWriter>,
    limits: Limits,
    stats: WritebackStats,
}

pub struct Writeback {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writeback {
    pub fn start(
        store: Arc<dyn Store>,
        tracker: Arc<dyn Fencing>,
        records: Arc<RecordWriter>,
        limits: Limits,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                jobs: 0,
                bytes: 0,
                closed: false,
                pending: HashMap::new(),
                deferred: Vec::new(),
            }),
            changed: Condvar::new(),
            store,
            tracker,
            records,
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
        for (k, b) in &job.objects {
            g.pending.insert((k.clone(), job.fp.clone()), b.clone());
        }
        g.jobs += 1;
        g.bytes += n;
        g.queue.push_back(job);
        self.shared.stats.enqueued.inc();
        self.shared.changed.notify_all();
        true
    }

    /// Bytes of an object (computed under fingerprint `fp`) queued but not yet in the store.
    pub fn pending(&self, key: &str, fp: &str) -> Option<Bytes> {
        self.shared
            .state
            .lock()
            .unwrap()
            .pending
            .get(&(key.to_string(), fp.to_string()))
            .cloned()
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

    /// Waits until everything queued so far is in the store (deferred chunks included: up to
    /// twice the fence's grace period after a catalog change).
    pub fn flush(&self) {
        let mut g = self.shared.state.lock().unwrap();
        while g.jobs > 0 || !g.deferred.is_empty() {
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
    loop {
        let batch: Vec<WriteJob> = {
            let mut g = s.state.lock().unwrap();
            loop {
                let now = Instant::now();
                let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut g.deferred)
                    .into_iter()
                    .partition(|(t, _)| *t <= now);
                g.deferred = later;
                for (_, job) in due {
                    g.jobs += 1;
                    g.bytes += job.bytes();
                    g.queue.push_back(job);
                }
                if !g.queue.is_empty() {
                    break;
                }
                if g.closed {
                    if !g.deferred.is_empty() {
                        s.stats.unsettled_dropped.add(g.deferred.len() as u64);
                        tracing::info!(
                            "writeback: {} chunk(s) of a recently changed time chunk not persisted (computed again when needed)",
                            g.deferred.len()
                        );
                        for (_, job) in std::mem::take(&mut g.deferred) {
                            for (k, _) in job.objects {
                                g.pending.remove(&(k, job.fp.clone()));
                            }
                        }
                        s.changed.notify_all();
                    }
                    return;
                }
                g = match g.deferred.iter().map(|(t, _)| *t).min() {
                    Some(t) => s.changed.wait_timeout(g, t - now).unwrap().0,
                    None => s.changed.wait(g).unwrap(),
                };
            }
            let n = g.queue.len().min(BATCH);
            g.queue.drain(..n).collect()
        };
        if !s.limits.batch_delay.is_zero() {
            std::thread::sleep(s.limits.batch_delay);
        }
        // A panic while writing (a store bug) must not stop the writer: every queued job would
        // wait forever. The batch counts as failed; its chunks stay unrecorded.
        let write = std::panic::AssertUnwindSafe(|| write_batch(s, &batch));
        let held = match std::panic::catch_unwind(write) {
            Ok(held) => held,
            Err(panic) => {
                s.stats.errors.inc();
                tracing::error!(
                    "writeback: writing a batch of {} chunk(s) panicked: {}",
                    batch.len(),
                    crate::util::panic_message(&panic)
                );
                Vec::new()
            }
        };
        let mut g = s.state.lock().unwrap();
        let retry_at = Instant::now() + s.tracker.fence().check_age();
        for (i, job) in batch.iter().enumerate() {
            g.jobs -= 1;
            g.bytes -= job.bytes();
            if held.contains(&i) {
                if g.deferred.len() < s.limits.max_jobs {
                    s.stats.deferred.inc();
                    g.deferred.push((retry_at, job.clone()));
                    continue;
                }
                s.stats.unsettled_dropped.inc();
            }
            for (key, b) in &job.objects {
                let k = (key.clone(), job.fp.clone());
                if g.pending.get(&k).is_some_and(|p| Arc::ptr_eq(p, b)) {
                    g.pending.remove(&k);
                }
            }
        }
        s.changed.notify_all();
    }
}

/// Writes a batch; returns the positions of jobs held back (their time chunk is still fenced).
fn write_batch(s: &Shared, batch: &[WriteJob]) -> Vec<usize> {
    let store = s.store.as_ref();
    let retry = &s.limits.retry;
    let failed = |what: &str, e: anyhow::Error| {
        s.stats.errors.inc();
        tracing::error!("writeback: {what} in {}: {e:#}", store.describe());
    };
    let mut touched = BTreeSet::new();
    let mut held = Vec::new();
    'jobs: for (i, job) in batch.iter().enumerate() {
        let (ty, group, idx) = (&job.ty, job.group, job.idx);
        let verdict = || {
            with_retries(retry, &format!("checking the catalog of {ty}"), || {
                s.tracker.verdict(store, ty, group, idx.t, &job.fp)
            })
        };
        let mut last = verdict();
        let mut checked = Instant::now();
        for (key, b) in &job.objects {
            // Each attempt of a PUT starts within the fence's check age of a verdict.
            let mut first = true;
            let put = with_retries(retry, &format!("PUT {key}"), || {
                if !std::mem::take(&mut first) || checked.elapsed() >= s.tracker.fence().check_age()
                {
                    last = verdict();
                    checked = Instant::now();
                }
                match &last {
                    Ok(Verdict::Write) => store.put(key, b).map(|()| true),
                    _ => Ok(false),
                }
            });
            match put {
                Ok(true) => {
                    s.stats.chunks_written.inc();
                    s.stats.bytes_written.add(b.len() as u64);
                }
                Ok(false) => break,
                Err(e) => {
                    failed(&format!("writing {key}"), e);
                    continue 'jobs;
                }
            }
        }
        match last {
            Ok(Verdict::Write) => {}
            Ok(Verdict::Stale) => {
                s.stats.stale_dropped.inc();
                tracing::debug!(
                    "writeback: {} is stale (newer catalog generation)",
                    job.describe()
                );
                continue;
            }
            Ok(Verdict::Unsettled) => {
                held.push(i);
                continue;
            }
            Err(e) => {
                failed(&format!("checking the catalog for {}", job.describe()), e);
                continue;
            }
        }
        s.records.add(ty, group, idx, job.entry, &job.fp);
        touched.insert((ty.clone(), group));
    }
    for (ty, group) in touched {
        let what = format!("saving the chunk record of {ty} {group}");
        match with_retries(retry, &what, || s.records.save(store, &ty, group)) {
            Ok(()) => s.stats.records_saved.inc(),
            Err(e) => failed(&format!("saving the chunk record of {ty} {group}"), e),
        }
    }
    held
}
