//! Generic building blocks every cache and queue of the daemon shares: counters, a byte-capped
//! LRU and single flight. Each is tested once, here.

pub mod byte_lru;
pub mod counters;
pub mod faults;
pub mod single_flight;
pub mod temp_files;

pub use byte_lru::ByteLru;
pub use counters::Counter;
pub use single_flight::{Abandoned, Leader, SingleFlight};

/// The message of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
