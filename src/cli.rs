//! The command line: a thin layer over the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::bands::Resolution;
use crate::fixture::{FixtureSize, FixtureSpec};

#[derive(Parser)]
#[command(
    name = "datacube",
    version,
    about = "A virtual Sentinel-2 L1C datacube (Zarr v3) over SAFE archives or CDSE"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic SAFE archive (real layout, real JP2 encoding, formula values) and STAC items.
    #[command(
        after_help = "Example:\n  datacube fixture --out /tmp/archive --year 2024 --scenes 8 --size mini"
    )]
    Fixture {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "35VLH")]
        tile: String,
        #[arg(long, default_value_t = 32635)]
        epsg: u32,
        #[arg(long, default_value_t = 300000.0)]
        ulx: f64,
        #[arg(long, default_value_t = 6800040.0)]
        uly: f64,
        #[arg(long, default_value_t = 2024)]
        year: i32,
        /// Distinct acquisitions on the time axis (a reprocessed duplicate comes on top).
        #[arg(long, default_value_t = 8)]
        scenes: usize,
        #[arg(long, value_enum, default_value = "mini")]
        size: FixtureSize,
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
    },
    /// Convert a tile-year (or a date range of it) into a Zarr v3 directory store, resumably.
    #[command(
        after_help = "Examples:\n  datacube intake --source safe:/data/archive --store /data/cube.zarr --tile 35VLH --year 2024\n  datacube intake --source cdse --store s3://cubes/finland --store-endpoint https://a3s.fi --store-profile allas --tile 35VLH --year 2024"
    )]
    Intake {
        /// safe:DIR (a local SAFE archive with the CDSE layout) or cdse
        #[arg(long)]
        source: String,
        /// Store: a directory or s3://bucket/prefix
        #[arg(long)]
        store: String,
        #[command(flatten)]
        cdse: CdseArgs,
        #[command(flatten)]
        store_args: StoreArgs,
        #[arg(long)]
        tile: String,
        #[arg(long)]
        year: i32,
        /// First day (YYYY-MM-DD) whose time chunks are converted
        #[arg(long)]
        start: Option<chrono::NaiveDate>,
        /// Last day (YYYY-MM-DD) whose time chunks are converted
        #[arg(long)]
        end: Option<chrono::NaiveDate>,
        /// Resolution groups to convert
        #[arg(long, value_delimiter = ',', default_value = "10m,20m,60m")]
        resolutions: Vec<Resolution>,
        /// Cap of the decoded JP2 tile cache (e.g. 2GiB, 512MiB)
        #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
        memory: u64,
        /// Worker threads (default: all cores)
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
        #[arg(long)]
        no_progress: bool,
    },
    /// Show scenes and chunk counts (materialized, empty, missing) per tile, year and resolution.
    Info {
        /// A directory or s3://bucket/prefix
        store: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store_args: StoreArgs,
    },
    /// Mount the virtual datacube: TILE/YEAR/{10m,20m,60m} Zarr v3 groups whose chunks are
    /// computed on first read and written back to the store.
    #[command(after_help = "\
Runs in the foreground until unmounted (fusermount3 -u MOUNTPOINT) or stopped with Ctrl-C /
SIGTERM, which unmount cleanly and write every computed chunk to the store before exiting.
Run it in the background with your service manager, `nohup ... &` or tmux.

Examples:
  datacube mount /mnt/cube --store /data/cube.zarr --source safe:/data/archive --tiles 35VLH --years 2024
  datacube mount /mnt/cube --store /data/cube.zarr --source safe:/data/archive --cache-size 8GiB
  datacube mount /mnt/cube --store s3://cubes/finland --source cdse --years 2024
  RUST_LOG=datacube=debug datacube mount /mnt/cube --store ... --source ...

Then, e.g. in Python:
  xr.open_zarr('/mnt/cube/35VLH/2024/10m', consolidated=True)
Live counters: cat /mnt/cube/.datacube/stats.json")]
    Mount {
        mountpoint: PathBuf,
        /// Persistent Zarr store, a directory or s3://bucket/prefix (computed chunks are written
        /// back here)
        #[arg(long)]
        store: String,
        /// safe:DIR (a local SAFE archive with the CDSE layout) or cdse
        #[arg(long)]
        source: String,
        #[command(flatten)]
        cdse: CdseArgs,
        #[command(flatten)]
        store_args: StoreArgs,
        /// Memory for caches: encoded chunks (3/4) and decoded JP2 tiles (1/4, at most 1 GiB)
        #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
        cache_size: u64,
        /// MGRS tiles and tile sets, comma-separated (e.g. 35VLH,35VLJ or finland)
        #[arg(long, default_value = "finland")]
        tiles: String,
        /// Years: 2016..2025 (inclusive), 2024, or 2023,2024
        #[arg(long, default_value = "2015..2026", value_parser = parse_years)]
        years: Years,
        /// Decode threads and concurrent materializations (default: all cores)
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
        /// Threads serving FUSE requests
        #[arg(long, value_parser = positive::<usize>(), default_value_t = 4)]
        fuse_threads: usize,
        /// Let other users read the mount (needs user_allow_other in /etc/fuse.conf unless root)
        #[arg(long)]
        allow_other: bool,
        /// Stay in the foreground (the default; accepted for mount-s3 habits)
        #[arg(long)]
        foreground: bool,
        /// Test hook: pause before each writeback batch, in milliseconds
        #[arg(long, hide = true, default_value_t = 0)]
        writeback_delay_ms: u64,
    },
    /// The patch time-series benchmark: the same random patches (all 13 bands, all times) read by
    /// every target; durations, bytes, files, CDSE projections; JSON, markdown and a PNG chart.
    #[command(after_help = "\
Targets: mount-cold (fresh mount over an empty store; page cache dropped when root), mount-warm
(mount over --store), store (zarrs on --store), safe (GDAL windows of the band JP2s: the decode
floor), cog (GDAL windows of the COGs of `datacube convert cog`), xarray (xarray + dask open_zarr
on --store, in the venv's Python). --store must hold the tile-year (`datacube intake`).

Example:
  datacube intake --source safe:/data/archive --store /data/cube.zarr --tile 35VLH --year 2024
  datacube convert cog --source safe:/data/archive --out /data/cogs --tile 35VLH --year 2024
  datacube bench --source safe:/data/archive --store /data/cube.zarr --cog /data/cogs \\
    --tile 35VLH --year 2024 --patches 20 --targets mount-cold,mount-warm,store,safe,cog,xarray --out results")]
    Bench {
        #[arg(long)]
        tile: String,
        #[arg(long)]
        year: i32,
        #[arg(long, value_parser = positive::<usize>(), default_value_t = 10)]
        patches: usize,
        /// Patch side in metres (a multiple of 60)
        #[arg(long, default_value_t = 5100)]
        patch_size: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "mount-cold,mount-warm,store,safe,cog"
        )]
        targets: Vec<crate::bench::run::Target>,
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// safe:DIR
        #[arg(long)]
        source: String,
        /// Store directory holding the tile-year
        #[arg(long)]
        store: PathBuf,
        /// COG directory (target cog)
        #[arg(long)]
        cog: Option<PathBuf>,
        /// Counted repeats (after one warm-up repeat)
        #[arg(long, value_parser = positive::<usize>(), default_value_t = 3)]
        repeats: usize,
        /// The mount's --cache-size (mount targets)
        #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
        cache_size: u64,
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
        /// Python with xarray, zarr and dask (target xarray)
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
        #[arg(long)]
        no_progress: bool,
    },
    /// Benchmark patch time-series reads through a real mount: cold (vs the decode floor), warm
    /// (vs the store read directly) and the daemon's memory under concurrent readers.
    #[command(
        after_help = "Example:\n  datacube bench-mount --source safe:/data/archive --tile 35VLH --year 2024 --work /tmp/bench"
    )]
    BenchMount {
        #[arg(long)]
        source: String,
        #[arg(long)]
        tile: String,
        #[arg(long)]
        year: i32,
        /// Scratch directory (its store is emptied first; the mount point is WORK/mnt)
        #[arg(long)]
        work: PathBuf,
        #[arg(long, value_parser = positive::<usize>(), default_value_t = 8)]
        patches: usize,
        #[arg(long, default_value_t = 5100)]
        patch_size: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
        cache_size: u64,
        /// Warm repeats (after one uncounted warm-up)
        #[arg(long, value_parser = positive::<usize>(), default_value_t = 5)]
        repeats: usize,
        /// Concurrent readers in the memory phase
        #[arg(long, default_value_t = 16)]
        readers: usize,
        #[arg(long, value_parser = positive::<usize>(), default_value_t = 1)]
        patches_per_reader: usize,
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
        /// Write the JSON report here too
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Convert a tile-year into another format (for comparison benchmarks).
    Convert {
        #[command(subcommand)]
        to: ConvertTo,
    },
    /// Print a named set of MGRS tiles (finland: the 77 tiles covering Finland and its seas).
    Tiles { set: String },
    /// Benchmark intake against the decode floor (GDAL decoding every band JP2 fully, same threads).
    BenchIntake {
        #[arg(long)]
        source: String,
        #[arg(long)]
        tile: String,
        #[arg(long)]
        year: i32,
        /// Scratch store directory (emptied first)
        #[arg(long)]
        store: PathBuf,
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
        #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
        memory: u64,
    },
}

/// How to reach CDSE, for `--source cdse` (ignored for `safe:DIR`).
#[derive(clap::Args, Debug, Clone)]
struct CdseArgs {
    /// STAC API root (CDSE STAC v1, or an emulation of it)
    #[arg(long, default_value = crate::stac::client::CDSE_STAC_URL)]
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
    /// Where downloaded band and metadata files are kept [default: ~/.cache/datacube/eodata]
    #[arg(long)]
    source_cache: Option<PathBuf>,
    /// Cap of the source cache on disk
    #[arg(long, default_value = "32GiB", value_parser = parse_bytes)]
    source_cache_size: u64,
    /// Retries of a failed STAC or S3 request (exponential backoff with jitter)
    #[arg(long, default_value_t = 6)]
    retries: usize,
    /// Test hook: first retry delay in milliseconds
    #[arg(long, hide = true, default_value_t = 500)]
    retry_delay_ms: u64,
}

impl CdseArgs {
    fn options(&self) -> crate::source::CdseOptions {
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
            cache_dir: self.source_cache.clone().unwrap_or(d.cache_dir),
            cache_bytes: self.source_cache_size,
            retry: crate::remote::retry::RetryPolicy {
                max_retries: self.retries,
                min_delay: std::time::Duration::from_millis(self.retry_delay_ms),
                max_delay: std::time::Duration::from_millis(self.retry_delay_ms.max(1) * 60),
            },
            ..d
        }
    }
}

/// How to reach an `s3://bucket/prefix` store (ignored for a directory).
#[derive(clap::Args, Debug, Clone)]
struct StoreArgs {
    /// AWS profile for an s3:// store (default: the AWS_* environment / default profile)
    #[arg(long)]
    store_profile: Option<String>,
    /// S3 endpoint for an s3:// store (e.g. https://a3s.fi for CSC Allas)
    #[arg(long)]
    store_endpoint: Option<String>,
}

impl StoreArgs {
    fn open(&self, spec: &str) -> Result<Box<dyn crate::store::Store>> {
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

#[derive(Subcommand)]
enum ConvertTo {
    /// One Cloud-Optimized GeoTIFF per scene and resolution (that resolution's bands stacked;
    /// DEFLATE, 512×512 blocks, overviews, band names and wavelengths): OUT/TILE/YEAR/RES/PRODUCT.tif
    #[command(
        after_help = "Example:\n  datacube convert cog --source safe:/data/archive --out /data/cogs --tile 35VLH --year 2024"
    )]
    Cog {
        #[arg(long)]
        source: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        tile: String,
        #[arg(long)]
        year: i32,
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
    },
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
fn limit_malloc_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before the worker threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// `RUST_LOG` (default `info`), except that the AWS SDK never logs below `warn`: at `info` and
/// below it prints access key ids and signing details, and credentials never go to a log.
fn log_filter() -> tracing_subscriber::EnvFilter {
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

fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("configuring threads")?;
    }
    Ok(())
}

pub fn main() -> Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    crate::raster::configure_gdal();
    let cli = Cli::parse();
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match cli.command {
        Command::Fixture {
            out,
            tile,
            epsg,
            ulx,
            uly,
            year,
            scenes,
            size,
            threads,
        } => {
            set_threads(threads)?;
            let spec = FixtureSpec {
                tile,
                epsg,
                ulx,
                uly,
                year,
                scenes,
                size,
            };
            let s = crate::fixture::write_archive(&spec, &out, interactive)?;
            println!(
                "fixture {}: {} products written, {} already present ({} scenes + duplicates, {} px at 10 m)",
                out.display(),
                s.products_written,
                s.products_skipped,
                spec.scenes,
                spec.size.pixels_10m()
            );
        }
        Command::Intake {
            source,
            store,
            tile,
            year,
            start,
            end,
            resolutions,
            memory,
            threads,
            no_progress,
            cdse,
            store_args,
        } => {
            set_threads(threads)?;
            let src = crate::source::open(&source, &cdse.options())?;
            let st = store_args.open(&store)?;
            let opts = crate::intake::IntakeOptions {
                tile,
                year,
                start,
                end,
                resolutions,
                memory_bytes: memory as usize,
                progress: interactive && !no_progress,
            };
            let r = crate::intake::intake(st.as_ref(), src.as_ref(), &opts)?;
            print_intake(&r);
            if !r.errors.is_empty() {
                return Ok(std::process::ExitCode::from(1));
            }
        }
        Command::Info {
            store,
            json,
            store_args,
        } => {
            quiet_on_closed_pipe();
            let st = store_args.open(&store)?;
            let rows = crate::info::info(st.as_ref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", crate::info::table(&rows));
            }
        }
        Command::Mount {
            mountpoint,
            store,
            source,
            cache_size,
            tiles,
            years,
            threads,
            fuse_threads,
            allow_other,
            foreground: _,
            writeback_delay_ms,
            cdse,
            store_args,
        } => {
            set_threads(threads)?;
            log_panics_in_one_line();
            let workers = threads.unwrap_or_else(rayon::current_num_threads).max(2);
            let (chunk_cache_bytes, decode_cache_bytes) =
                crate::fs::CubeConfig::split_budget(cache_size as usize, workers);
            limit_malloc_retention();
            let cfg = crate::fs::CubeConfig {
                tiles: crate::tiles::parse_tiles(&tiles)?,
                years: years.0,
                chunk_cache_bytes,
                decode_cache_bytes,
                workers,
                writeback: crate::writeback::Limits {
                    batch_delay: std::time::Duration::from_millis(writeback_delay_ms),
                    // Queued chunks are usually still in the chunk cache; those evicted meanwhile
                    // are extra, so the queue stays small next to the budget.
                    max_bytes: (cache_size as usize / 8).clamp(64 << 20, 256 << 20),
                    ..Default::default()
                },
            };
            let src: std::sync::Arc<dyn crate::source::BandSource> =
                crate::source::open(&source, &cdse.options())?.into();
            let st: std::sync::Arc<dyn crate::store::Store> = store_args.open(&store)?.into();
            let cube = crate::fs::Cube::new(cfg, st, src)?;
            crate::fs::serve(
                cube,
                &crate::fs::MountOptions {
                    mountpoint,
                    fuse_threads,
                    allow_other,
                },
            )?;
        }
        Command::Bench {
            tile,
            year,
            patches,
            patch_size,
            seed,
            targets,
            out,
            source,
            store,
            cog,
            repeats,
            cache_size,
            threads,
            python,
            no_progress,
        } => {
            set_threads(threads)?;
            let src = crate::source::open(&source, &Default::default())?;
            let opts = crate::bench::run::Options {
                source,
                store: std::path::absolute(&store)?,
                cog,
                tile,
                year,
                patches,
                patch_size_m: patch_size,
                seed,
                repeats,
                targets,
                out: std::path::absolute(&out)?,
                cache_size,
                threads: rayon::current_num_threads(),
                python,
                progress: interactive && !no_progress,
            };
            let r = crate::bench::run::run(&opts, src.as_ref())?;
            crate::bench::report::write_all(&r, &opts.out)?;
            println!("{}", crate::bench::report::markdown(&r));
            println!(
                "results: {0}/bench.json, {0}/bench.md, {0}/bench.png",
                opts.out.display()
            );
            if !r.checksums_agree {
                anyhow::bail!("targets returned different arrays (see the errors above)");
            }
        }
        Command::BenchMount {
            source,
            tile,
            year,
            work,
            patches,
            patch_size,
            seed,
            cache_size,
            repeats,
            readers,
            patches_per_reader,
            threads,
            out,
        } => {
            set_threads(threads)?;
            let src = crate::source::open(&source, &Default::default())?;
            std::fs::create_dir_all(&work)?;
            let opts = crate::bench::mount::Options {
                source,
                tile,
                year,
                work: std::path::absolute(&work)?,
                patches,
                patch_size_m: patch_size,
                seed,
                cache_size,
                repeats,
                readers,
                patches_per_reader,
                threads: rayon::current_num_threads(),
            };
            let r = crate::bench::mount::run(&opts, src.as_ref())?;
            let json = serde_json::to_string_pretty(&r)?;
            if let Some(out) = out {
                std::fs::write(out, &json)?;
            }
            println!("{json}");
            println!("{}", crate::bench::mount::markdown(&r));
            if !r.checksums_agree {
                anyhow::bail!("readers disagree with the decode floor: see the report");
            }
        }
        Command::Convert {
            to:
                ConvertTo::Cog {
                    source,
                    out,
                    tile,
                    year,
                    threads,
                },
        } => {
            set_threads(threads)?;
            let src = crate::source::open(&source, &Default::default())?;
            let r = crate::convert::convert_cog(src.as_ref(), &out, &tile, year)?;
            println!(
                "convert cog: {} scenes; {} COGs written ({:.1} MiB), {} already present; {:.1} s",
                r.scenes,
                r.written,
                r.bytes_written as f64 / (1 << 20) as f64,
                r.skipped,
                r.seconds
            );
            if !r.errors.is_empty() {
                for e in &r.errors {
                    eprintln!("  {e}");
                }
                return Ok(std::process::ExitCode::from(1));
            }
        }
        Command::Tiles { set } => {
            quiet_on_closed_pipe();
            let tiles = crate::tiles::named_set(&set)
                .with_context(|| format!("unknown tile set {set:?} (known: finland)"))?;
            println!("{}", tiles.join(" "));
        }
        Command::BenchIntake {
            source,
            tile,
            year,
            store,
            threads,
            memory,
        } => {
            set_threads(threads)?;
            let src = crate::source::open(&source, &Default::default())?;
            let r = crate::intake::bench::run(src.as_ref(), &tile, year, &store, memory as usize)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_intake(r: &crate::intake::IntakeReport) {
    println!(
        "intake: {} scenes ({} appended, {} late, {} superseded duplicates dropped); chunks: {} written, {} empty, {} already done, of {}; {:.1} MiB in {:.1} s; {} JP2 tiles decoded",
        r.scenes,
        r.merge.appended,
        r.merge.late.len(),
        r.superseded.len(),
        r.chunks_written,
        r.chunks_empty,
        r.chunks_skipped,
        r.chunks_total,
        r.bytes_written as f64 / (1 << 20) as f64,
        r.seconds,
        r.decodes
    );
    for id in &r.merge.newer_baseline {
        println!("note: {id} is a newer baseline of a scene already on the time axis; the axis keeps the original");
    }
    if !r.errors.is_empty() {
        eprintln!(
            "{} error(s); the affected chunks were not written (rerun after fixing the input):",
            r.errors.len()
        );
        for e in &r.errors {
            eprintln!("  {e}");
        }
    }
}

/// Lets a closed stdout end the process quietly, as command-line tools do (`datacube info | head`),
/// instead of a panic in `println!`. Only for commands that print; the daemon keeps ignoring
/// SIGPIPE.
fn quiet_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal before any output; no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A count of at least 1 (a zero is rejected with clap's own message, never silently clamped).
fn positive<T>() -> clap::builder::RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::fmt::Display,
{
    clap::builder::RangedU64ValueParser::<T>::new().range(1..)
}

/// A STAC page size: 1 to 1000 (the API's maximum).
fn stac_limit() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000)
}

/// The daemon catches panics (a failed chunk answers EIO); this makes each one a single log line
/// instead of the default multi-line report on stderr.
fn log_panics_in_one_line() {
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
