//! Running `datacube mount` for real in tests: start, wait until it serves, stats, stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{bin, YEAR};

pub struct Mounted {
    pub mnt: PathBuf,
    pub store: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// Leave the mount point as the daemon left it (stale after kill -9).
    leave_stale: bool,
}

impl Mounted {
    /// Mounts `archive` over `store` at `work/mnt` (35VLH, 2024 only) and waits until it serves.
    pub fn start(work: &Path, store: &Path, archive: &Path, extra: &[&str]) -> Mounted {
        Self::start_env(work, store, archive, extra, &[])
    }

    /// `start` with environment variables for the daemon (its test hooks, e.g.
    /// `DATACUBE_TEST_WRITEBACK_DELAY_MS`).
    pub fn start_env(
        work: &Path,
        store: &Path,
        archive: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Mounted {
        let mut args = vec![
            "--source".to_string(),
            format!("safe:{}", archive.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_with(work, &store.display().to_string(), &args, &env)
    }

    /// Mounts over `store` (a directory or s3://...) with the given source arguments and
    /// environment, at `work/mnt` (35VLH, 2024 only), and waits until it serves.
    pub fn start_with(
        work: &Path,
        store: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Mounted {
        Self::start_tiles(work, store, "35VLH", args, env)
    }

    /// A Sentinel-1 mount of the synthetic EODC mirror's two tiles (2024) over `store`.
    pub fn start_s1(work: &Path, store: &Path, mirror: &Path) -> Mounted {
        Self::start_s1_source(work, store, &format!("file:{}", mirror.display()))
    }

    /// A Sentinel-1 mount of the two fixture tiles (2024) from `source` (`file:DIR`, `eodc:URL`).
    pub fn start_s1_source(work: &Path, store: &Path, source: &str) -> Mounted {
        Self::start_s1_with(work, store, source, &[], &[])
    }

    /// `start_s1_source` with more daemon arguments and environment (test hooks).
    pub fn start_s1_with(
        work: &Path,
        store: &Path,
        source: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Mounted {
        let mut args = vec![
            "--collection".to_string(),
            "sentinel-1-sig0".to_string(),
            "--source".to_string(),
            source.to_string(),
            "--source-cache".to_string(),
            work.join("source-cache").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_tiles(
            work,
            &store.display().to_string(),
            "E048N015T3,E051N015T3",
            &args,
            &env,
        )
    }

    fn start_tiles(
        work: &Path,
        store: &str,
        tiles: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> Mounted {
        let mnt = work.join("mnt");
        let _ = std::fs::create_dir_all(&mnt); // fails harmlessly on a stale mount point
        let log = work.join("mount.log");
        // Sentinel-2 mounts test the chunked layout unless they ask for another (`--layout`):
        // the sharded layout has tests of its own (tests/sharded.rs).
        let mut args = args.to_vec();
        if !args.iter().any(|a| a == "--collection" || a == "--layout") {
            args.extend(["--layout".to_string(), "chunked".to_string()]);
        }
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(bin())
            .arg("mount")
            .arg(&mnt)
            .arg("--store")
            .arg(store)
            .args(["--tiles", tiles, "--years", &YEAR.to_string()])
            .args(&args)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap();
        let mut m = Mounted {
            mnt,
            store: PathBuf::from(store),
            log,
            child: Some(child),
            leave_stale: false,
        };
        m.wait_ready();
        m
    }

    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        loop {
            if std::fs::metadata(self.mnt.join(".datacube/stats.json")).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("datacube mount exited with {st}:\n{}", self.log_text());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "mount not ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path(".datacube/stats.json")).unwrap()).unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the daemon to unmount, drain and exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(child.id(), libc::SIGTERM);
        let st = wait_timeout(&mut child, Duration::from_secs(120));
        assert!(!is_mounted(&self.mnt), "still mounted after exit");
        st
    }

    /// SIGKILL: the mount point is left stale, as after a crash.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        signal(child.id(), libc::SIGKILL);
        let _ = child.wait();
        self.leave_stale = true;
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            let _ = wait_timeout(&mut child, Duration::from_secs(60));
        }
        if !self.leave_stale && is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z", "-q"])
                .arg(&self.mnt)
                .status();
        }
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("daemon did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn is_mounted(mnt: &Path) -> bool {
    datacube::fs::mountpoint::mount_entry(mnt).is_some()
}

/// The number at a JSON pointer of a stats document.
pub fn stat(v: &serde_json::Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("no {pointer} in {v}"))
}

/// Kills the daemon with SIGKILL while it writes back: once it has written more than `written`
/// objects and has more queued (progress-based, so the machine's speed does not matter).
pub fn kill_while_writing_back(m: &Mounted, written: u64) {
    let t0 = std::time::Instant::now();
    loop {
        let s = m.stats();
        if stat(&s, "/writeback/chunks_written") > written && stat(&s, "/writeback/queue_jobs") > 0
        {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(300),
            "no writeback: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    signal(m.pid(), libc::SIGKILL);
}
