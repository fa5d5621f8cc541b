//! The mount point itself: detecting a live or stale (crashed daemon) FUSE mount, recovering a
//! stale one, and detaching a busy one; what a user needs to mount (/dev/fuse, `allow_other`).
//! Nothing here needs root: a user's mounts go through the setuid `fusermount3` (mount, `-u`,
//! `-z`).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// The mount entry at `mountpoint` in `/proc/self/mountinfo`: (fstype, source).
pub fn mount_entry(mountpoint: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_string_lossy();
    info.lines().rev().find_map(|line| {
        // id parent major:minor root mountpoint options [optional...] - fstype source superopts
        let (pre, post) = line.split_once(" - ")?;
        let mp = unescape(pre.split(' ').nth(4)?);
        if mp != want {
            return None;
        }
        let mut post = post.split(' ');
        Some((post.next()?.to_string(), unescape(post.next()?)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Absolute form of `p` without touching it (a stale mount point cannot be canonicalized).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).with_context(|| format!("mount point {}", p.display()))?;
    // Resolve symlinks of the parent, which is alive even when the mount point is stale.
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => match parent.canonicalize() {
            Ok(parent) => Ok(parent.join(name)),
            Err(_) => Ok(abs),
        },
        _ => Ok(abs),
    }
}

/// Checks that `mountpoint` can be mounted on: an existing directory, not a live mount. A stale
/// FUSE mount left by a crashed daemon ("Transport endpoint is not connected") is detached.
pub fn prepare(mountpoint: &Path) -> Result<()> {
    // Attributes may come from the kernel's cache; listing the directory asks the daemon, and
    // fails with ENOTCONN when it is gone.
    let probe = std::fs::metadata(mountpoint).and_then(|m| {
        if m.is_dir() && mount_entry(mountpoint).is_some() {
            std::fs::read_dir(mountpoint)?;
        }
        Ok(m)
    });
    match probe {
        Ok(m) if m.is_dir() => {
            if let Some((fstype, source)) = mount_entry(mountpoint) {
                anyhow::bail!(
                    "mount point {} is already mounted ({fstype} from {source}); unmount it first \
                     (fusermount3 -u {})",
                    mountpoint.display(),
                    mountpoint.display()
                );
            }
            Ok(())
        }
        Ok(_) => anyhow::bail!("mount point {} is not a directory", mountpoint.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            anyhow::bail!("mount point {} does not exist", mountpoint.display())
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied && mount_entry(mountpoint).is_some() => {
            // A FUSE mount answers only its owner (without allow_other), so another user's
            // live mount cannot even be looked at.
            let (fstype, source) = mount_entry(mountpoint).unwrap_or_default();
            anyhow::bail!(
                "mount point {} is already mounted ({fstype} from {source}), by another user; \
                 they (or root) can unmount it with fusermount3 -u {}",
                mountpoint.display(),
                mountpoint.display()
            )
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(
                "mount point {} is a stale FUSE mount (its daemon died); detaching it",
                mountpoint.display()
            );
            detach(mountpoint)?;
            match std::fs::metadata(mountpoint) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => anyhow::bail!("mount point {} is not a directory", mountpoint.display()),
                Err(e) => Err(e).with_context(|| {
                    format!("mount point {} after detaching", mountpoint.display())
                }),
            }
        }
        Err(e) => Err(e).with_context(|| format!("mount point {}", mountpoint.display())),
    }
}

/// A user's mount needs /dev/fuse open to them: fuser opens it, and so does fusermount3, which
/// mounts for users (setuid root, it opens the device with the user's rights). Its usual mode is
/// 0666 (udev's rule for it); some containers leave it root's. Checked before mounting, so the
/// error says what to change rather than "Permission denied".
pub fn check_dev_fuse() -> Result<()> {
    const DEV: &str = "/dev/fuse";
    match std::fs::File::options().read(true).write(true).open(DEV) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            let mode = std::fs::metadata(DEV)
                .map(|m| {
                    format!(
                        "mode {:04o}",
                        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777
                    )
                })
                .unwrap_or_else(|e| e.to_string());
            anyhow::bail!(
                "{DEV} is not open to this user ({mode}): FUSE mounts by users need it readable \
                 and writable by everyone, its usual mode (udev: KERNEL==\"fuse\", MODE=\"0666\"); \
                 ask an administrator to run chmod 0666 {DEV}, or mount as root"
            )
        }
        Err(e) if e.kind() == ErrorKind::NotFound => anyhow::bail!(
            "{DEV} does not exist: load the FUSE module (modprobe fuse), or give the container \
             the device (docker run --device /dev/fuse)"
        ),
        Err(e) => Err(e).with_context(|| format!("opening {DEV}")),
    }
}

/// Lazily unmounts `mountpoint` (works while files are still open): `fusermount3 -u -z`, or the
/// `umount2(MNT_DETACH)` system call when running as root.
pub fn detach(mountpoint: &Path) -> Result<()> {
    let ok = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg("-q")
        .arg(mountpoint)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes())
        .context("mount point path has a NUL byte")?;
    // SAFETY: a valid NUL-terminated path; umount2 only reads it.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        anyhow::bail!("cannot unmount {}: {e}", mountpoint.display());
    }
    Ok(())
}

/// `--allow-other` as a user: `fusermount3` allows it only when `fuse_conf` (`/etc/fuse.conf`)
/// has a `user_allow_other` line, and refuses otherwise with a message that does not say where.
/// Checked before mounting, with the fix in the error. Root needs no such line.
pub fn check_allow_other(fuse_conf: &Path) -> Result<()> {
    // SAFETY: getuid cannot fail and touches no memory.
    if unsafe { libc::getuid() } == 0 {
        return Ok(());
    }
    let why = match std::fs::read_to_string(fuse_conf) {
        Ok(text) if allows_other(&text) => return Ok(()),
        Ok(_) => "has no `user_allow_other` line (commented out or missing)",
        Err(e) if e.kind() == ErrorKind::NotFound => "does not exist",
        Err(e) => {
            // fusermount3 reads it as root and decides.
            tracing::warn!(
                "cannot read {} ({e}) to check user_allow_other",
                fuse_conf.display()
            );
            return Ok(());
        }
    };
    anyhow::bail!(
        "--allow-other: {conf} {why}, and without it only root may mount with allow_other. Ask \
         an administrator to add the line `user_allow_other` to {conf} (as root: echo \
         user_allow_other >> {conf}), or mount without --allow-other (then only you can read \
         the mount)",
        conf = fuse_conf.display()
    )
}

/// Whether a fuse.conf has an uncommented `user_allow_other` line (as fusermount3 reads it:
/// `#` starts a comment, surrounding whitespace is ignored).
fn allows_other(conf: &str) -> bool {
    conf.lines()
        .any(|l| l.split('#').next().unwrap_or("").trim() == "user_allow_other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/tmp/plain"), "/tmp/plain");
        assert_eq!(unescape(r"/x\134y"), r"/x\y");
    }

    #[test]
    fn reads_user_allow_other_as_fusermount3_does() {
        assert!(allows_other("user_allow_other\n"));
        assert!(allows_other(
            "# comment\n  user_allow_other   # yes\nmount_max = 9\n"
        ));
        assert!(!allows_other("#user_allow_other\n"));
        assert!(!allows_other("# user_allow_other\nmount_max = 1000\n"));
        assert!(!allows_other("user_allow_other_not\n"));
        assert!(!allows_other(""));
    }

    #[test]
    fn root_is_a_mount_and_tmp_dirs_are_preparable() {
        assert!(mount_entry(Path::new("/")).is_some());
        let d = tempfile::tempdir().unwrap();
        prepare(d.path()).unwrap();
        assert!(prepare(&d.path().join("missing")).is_err());
    }
}
