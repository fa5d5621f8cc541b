//! A fixed set of worker threads for the slow half of FUSE requests (materializing chunks,
//! reading them back from the store), so the FUSE threads never wait on a chunk.
//!
//! A job that panics is caught and logged; its worker carries on, so the pool stays at full
//! strength. (Jobs that owe answers to waiters complete them through guards that answer on
//! unwinding — see `util::single_flight` — so a panic never leaves a request hanging.)

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

pub struct WorkPool {
    tx: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl WorkPool {
    pub fn new(name: &str, threads: usize) -> Self {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let handles = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || work(&rx))
                    .expect("spawning a worker thread")
            })
            .collect();
        WorkPool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(handles),
        }
    }

    /// Runs `job` on a worker; after `shutdown`, runs it on the caller's thread.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let rejected = match self.tx.lock().unwrap().as_ref() {
            Some(tx) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(job) = rejected {
            job();
        }
    }

    /// Finishes the queued jobs and joins the workers.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap().take();
        for t in self.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match job {
            Ok(job) => {
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
                    tracing::error!(
                        "a job on {} panicked: {}",
                        std::thread::current().name().unwrap_or("a worker"),
                        crate::util::panic_message(&panic)
                    );
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_job_leaves_the_pool_at_full_strength() {
        let pool = WorkPool::new("t", 2);
        for _ in 0..4 {
            pool.spawn(|| panic!("boom"));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..8 {
            let tx = tx.clone();
            pool.spawn(move || {
                tx.send((i, std::thread::current().name().map(String::from)))
                    .unwrap()
            });
        }
        let mut got: Vec<_> = (0..8).map(|_| rx.recv().unwrap()).collect();
        got.sort();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
        assert!(
            got.iter()
                .all(|g| g.1.as_deref().is_some_and(|n| n.starts_with("t-"))),
            "{got:?}"
        );
        pool.shutdown();
    }
}
