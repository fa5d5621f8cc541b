//! What the network-facing backends share: one tokio runtime for the synchronous pipeline to block
//! on, the retry policy (exponential backoff with jitter, `Retry-After` honoured) and the request
//! limits CDSE's quotas impose. Only the network-facing backends (STAC client, S3 and HTTPS sources, S3 store) use this.

pub mod http;
pub mod limits;
pub mod retry;
pub mod s3;

use std::sync::OnceLock;
use std::time::Duration;

/// Makes rustls over ring the process's TLS provider (once; every HTTPS client of datacube uses
/// rustls, and the S3 client is given ring explicitly). Tests that build their own HTTP clients
/// (object_store) call it too.
pub fn install_tls() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Err: a provider is installed already (by the embedding program): use that one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The HTTP client settings of every datacube HTTP client (STAC, HTTPS sources).
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    install_tls();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("datacube/", env!("CARGO_PKG_VERSION")))
        .build()
}

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
