//! The command line of `datacube-tools` (also reached as `datacube fixture|bench|bench-mount|
//! bench-intake|convert`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::fixture::{FixtureSize, FixtureSpec};
use datacube::cli::args::{self, parse_bytes, positive};
use datacube::s2::product::ProductLevel;

#[derive(Parser)]
#[command(
    name = "datacube-tools",
    version,
    about = "datacube's benchmark, synthetic SAFE fixture writer and COG conversion"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic SAFE archive (real layout, real JP2 encoding, formula values) and STAC items.
    #[command(
        after_help = "Examples:\n  datacube fixture --out /tmp/archive --year 2024 --scenes 8 --size mini\n  datacube fixture --collection sentinel-2-l2a --out /tmp/archive --scenes 8 --size mini"
    )]
    Fixture {
        #[arg(long)]
        out: PathBuf,
        /// sentinel-2-l1c or sentinel-2-l2a (a SAFE archive of that level and its STAC items),
        /// or sentinel-1-sig0 (an EODC mirror: GeoTIFFs and STAC items of two Equi7 tiles in
        /// 2024; --tile, --epsg, --ulx, --uly, --year, --scenes, --size and --tlm apply to
        /// Sentinel-2 only)
        #[arg(long, default_value = "sentinel-2-l1c")]
        collection: datacube::registry::Collection,
        /// sentinel-1-sig0: days with one small slice added after the fixed ones (beyond 27
        /// they make a second 30-day time chunk)
        #[arg(long, default_value_t = 30)]
        extra_days: u32,
        /// sentinel-1-sig0: the benchmark's variant, whose first day covers the western tile
        /// (large files, ~1 GB)
        #[arg(long)]
        dense: bool,
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
        /// Every product's band files carry TLM markers (as CDSE's since February 2026)
        #[arg(long, conflicts_with = "tlm_since")]
        tlm: bool,
        /// Only products sensed on or after this date (YYYY-MM-DD) carry TLM markers: a mixed
        /// archive, older products without, newer with
        #[arg(long)]
        tlm_since: Option<chrono::NaiveDate>,
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
    },
    /// The patch time-series benchmark: the same random patches (all the level's bands, all times;
    /// L2A: and the 10 m SCL) read by every target; durations, bytes, files, CDSE projections;
    /// JSON, markdown and a PNG chart.
    #[command(after_help = "\
Targets: mount-cold (fresh mount over an empty store; page cache dropped when root), mount-warm
(mount over --store), store (zarrs on --store), safe (GDAL windows of the band JP2s: the decode
floor), cog (GDAL windows of the COGs of `datacube convert cog`), xarray (xarray + dask open_zarr
on --store, in the venv's Python), loader (a training loader: for each N of --workers, N worker
processes, each reading --patches random patches per round, through a warm mount over --store
and from --store, alternating; patches/s of both, their ratio, the daemon's RSS). --store must
hold the tile-year (`datacube intake`).

--collection sentinel-2-l2a: a patch is the three `data` groups (12 bands) and `10m/scl`; the
floor reads the band files' windows and the SCL file's 20 m window (repeated 2 × 2); the mounts
run with --collection sentinel-2-l2a; cog is not available (L1C only).

Example:
  datacube intake --source safe:/data/archive --store /data/cube.zarr --tile 35VLH --year 2024
  datacube convert cog --source safe:/data/archive --out /data/cogs --tile 35VLH --year 2024
  datacube bench --source safe:/data/archive --store /data/cube.zarr --cog /data/cogs \\
    --tile 35VLH --year 2024 --patches 20 --targets mount-cold,mount-warm,store,safe,cog,xarray --out results")]
    Bench {
        #[command(flatten)]
        target: Target,
        /// sentinel-2-l1c or sentinel-2-l2a (--store holds that collection); or sentinel-1-sig0:
        /// the S1 measurements (intake against its floor; patches through a cold and a warm mount
        /// against the store), on --source for --tile/--year; --store, --cog, --targets,
        /// --repeats and --patch-size do not apply
        #[arg(long, default_value = "sentinel-2-l1c")]
        collection: datacube::registry::Collection,
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
        /// Store directory holding the tile-year (Sentinel-2)
        #[arg(
            long,
            required_if_eq_any([("collection", "sentinel-2-l1c"), ("collection", "sentinel-2-l2a")])
        )]
        store: Option<PathBuf>,
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
        /// Target loader: the numbers of worker processes to measure (each reads --patches
        /// patches per round)
        #[arg(long, value_delimiter = ',', default_value = "1,4,16", value_parser = positive::<usize>())]
        workers: Vec<usize>,
    },
    /// A worker of the bench's loader target (jobs on stdin, answers on stdout; started by
    /// `datacube bench --targets loader`).
    #[command(hide = true)]
    LoaderWorker,
    /// Benchmark patch time-series reads through a real mount: cold (vs the decode floor), warm
    /// (vs the store read directly) and the daemon's memory under concurrent readers.
    #[command(
        after_help = "Example:\n  datacube bench-mount --source safe:/data/archive --tile 35VLH --year 2024 --work /tmp/bench"
    )]
    BenchMount {
        #[command(flatten)]
        target: Target,
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
    /// Benchmark cold reads through a mount over (emulated) CDSE under its quotas, per --fetch
    /// mode: a 5.1 km patch time series (13 bands) and a 10 × 10 km B02/B03/B04 window, every
    /// scene, against the decode floor on a local copy of the archive.
    #[command(
        after_help = "Example (the emulator started with --quota, its AWS profile in the environment):\n  datacube bench-cold --archive full8 --stac-url http://127.0.0.1:PORT --tile 35VLH --year 2024 \\\n    --work /tmp/cold --server-log RUN_DIR/quota-requests.log"
    )]
    BenchCold {
        /// The archive the emulator serves, as a local SAFE directory (catalog and decode floor)
        #[arg(long)]
        archive: PathBuf,
        #[arg(long)]
        stac_url: String,
        #[arg(long)]
        s3_endpoint: Option<String>,
        /// More arguments for the mounts (repeatable), e.g. --mount-arg=--max-connections=4
        #[arg(long, allow_hyphen_values = true)]
        mount_arg: Vec<String>,
        #[arg(long, default_value = "35VLH")]
        tile: String,
        #[arg(long, default_value_t = 2024)]
        year: i32,
        /// Scratch directory (one store, source cache and mount point per run)
        #[arg(long)]
        work: PathBuf,
        /// --fetch modes to measure, in this order
        #[arg(long, value_delimiter = ',', default_value = "whole,ranges")]
        modes: Vec<String>,
        #[arg(long, default_value_t = 5100)]
        patch_size: u64,
        /// Side of the comparison job's window (metres, a multiple of 10)
        #[arg(long, default_value_t = 10000)]
        job_size: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
        cache_size: u64,
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
        /// The quota proxy's request log (RUN_DIR/quota-requests.log of scripts/emulate-cdse)
        #[arg(long)]
        server_log: Option<PathBuf>,
        /// Also read the windows without the mount (the CDSE source in this process, GDAL
        /// decoding exactly the windows)
        #[arg(long)]
        direct: bool,
        /// Write the JSON report here too
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Benchmark intake against the decode floor (GDAL decoding every band JP2 fully, same threads;
    /// L2A: and every SCL file).
    BenchIntake {
        #[command(flatten)]
        target: Target,
        /// sentinel-2-l1c or sentinel-2-l2a
        #[arg(long, default_value = "sentinel-2-l1c")]
        collection: datacube::registry::Collection,
        /// Scratch store directory (emptied first)
        #[arg(long)]
        store: PathBuf,
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
        #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
        memory: u64,
        /// The store's layout (chunked, sharded, sharded:SHARD/INNER; default: sharded)
        #[arg(long)]
        layout: Option<datacube::s2::chunking::Chunking>,
        /// Do not measure the decode floor (when comparing layouts, measure it once)
        #[arg(long)]
        skip_floor: bool,
    },
}

#[derive(Subcommand)]
enum ConvertTo {
    /// One Cloud-Optimized GeoTIFF per scene and resolution (that resolution's bands stacked;
    /// DEFLATE, 512×512 blocks, overviews, band names and wavelengths): OUT/TILE/YEAR/RES/PRODUCT.tif
    #[command(
        after_help = "Example:\n  datacube convert cog --source safe:/data/archive --out /data/cogs --tile 35VLH --year 2024"
    )]
    Cog {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_parser = positive::<usize>())]
        threads: Option<usize>,
    },
}

/// Prints a report as JSON (also written to `out`) and as markdown.
fn print_report(r: &impl serde::Serialize, out: Option<PathBuf>, markdown: &str) -> Result<()> {
    let json = serde_json::to_string_pretty(r)?;
    if let Some(out) = out {
        std::fs::write(&out, &json).with_context(|| out.display().to_string())?;
    }
    println!("{json}\n{markdown}");
    Ok(())
}

/// The Sentinel-2 level of a collection (for the tools that take either).
fn s2_level(c: datacube::registry::Collection) -> Result<ProductLevel> {
    match c {
        datacube::registry::Collection::Sentinel2L1c => Ok(ProductLevel::L1C),
        datacube::registry::Collection::Sentinel2L2a => Ok(ProductLevel::L2A),
        datacube::registry::Collection::Sentinel1Sig0 => {
            anyhow::bail!("--collection {c}: this command is for Sentinel-2 (L1C or L2A)")
        }
    }
}

/// Source options serving `level` (a `safe:DIR` source reads that level's products).
fn cdse_level(level: ProductLevel) -> datacube::source::CdseOptions {
    datacube::source::CdseOptions {
        level,
        ..Default::default()
    }
}

/// The tile-year a tool works on, and where its products come from.
#[derive(clap::Args)]
struct Target {
    /// safe:DIR (a local SAFE archive with the CDSE layout)
    #[arg(long)]
    source: String,
    #[arg(long)]
    tile: String,
    #[arg(long)]
    year: i32,
}

pub fn main() -> Result<std::process::ExitCode> {
    args::init();
    let cli = Cli::parse();
    let interactive = args::interactive();
    match cli.command {
        Command::Fixture {
            out,
            collection: datacube::registry::Collection::Sentinel1Sig0,
            extra_days,
            dense,
            threads,
            ..
        } => {
            args::set_threads(threads)?;
            let s = crate::fixture::s1::write_mirror_with(&out, extra_days, dense, interactive)?;
            println!(
                "fixture {} (sentinel-1-sig0): {} items, {} GeoTIFFs written, {} already present",
                out.display(),
                s.items,
                s.files_written,
                s.files_skipped
            );
        }
        Command::Fixture {
            out,
            collection,
            tile,
            epsg,
            ulx,
            uly,
            year,
            scenes,
            size,
            tlm,
            tlm_since,
            threads,
            ..
        } => {
            args::set_threads(threads)?;
            let tlm_since_ms = match (tlm, tlm_since) {
                (true, _) => Some(i64::MIN),
                (false, Some(d)) => Some(
                    d.and_hms_opt(0, 0, 0)
                        .expect("midnight")
                        .and_utc()
                        .timestamp_millis(),
                ),
                (false, None) => None,
            };
            let spec = FixtureSpec {
                tile,
                epsg,
                ulx,
                uly,
                year,
                scenes,
                size,
                tlm_since_ms,
            };
            let level = match collection {
                datacube::registry::Collection::Sentinel2L1c => ProductLevel::L1C,
                datacube::registry::Collection::Sentinel2L2a => ProductLevel::L2A,
                datacube::registry::Collection::Sentinel1Sig0 => unreachable!("matched above"),
            };
            let s = crate::fixture::write_level(&spec, level, &out, interactive)?;
            println!(
                "fixture {} ({}): {} products written, {} already present ({} scenes + duplicates, {} px at 10 m)",
                out.display(),
                level.stac_collection(),
                s.products_written,
                s.products_skipped,
                spec.scenes,
                spec.size.pixels_10m()
            );
        }
        Command::Bench {
            collection: datacube::registry::Collection::Sentinel1Sig0,
            target: Target { source, tile, year },
            patches,
            seed,
            out,
            cache_size,
            threads,
            ..
        } => {
            args::set_threads(threads)?;
            let r = crate::bench::s1::run(&crate::bench::s1::Options {
                source,
                tile: tile.parse().map_err(anyhow::Error::msg)?,
                year,
                patches,
                seed,
                out,
                threads: threads.unwrap_or_else(rayon::current_num_threads),
                cache_size,
            })?;
            print!("{}", crate::bench::s1::markdown(&r));
        }
        Command::Bench {
            target: Target { source, tile, year },
            collection,
            patches,
            patch_size,
            seed,
            targets,
            out,
            store,
            cog,
            repeats,
            cache_size,
            threads,
            python,
            no_progress,
            workers,
            ..
        } => {
            args::set_threads(threads)?;
            let store = store.context("--store is required")?;
            let level = s2_level(collection)?;
            let src = datacube::source::open(&source, &cdse_level(level))?;
            let opts = crate::bench::run::Options {
                level,
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
                workers,
            };
            let r = crate::bench::run::run(&opts, src.as_ref())?;
            crate::bench::report::write_all(&r, &opts.out)?;
            println!("{}", crate::bench::report::markdown(&r));
            println!(
                "results: {0}/bench.json, {0}/bench.md{1}",
                opts.out.display(),
                if r.targets.is_empty() {
                    String::new()
                } else {
                    format!(", {}/bench.png", opts.out.display())
                }
            );
            if !r.checksums_agree {
                anyhow::bail!("targets returned different arrays (see the errors above)");
            }
        }
        Command::LoaderWorker => crate::bench::loader::worker_main()?,
        Command::BenchMount {
            target: Target { source, tile, year },
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
            args::set_threads(threads)?;
            let src = datacube::source::open(&source, &Default::default())?;
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
            print_report(&r, out, &crate::bench::mount::markdown(&r))?;
            if !r.checksums_agree {
                anyhow::bail!("readers disagree with the decode floor: see the report");
            }
        }
        Command::Convert {
            to:
                ConvertTo::Cog {
                    target: Target { source, tile, year },
                    out,
                    threads,
                },
        } => {
            args::set_threads(threads)?;
            let src = datacube::source::open(&source, &Default::default())?;
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
        Command::BenchCold {
            archive,
            stac_url,
            s3_endpoint,
            mount_arg,
            tile,
            year,
            work,
            modes,
            patch_size,
            job_size,
            seed,
            cache_size,
            threads,
            server_log,
            direct,
            out,
        } => {
            args::set_threads(threads)?;
            anyhow::ensure!(
                job_size % 10 == 0,
                "--job-size {job_size}: a multiple of 10 m"
            );
            let local = datacube::source::open(
                &format!("safe:{}", archive.display()),
                &Default::default(),
            )?;
            let direct = direct.then(|| datacube::source::CdseOptions {
                stac_url: stac_url.clone(),
                s3: datacube::remote::s3::S3Options {
                    profile: Some("cdse".into()),
                    endpoint: s3_endpoint.clone(),
                    region: Some("default".into()),
                },
                ..Default::default()
            });
            let mut source_args = vec!["--stac-url".to_string(), stac_url];
            if let Some(e) = s3_endpoint {
                source_args.extend(["--s3-endpoint".to_string(), e]);
            }
            source_args.extend(mount_arg);
            std::fs::create_dir_all(&work)?;
            let opts = crate::bench::cold::Options {
                source_args,
                direct,
                tile,
                year,
                work: std::path::absolute(&work)?,
                modes,
                patch_size_m: patch_size,
                job_size_m: job_size,
                seed,
                cache_size,
                threads: rayon::current_num_threads(),
                server_log,
            };
            let r = crate::bench::cold::run(&opts, local.as_ref())?;
            print_report(&r, out, &crate::bench::cold::markdown(&r))?;
            if r.runs.iter().any(|x| !x.agrees_with_floor) {
                anyhow::bail!("a cold read disagrees with the decode floor: see the report");
            }
        }
        Command::BenchIntake {
            target: Target { source, tile, year },
            collection,
            store,
            threads,
            memory,
            layout,
            skip_floor,
        } => {
            args::set_threads(threads)?;
            let src = datacube::source::open(&source, &cdse_level(s2_level(collection)?))?;
            let r = crate::intake_bench::run(
                src.as_ref(),
                &tile,
                year,
                &store,
                memory as usize,
                layout,
                skip_floor,
            )?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
