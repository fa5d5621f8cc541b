//! `datacube mount` as users run it on cluster nodes: as an unprivileged user (through the setuid
//! fusermount3), as a daemon (`--daemon [--log-file]`, returning once the mount serves, stopped
//! by `fusermount3 -u` or SIGTERM), failing fast with the daemon's error, and `--allow-other`
//! without `user_allow_other`. Real mounts of the shared fixture; chunks are compared with the
//! intaken store's bytes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::mount::{is_mounted, signal};
use common::user::{is_root, test_user, User};
use common::*;
use datacube::key::TileYear;
use datacube::s2::bands::Resolution;
use datacube::store::{ChunkEntry, ChunkRecord, DirStore};

/// Chunks read through the mounts (chunked layout, as the intaken store).
const CHUNK_A: &str = "35VLH/2024/20m/data/c/0/0/0/0";
const CHUNK_B: &str = "35VLH/2024/60m/data/c/0/0/0/0";

/// The test user, or `None` after printing why the test is skipped (not root and no such user).
fn user_or_skip() -> Option<User> {
    match test_user() {
        Ok(u) => Some(u),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// The bytes of `rel` in the store intaken from the fixture (the oracle).
fn oracle(rel: &str) -> Vec<u8> {
    let want = std::fs::read(intaken_store().join(rel)).unwrap();
    assert!(!want.is_empty());
    want
}

/// `datacube mount MNT` of the fixture (35VLH 2024, chunked) over `store`, with `extra` arguments.
fn mount_cmd(cmd: &mut Command, mnt: &Path, store: &Path, extra: &[&str]) {
    cmd.arg("mount")
        .arg(mnt)
        .arg("--store")
        .arg(store)
        .arg("--source")
        .arg(format!("safe:{}", fixture().archive.display()))
        .args(["--tiles", "35VLH", "--years", &YEAR.to_string()])
        .args(["--layout", "chunked", "--refresh", "off"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
}

/// Runs `datacube mount … --daemon extra` to its end (the daemon started, or failed).
fn daemon(mnt: &Path, store: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    mount_cmd(&mut cmd, mnt, store, extra);
    cmd.arg("--daemon").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The daemon's pid, from "datacube mounted at MNT (daemon pid N…)".
fn daemon_pid(out: &Output) -> i32 {
    let stdout = text(&out.stdout);
    let rest = stdout
        .split_once("daemon pid ")
        .unwrap_or_else(|| panic!("no pid in {stdout:?}"))
        .1;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// Makes this test process the reaper of its orphaned descendants: a daemon outlives the command
/// that started it, and this process can then wait for it and see its exit status.
fn become_subreaper() {
    // SAFETY: sets a flag of this process; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

/// Waits for process `pid` (a descendant, see `become_subreaper`) to exit: its exit code.
fn wait_exit(pid: i32) -> i32 {
    let t0 = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on a child pid with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid {pid}: {}", std::io::Error::last_os_error());
        if r == pid {
            assert!(
                libc::WIFEXITED(status),
                "daemon {pid} ended by a signal: {status:#x}"
            );
            return libc::WEXITSTATUS(status);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "daemon {pid} still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the store holds `rel` with `bytes`, recorded as written back.
fn assert_written_back(store: &Path, rel: &str, bytes: &[u8]) {
    let stored = std::fs::read(store.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert!(stored == bytes, "{rel}: the store holds other bytes");
    let res = Resolution::ALL
        .into_iter()
        .find(|r| rel.contains(&format!("/{}/", r.name())))
        .unwrap();
    let rec = ChunkRecord::load(
        &DirStore::create(store).unwrap(),
        &TileYear::new("35VLH", YEAR),
        res,
    )
    .unwrap();
    let key = rel.split_once("/data/").unwrap().1;
    let entry = rec
        .chunks
        .iter()
        .find(|(k, _)| k.to_string() == key)
        .map(|(_, e)| e);
    assert_eq!(
        entry,
        Some(&ChunkEntry::Data {
            bytes: bytes.len() as u64
        }),
        "{rel} recorded"
    );
}

/// Waits for a foreground `datacube mount` to log that it serves.
fn wait_ready(child: &mut std::process::Child, log: &Path) {
    let t0 = Instant::now();
    loop {
        let logged = std::fs::read_to_string(log).unwrap_or_default();
        if logged.contains("(ready)") {
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("datacube mount exited with {st}:\n{logged}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not ready:\n{logged}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unprivileged_user_mounts_recovers_a_stale_mount_and_unmounts_with_fusermount3() {
    let Some(user) = user_or_skip() else {
        return;
    };
    let want = oracle(CHUNK_A);
    let work = work_dir("daemon-user");
    let home = work.join("home");
    user.dir(&home);
    let (mnt, store, log) = (home.join("mnt"), home.join("store"), work.join("mount.log"));
    user.dir(&mnt);
    let start = |log: &Path| {
        let mut cmd = user.command(&home, bin());
        mount_cmd(&mut cmd, &mnt, &store, &[]);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        wait_ready(&mut child, log);
        child
    };
    let read_as_user = |rel: &str| {
        let out = user
            .command(&home, "cat")
            .arg(mnt.join(rel))
            .output()
            .unwrap();
        assert!(out.status.success(), "{rel}: {}", text(&out.stderr));
        out.stdout
    };

    // A first mount, killed (SIGKILL) after a read: its mount point is left stale, as after a
    // crash.
    let mut first = start(&work.join("first.log"));
    assert!(read_as_user(CHUNK_B) == oracle(CHUNK_B));
    first.kill().unwrap();
    first.wait().unwrap();
    let out = user.command(&home, "ls").arg(&mnt).output().unwrap();
    assert!(
        text(&out.stderr).contains("Transport endpoint is not connected"),
        "{}",
        text(&out.stderr)
    );

    // The next mount, as the user, detaches it and serves.
    let mut child = start(&log);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("stale FUSE mount"), "{logged}");

    // The mount is the user's: they read it, root does not (no allow_other).
    let (fstype, _) = datacube::fs::mountpoint::mount_entry(&mnt).unwrap();
    assert_eq!(fstype, "fuse.datacube");
    assert!(
        read_as_user(CHUNK_A) == want,
        "the chunk read as the user differs"
    );
    let owner = user
        .command(&home, "stat")
        .args(["-c", "%u"])
        .arg(mnt.join("35VLH"))
        .output()
        .unwrap();
    assert_eq!(text(&owner.stdout).trim(), user.uid.to_string());
    if is_root() {
        let e = std::fs::metadata(mnt.join("35VLH")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    }

    let out = user
        .command(&home, "fusermount3")
        .arg("-u")
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}:\n{logged}");
    assert!(!is_mounted(&mnt));
    assert!(logged.contains("writeback drained"), "{logged}");
    assert_written_back(&store, CHUNK_A, &want);
    let meta = std::fs::metadata(store.join(CHUNK_A)).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        user.uid,
        "written by the user"
    );
}

#[test]
fn daemon_returns_once_serving_and_stops_cleanly_on_fusermount3_and_sigterm() {
    become_subreaper();
    let (want_a, want_b) = (oracle(CHUNK_A), oracle(CHUNK_B));
    let work = work_dir("daemon-log");
    let (mnt, store, log) = (work.join("mnt"), work.join("store"), work.join("d.log"));
    std::fs::create_dir_all(&mnt).unwrap();
    let log_arg = log.to_str().unwrap();

    // Started, then stopped by fusermount3 -u.
    let out = daemon(&mnt, &store, &["--log-file", log_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = daemon_pid(&out);
    // Serving as soon as the command returned: no waiting here.
    assert!(is_mounted(&mnt));
    let got = std::fs::read(mnt.join(CHUNK_A)).unwrap();
    assert!(got == want_a, "the chunk read through the daemon differs");
    std::fs::read(mnt.join(".datacube/stats.json")).unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!("datacube mounted at {} (ready)", mnt.display())),
        "{logged}"
    );
    let st = Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        wait_exit(pid),
        0,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!is_mounted(&mnt));
    assert_written_back(&store, CHUNK_A, &want_a);

    // A second one on the same store and log, stopped by SIGTERM.
    let out = daemon(&mnt, &store, &["--log-file", log_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid2 = daemon_pid(&out);
    assert_ne!(pid, pid2);
    let got = std::fs::read(mnt.join(CHUNK_B)).unwrap();
    assert!(got == want_b, "the chunk read through the daemon differs");
    // The first chunk again, from the store this time.
    assert!(std::fs::read(mnt.join(CHUNK_A)).unwrap() == want_a);
    signal(pid2 as u32, libc::SIGTERM);
    assert_eq!(
        wait_exit(pid2),
        0,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!is_mounted(&mnt));
    assert_written_back(&store, CHUNK_B, &want_b);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.matches("(ready)").count(), 2, "{logged}");
    assert_eq!(logged.matches("writeback drained").count(), 2, "{logged}");
}

#[test]
fn daemon_that_cannot_mount_exits_non_zero_with_the_error() {
    become_subreaper();
    let work = work_dir("daemon-fail");
    let (store, log) = (work.join("store"), work.join("d.log"));
    let missing = work.join("missing");

    // Without a log file: the daemon's stderr comes back through a pipe.
    let out = daemon(&missing, &store, &[]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("mount point {} does not exist", missing.display())),
        "{err}"
    );
    assert!(
        err.contains("exited with exit status: 2 before serving"),
        "{err}"
    );

    // With a log file: the new part of the log is printed, and stays in the log.
    std::fs::write(&log, "an older run's line\n").unwrap();
    let out = daemon(&missing, &store, &["--log-file", log.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains(&format!("(log: {})", log.display())), "{err}");
    assert!(!err.contains("an older run"), "{err}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.starts_with("an older run's line\n"), "{logged}");
    assert!(logged.contains("does not exist"), "{logged}");

    // A store of another collection.
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = Command::new(bin())
        .arg("mount")
        .arg(&mnt)
        .arg("--store")
        .arg(intaken_store())
        .args(["--collection", "sentinel-1-sig0", "--tiles", "E048N015T3"])
        .arg("--source")
        .arg(format!("file:{}", work.join("no-mirror").display()))
        .arg("--daemon")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the store holds collection sentinel-2-l1c, not sentinel-1-sig0"),
        "{err}"
    );
    assert!(!is_mounted(&mnt));
    // No daemon is left behind: this process (their reaper) has no child at all.
    // SAFETY: waitpid for any child, without blocking.
    let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(r, -1, "a process was left running ({r})");
}

#[test]
fn allow_other_as_a_user_needs_user_allow_other_and_then_serves_other_users() {
    let Some(user) = user_or_skip() else {
        return;
    };
    become_subreaper();
    let work = work_dir("daemon-allow-other");
    let home = work.join("home");
    user.dir(&home);
    let (mnt, store) = (home.join("mnt"), home.join("store"));
    user.dir(&mnt);
    user.dir(&store);
    let conf: PathBuf = work.join("fuse.conf");
    std::fs::write(
        &conf,
        "# mount_max = 1000\n#user_allow_other\n  # user_allow_other\n",
    )
    .unwrap();

    // As the user, in the foreground and as a daemon: the clear error, before mounting.
    for daemon in [false, true] {
        let mut cmd = user.command(&home, bin());
        mount_cmd(&mut cmd, &mnt, &store, &["--allow-other"]);
        if daemon {
            cmd.arg("--daemon");
        }
        let out = cmd.env("DATACUBE_TEST_FUSE_CONF", &conf).output().unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains(&format!(
                "--allow-other: {} has no `user_allow_other` line",
                conf.display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!("echo user_allow_other >> {}", conf.display())),
            "{err}"
        );
        assert!(!is_mounted(&mnt));
    }

    // Root needs no such line; then the user reads root's mount.
    if is_root() {
        let root_store = work.join("root-store");
        let out = {
            let mut cmd = Command::new(bin());
            mount_cmd(&mut cmd, &mnt, &root_store, &["--allow-other", "--daemon"]);
            cmd.env("DATACUBE_TEST_FUSE_CONF", &conf).output().unwrap()
        };
        assert!(out.status.success(), "{}", text(&out.stderr));
        let pid = daemon_pid(&out);
        let read = user
            .command(&home, "cat")
            .arg(mnt.join(CHUNK_B))
            .output()
            .unwrap();
        assert!(read.status.success(), "{}", text(&read.stderr));
        assert!(read.stdout == oracle(CHUNK_B), "read by the user: differs");
        signal(pid as u32, libc::SIGTERM);
        assert_eq!(wait_exit(pid), 0);
        assert_written_back(&root_store, CHUNK_B, &read.stdout);
    }
}
