//! Command-line pieces shared by `datacube` and `datacube-tools`: how to reach CDSE and an S3
//! store, value parsers that reject bad values (never clamp them), logging and thread setup.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// How to reach CDSE, for `--source cdse` (ignored for `safe:DIR`).
#[derive(clap::Args, Debug, Clone)]
pub struct CdseArgs {
    /// STAC API root (CDSE STAC v1, or an emulation of it)
    #[arg(long, default_value = crate::s2::stac::client::CDSE_STAC_URL)]
    stac_url: String,
    /// S3 endpoint of the eodata bucket (default: the profile's endpoint_url or AWS_ENDPOINT_URL)
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// AWS profile with the CDSE S3 credentials (~/.aws/config, ~/.aws/credentials); the AWS_*
    /// environment variables take precedence
    #[arg(long, default_value = "cdse")]
    profile: String,
    /// Concurrent S3 requests, at most (CDSE allows 4 connections per account)
    #[arg(long, value_parser = positive::<usize>(), default_value_t = 4)]
    max_connections: usize,
    /// S3 requests per minute, at most (CDSE allows 2000)
    #[arg(long, value_parser = positive::<u32>(), default_value_t = 2000)]
    max_requests_per_minute: u32,
    /// Search STAC one UTC day at a time
    #[arg(long)]
    per_day: bool,
    /// STAC page size (at most 1000)
    #[arg(long, value_parser = stac_limit(), default_value_t = 1000)]
    stac_limit: usize,
    /// Where downloaded band and metadata files (Sentinel-2) and byte ranges of remote files
    /// (Sentinel-1 GeoTIFFs) are kept [default: ~/.cache/datacube/eodata]
    #[arg(long)]
    source_cache: Option<PathBuf>,
    /// Cap of the source cache on disk [default: room for a tile-year's band files where the
    /// disk allows: the smaller of 128 GiB and half the free space of its filesystem]
    #[arg(long, value_parser = parse_bytes)]
    source_cache_size: Option<u64>,
    /// Retries of a failed STAC or S3 request (exponential backoff with jitter)
    #[arg(long, default_value_t = 6)]
    retries: usize,
    /// How band files are fetched: auto (per file, the JPEG 2000 tile-parts a read needs or the
    /// whole file, whichever costs less under the quotas), ranges (always tile-parts) or whole
    #[arg(long, value_enum, default_value = "auto")]
    fetch: crate::source::FetchMode,
}

impl CdseArgs {
    pub fn options(&self) -> crate::source::CdseOptions {
        let d = crate::source::CdseOptions::default();
        crate::source::CdseOptions {
            stac_url: self.stac_url.clone(),
            s3: crate::remote::s3::S3Options {
                profile: Some(self.profile.clone()),
                endpoint: self.s3_endpoint.clone(),
                region: Some("default".into()),
            },
            max_connections: self.max_connections,
            max_requests_per_minute: self.max_requests_per_minute,
            per_day: self.per_day,
            stac_limit: self.stac_limit,
            cache_bytes: self.source_cache_size.unwrap_or_else(|| {
                crate::source::disk_cache::default_capacity(
                    self.source_cache.as_deref().unwrap_or(&d.cache_dir),
                )
            }),
            cache_dir: self.source_cache.clone().unwrap_or(d.cache_dir),
            fetch: self.fetch,
            retry: {
                // Test hook (environment, not a flag): a shorter first retry delay.
                let first = test_hook_ms("DATACUBE_TEST_RETRY_DELAY_MS").unwrap_or(500);
                crate::remote::retry::RetryPolicy {
                    max_retries: self.retries,
                    min_delay: std::time::Duration::from_millis(first),
                    max_delay: std::time::Duration::from_millis(first.max(1) * 60),
                }
            },
            ..d
        }
    }
}

/// How to reach an `s3://bucket/prefix` store (ignored for a directory).
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// AWS profile for an s3:// store (default: the AWS_* environment / default profile)
    #[arg(long)]
    store_profile: Option<String>,
    /// S3 endpoint for an s3:// store (e.g. https://a3s.fi for CSC Allas)
    #[arg(long)]
    store_endpoint: Option<String>,
}

impl StoreArgs {
    pub fn open(&self, spec: &str) -> Result<Box<dyn crate::store::Store>> {
        crate::store::open(
            spec,
            &crate::remote::s3::S3Options {
                profile: self.store_profile.clone(),
                endpoint: self.store_endpoint.clone(),
                region: None,
            },
        )
    }
}

/// Parses `2GiB`, `512MiB`, `1.5G`, `1000000`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    Ok((n * mult as f64) as u64)
}

/// Sorted distinct years.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Years(pub Vec<i32>);

/// Parses `2016..2025` (inclusive), `2024` or `2023,2024`.
pub fn parse_years(s: &str) -> Result<Years, String> {
    let bad = || format!("invalid years {s:?} (use 2016..2025, 2024 or 2023,2024)");
    let mut years = Vec::new();
    for part in s.split(',').map(str::trim) {
        if let Some((a, b)) = part.split_once("..") {
            let a: i32 = a.trim().parse().map_err(|_| bad())?;
            let b: i32 = b.trim().parse().map_err(|_| bad())?;
            if a > b || b - a > 100 {
                return Err(bad());
            }
            years.extend(a..=b);
        } else {
            years.push(part.parse().map_err(|_| bad())?);
        }
    }
    if years.iter().any(|y| !(1000..=9999).contains(y)) {
        return Err(bad());
    }
    years.sort();
    years.dedup();
    Ok(Years(years))
}

/// Large buffers (chunks, decoded JP2 tiles) are allocated and freed all the time, from many
/// threads; with glibc's adaptive mmap threshold they end up in heap arenas that keep freed memory.
/// A fixed 1 MiB threshold maps them individually and returns them on free, so the daemon's RSS
/// follows what it really holds.
pub fn limit_malloc_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before the worker threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// `RUST_LOG` (default `info`), except that the AWS SDK never logs below `warn`: at `info` and
/// below it prints access key ids and signing details, and credentials never go to a log.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut f =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    for target in [
        "aws_config",
        "aws_credential_types",
        "aws_runtime",
        "aws_sdk_s3",
        "aws_sigv4",
        "aws_smithy_runtime",
        "aws_smithy_runtime_api",
        "aws_smithy_http_client",
        "aws_smithy_types",
    ] {
        f = f.add_directive(format!("{target}=warn").parse().expect("valid directive"));
    }
    f
}

pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("configuring threads")?;
    }
    Ok(())
}

/// Sets up logging to stderr (plain text when it is not a terminal) and GDAL.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    crate::raster::configure_gdal();
}

/// `init`, with the logs appended to `log_file` (plain text) instead of stderr when given.
pub fn init_logging(log_file: Option<&std::path::Path>) -> Result<()> {
    let Some(path) = log_file else {
        init();
        return Ok(());
    };
    let f = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("--log-file {}", path.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::sync::Mutex::new(f))
        .with_ansi(false)
        .init();
    crate::raster::configure_gdal();
    Ok(())
}

/// The FUSE configuration `--allow-other` needs as a user: `/etc/fuse.conf`, or the file named
/// by `DATACUBE_TEST_FUSE_CONF` (a test hook, so tests need not edit the machine's).
pub fn fuse_conf() -> PathBuf {
    std::env::var_os("DATACUBE_TEST_FUSE_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/fuse.conf"))
}

/// Whether progress bars make sense (stderr is a terminal).
pub fn interactive() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// A millisecond test hook from the environment (tests slow or speed up the daemon through these,
/// so the command line shows users only what is theirs).
/// The consistency protocol's timing: a minute of grace, or `DATACUBE_TEST_GRACE_MS` (a test hook
/// that lets tests run the protocol in seconds).
pub fn fence() -> crate::generation::Fence {
    match test_hook_ms("DATACUBE_TEST_GRACE_MS") {
        Some(ms) => crate::generation::Fence {
            grace: std::time::Duration::from_millis(ms),
        },
        None => crate::generation::Fence::default(),
    }
}

/// `--refresh`: `off`, or a duration like `90s`, `15m`, `1h`, `2d` (a bare number is seconds).
pub fn parse_refresh(s: &str) -> Result<crate::fs::refresh::RefreshPolicy, String> {
    use crate::fs::refresh::RefreshPolicy;
    let s = s.trim();
    if s == "off" || s == "never" {
        return Ok(RefreshPolicy::off());
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected off or a duration like 90s, 15m, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        "ms" => {
            return (n > 0)
                .then(|| RefreshPolicy::every(std::time::Duration::from_millis(n)))
                .ok_or_else(|| "the refresh period must be positive (or off)".to_string())
        }
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    if secs == 0 {
        return Err("the refresh period must be positive (or off)".into());
    }
    Ok(RefreshPolicy::every(std::time::Duration::from_secs(secs)))
}

pub fn test_hook_ms(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.parse().ok())
}

/// Lets a closed stdout end the process quietly, as command-line tools do (`datacube info | head`),
/// instead of a panic in `println!`. Only for commands that print; the daemon keeps ignoring
/// SIGPIPE.
pub fn quiet_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal before any output; no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A count of at least 1 (a zero is rejected with clap's own message, never silently clamped).
pub fn positive<T>() -> clap::builder::RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::fmt::Display,
{
    clap::builder::RangedU64ValueParser::<T>::new().range(1..)
}

/// A STAC page size: 1 to 1000 (the API's maximum).
pub fn stac_limit() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000)
}

/// The daemon catches panics (a failed chunk answers EIO); this makes each one a single log line
/// instead of the default multi-line report on stderr.
pub fn log_panics_in_one_line() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            "panic on thread {} at {at}: {}",
            thread.name().unwrap_or("?"),
            msg.replace('\n', " ")
        );
    }));
}
