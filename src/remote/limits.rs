//! Request limits against a quota (CDSE: 4 concurrent connections, 2000 requests per minute).
//!
//! A request holds a connection permit from before it is sent until its body is fully read, so
//! the server never sees more than `max_connections` requests in flight from this process; every
//! request (retries included) also takes a token from a rate limiter (`governor`, GCRA).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Limits {
    connections: Arc<Semaphore>,
    rate: DefaultDirectRateLimiter,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// Held while a request is in flight.
pub struct Permit<'a> {
    _permit: OwnedSemaphorePermit,
    limits: &'a Limits,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limits.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limits {
    pub fn new(max_connections: usize, max_requests_per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(max_requests_per_minute.max(1)).expect("non-zero");
        Limits {
            connections: Arc::new(Semaphore::new(max_connections.max(1))),
            rate: RateLimiter::direct(Quota::per_minute(per_minute)),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Waits for a connection slot, then for a request token.
    pub async fn acquire(&self) -> Permit<'_> {
        let permit = self
            .connections
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.rate.until_ready().await;
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        Permit {
            _permit: permit,
            limits: self,
        }
    }

    /// The most requests ever in flight at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn never_more_than_the_connection_cap_in_flight() {
        let limits = Arc::new(Limits::new(3, 100_000));
        crate::remote::block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..20 {
                let l = limits.clone();
                tasks.push(tokio::spawn(async move {
                    let _p = l.acquire().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(limits.peak(), 3);
    }
}
