//! A directory store: one file per key, written through a temporary file and a rename.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{check_key, Creator, ObjectReader, Store};
use crate::util::temp_files;

pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// Opens (creating if needed) the store directory.
    pub fn create(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating store directory {}", root.display()))?;
        Ok(DirStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

impl Store for DirStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        atomic_write(&self.path(key)?, bytes)
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.path(key)?;
        // The whole content goes to a private temporary file first; `link` then publishes it
        // under the final name only if that name is free (atomic, also over NFS and Lustre), so
        // a reader never sees a partial object and exactly one of racing writers wins.
        let tmp = write_temp(&path, bytes)?;
        let r = link_new(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        r
    }

    /// Present or absent; a file carries no creation token (`put_if_absent` never needs one).
    fn creator(&self, key: &str) -> Result<Creator> {
        let path = self.path(key)?;
        match std::fs::symlink_metadata(&path) {
            Ok(_) => Ok(Creator::Unmarked),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Creator::Absent),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn open_object(&self, key: &str) -> Result<Option<Box<dyn ObjectReader>>> {
        let path = self.path(key)?;
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        let size = file
            .metadata()
            .with_context(|| format!("opening {}", path.display()))?
            .len();
        Ok(Some(Box::new(OpenFile { file, size, path })))
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    fn list_dir(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.trim_matches('/');
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix)?
        };
        let mut names = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for entry in rd {
                    let name = entry?.file_name().to_string_lossy().into_owned();
                    if !is_temp_name(&name) {
                        names.push(name);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        }
        names.sort();
        Ok(names)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    /// Removes the temporary files of writers that are gone: on this host, those whose process
    /// no longer exists; from other hosts sharing the directory (NFS, Lustre), those untouched for
    /// a day. A live writer's file is never touched, so writers on one store never break each
    /// other's atomic writes.
    fn sweep_temp(&self, prefix: &str) -> Result<usize> {
        fn walk(dir: &Path, n: &mut usize) -> Result<()> {
            let rd = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
            };
            for entry in rd {
                let entry = entry?;
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue; // removed meanwhile
                };
                if kind.is_dir() {
                    walk(&path, n)?;
                } else if abandoned_temp(&entry.file_name().to_string_lossy(), &path) {
                    match std::fs::remove_file(&path) {
                        Ok(()) => *n += 1,
                        // Renamed into place by its writer, or swept by another process.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("removing {}", path.display()))
                        }
                    }
                }
            }
            Ok(())
        }
        let mut n = 0;
        walk(&self.path(prefix)?, &mut n)?;
        Ok(n)
    }
}

/// Names `atomic_write` uses for its temporary files: `.<name>.tmp-<host>-<pid>-<n>`.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Whether `name` is a temporary file whose writer is gone.
fn abandoned_temp(name: &str, path: &Path) -> bool {
    is_temp_name(name)
        && name
            .rfind(".tmp-")
            .is_some_and(|i| temp_files::abandoned(&name[i + 5..], path))
}

/// Writes `bytes` to `path` via a uniquely named temporary file in the same directory and a
/// rename, creating parent directories. A crash leaves at worst a `*.tmp-*` file, never a torn
/// `path`. (No fsync: this protects against process death, which is what the daemon and intake
/// face; a power loss may lose recent writes, which are recomputed.)
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temp(path, bytes)?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Links the private file `tmp` at `path` if that name is free: whether this call's file is now
/// there. `EEXIST` is also what an NFS client gets when it retransmits a LINK whose reply was lost
/// and the server's duplicate-request cache forgot the first one; the name then points at our own
/// file, so the answer is taken from the inode, not the error (the check `open(2)` recommends).
fn link_new(tmp: &Path, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::hard_link(tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let ours =
                std::fs::metadata(tmp).with_context(|| format!("reading {}", tmp.display()))?;
            Ok(match std::fs::symlink_metadata(path) {
                Ok(m) => m.dev() == ours.dev() && m.ino() == ours.ino(),
                // Removed since: it was not ours (ours would still link our file).
                Err(_) => false,
            })
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// Writes `bytes` to a fresh temporary file beside `path` (creating parent directories) and
/// returns its path: `.<name>.tmp-<host>-<pid>-<n>`, which names its writer for the sweep.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let dir = path.parent().context("path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .context("path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", temp_files::owner_tag()));
    let result = (|| -> Result<()> {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A stored file kept open: a later rename over its name (a rewrite) leaves these bytes intact.
struct OpenFile {
    file: std::fs::File,
    size: u64,
    path: PathBuf,
}

impl ObjectReader for OpenFile {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let r = super::object::clip(self.size, offset, len);
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        self.file
            .read_exact_at(&mut buf, r.start)
            .with_context(|| {
                format!(
                    "reading bytes {}..{} of {}",
                    r.start,
                    r.end,
                    self.path.display()
                )
            })?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_retransmitted_after_a_lost_reply_still_counts_as_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g/1.json");
        let tmp = write_temp(&path, b"mine").unwrap();
        // The first LINK landed, its reply was lost; the retransmission meets our own file.
        std::fs::hard_link(&tmp, &path).unwrap();
        assert!(link_new(&tmp, &path).unwrap());
        // Another writer's file under the name: a lost race.
        let other = write_temp(&path, b"theirs").unwrap();
        assert!(!link_new(&other, &path).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"mine");
        let store = DirStore::create(dir.path()).unwrap();
        assert_eq!(store.creator("g/1.json").unwrap(), Creator::Unmarked);
        assert_eq!(store.creator("g/2.json").unwrap(), Creator::Absent);
    }

    #[test]
    fn the_sweep_removes_only_abandoned_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::create(dir.path()).unwrap();
        store.put("t/a/data", b"kept").unwrap();
        let d = dir.path().join("t/a");
        // A process of this host that has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let mine = std::process::id();
        let host = temp_files::hostname();
        let files = [
            (
                format!(".x.tmp-{host}-{mine}-1"),
                false,
                "a live writer on this host",
            ),
            (
                format!(".y.tmp-{host}-{dead}-2"),
                true,
                "a dead writer on this host",
            ),
            (
                ".z.tmp-other-node-7-3".to_string(),
                false,
                "a fresh file of another host",
            ),
            (
                ".w.tmp-other-node-7-4".to_string(),
                true,
                "a day-old file of another host",
            ),
            (
                ".v.tmp-17-5".to_string(),
                true,
                "an old-style name, a day old",
            ),
        ];
        for (name, _, _) in &files {
            std::fs::write(d.join(name), b"partial").unwrap();
        }
        let day_ago = std::time::SystemTime::now()
            - temp_files::FOREIGN_AGE
            - std::time::Duration::from_secs(60);
        for name in [".w.tmp-other-node-7-4", ".v.tmp-17-5"] {
            let f = std::fs::File::options()
                .write(true)
                .open(d.join(name))
                .unwrap();
            f.set_modified(day_ago).unwrap();
        }
        assert_eq!(store.sweep_temp("t").unwrap(), 3);
        for (name, gone, what) in &files {
            assert_eq!(!d.join(name).exists(), *gone, "{what}: {name}");
        }
        assert_eq!(
            store.get("t/a/data").unwrap().as_deref(),
            Some(&b"kept"[..])
        );
        assert!(
            store.list_dir("t/a").unwrap() == ["data"],
            "temporary files are never listed"
        );
    }
}
