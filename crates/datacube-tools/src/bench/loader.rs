//! `datacube bench --targets loader`: a training loader's reads, the way PyTorch's `DataLoader`
//! does them: N worker processes, each reading its own random patch time series (every array of
//! [`super::patch_arrays`]), through a warm mount and from the store directly.
//!
//! The workers are this binary re-executed (`datacube-tools loader-worker`): each its own process
//! (its own file descriptors, page-cache readers and address space, as a DataLoader worker), the
//! bench's zarrs reader on one thread (DataLoader workers run one thread each: torch sets
//! `num_threads` to 1 in them). The same reader in the same process kind on both sides, so the
//! ratio is the file system's, not a language runtime's. A worker is started once per N and given
//! one job per round (a root and its patches) on stdin; it answers one JSON line on stdout.
//!
//! Per N: one warm-up round through the mount and one on the store (page caches filled), then
//! `repeats` rounds each, mount and store alternating (which goes first alternates too). A round's
//! time is from the job sent to the last worker's answer. The daemon's RSS is read from
//! /proc: its peak (VmHWM, reset before each N through `clear_refs`) and at the end of each N.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{mean_std, read_all, sample_patches, Patch, ZarrReader};
use datacube::s2::product::ProductLevel;

/// One worker's job: read `patches` from the tile-year under `root`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    pub root: PathBuf,
    pub tile: String,
    pub year: i32,
    pub level: ProductLevel,
    pub patches: Vec<Patch>,
}

/// A worker's answer: one checksum per patch (as `read_all`), its own reading time and the CPU
/// time it used for the job (user + system).
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub checksums: Vec<u64>,
    pub seconds: f64,
    pub cpu_seconds: f64,
}

/// This process's CPU time so far (user + system), seconds.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given and touches nothing else.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// A process's CPU time so far (user + system, from /proc), seconds.
fn proc_cpu_seconds(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the command.
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11) + ticks(12)) as f64 / hz)
}

/// `datacube-tools loader-worker`: jobs from stdin (one JSON line each), answers on stdout, until
/// stdin closes. A root's arrays are opened once and kept (a DataLoader worker keeps its dataset).
pub fn worker_main() -> Result<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut readers: Vec<(PathBuf, ZarrReader)> = Vec::new();
    for line in stdin.lock().lines() {
        let job: Job = serde_json::from_str(&line?).context("loader job")?;
        let t0 = Instant::now();
        let c0 = own_cpu_seconds();
        let i = match readers.iter().position(|(r, _)| *r == job.root) {
            Some(i) => i,
            None => {
                let r = ZarrReader::open(&job.root, &job.tile, job.year, job.level)?;
                readers.push((job.root.clone(), r));
                readers.len() - 1
            }
        };
        let reader = &readers[i].1;
        let checksums = job
            .patches
            .iter()
            .map(|p| read_all(reader, p))
            .collect::<Result<Vec<u64>>>()?;
        let a = Answer {
            checksums,
            seconds: t0.elapsed().as_secs_f64(),
            cpu_seconds: own_cpu_seconds() - c0,
        };
        writeln!(out, "{}", serde_json::to_string(&a)?)?;
        out.flush()?;
    }
    Ok(())
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// What a round measured.
struct Round {
    seconds: f64,
    sums: Vec<u64>,
    /// CPU seconds of the workers (their own accounting, per job).
    workers_cpu: f64,
    /// CPU seconds of the daemon during the round (the store rounds too: it should be ~0).
    daemon_cpu: f64,
}

/// N worker processes.
struct Pool {
    workers: Vec<Worker>,
}

impl Pool {
    fn start(n: usize) -> Result<Pool> {
        let exe = std::env::current_exe().context("the datacube-tools binary")?;
        let workers = (0..n)
            .map(|_| {
                let mut child = Command::new(&exe)
                    .arg("loader-worker")
                    // One thread per worker, as a DataLoader worker (zarrs decodes on rayon).
                    .env("RAYON_NUM_THREADS", "1")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("starting {} loader-worker", exe.display()))?;
                let stdin = child.stdin.take().expect("piped");
                let stdout = BufReader::new(child.stdout.take().expect("piped"));
                Ok(Worker {
                    child,
                    stdin,
                    stdout,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Pool { workers })
    }

    /// One round: every worker reads its patches under `root`; the wall time, the checksums (in
    /// the order of `shares`, concatenated) and the CPU time of the workers and of the daemon.
    fn round(&mut self, o: &Loader, root: &Path, shares: &[Vec<Patch>]) -> Result<Round> {
        let d0 = proc_cpu_seconds(o.daemon_pid)?;
        let t0 = Instant::now();
        for (w, patches) in self.workers.iter_mut().zip(shares) {
            let job = Job {
                root: root.to_path_buf(),
                tile: o.tile.clone(),
                year: o.year,
                level: o.level,
                patches: patches.clone(),
            };
            writeln!(w.stdin, "{}", serde_json::to_string(&job)?)?;
            w.stdin.flush()?;
        }
        let mut sums = Vec::new();
        let mut cpu = 0.0;
        for w in &mut self.workers {
            let mut line = String::new();
            w.stdout.read_line(&mut line)?;
            if line.is_empty() {
                let st = w.child.wait()?;
                anyhow::bail!(
                    "loader worker exited with {st} (reading {})",
                    root.display()
                );
            }
            let a: Answer = serde_json::from_str(&line).context("loader worker answer")?;
            sums.extend(a.checksums);
            cpu += a.cpu_seconds;
        }
        Ok(Round {
            seconds: t0.elapsed().as_secs_f64(),
            sums,
            workers_cpu: cpu,
            daemon_cpu: proc_cpu_seconds(o.daemon_pid)? - d0,
        })
    }

    fn stop(self) -> Result<()> {
        for w in self.workers {
            let Worker {
                mut child, stdin, ..
            } = w;
            drop(stdin);
            let st = child.wait()?;
            anyhow::ensure!(st.success(), "loader worker exited with {st}");
        }
        Ok(())
    }
}

/// What the loader target reads.
pub struct Loader {
    pub level: ProductLevel,
    pub tile: String,
    pub year: i32,
    pub store: PathBuf,
    /// The warm mount over `store`.
    pub mnt: PathBuf,
    /// The daemon's pid (its RSS).
    pub daemon_pid: u32,
    pub workers: Vec<usize>,
    pub patches_per_worker: usize,
    pub patch_size_m: u64,
    pub width_m: u64,
    pub seed: u64,
    pub repeats: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoaderRow {
    pub workers: usize,
    /// Patches per round (all workers).
    pub patches: usize,
    /// Seconds per counted round.
    pub mount_seconds: Vec<f64>,
    pub store_seconds: Vec<f64>,
    pub mount_patches_per_second: f64,
    pub store_patches_per_second: f64,
    /// Mount rate ÷ store rate (the goal: ≥ 0.9).
    pub mount_over_store_rate: f64,
    /// CPU seconds per patch, mean over the counted rounds: the workers' and the daemon's through
    /// the mount, the workers' on the store. On a shared machine wall time depends on what else
    /// runs; the CPU a patch costs much less.
    pub mount_cpu_per_patch: f64,
    pub mount_daemon_cpu_per_patch: f64,
    pub store_cpu_per_patch: f64,
    /// Mount CPU (workers + daemon) ÷ store CPU per patch.
    pub mount_over_store_cpu: f64,
    /// The daemon's peak RSS during this N (VmHWM, reset before it when the kernel allows).
    pub daemon_peak_rss_bytes: u64,
    pub daemon_peak_rss_reset: bool,
    /// The daemon's RSS after this N's rounds.
    pub daemon_rss_end_bytes: u64,
    /// Every worker, in every round, through the mount and from the store, read the values the
    /// bench's own reader reads from the store.
    pub checksums_agree: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoaderReport {
    pub patches_per_worker: usize,
    pub repeats: usize,
    pub worker: String,
    pub rows: Vec<LoaderRow>,
}

fn proc_status_kb(pid: u32, key: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

pub fn run(o: &Loader) -> Result<LoaderReport> {
    let mut rows = Vec::new();
    for &n in &o.workers {
        let all = sample_patches(
            o.width_m,
            o.patch_size_m,
            n * o.patches_per_worker,
            o.seed ^ ((n as u64) << 48),
        )?;
        let shares: Vec<Vec<Patch>> = all
            .chunks(o.patches_per_worker)
            .map(<[Patch]>::to_vec)
            .collect();
        // The reference: the bench's own zarrs reader on the store, in this process.
        let reference = ZarrReader::open(&o.store, &o.tile, o.year, o.level)?;
        let want = all
            .iter()
            .map(|p| read_all(&reference, p))
            .collect::<Result<Vec<u64>>>()?;
        drop(reference);
        let mut pool = Pool::start(n)?;
        // Warm-up: both sides' page caches (and the daemon's) filled.
        let from_store = pool.round(o, &o.store, &shares)?.sums;
        let from_mount = pool.round(o, &o.mnt, &shares)?.sums;
        let mut agree = from_store == want && from_mount == want;
        let reset = std::fs::write(format!("/proc/{}/clear_refs", o.daemon_pid), "5").is_ok();
        let (mut mount_s, mut store_s) = (Vec::new(), Vec::new());
        let (mut mount_cpu, mut mount_daemon_cpu, mut store_cpu) = (0.0, 0.0, 0.0);
        for rep in 0..o.repeats {
            let order = if rep % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for mount in order {
                let root = if mount { &o.mnt } else { &o.store };
                let r = pool.round(o, root, &shares)?;
                agree &= r.sums == want;
                if mount {
                    mount_s.push(r.seconds);
                    mount_cpu += r.workers_cpu + r.daemon_cpu;
                    mount_daemon_cpu += r.daemon_cpu;
                } else {
                    store_s.push(r.seconds);
                    store_cpu += r.workers_cpu + r.daemon_cpu;
                }
            }
        }
        pool.stop()?;
        let peak = proc_status_kb(o.daemon_pid, "VmHWM:")? * 1024;
        let end = proc_status_kb(o.daemon_pid, "VmRSS:")? * 1024;
        let patches = all.len();
        let rate = |s: &[f64]| patches as f64 / mean_std(s).0;
        let (m, s) = (rate(&mount_s), rate(&store_s));
        let per_patch = |cpu: f64| cpu / (patches * o.repeats.max(1)) as f64;
        rows.push(LoaderRow {
            workers: n,
            patches,
            mount_seconds: mount_s,
            store_seconds: store_s,
            mount_patches_per_second: m,
            store_patches_per_second: s,
            mount_over_store_rate: m / s,
            mount_cpu_per_patch: per_patch(mount_cpu),
            mount_daemon_cpu_per_patch: per_patch(mount_daemon_cpu),
            store_cpu_per_patch: per_patch(store_cpu),
            mount_over_store_cpu: mount_cpu / store_cpu,
            daemon_peak_rss_bytes: peak,
            daemon_peak_rss_reset: reset,
            daemon_rss_end_bytes: end,
            checksums_agree: agree,
        });
    }
    Ok(LoaderReport {
        patches_per_worker: o.patches_per_worker,
        repeats: o.repeats,
        worker: "datacube-tools loader-worker: one process per worker, zarrs, 1 thread".into(),
        rows,
    })
}

/// The loader table (markdown).
pub fn markdown(r: &LoaderReport) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let mut s = format!(
        "Loader: N worker processes ({}), {} patches each per round, {} counted rounds per side \
         after one warm-up, mount and store alternating.\n\n\
         | workers | patches/s mount | patches/s store | mount ÷ store | CPU ms/patch mount (daemon) | CPU ms/patch store | CPU mount ÷ store | daemon RSS peak | daemon RSS at end | same values |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        r.worker, r.patches_per_worker, r.repeats
    );
    for w in &r.rows {
        s.push_str(&format!(
            "| {} | {:.2} | {:.2} | **{:.2}** | {:.0} ({:.1}) | {:.0} | {:.3} | {:.0} MiB{} | {:.0} MiB | {} |\n",
            w.workers,
            w.mount_patches_per_second,
            w.store_patches_per_second,
            w.mount_over_store_rate,
            w.mount_cpu_per_patch * 1e3,
            w.mount_daemon_cpu_per_patch * 1e3,
            w.store_cpu_per_patch * 1e3,
            w.mount_over_store_cpu,
            mib(w.daemon_peak_rss_bytes),
            if w.daemon_peak_rss_reset {
                ""
            } else {
                " (since start)"
            },
            mib(w.daemon_rss_end_bytes),
            w.checksums_agree
        ));
    }
    s
}
