//! GDAL reads remote files through the sources' own range readers, and so through the source's
//! disk cache.
//!
//! GDAL's own `/vsicurl/` keeps what it fetched in memory only (per process, lost on exit); the
//! product's rule is that nothing fetched is fetched twice while the disk cache holds it. So a
//! source hands GDAL its remote files as `/vsidatacube/<n>/<name>`, a virtual file system
//! installed through GDAL's plugin API (`VSIInstallPluginHandler`, GDAL ≥ 3.0), whose reads the
//! source serves ([`VirtualFiles`]: blocks of an HTTP file, tile-parts of a JPEG 2000 file; `n`
//! names the registered instance, so a process, or a test, can hold several).
//!
//! Errors cannot cross GDAL with their message: a failed read is a short read to GDAL, which
//! reports its own generic error. The message naming the URL and range is kept per thread, and
//! [`take_error`] hands it to the caller whose GDAL call failed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};

pub const PREFIX: &str = "/vsidatacube/";

/// A set of read-only files a source serves to GDAL by name.
pub trait VirtualFiles: Send + Sync {
    /// The size of `name` in bytes.
    fn size(&self, name: &str) -> Result<u64>;
    /// Opens `name` for reading.
    fn open(self: Arc<Self>, name: &str) -> Result<Box<dyn VirtualFile>>;
}

/// One open file.
pub trait VirtualFile: Send {
    fn size(&self) -> u64;
    /// Fills `out` with the bytes at `pos` (the range lies inside the file).
    fn read_at(&mut self, pos: u64, out: &mut [u8]) -> Result<()>;
}

type Registry = Mutex<HashMap<usize, Arc<dyn VirtualFiles>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Default::default)
}

thread_local! {
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The error of this thread's last failed read through the handler, if any (and forgets it).
pub fn take_error() -> Option<String> {
    LAST_ERROR.with(|e| e.borrow_mut().take())
}

/// `e` (a GDAL call's failure) with the cause a `/vsidatacube/` read of this thread recorded, if
/// any: GDAL's own message says little ("read error"), the handler's names the request.
pub fn with_cause(e: anyhow::Error) -> anyhow::Error {
    match take_error() {
        Some(cause) => e.context(cause),
        None => e,
    }
}

fn set_error(e: &anyhow::Error) {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(format!("{e:#}")));
}

/// Makes `files` readable by GDAL; returns the number to build paths with ([`path`]).
pub fn register(files: Arc<dyn VirtualFiles>) -> usize {
    install();
    let mut r = registry().lock().unwrap();
    // The same instance keeps its number (sources are cloned freely).
    let same = |v: &Arc<dyn VirtualFiles>| std::ptr::addr_eq(Arc::as_ptr(v), Arc::as_ptr(&files));
    if let Some((n, _)) = r.iter().find(|(_, v)| same(v)) {
        return *n;
    }
    let n = r.len() + 1;
    r.insert(n, files);
    n
}

/// GDAL's path for the file `name` of the instance `n`.
pub fn path(n: usize, name: &str) -> String {
    format!("{PREFIX}{n}/{name}")
}

/// GDAL hands callbacks the path without the prefix: `<n>/<name>`.
fn resolve(name: *const c_char) -> Result<(Arc<dyn VirtualFiles>, String)> {
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    let rest = name.strip_prefix(PREFIX).unwrap_or(&name);
    let (n, url) = rest
        .split_once('/')
        .with_context(|| format!("{name}: no URL"))?;
    let n: usize = n
        .parse()
        .with_context(|| format!("{name}: no handler number"))?;
    let ranges = registry()
        .lock()
        .unwrap()
        .get(&n)
        .cloned()
        .with_context(|| format!("{name}: no handler {n}"))?;
    Ok((ranges, url.to_string()))
}

/// One open file and where GDAL is in it.
struct Handle {
    file: Box<dyn VirtualFile>,
    pos: u64,
    eof: bool,
}

/// Runs a callback body, turning a panic into the callback's failure value (a panic must not
/// unwind into C).
fn guard<T>(fail: T, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        set_error(&anyhow::anyhow!("panic in the {PREFIX} handler"));
        fail
    })
}

unsafe extern "C" fn stat(
    _user: *mut c_void,
    name: *const c_char,
    buf: *mut gdal_sys::VSIStatBufL,
    _flags: c_int,
) -> c_int {
    guard(-1, || {
        match resolve(name).and_then(|(r, url)| r.size(&url)) {
            Ok(size) => {
                // VSIStatBufL is the platform's `struct stat64`.
                let st = buf as *mut libc::stat64;
                unsafe {
                    std::ptr::write_bytes(st, 0, 1);
                    (*st).st_size = size as i64;
                    (*st).st_mode = libc::S_IFREG | 0o444;
                }
                0
            }
            Err(e) => {
                set_error(&e);
                -1
            }
        }
    })
}

unsafe extern "C" fn open(
    _user: *mut c_void,
    name: *const c_char,
    access: *const c_char,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let access = unsafe { CStr::from_ptr(access) }.to_string_lossy();
        if access.contains(['w', 'a', '+']) {
            set_error(&anyhow::anyhow!("{PREFIX} files are read-only"));
            return std::ptr::null_mut();
        }
        match resolve(name).and_then(|(files, name)| {
            Ok(Handle {
                file: files.open(&name)?,
                pos: 0,
                eof: false,
            })
        }) {
            Ok(h) => Box::into_raw(Box::new(h)) as *mut c_void,
            Err(e) => {
                set_error(&e);
                std::ptr::null_mut()
            }
        }
    })
}

unsafe fn handle<'a>(f: *mut c_void) -> &'a mut Handle {
    unsafe { &mut *(f as *mut Handle) }
}

unsafe extern "C" fn tell(f: *mut c_void) -> gdal_sys::vsi_l_offset {
    unsafe { handle(f) }.pos
}

unsafe extern "C" fn seek(f: *mut c_void, offset: gdal_sys::vsi_l_offset, whence: c_int) -> c_int {
    let h = unsafe { handle(f) };
    h.pos = match whence {
        libc::SEEK_SET => offset,
        libc::SEEK_CUR => h.pos.wrapping_add(offset),
        libc::SEEK_END => h.file.size().wrapping_add(offset),
        _ => return -1,
    };
    h.eof = false;
    0
}

unsafe extern "C" fn read(f: *mut c_void, buf: *mut c_void, size: usize, count: usize) -> usize {
    let h = unsafe { handle(f) };
    guard(0, || {
        let want = size.saturating_mul(count) as u64;
        if size == 0 || want == 0 {
            return 0;
        }
        let avail = h.file.size().saturating_sub(h.pos);
        let n = want.min(avail) as usize;
        if (n as u64) < want {
            h.eof = true;
        }
        let out = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, n) };
        match h.file.read_at(h.pos, out) {
            Ok(()) => {
                h.pos += n as u64;
                n / size
            }
            Err(e) => {
                set_error(&e);
                0
            }
        }
    })
}

unsafe extern "C" fn eof(f: *mut c_void) -> c_int {
    unsafe { handle(f) }.eof as c_int
}

/// No file has siblings: GDAL then probes for none (`.aux.xml`, `.IMD`, `.msk`, … would each
/// cost a request, and a server may answer them 403). An empty list, allocated as GDAL frees it.
unsafe extern "C" fn sibling_files(_user: *mut c_void, _name: *const c_char) -> *mut *mut c_char {
    unsafe { gdal_sys::CPLCalloc(1, std::mem::size_of::<*mut c_char>()) as *mut *mut c_char }
}

unsafe extern "C" fn close(f: *mut c_void) -> c_int {
    drop(unsafe { Box::from_raw(f as *mut Handle) });
    0
}

/// Installs the handler once per process.
fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| unsafe {
        let cb = gdal_sys::VSIAllocFilesystemPluginCallbacksStruct();
        (*cb).stat = Some(stat);
        (*cb).open = Some(open);
        (*cb).tell = Some(tell);
        (*cb).seek = Some(seek);
        (*cb).read = Some(read);
        (*cb).eof = Some(eof);
        (*cb).close = Some(close);
        (*cb).sibling_files = Some(sibling_files);
        // Our blocks are the cache; GDAL's own read-ahead buffer over them would only copy.
        (*cb).nBufferSize = 0;
        (*cb).nCacheSize = 0;
        // GDAL keeps the prefix pointer (not a copy) for the life of the process.
        static PREFIX_C: &CStr = c"/vsidatacube/";
        debug_assert_eq!(PREFIX_C.to_str(), Ok(PREFIX));
        let rc = gdal_sys::VSIInstallPluginHandler(PREFIX_C.as_ptr(), cb);
        gdal_sys::VSIFreeFilesystemPluginCallbacksStruct(cb);
        assert_eq!(rc, 0, "installing GDAL's {PREFIX} handler");
    });
}
