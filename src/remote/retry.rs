//! Retrying remote calls: exponential backoff with full jitter (`backon`), a bounded number of
//! attempts, and a server's `Retry-After` taking precedence over the computed delay when longer.

use std::time::Duration;

use backon::BackoffBuilder;

/// How persistent a client is. The defaults suit CDSE (429s under load clear within seconds).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Whether a failed attempt may succeed when repeated, and how long the server asked us to wait.
#[derive(Debug)]
pub enum Failure<E> {
    Transient {
        error: E,
        retry_after: Option<Duration>,
    },
    Permanent(E),
}

impl RetryPolicy {
    fn delays(&self) -> impl Iterator<Item = Duration> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
            .build()
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the retries are used up; the error
    /// returned is the last one, with the number of attempts made.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, (E, usize)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure<E>>>,
        E: std::fmt::Display,
    {
        let mut delays = self.delays();
        let mut n = 0;
        loop {
            n += 1;
            match self.next_step(what, n, attempt().await, &mut delays) {
                Step::Done(r) => return r,
                Step::Wait(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// `run` for synchronous callers (a writer thread): the waits block the calling thread.
    pub fn run_blocking<T, E, F>(&self, what: &str, mut attempt: F) -> Result<T, (E, usize)>
    where
        F: FnMut() -> Result<T, Failure<E>>,
        E: std::fmt::Display,
    {
        let mut delays = self.delays();
        let mut n = 0;
        loop {
            n += 1;
            match self.next_step(what, n, attempt(), &mut delays) {
                Step::Done(r) => return r,
                Step::Wait(d) => std::thread::sleep(d),
            }
        }
    }

    /// What follows attempt `n`'s outcome: the result, or how long to wait before the next one.
    fn next_step<T, E: std::fmt::Display>(
        &self,
        what: &str,
        n: usize,
        outcome: Result<T, Failure<E>>,
        delays: &mut impl Iterator<Item = Duration>,
    ) -> Step<T, E> {
        match outcome {
            Ok(v) => Step::Done(Ok(v)),
            Err(Failure::Permanent(e)) => Step::Done(Err((e, n))),
            Err(Failure::Transient { error, retry_after }) => match delays.next() {
                None => Step::Done(Err((error, n))),
                Some(d) => {
                    // A server's Retry-After wins when longer, bounded by our own ceiling.
                    let d = retry_after.map_or(d, |r| r.min(self.max_delay).max(d));
                    tracing::warn!("{what}: attempt {n} failed ({error}); retrying in {d:?}");
                    Step::Wait(d)
                }
            },
        }
    }
}

enum Step<T, E> {
    Done(Result<T, (E, usize)>),
    Wait(Duration),
}

/// `Retry-After` as seconds (the HTTP-date form is rare for APIs and treated as absent).
pub fn parse_retry_after(v: Option<&str>) -> Option<Duration> {
    v.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn quick(max_retries: usize) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    #[test]
    fn retries_transient_failures_until_success_or_budget() {
        let calls = AtomicUsize::new(0);
        let r: Result<u32, (String, usize)> = crate::remote::block_on(quick(3).run("t", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(Failure::Transient {
                        error: format!("fail {n}"),
                        retry_after: None,
                    })
                } else {
                    Ok(7)
                }
            }
        }));
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicUsize::new(0);
        let r: Result<u32, (String, usize)> = crate::remote::block_on(quick(2).run("t", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(Failure::Transient {
                    error: "down".to_string(),
                    retry_after: Some(Duration::from_millis(1)),
                })
            }
        }));
        assert_eq!(r.unwrap_err(), ("down".to_string(), 3));

        let r: Result<u32, (String, usize)> = crate::remote::block_on(
            quick(5).run("t", || async { Err(Failure::Permanent("bad".to_string())) }),
        );
        assert_eq!(r.unwrap_err(), ("bad".to_string(), 1));
    }

    #[test]
    fn a_longer_retry_after_wins_and_is_capped() {
        // Virtual time (paused clock): the delays are exact, nothing waits for real.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let policy = RetryPolicy {
            max_retries: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(30),
        };
        let waited = |retry_after: Duration| {
            rt.block_on(async {
                let t0 = tokio::time::Instant::now();
                let calls = AtomicUsize::new(0);
                let r: Result<(), (String, usize)> = policy
                    .run("t", || {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if n == 0 {
                                Err(Failure::Transient {
                                    error: "429".to_string(),
                                    retry_after: Some(retry_after),
                                })
                            } else {
                                Ok(())
                            }
                        }
                    })
                    .await;
                r.unwrap();
                t0.elapsed()
            })
        };
        let w = waited(Duration::from_secs(7));
        assert!(
            w >= Duration::from_secs(7) && w < Duration::from_millis(7010),
            "{w:?}"
        );
        let w = waited(Duration::from_secs(3600));
        assert!(
            w >= Duration::from_secs(30) && w < Duration::from_millis(30010),
            "{w:?}"
        );
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(Some(" 0.5 ")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }
}
