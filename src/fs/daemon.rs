//! `datacube mount --daemon`: the command starts the mount detached and returns once it serves.
//!
//! It never forks itself (a process with threads cannot safely fork): it executes its own binary
//! again, with the same arguments but `--daemon`, in a new session (`setsid`), stdin from
//! `/dev/null`, stdout and stderr to the log file (or `/dev/null`). The child inherits the write
//! end of a readiness pipe, its number in [`READY_FD_ENV`], and writes one line to it once the
//! FUSE session is mounted and initialized ([`notify_ready`], where `serve` logs "(ready)").
//! The parent waits for that line; if the pipe closes first, the child failed (it exits on
//! every error before mounting) and the parent prints what it wrote: the new part of the log
//! file, or, without a log file, its stderr, which then goes to a pipe until the child is ready.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result};

/// The environment variable naming the readiness pipe's file descriptor in the child.
pub const READY_FD_ENV: &str = "DATACUBE_READY_FD";
/// Set in the child when its stderr is the parent's pipe (no log file): once ready, it sends
/// stdout and stderr to `/dev/null`, as the parent stops reading and exits.
const QUIET_ENV: &str = "DATACUBE_READY_QUIET";

/// Lines of the child's output the parent prints when it failed.
const TAIL_LINES: usize = 40;

struct Ready {
    pipe: File,
    quiet: bool,
}

static READY: Mutex<Option<Ready>> = Mutex::new(None);
static IS_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// In the child, first thing in `main` (before any thread starts): takes the readiness pipe
/// named by the environment, marks it close-on-exec (so processes the daemon runs, such as
/// `fusermount3`, do not hold it open) and removes the variables from the environment. A
/// variable naming anything but an open pipe is ignored.
pub fn adopt_ready_fd() {
    let Some(fd) = std::env::var(READY_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return;
    };
    let quiet = std::env::var_os(QUIET_ENV).is_some();
    // Called before any other thread exists, so nothing reads the environment meanwhile.
    std::env::remove_var(READY_FD_ENV);
    std::env::remove_var(QUIET_ENV);
    // SAFETY: fstat fills a zeroed stat for any fd number (an invalid one fails with EBADF).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if fd < 3
        || unsafe { libc::fstat(fd, &mut st) } != 0
        || st.st_mode & libc::S_IFMT != libc::S_IFIFO
    {
        return;
    }
    // SAFETY: fd is an open pipe inherited for this purpose, owned by nothing else here.
    let pipe = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        File::from_raw_fd(fd)
    };
    *READY.lock().unwrap() = Some(Ready { pipe, quiet });
    IS_CHILD.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process was started by `--daemon` (then it serves instead of starting another).
pub fn is_child() -> bool {
    IS_CHILD.load(std::sync::atomic::Ordering::Relaxed)
}

/// In the child, once mounted: tells the parent, which returns. Without a log file, stdout and
/// stderr go to `/dev/null` from here on. A no-op when not started by `--daemon`.
pub fn notify_ready(mountpoint: &Path) {
    let Some(mut ready) = READY.lock().unwrap().take() else {
        return;
    };
    // First away from the parent's stderr pipe, which it stops reading once told.
    if ready.quiet {
        if let Ok(null) = File::options().write(true).open("/dev/null") {
            // SAFETY: dup2 atomically replaces fds 1 and 2 with /dev/null; `null` stays valid.
            unsafe {
                libc::dup2(null.as_raw_fd(), 1);
                libc::dup2(null.as_raw_fd(), 2);
            }
        }
    }
    let _ = writeln!(ready.pipe, "ready {}", mountpoint.display());
}

/// A pipe (read end, write end), both close-on-exec, neither on fds 0–2 (which the child's
/// stdio setup replaces).
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating the readiness pipe");
    }
    let high = |fd: RawFd| -> Result<OwnedFd> {
        // SAFETY: fd was just returned by pipe2 and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if fd.as_raw_fd() > 2 {
            return Ok(fd);
        }
        // SAFETY: duplicating an open fd to the lowest free number >= 3.
        let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(std::io::Error::last_os_error()).context("creating the readiness pipe");
        }
        // SAFETY: a new fd owned here.
        Ok(unsafe { OwnedFd::from_raw_fd(dup) })
    };
    Ok((high(fds[0])?, high(fds[1])?))
}

/// Runs `exe args` as a daemon (see the module) and waits until it serves: its pid, or an error
/// after printing to stderr what the daemon wrote before it failed.
pub fn start(exe: &Path, args: &[OsString], log_file: Option<&Path>) -> Result<u32> {
    let (ready_r, ready_w) = pipe()?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .env(READY_FD_ENV, ready_w.as_raw_fd().to_string());
    let mut log_from = 0;
    match log_file {
        Some(path) => {
            let f = File::options()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("log file {}", path.display()))?;
            log_from = f.metadata().map(|m| m.len()).unwrap_or(0);
            cmd.stdout(f.try_clone()?).stderr(f);
        }
        None => {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .env(QUIET_ENV, "1");
        }
    }
    let w = ready_w.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls: setsid and fcntl.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The write end survives the exec.
            if libc::fcntl(w, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    drop(ready_w); // the child holds the only write end now: EOF means it is gone
    let mut stderr = child.stderr.take();
    let mut ready = File::from(ready_r);
    let mut said = Vec::new();
    let mut output = Vec::new();
    loop {
        let mut fds = vec![libc::pollfd {
            fd: ready.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(e) = &stderr {
            fds.push(libc::pollfd {
                fd: e.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 250) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("waiting for the daemon");
        }
        if fds.len() > 1 && fds[1].revents != 0 {
            let mut buf = [0u8; 8192];
            match stderr.as_mut().map(|e| e.read(&mut buf)) {
                Some(Ok(0)) | Some(Err(_)) | None => stderr = None,
                Some(Ok(k)) => output.extend_from_slice(&buf[..k]),
            }
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 512];
            let k = ready.read(&mut buf).unwrap_or(0);
            said.extend_from_slice(&buf[..k]);
            if said.contains(&b'\n') {
                return Ok(child.id());
            }
            if k == 0 {
                break; // closed without the line: the child failed
            }
        }
        if child.try_wait()?.is_some() {
            break;
        }
    }
    // The child failed before serving: its exit status and what it wrote.
    let status = child.wait()?;
    if let Some(mut e) = stderr {
        let _ = e.read_to_end(&mut output);
    }
    if let Some(path) = log_file {
        if let Ok(mut f) = File::open(path) {
            if f.seek(SeekFrom::Start(log_from)).is_ok() {
                let _ = f.read_to_end(&mut output);
            }
        }
    }
    let text = String::from_utf8_lossy(&output);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    for line in tail {
        eprintln!("{line}");
    }
    let where_ = match log_file {
        Some(p) => format!(" (log: {})", p.display()),
        None => String::new(),
    };
    anyhow::bail!("the mount daemon exited with {status} before serving{where_}")
}
