//! Counters of what the daemon does, served as `/.datacube/stats.json`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

#[derive(Debug, Default)]
pub struct CubeStats {
    pub lookups: AtomicU64,
    /// Chunks computed from the source (data or all-fill).
    pub materializations: AtomicU64,
    pub materialized_empty: AtomicU64,
    pub materialized_bytes: AtomicU64,
    pub materialize_micros: AtomicU64,
    pub materialize_errors: AtomicU64,
    /// Requests that joined a materialization already in flight instead of starting one.
    pub single_flight_joins: AtomicU64,
    pub inflight: AtomicU64,
    /// Chunks read back from the persistent store.
    pub store_reads: AtomicU64,
    pub store_read_bytes: AtomicU64,
    pub store_errors: AtomicU64,
    pub opens: AtomicU64,
    pub reads: AtomicU64,
    pub bytes_served: AtomicU64,
    pub years_resolved: AtomicU64,
    pub year_errors: AtomicU64,
}

fn n(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl CubeStats {
    pub fn to_json(&self) -> Value {
        json!({
            "lookups": n(&self.lookups),
            "materializations": n(&self.materializations),
            "materialized_empty": n(&self.materialized_empty),
            "materialized_bytes": n(&self.materialized_bytes),
            "materialize_seconds": n(&self.materialize_micros) as f64 / 1e6,
            "materialize_errors": n(&self.materialize_errors),
            "single_flight_joins": n(&self.single_flight_joins),
            "inflight": n(&self.inflight),
            "store_reads": n(&self.store_reads),
            "store_read_bytes": n(&self.store_read_bytes),
            "store_errors": n(&self.store_errors),
            "opens": n(&self.opens),
            "reads": n(&self.reads),
            "bytes_served": n(&self.bytes_served),
            "years_resolved": n(&self.years_resolved),
            "year_errors": n(&self.year_errors),
        })
    }
}

/// Adds 1 to a counter.
pub fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Adds `v` to a counter.
pub fn add(a: &AtomicU64, v: u64) {
    a.fetch_add(v, Ordering::Relaxed);
}
