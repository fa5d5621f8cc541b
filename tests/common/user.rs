//! Running commands as an unprivileged user, for tests of user mounts: the system user
//! `datacube-test` (created when the tests run as root), entered with `setpriv`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub const NAME: &str = "datacube-test";

#[derive(Debug, Clone, Copy)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

fn id(flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, NAME]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn lookup() -> Option<User> {
    Some(User {
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

pub fn is_root() -> bool {
    // SAFETY: getuid cannot fail and touches no memory.
    unsafe { libc::getuid() == 0 }
}

/// Users mount FUSE through /dev/fuse (fusermount3 opens it with their rights), which udev makes
/// 0666 on a normal system; some containers leave it root's. As root, this gives it the usual
/// mode (as `useradd` below provisions the user); else why users cannot mount here.
fn dev_fuse_for_users() -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let dev = Path::new("/dev/fuse");
    let mode = std::fs::metadata(dev)
        .map_err(|e| format!("/dev/fuse: {e}"))?
        .permissions()
        .mode();
    if mode & 0o006 == 0o006 {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "/dev/fuse is mode {:o}: users cannot mount FUSE here (chmod 0666 /dev/fuse as root)",
            mode & 0o777
        ));
    }
    eprintln!(
        "note: /dev/fuse was mode {:o}; making it 0666, the mode udev gives it on a normal system",
        mode & 0o777
    );
    std::fs::set_permissions(dev, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("chmod 0666 /dev/fuse: {e}"))
}

/// The unprivileged test user, created if absent when running as root; else why there is none.
/// Tests running at once may race to create it: `useradd` fails for all but one (the user exists,
/// or /etc/passwd is locked), so the user is looked up again until it appears.
pub fn test_user() -> Result<User, String> {
    dev_fuse_for_users()?;
    if let Some(u) = lookup() {
        return Ok(u);
    }
    if !is_root() {
        return Err(format!(
            "not root and no user {NAME} (create it: useradd --system --no-create-home {NAME})"
        ));
    }
    let mut last = String::new();
    for _ in 0..50 {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                NAME,
            ])
            .output()
            .map_err(|e| format!("useradd: {e}"))?;
        if let Some(u) = lookup() {
            assert_ne!(u.uid, 0, "{NAME} must not be root");
            return Ok(u);
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot create user {NAME}: {last}");
}

impl User {
    /// `program` run as this user (real and effective ids, no supplementary groups, so no
    /// capabilities either), with `HOME` set to `home`.
    pub fn command(&self, home: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program)
            .env("HOME", home)
            .env("USER", NAME)
            .env("LC_ALL", "C")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_RUNTIME_DIR");
        c
    }

    /// Makes `path` (a directory just created by root) this user's.
    pub fn give(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).unwrap();
    }

    /// Creates directory `path` owned by this user.
    pub fn dir(&self, path: &Path) {
        std::fs::create_dir_all(path).unwrap();
        self.give(path);
    }
}
