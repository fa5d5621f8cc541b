//! The FUSE adapter (fuser): inode numbers ↔ paths, replies, errno values. All semantics are in
//! `Cube`; requests that need a chunk are answered from the worker pool when it is ready.
//!
//! The daemon is not asked to open files. The first OPEN is answered `ENOSYS`, after which the
//! kernel opens files of this mount by itself, keeps their pages (`FOPEN_KEEP_CACHE` is its default then) and
//! sends neither OPEN nor RELEASE: a reader that opens a shard once per inner chunk it reads
//! (zarr-python, zarrs-python's pipeline, tensorstore: 100 to 1000 opens per patch time series)
//! no longer waits on the daemon for each. A READ names its file by inode and is answered from
//! what the cube holds for that path at that moment; the only volatile file, `stats.json`, has
//! no attribute cache, a new mtime at each GETATTR and a constant length, and the kernel drops
//! its pages when the mtime changes (`FUSE_AUTO_INVAL_DATA`), so each read() of it is current.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, Generation,
    INodeNo, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

use super::attr::{Attr, FsError, Kind};
use super::content::Content;
use super::pool::WorkPool;
use super::view::CubeView;

/// Immutable files (chunks, metadata) may be cached by the kernel for long.
const TTL_FILE: Duration = Duration::from_secs(3600);
/// Ranged reads of stored objects in flight at once (the kernel sends up to 12 background
/// requests by default; S3 latency, not CPU, bounds them).
const STORE_READ_THREADS: usize = 8;
/// Directories too: a directory only gains entries (chunks computed, days appended), and a
/// lookup of a name that does not exist yet is never cached (ENOENT carries no entry), so a new
/// entry is found at once; listings are not cached (no `FOPEN_CACHE_DIR`); what a refresh changes
/// is invalidated by path (`invalidator`). A short TTL here made every reader's path walk ask the
/// daemon again for each directory of `TILE/YEAR/RES/ARRAY/c/…` once it expired.
const TTL_DIR: Duration = TTL_FILE;

/// Inode numbers ↔ paths. A number is handed out with each successful lookup reply and dropped
/// when the kernel forgets its last reference, so the table holds what the kernel holds, not every
/// path ever seen. Numbers are never reused.
///
/// A file that a refresh changes is *retired*: its path gets a new number at the next lookup, and
/// reads of the old one fail. The kernel opens files without asking the daemon (see the module's
/// doc), so a process that keeps a file open across the refresh would otherwise read the rest of
/// it from the new version; it gets `EIO` instead, never one file made of two versions.
struct Inodes {
    next: u64,
    by_ino: HashMap<u64, Entry>,
    by_path: HashMap<String, u64>,
}

/// An inode the kernel holds.
struct Entry {
    path: String,
    /// Lookups the kernel has not forgotten yet.
    refs: u64,
    file: bool,
    retired: bool,
}

/// Why a read of an inode cannot be answered.
#[derive(Debug, PartialEq)]
enum Unreadable {
    Unknown,
    /// Retired by a refresh: the path of the file it was.
    Retired(String),
}

impl Inodes {
    fn new() -> Self {
        let mut i = Inodes {
            next: 2,
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
        };
        i.by_ino.insert(
            1,
            Entry {
                path: String::new(),
                refs: 1,
                file: false,
                retired: false,
            },
        );
        i.by_path.insert(String::new(), 1);
        i
    }
    /// The inode of `path` for a lookup reply: one more kernel reference.
    fn lookup(&mut self, path: &str, file: bool) -> u64 {
        if let Some(ino) = self.by_path.get(path) {
            self.by_ino.get_mut(ino).expect("consistent").refs += 1;
            return *ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(
            ino,
            Entry {
                path: path.to_string(),
                refs: 1,
                file,
                retired: false,
            },
        );
        self.by_path.insert(path.to_string(), ino);
        ino
    }
    /// The inode shown for `path` in a directory listing (no kernel reference is taken).
    fn peek(&mut self, path: &str) -> u64 {
        if let Some(ino) = self.by_path.get(path) {
            return *ino;
        }
        self.next += 1;
        self.next - 1
    }
    fn forget(&mut self, ino: u64, n: u64) {
        if ino == 1 {
            return;
        }
        if let Some(e) = self.by_ino.get_mut(&ino) {
            e.refs = e.refs.saturating_sub(n);
            if e.refs == 0 {
                let e = self.by_ino.remove(&ino).expect("present");
                if self.by_path.get(&e.path) == Some(&ino) {
                    self.by_path.remove(&e.path);
                }
            }
        }
    }
    fn path(&self, ino: INodeNo) -> Option<String> {
        self.by_ino.get(&ino.0).map(|e| e.path.clone())
    }
    /// The path to read `ino` from, unless a refresh retired it.
    fn readable(&self, ino: INodeNo) -> Result<String, Unreadable> {
        match self.by_ino.get(&ino.0) {
            None => Err(Unreadable::Unknown),
            Some(e) if e.retired => Err(Unreadable::Retired(e.path.clone())),
            Some(e) => Ok(e.path.clone()),
        }
    }
    /// The inodes of the given paths (exact paths, and prefixes ending in `/`); the files among
    /// them are detached from their paths, which get new numbers at their next lookup.
    fn detach_changed(&mut self, paths: &[String]) -> Vec<(u64, String)> {
        let hit: Vec<(u64, String)> = self
            .by_path
            .iter()
            .filter(|(p, _)| {
                paths.iter().any(|q| {
                    if q.ends_with('/') {
                        p.starts_with(q.as_str())
                    } else {
                        *p == q
                    }
                })
            })
            .map(|(p, ino)| (*ino, p.clone()))
            .collect();
        for (ino, path) in &hit {
            if self.by_ino[ino].file {
                self.by_path.remove(path);
            }
        }
        hit
    }
    /// Reads of these inodes, the files among them, fail from now on.
    fn retire(&mut self, inos: impl Iterator<Item = u64>) {
        for ino in inos {
            if let Some(e) = self.by_ino.get_mut(&ino) {
                e.retired = e.file;
            }
        }
    }
}

pub struct DatacubeFs {
    cube: Arc<dyn CubeView>,
    inodes: Arc<Mutex<Inodes>>,
    /// Reads of stored objects, which wait on the store, run here rather than on FUSE threads.
    store_reads: Arc<WorkPool>,
    uid: u32,
    gid: u32,
    time: SystemTime,
}

impl DatacubeFs {
    pub fn new(cube: Arc<dyn CubeView>) -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        DatacubeFs {
            cube,
            inodes: Arc::new(Mutex::new(Inodes::new())),
            store_reads: Arc::new(WorkPool::new("store-read", STORE_READ_THREADS)),
            uid,
            gid,
            time: SystemTime::now(),
        }
    }

    fn path(&self, ino: INodeNo) -> Result<String, Errno> {
        self.inodes.lock().unwrap().path(ino).ok_or(Errno::ENOENT)
    }

    /// The path a READ or GETATTR of `ino` is answered from; a file retired by a refresh is `EIO`
    /// (its attributes too: the path may name no file yet in the new version).
    fn readable(&self, ino: INodeNo) -> Result<String, Errno> {
        match self.inodes.lock().unwrap().readable(ino) {
            Ok(p) => Ok(p),
            Err(Unreadable::Unknown) => Err(Errno::ENOENT),
            Err(Unreadable::Retired(path)) => {
                tracing::error!(
                    "/{path}: EIO: a refresh changed this file while it was open; open it again"
                );
                Err(Errno::EIO)
            }
        }
    }

    /// A function that makes the kernel forget what it cached of the given paths (exact paths,
    /// and prefixes ending in `/`): the attributes and pages of each inode it holds, and the
    /// directory entry, so the next lookup or read comes to us. Called after a change of catalog
    /// generation, from the refresh thread (never from a request handler).
    pub fn invalidator(&self) -> impl Fn(&fuser::Notifier, &[String]) + Send + Sync + 'static {
        let inodes = self.inodes.clone();
        move |notifier, paths| {
            // In this order: a lookup gets a new inode for a changed file from the first step on;
            // the kernel's entries go before the old inodes are retired, so that a file opened
            // through an entry not yet dropped (dropping one waits for the lookups in progress in
            // its directory) was open while the refresh ran, not after it.
            let targets = inodes.lock().unwrap().detach_changed(paths);
            for (_, path) in &targets {
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
                let parent_ino = inodes.lock().unwrap().by_path.get(parent).copied();
                if let Some(pino) = parent_ino {
                    let _ = notifier.inval_entry(INodeNo(pino), OsStr::new(name));
                }
            }
            inodes
                .lock()
                .unwrap()
                .retire(targets.iter().map(|(ino, _)| *ino));
            for (ino, _) in &targets {
                let _ = notifier.inval_inode(INodeNo(*ino), 0, 0);
            }
        }
    }

    fn attr_maker(&self) -> impl Fn(u64, &Attr) -> FileAttr + Send + 'static {
        let (uid, gid, time) = (self.uid, self.gid, self.time);
        move |ino, a| {
            // A volatile file's mtime changes with each GETATTR, which makes the kernel drop the
            // pages it holds of it (`FUSE_AUTO_INVAL_DATA`) and READ it again.
            let time = if a.volatile { SystemTime::now() } else { time };
            FileAttr {
                ino: INodeNo(ino),
                size: a.size,
                blocks: a.size.div_ceil(512),
                atime: time,
                mtime: time,
                ctime: time,
                crtime: time,
                kind: match a.kind {
                    Kind::Dir => FileType::Directory,
                    Kind::File => FileType::RegularFile,
                },
                perm: match a.kind {
                    Kind::Dir => 0o555,
                    Kind::File => 0o444,
                },
                nlink: match a.kind {
                    Kind::Dir => 2,
                    Kind::File => 1,
                },
                uid,
                gid,
                rdev: 0,
                blksize: 1 << 17,
                flags: 0,
            }
        }
    }
}

fn ttl(a: &Attr) -> Duration {
    match (a.kind, a.volatile) {
        (_, true) => Duration::ZERO,
        (Kind::Dir, _) => TTL_DIR,
        (Kind::File, _) => TTL_FILE,
    }
}

/// The errno of a failed `op` on `path`. An I/O failure is logged here, once per request,
/// with the path asked for and the whole cause (the sites that fail only return it).
fn errno(op: &str, path: &str, e: FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::Io(cause) => {
            tracing::error!("{op} /{path}: EIO: {cause}");
            Errno::EIO
        }
    }
}

fn child_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

impl Filesystem for DatacubeFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Larger read requests: chunk files are tens of MiB and read whole.
        if let Err(max) = config.set_max_readahead(1 << 20) {
            let _ = config.set_max_readahead(max);
        }
        // Lookups and listings of one directory in parallel (the kernel serializes them per
        // directory otherwise): many loader workers walk the same `c/…` directories at once.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
        // Pages of a file whose mtime changed at a GETATTR are dropped: how the stats file stays
        // current without OPEN requests (see the module's doc). Other files keep one mtime.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_AUTO_INVAL_DATA);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent = match self.path(parent) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let Some(name) = name.to_str() else {
            return reply.error(Errno::EINVAL);
        };
        let path = child_path(&parent, name);
        let inodes = self.inodes.clone();
        let make = self.attr_maker();
        let cube = self.cube.clone();
        self.cube.when_year_ready(
            &path.clone(),
            Box::new(move || {
                cube.lookup(
                    &path.clone(),
                    Box::new(move |r| match r {
                        Ok(a) => {
                            let ino = inodes.lock().unwrap().lookup(&path, a.kind == Kind::File);
                            reply.entry(&ttl(&a), &make(ino, &a), Generation(0));
                        }
                        Err(e) => reply.error(errno("lookup", &path, e)),
                    }),
                )
            }),
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes.lock().unwrap().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.readable(ino) {
            Err(e) => reply.error(e),
            Ok(path) => {
                let cube = self.cube.clone();
                let make = self.attr_maker();
                self.cube.when_year_ready(
                    &path.clone(),
                    Box::new(move || match cube.getattr(&path) {
                        Ok(a) => reply.attr(&ttl(&a), &make(ino.0, &a)),
                        Err(e) => reply.error(errno("getattr", &path, e)),
                    }),
                );
            }
        }
    }

    /// Answered `ENOSYS` (the mount is read-only; a write is refused by the kernel before it
    /// gets here): from then on the kernel opens and closes files without asking us (see the
    /// module's doc). Counted in `fs.opens`, which therefore stays at one.
    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.cube.stats().opens.inc();
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        reply.error(Errno::ENOSYS)
    }

    /// A page-cache miss: `size` bytes at `offset` of the file at `ino`'s path, from what the cube
    /// holds for it now (a cached or computed chunk, a stored object read by range, metadata, or
    /// a fresh stats document).
    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let path = match self.readable(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let cube = self.cube.clone();
        let store_reads = self.store_reads.clone();
        self.cube.when_year_ready(
            &path.clone(),
            Box::new(move || {
                let asked = path.clone();
                let view = cube.clone();
                view.open(
                    &path,
                    Box::new(move |r| {
                        let answer = move |r: Result<&[u8], Errno>| match r {
                            Ok(data) => {
                                let stats = cube.stats();
                                stats.reads.inc();
                                stats.bytes_served.add(data.len() as u64);
                                reply.data(data);
                            }
                            Err(e) => reply.error(e),
                        };
                        match r {
                            Ok(Content::Bytes(b)) => {
                                let r = crate::store::clip(b.len() as u64, offset, size as usize);
                                answer(Ok(&b[r.start as usize..r.end as usize]));
                            }
                            Ok(Content::Stored(o)) => {
                                store_reads.spawn(move || match o.read(offset, size as usize) {
                                    Ok(data) => answer(Ok(&data)),
                                    Err(e) => answer(Err(errno("read", &asked, e))),
                                })
                            }
                            Err(e) => answer(Err(errno("read", &asked, e))),
                        }
                    }),
                )
            }),
        );
    }

    /// Nothing to flush (read-only). Answered `ENOSYS`, which the kernel remembers: it stops
    /// sending FLUSH, which it would otherwise send, synchronously, at every close() (files opened
    /// without OPEN have no `FOPEN_NOFLUSH`).
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let cube = self.cube.clone();
        let inodes = self.inodes.clone();
        self.cube.when_year_ready(
            &path.clone(),
            Box::new(move || {
                let children = match cube.list(&path) {
                    Ok(c) => c,
                    Err(e) => return reply.error(errno("readdir", &path, e)),
                };
                let parent_ino = {
                    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    inodes.lock().unwrap().peek(parent)
                };
                let mut entries = vec![
                    (ino.0, FileType::Directory, ".".to_string()),
                    (parent_ino, FileType::Directory, "..".to_string()),
                ];
                {
                    let mut inodes = inodes.lock().unwrap();
                    for (name, kind) in children {
                        let child = inodes.peek(&child_path(&path, &name));
                        let t = match kind {
                            Kind::Dir => FileType::Directory,
                            Kind::File => FileType::RegularFile,
                        };
                        entries.push((child, t, name));
                    }
                }
                for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(INodeNo(ino), (i + 1) as u64, kind, &name) {
                        break;
                    }
                }
                reply.ok();
            }),
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::EROFS)
        } else {
            reply.ok()
        }
    }

    // Everything that would change the tree: read-only file system.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }
    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }
    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }
    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }
    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }
    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }
    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }
    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }
    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    /// No ioctls: ENOTTY, quietly (Python's `open()` asks one of every file it opens).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inodes_follow_kernel_references() {
        let mut i = Inodes::new();
        let a = i.lookup("35VLH", false);
        assert_eq!(i.lookup("35VLH", false), a);
        assert_eq!(i.peek("35VLH"), a);
        let listed = i.peek("35VLJ");
        assert!(
            i.path(INodeNo(listed)).is_none(),
            "listing takes no reference"
        );
        i.forget(a, 1);
        assert_eq!(i.path(INodeNo(a)).as_deref(), Some("35VLH"));
        i.forget(a, 1);
        assert!(i.path(INodeNo(a)).is_none());
        let b = i.lookup("35VLH", false);
        assert_ne!(a, b, "numbers are never reused");
        i.forget(1, 99);
        assert_eq!(i.path(INodeNo(1)).as_deref(), Some(""));
    }

    #[test]
    fn a_refresh_retires_changed_files_and_only_them() {
        let mut i = Inodes::new();
        let dir = i.lookup("T/2024/10m/data", false);
        let meta = i.lookup("T/2024/10m/data/zarr.json", true);
        let chunk = i.lookup("T/2024/10m/data/c/0/0/0/0", true);
        let other = i.lookup("T/2024/20m/data/zarr.json", true);
        let hit = i.detach_changed(&["T/2024/10m/".to_string()]);
        assert_eq!(hit.len(), 3);
        assert_eq!(
            i.readable(INodeNo(meta)),
            Ok("T/2024/10m/data/zarr.json".into()),
            "readable until retired"
        );
        i.retire(hit.iter().map(|h| h.0));
        assert_eq!(i.readable(INodeNo(dir)), Ok("T/2024/10m/data".into()));
        for ino in [meta, chunk] {
            assert!(matches!(
                i.readable(INodeNo(ino)),
                Err(Unreadable::Retired(_))
            ));
        }
        assert_eq!(
            i.readable(INodeNo(other)),
            Ok("T/2024/20m/data/zarr.json".into())
        );
        // The path gets a new number; forgetting the old one leaves the new one in place.
        let meta2 = i.lookup("T/2024/10m/data/zarr.json", true);
        assert_ne!(meta2, meta);
        assert_eq!(
            i.lookup("T/2024/10m/data", false),
            dir,
            "directories keep theirs"
        );
        i.forget(meta, 1);
        assert_eq!(i.peek("T/2024/10m/data/zarr.json"), meta2);
        assert_eq!(
            i.readable(INodeNo(meta2)),
            Ok("T/2024/10m/data/zarr.json".into())
        );
    }
}
