//! Counters of what a component does, for `stats.json`, logs and tests: one `Counter` type and a
//! macro that declares a struct of them with its JSON snapshot, instead of hand-written atomics and
//! hand-written `to_json` per module.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic (or gauge-like, with `sub`) counter, relaxed: values are for reporting, never for
/// synchronisation.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, v: u64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn sub(&self, v: u64) {
        self.0.fetch_sub(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Declares a struct of `Counter`s with `Default` and `to_json` (field name → value).
///
/// ```ignore
/// counters! {
///     /// What the cache did.
///     pub struct CacheStats { hits, misses }
/// }
/// ```
#[macro_export]
macro_rules! counters {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $($(#[$fmeta])* pub $field: $crate::util::counters::Counter,)*
        }

        impl $name {
            /// Every counter by its field name.
            pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
                let mut m = serde_json::Map::new();
                $(m.insert(stringify!($field).to_string(), self.$field.get().into());)*
                m
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::counters! {
        struct Demo { a, b }
    }

    #[test]
    fn counts_and_snapshots_by_field_name() {
        let d = Demo::default();
        d.a.inc();
        d.a.add(4);
        d.b.add(3);
        d.b.sub(1);
        assert_eq!(
            serde_json::Value::Object(d.to_json()),
            serde_json::json!({"a": 5, "b": 2})
        );
    }
}
