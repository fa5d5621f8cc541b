//! The resolver's counters (`fs` in stats.json), shared with the open files that read stored
//! objects by range (`content`).

crate::counters! {
    /// What the resolver did.
    pub struct ResolverStats {
        /// Objects computed from the source (chunks, or shards: see `layout` in stats.json),
        /// data or all-fill.
        materializations,
        materialized_empty,
        /// Inner chunks stored in the shards computed (sharded layout; = data chunks otherwise).
        inner_chunks_materialized,
        materialized_bytes,
        materialize_micros,
        /// Materializations that failed or panicked.
        materialize_errors,
        /// Materializations running now.
        inflight,
        /// Chunks read back whole from the persistent store (chunked layout).
        store_reads,
        /// Shards opened in the persistent store for reads by range (sharded layout).
        store_opens,
        /// Ranged reads of those shards.
        store_range_reads,
        /// Bytes read from the store, whole or by range.
        store_read_bytes,
        store_errors,
    }
}
