//! The command line of the daemon binary: a thin layer over the library. Each command's arguments
//! are a struct whose methods turn them into the library's configuration. The tools (`fixture`,
//! `bench`, `bench-mount`, `bench-intake`, `bench-cold`, `convert`) live in `datacube-tools`, a binary of their
//! own; `datacube TOOL ARGS…` runs `datacube-tools TOOL ARGS…`.

pub mod args;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use args::{parse_bytes, parse_years, positive, CdseArgs, StoreArgs, Years};

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
    /// Convert a tile-year (or a date range of it) into a Zarr v3 directory store, resumably.
    #[command(
        after_help = "Examples:\n  datacube intake --source safe:/data/archive --store /data/cube.zarr --tile 35VLH --year 2024\n  datacube intake --source cdse --store s3://cubes/finland --store-endpoint https://a3s.fi --store-profile allas --tile 35VLH --year 2024"
    )]
    Intake(IntakeArgs),
    /// Show scenes and chunk counts (materialized, empty, missing) per tile, year and resolution.
    Info(InfoArgs),
    /// Mount the virtual datacube: TILE/YEAR/{10m,20m,60m} Zarr v3 groups whose chunks are
    /// computed on first read and written back to the store.
    #[command(after_help = "\
Runs in the foreground until unmounted (fusermount3 -u MOUNTPOINT) or stopped with Ctrl-C /
SIGTERM, which unmount cleanly and write every computed chunk to the store before exiting.
With --daemon it returns once the mount serves (exit status 0), or fails with the daemon's
error (non-zero); the daemon runs detached until fusermount3 -u or SIGTERM. Logs go to stderr,
or to --log-file (appended; without it, --daemon discards them once the mount serves).

Users mount without root (through the setuid fusermount3) and alone can read their mount;
--allow-other lets every user read it, which needs the line user_allow_other in
/etc/fuse.conf (unless root).

Examples:
  datacube mount /mnt/cube --store /data/cube.zarr --source safe:/data/archive --tiles 35VLH --years 2024
  datacube mount /mnt/cube --store /data/cube.zarr --source safe:/data/archive --cache-size 8GiB
  datacube mount /mnt/cube --store s3://cubes/finland --source cdse --years 2024
  datacube mount $TMPDIR/cube --store /scratch/cube.zarr --source cdse --daemon --log-file cube.log
  fusermount3 -u $TMPDIR/cube     # stops a --daemon mount after writing back
  RUST_LOG=datacube=debug datacube mount /mnt/cube --store ... --source ...

Then, e.g. in Python:
  xr.open_zarr('/mnt/cube/35VLH/2024/10m', consolidated=True)
Live counters: cat /mnt/cube/.datacube/stats.json")]
    Mount(MountArgs),
    /// Print a named set of MGRS tiles (finland: the 77 tiles covering Finland and its seas).
    Tiles { set: String },
    /// Write a synthetic SAFE archive (runs datacube-tools fixture).
    #[command(disable_help_flag = true)]
    Fixture(ToolArgs),
    /// The patch time-series benchmark (runs datacube-tools bench).
    #[command(disable_help_flag = true)]
    Bench(ToolArgs),
    /// Benchmark patch reads through a real mount (runs datacube-tools bench-mount).
    #[command(disable_help_flag = true)]
    BenchMount(ToolArgs),
    /// Benchmark intake against the decode floor (runs datacube-tools bench-intake).
    #[command(disable_help_flag = true)]
    BenchIntake(ToolArgs),
    /// Benchmark cold reads from (emulated) CDSE by fetch mode (runs datacube-tools bench-cold).
    #[command(disable_help_flag = true)]
    BenchCold(ToolArgs),
    /// Convert a tile-year into another format, e.g. COGs (runs datacube-tools convert).
    #[command(disable_help_flag = true)]
    Convert(ToolArgs),
}

/// Arguments handed to `datacube-tools` unchanged.
#[derive(clap::Args)]
struct ToolArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(clap::Args)]
pub struct IntakeArgs {
    /// What the cube is made of (a store holds one collection)
    #[arg(long, default_value = "sentinel-2-l1c")]
    pub collection: crate::registry::Collection,
    /// Sentinel-2 (L1C, L2A): safe:DIR (a local SAFE archive with the CDSE layout) or cdse;
    /// sentinel-1-sig0: eodc, eodc:STAC_URL or file:DIR (a local EODC mirror)
    #[arg(long)]
    pub source: String,
    /// Store: a directory or s3://bucket/prefix
    #[arg(long)]
    pub store: String,
    #[command(flatten)]
    pub cdse: CdseArgs,
    #[command(flatten)]
    pub store_args: StoreArgs,
    /// Tiles, comma-separated: MGRS tiles and tile sets (35VLH, 35VLH,35VLJ or finland), or
    /// Equi7 T3 tiles for sentinel-1-sig0 (E048N015T3)
    #[arg(long = "tiles", alias = "tile")]
    pub tiles: String,
    /// Years: 2024, 2016..2025 (inclusive) or 2023,2024
    #[arg(long = "years", alias = "year", value_parser = parse_years)]
    pub years: Years,
    /// Do part I of N (0 <= I < N) of the work, e.g. a Slurm job array's
    /// $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT: whole tile-years when there are at least N,
    /// else shares of a tile-year's chunks; the parts need no coordination but the store
    #[arg(long, default_value = "0/1")]
    pub part: crate::intake::Part,
    /// sentinel-2-l1c, for a new store: chunked (an object per 512² chunk, every Zarr reader
    /// including GDAL < 3.13) or sharded (an object per 1024² shard of 128² inner chunks: 4×
    /// fewer objects, 2.5× less decoding per patch; the default); sharded:SHARD/INNER for other
    /// shapes (10 m pixels). An existing store keeps its layout (default: the store's)
    #[arg(long)]
    pub layout: Option<String>,
    /// First day (YYYY-MM-DD) whose time chunks are converted
    #[arg(long)]
    pub start: Option<chrono::NaiveDate>,
    /// Last day (YYYY-MM-DD) whose time chunks are converted
    #[arg(long)]
    pub end: Option<chrono::NaiveDate>,
    /// Resolution groups to convert (default: all of the collection's)
    #[arg(long, value_delimiter = ',')]
    pub resolutions: Option<Vec<String>>,
    /// Cap of the decoded JP2 tile cache (e.g. 2GiB, 512MiB)
    #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
    pub memory: u64,
    /// Worker threads (default: all cores)
    #[arg(long, value_parser = positive::<usize>())]
    pub threads: Option<usize>,
    #[arg(long)]
    pub no_progress: bool,
}

impl IntakeArgs {
    /// The tile-years this process converts (its `--part` of all of them), with its share of each.
    pub fn work(&self) -> Result<Vec<(crate::key::TileYear, crate::intake::Regions)>> {
        let mut all = Vec::new();
        let tiles = self.collection.opener().tiles(&self.tiles)?;
        for t in tiles {
            for &y in &self.years.0 {
                all.push(crate::key::TileYear::new(&t, y));
            }
        }
        all.sort();
        all.dedup();
        Ok(crate::intake::assign(&all, self.part))
    }

    /// What this run asks of the collection.
    pub fn request(&self, interactive: bool) -> crate::collection::IntakeRequest {
        crate::collection::IntakeRequest {
            source: self.source.clone(),
            remote: self.cdse.options(),
            start: self.start,
            end: self.end,
            groups: self.resolutions.clone(),
            memory_bytes: self.memory as usize,
            progress: interactive && !self.no_progress,
            fence: args::fence(),
            layout: self.layout.clone(),
        }
    }
}

#[derive(clap::Args)]
pub struct InfoArgs {
    /// A directory or s3://bucket/prefix
    pub store: String,
    #[arg(long)]
    pub json: bool,
    /// Years to project the Finland tile set's object count over (default: the span of the
    /// store's years)
    #[arg(long, value_parser = positive::<u64>())]
    pub project_years: Option<u64>,
    #[command(flatten)]
    pub store_args: StoreArgs,
}

#[derive(clap::Args)]
pub struct MountArgs {
    pub mountpoint: PathBuf,
    /// What the cube is made of (a store holds one collection)
    #[arg(long, default_value = "sentinel-2-l1c")]
    pub collection: crate::registry::Collection,
    /// Persistent Zarr store, a directory or s3://bucket/prefix (computed chunks are written
    /// back here)
    #[arg(long)]
    pub store: String,
    /// Sentinel-2 (L1C, L2A): safe:DIR (a local SAFE archive with the CDSE layout) or cdse;
    /// sentinel-1-sig0: eodc, eodc:STAC_URL or file:DIR (a local EODC mirror)
    #[arg(long)]
    pub source: String,
    #[command(flatten)]
    pub cdse: CdseArgs,
    #[command(flatten)]
    pub store_args: StoreArgs,
    /// Memory for caches: encoded chunks (3/4) and decoded JP2 tiles (1/4, at most 1 GiB)
    #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
    pub cache_size: u64,
    /// Tiles, comma-separated: MGRS tiles and tile sets (e.g. 35VLH,35VLJ or finland; default
    /// finland), or Equi7 T3 tiles for sentinel-1-sig0 (E048N015T3,E051N015T3; required)
    #[arg(long)]
    pub tiles: Option<String>,
    /// Years: 2016..2025 (inclusive), 2024, or 2023,2024
    #[arg(long, default_value = "2015..2026", value_parser = parse_years)]
    pub years: Years,
    /// Decode threads and concurrent materializations (default: all cores)
    #[arg(long, value_parser = positive::<usize>())]
    pub threads: Option<usize>,
    /// Threads serving FUSE requests
    #[arg(long, value_parser = positive::<usize>(), default_value_t = 4)]
    pub fuse_threads: usize,
    /// Let other users read the mount (needs user_allow_other in /etc/fuse.conf unless root)
    #[arg(long)]
    pub allow_other: bool,
    /// Stay in the foreground (the default; accepted for mount-s3 habits)
    #[arg(long, conflicts_with = "daemon")]
    pub foreground: bool,
    /// Run detached: return once the mount serves (exit status 0), or fail with the daemon's
    /// error; stop it with fusermount3 -u MOUNTPOINT (or SIGTERM), which writes back first
    #[arg(long)]
    pub daemon: bool,
    /// Append the logs to this file instead of writing them to stderr (with --daemon, the
    /// daemon's whole output; without a log file, a daemon's logs are discarded once it serves)
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Search the source again for every resolved year this often (e.g. 15m, 1h, 2s) and serve
    /// new acquisitions and reprocessed products without a remount; `off` to never search. By
    /// default, hourly for the years still receiving acquisitions (this year and the last).
    /// Catalog changes made by other processes sharing the store are taken up either way.
    #[arg(long, value_parser = args::parse_refresh)]
    pub refresh: Option<crate::fs::refresh::RefreshPolicy>,
    /// sentinel-2-l1c, for a new store: chunked (an object per 512² chunk, every Zarr reader
    /// including GDAL < 3.13) or sharded (an object per 1024² shard of 128² inner chunks: 4×
    /// fewer objects, 2.5× less decoding per patch; the default); sharded:SHARD/INNER for other
    /// shapes (10 m pixels). An existing store keeps its layout (default: the store's)
    #[arg(long)]
    pub layout: Option<String>,
    /// How the mount presents sharded arrays: native (as stored, sharding_indexed) or chunked
    /// (each array as a plain chunked array whose chunks are the shards' inner chunks, byte for
    /// byte: for readers without sharding, such as GDAL 3.12 and the rasterio wheels that ship
    /// it). The store is unchanged either way. sentinel-2-l1c and -l2a only
    #[arg(long, default_value = "native")]
    pub view: crate::collection::View,
}

impl MountArgs {
    /// Worker threads: `--threads`, else every core (at least 2, so one slow chunk never holds all).
    pub fn workers(&self) -> usize {
        self.threads
            .unwrap_or_else(rayon::current_num_threads)
            .max(2)
    }

    /// What this mount asks of the collection.
    pub fn request(&self) -> Result<crate::collection::MountRequest> {
        let opener = self.collection.opener();
        let tiles = match (&self.tiles, opener.default_tiles()) {
            (Some(t), _) => t.as_str(),
            (None, Some(t)) => t,
            (None, None) => anyhow::bail!(
                "--tiles: {} has no default tile set; name the tiles",
                opener.name()
            ),
        };
        Ok(crate::collection::MountRequest {
            source: self.source.clone(),
            remote: self.cdse.options(),
            tiles: opener.tiles(tiles)?,
            years: self.years.0.clone(),
            cache_bytes: self.cache_size as usize,
            workers: self.workers(),
            fence: args::fence(),
            refresh: self.refresh.unwrap_or_default(),
            writeback: self.writeback_limits(),
            layout: self.layout.clone(),
            view: self.view,
        })
    }

    /// The writeback queue's bounds, for either collection.
    fn writeback_limits(&self) -> crate::writeback::Limits {
        crate::writeback::Limits {
            // Test hook (environment): hold objects in the queue this long per batch.
            batch_delay: std::time::Duration::from_millis(
                args::test_hook_ms("DATACUBE_TEST_WRITEBACK_DELAY_MS").unwrap_or(0),
            ),
            // Queued objects are usually still in the cache; those evicted meanwhile are extra,
            // so the queue stays small next to the budget.
            max_bytes: (self.cache_size as usize / 8).clamp(64 << 20, 256 << 20),
            ..Default::default()
        }
    }

    pub fn mount_options(&self) -> crate::fs::MountOptions {
        crate::fs::MountOptions {
            mountpoint: self.mountpoint.clone(),
            fuse_threads: self.fuse_threads,
            allow_other: self.allow_other,
        }
    }
}

pub fn main() -> Result<std::process::ExitCode> {
    // First, while this is the only thread: a daemon started by `mount --daemon` takes its
    // readiness pipe.
    crate::fs::daemon::adopt_ready_fd();
    let cli = Cli::parse();
    match &cli.command {
        Command::Mount(a) => args::init_logging(a.log_file.as_deref())?,
        _ => args::init(),
    }
    let interactive = args::interactive();
    match cli.command {
        Command::Intake(a) => {
            args::set_threads(a.threads)?;
            let st = a.store_args.open(&a.store)?;
            a.collection.check_store(st.as_ref())?;
            let mut intake = a
                .collection
                .opener()
                .intake(&a.request(interactive), st.as_ref())?;
            return each_tile_year(&a, |ty, regions| {
                let r = intake.run(ty, regions)?;
                println!("{}", r.report);
                if !r.errors.is_empty() {
                    eprintln!(
                        "{} error(s); the affected chunks were not written (rerun after fixing the input):",
                        r.errors.len()
                    );
                    for e in &r.errors {
                        eprintln!("  {e}");
                    }
                }
                Ok(r.errors.is_empty())
            });
        }
        Command::Info(a) => {
            args::quiet_on_closed_pipe();
            let st = a.store_args.open(&a.store)?;
            let info = crate::info::info_with_summary(st.as_ref(), a.project_years)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", crate::info::table(&info));
            }
        }
        Command::Mount(a) => {
            // What a user's mount needs, checked before anything starts (or is daemonized).
            crate::fs::mountpoint::check_dev_fuse()?;
            if a.allow_other {
                crate::fs::mountpoint::check_allow_other(&args::fuse_conf())?;
            }
            if a.daemon && !crate::fs::daemon::is_child() {
                return start_daemon(&a);
            }
            args::set_threads(a.threads)?;
            args::log_panics_in_one_line();
            args::limit_malloc_retention();
            let req = a.request()?;
            let st: std::sync::Arc<dyn crate::store::Store> = a.store_args.open(&a.store)?.into();
            a.collection.check_store(st.as_ref())?;
            let cube = a.collection.opener().open_cube(&req, st)?;
            crate::fs::serve(cube, &a.mount_options())?;
        }
        Command::Tiles { set } => {
            args::quiet_on_closed_pipe();
            let tiles = crate::s2::tiles::named_set(&set)
                .with_context(|| format!("unknown tile set {set:?} (known: finland)"))?;
            println!("{}", tiles.join(" "));
        }
        Command::Fixture(t) => return run_tool("fixture", t),
        Command::Bench(t) => return run_tool("bench", t),
        Command::BenchMount(t) => return run_tool("bench-mount", t),
        Command::BenchIntake(t) => return run_tool("bench-intake", t),
        Command::BenchCold(t) => return run_tool("bench-cold", t),
        Command::Convert(t) => return run_tool("convert", t),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `mount --daemon`: runs this program again with the same arguments but `--daemon`, detached,
/// and returns once it serves (see `fs::daemon`).
fn start_daemon(a: &MountArgs) -> Result<std::process::ExitCode> {
    let exe = std::env::current_exe().context("finding this program to start the daemon")?;
    let args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|x| x != "--daemon")
        .collect();
    let pid = crate::fs::daemon::start(&exe, &args, a.log_file.as_deref())?;
    let mnt = crate::fs::mountpoint::absolute(&a.mountpoint)?;
    match &a.log_file {
        Some(log) => println!(
            "datacube mounted at {} (daemon pid {pid}, log {})",
            mnt.display(),
            log.display()
        ),
        None => println!("datacube mounted at {} (daemon pid {pid})", mnt.display()),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs `datacube-tools TOOL ARGS…` (beside this binary, else on `PATH`) and exits with its status.
fn run_tool(tool: &str, t: ToolArgs) -> Result<std::process::ExitCode> {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("datacube-tools")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("datacube-tools"));
    let status = std::process::Command::new(&exe)
        .arg(tool)
        .args(&t.args)
        .status()
        .with_context(|| {
            format!(
                "datacube {tool} is part of datacube-tools, which was not found beside datacube or on \
                 PATH (cargo build --workspace, or cargo install --path crates/datacube-tools)"
            )
        })?;
    Ok(match status.code() {
        Some(c) => std::process::ExitCode::from(c.clamp(0, 255) as u8),
        None => std::process::ExitCode::from(1),
    })
}

/// Runs `one` for each tile-year of this process's share (`--part`), printing a header per
/// tile-year when there are several. In a run over several, a tile-year without scenes is a note
/// and a failed one is reported and the run goes on (exit status 1); a single one fails the run.
/// `one` answers whether the tile-year finished without errors.
fn each_tile_year(
    a: &IntakeArgs,
    mut one: impl FnMut(&crate::key::TileYear, crate::intake::Regions) -> Result<bool>,
) -> Result<std::process::ExitCode> {
    let work = a.work()?;
    let many = work.len() > 1 || a.part.count > 1;
    let mut failed = false;
    for (ty, regions) in &work {
        if many {
            println!("{ty} (part {}: regions {regions})", a.part);
        }
        match one(ty, *regions) {
            Ok(ok) => failed |= !ok,
            Err(e) if many && e.is::<crate::intake::NoScenes>() => println!("{e}"),
            Err(e) if many => {
                eprintln!("{ty}: {e:#}");
                failed = true;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(if failed {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}
