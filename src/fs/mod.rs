//! The virtual datacube as a FUSE filesystem. A collection's cube (`s2::cube`, `s1::cube`) holds
//! the semantics (testable without a mount) behind [`CubeView`]; this module holds what every cube
//! shares: the vocabulary of nodes (`attr`, `node`), what a read is answered from (`content`), the worker `pool`,
//! the `refresh` thread, and `fuse`, which adapts a cube to fuser (the only module that knows
//! FUSE); `mountpoint` handles live and stale mounts; `daemon` starts a mount detached
//! (`--daemon`) and reports when it serves. See docs/design.md §4.

pub mod attr;
pub mod content;
pub mod daemon;
pub(crate) mod fuse;
pub mod mountpoint;
pub(crate) mod node;
pub(crate) mod pool;
pub mod refresh;
pub(crate) mod resolver_stats;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use fuser::{MountOption, SessionACL};

pub use attr::{FsError, Kind};
pub use view::CubeView;

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    /// Threads reading /dev/fuse (requests needing a chunk are handed to the worker pool).
    pub fuse_threads: usize,
    pub allow_other: bool,
}

/// Mounts `cube` and serves it until unmounted (`fusermount3 -u`, `umount`) or until SIGINT,
/// SIGTERM or SIGHUP, which unmount. Then drains the writeback queue: when this returns, every
/// chunk computed is in the store.
pub fn serve(cube: Arc<dyn CubeView>, opts: &MountOptions) -> Result<()> {
    let mp = mountpoint::absolute(&opts.mountpoint)?;
    mountpoint::prepare(&mp)?;
    mountpoint::check_dev_fuse()?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("datacube".into()),
        MountOption::Subtype("datacube".into()),
        MountOption::RO,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::DefaultPermissions,
    ];
    if opts.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(opts.fuse_threads.max(1));
    config.clone_fd = true;
    let fs = fuse::DatacubeFs::new(cube.clone());
    let invalidator = fs.invalidator();
    let session = fuser::Session::new(fs, &mp, &config)
        .with_context(|| format!("mounting at {}", mp.display()))?;
    let notifier = session.notifier();
    let refresher = cube
        .clone()
        .start_refresher(Box::new(move |paths: &[String]| {
            invalidator(&notifier, paths)
        }));
    let result = run_until_unmounted(session, &mp);
    drop(refresher);
    tracing::info!(
        "unmounted {}; writing queued chunks to the store",
        mp.display()
    );
    cube.shutdown();
    let wb = cube.stats_json();
    tracing::info!(
        "writeback drained; final stats: {}",
        String::from_utf8_lossy(&wb)
            .split_whitespace()
            .collect::<String>()
    );
    result
}

fn run_until_unmounted(mut session: fuser::Session<fuse::DatacubeFs>, mp: &Path) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut unmounter = session.unmount_callable();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    let mp_owned = mp.to_path_buf();
    let watcher = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!("signal {sig}: unmounting {}", mp_owned.display());
                if let Err(e) = unmounter.unmount() {
                    tracing::warn!("unmount: {e}; detaching lazily (open files keep working)");
                    if let Err(e) = mountpoint::detach(&mp_owned) {
                        tracing::error!("{e:#}");
                    }
                }
            }
        })
        .context("starting the signal thread")?;
    tracing::info!("datacube mounted at {} (ready)", mp.display());
    daemon::notify_ready(mp);
    let r = session.run();
    handle.close();
    let _ = watcher.join();
    r.with_context(|| format!("serving {}", mp.display()))
}
