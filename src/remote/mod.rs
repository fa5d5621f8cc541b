//! What the network-facing backends share: one tokio runtime for the synchronous pipeline to block
//! on, the retry policy (exponential backoff with jitter, `Retry-After` honoured) and the request
//! limits CDSE's quotas impose. Only the network-facing backends (STAC client, S3 and HTTPS sources, S3 store) use this.

pub mod http;
pub mod limits;
pub mod retry;
pub mod s3;

use std::sync::OnceLock;

/// The process-wide runtime the blocking callers (rayon workers, FUSE workers, intake) block on.
/// Two worker threads are plenty: the work is waiting on sockets, and the cores decode JP2s.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("datacube-io")
            .enable_all()
            .build()
            .expect("starting the I/O runtime")
    })
}

/// Runs a future to completion from synchronous code (never from inside the runtime).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// An error and its causes on one line (HTTP clients put the useful part, e.g. "connection
/// refused", several sources deep).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
