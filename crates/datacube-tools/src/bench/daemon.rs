//! A `datacube mount` child process for benchmarks: started over a store, ready when it serves
//! its stats file, stopped with SIGTERM (which drains its writeback).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A `datacube mount` child process.
pub struct Daemon {
    child: Child,
    pub mnt: PathBuf,
}

/// What the daemon mounts.
pub struct DaemonSpec<'a> {
    pub source: &'a str,
    pub tile: &'a str,
    pub year: i32,
    pub cache_size: u64,
    pub threads: usize,
    pub log: &'a Path,
    /// More arguments for `datacube mount` (e.g. `--collection sentinel-1-sig0`).
    pub extra: &'a [&'a str],
}

impl Daemon {
    pub fn start(o: &DaemonSpec, mnt: &Path, store: &Path) -> Result<Daemon> {
        std::fs::create_dir_all(mnt).ok();
        let log = std::fs::File::create(o.log)?;
        let child = Command::new(crate::datacube_bin())
            .arg("mount")
            .arg(mnt)
            .arg("--store")
            .arg(store)
            .args(["--source", o.source, "--tiles", o.tile])
            .args(["--years", &o.year.to_string()])
            .args(["--cache-size", &o.cache_size.to_string()])
            .args(["--threads", &o.threads.to_string()])
            .args(o.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting datacube mount")?;
        let mut d = Daemon {
            child,
            mnt: mnt.to_path_buf(),
        };
        let t0 = Instant::now();
        while !mnt.join(".datacube/stats.json").exists() {
            if let Some(st) = d.child.try_wait()? {
                anyhow::bail!("datacube mount exited with {st}; see {}", o.log.display());
            }
            if t0.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("datacube mount not ready after 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(d)
    }

    pub fn stats(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_slice(&std::fs::read(
            self.mnt.join(".datacube/stats.json"),
        )?)?)
    }

    pub fn stat(&self, pointer: &str) -> Result<u64> {
        self.stats()?
            .pointer(pointer)
            .and_then(|v| v.as_u64())
            .with_context(|| format!("stats.json has no {pointer}"))
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size (VmHWM), bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: u64 = s
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmHWM")?;
        Ok(kb * 1024)
    }

    pub fn stop(mut self) -> Result<()> {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let st = self.child.wait()?;
        if !st.success() {
            anyhow::bail!("datacube mount exited with {st}");
        }
        Ok(())
    }
}
