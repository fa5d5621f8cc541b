//! Generic building blocks every cache and queue of the daemon shares: counters, a byte-capped
//! LRU and single flight. Each is tested once, here.

pub mod byte_lru;
pub mod counters;
#[cfg(any(test, feature = "testing"))]
pub mod faults;
pub mod single_flight;
pub mod temp_files;

pub use byte_lru::ByteLru;
pub use counters::Counter;
pub use single_flight::{Abandoned, Leader, SingleFlight};

/// The message of a caught panic.
/// SplitMix64's finaliser (with the golden-ratio increment folded in): a cheap, well-spread
/// hash of a number (work-unit order, the fixtures' value formula).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
