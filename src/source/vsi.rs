//! GDAL reads remote files through [`HttpRanges`] and so through the source's disk cache.
//!
//! GDAL's own `/vsicurl/` keeps what it fetched in memory only (per process, lost on exit); the
//! product's rule is that nothing fetched is fetched twice while the disk cache holds it. So the
//! remote files are handed to GDAL as `/vsidatacube/<n>/<url>`, a virtual file system installed
//! through GDAL's plugin API (`VSIInstallPluginHandler`, GDAL ≥ 3.0), whose reads are served
//! from cached blocks (`n` names the [`HttpRanges`] instance, so tests can hold several).
//!
//! Errors cannot cross GDAL with their message: a failed read is a short read to GDAL, which
//! reports its own generic error. The message naming the URL and range is kept per thread, and
//! [`take_error`] hands it to the caller whose GDAL call failed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::unix::fs::FileExt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};

use super::http_ranges::HttpRanges;
use super::LocalFile;

pub const PREFIX: &str = "/vsidatacube/";

fn registry() -> &'static Mutex<HashMap<usize, Arc<HttpRanges>>> {
    static R: OnceLock<Mutex<HashMap<usize, Arc<HttpRanges>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

thread_local! {
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The error of this thread's last failed read through the handler, if any (and forgets it).
pub fn take_error() -> Option<String> {
    LAST_ERROR.with(|e| e.borrow_mut().take())
}

fn set_error(e: &anyhow::Error) {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(format!("{e:#}")));
}

/// Makes `ranges` readable by GDAL; returns the handle to build paths with ([`path`]).
pub fn register(ranges: Arc<HttpRanges>) -> usize {
    install();
    let mut r = registry().lock().unwrap();
    // The same instance keeps its number (sources are cloned freely).
    if let Some((n, _)) = r.iter().find(|(_, v)| Arc::ptr_eq(v, &ranges)) {
        return *n;
    }
    let n = r.len() + 1;
    r.insert(n, ranges);
    n
}

/// GDAL's path for `url` read through the instance `n`.
pub fn path(n: usize, url: &str) -> String {
    format!("{PREFIX}{n}/{url}")
}

/// GDAL hands callbacks the path without the prefix: `<n>/<url>`.
fn resolve(name: *const c_char) -> Result<(Arc<HttpRanges>, String)> {
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

/// One open file: where GDAL is, and the block it read last (kept open: GDAL reads a strip or a
/// tile at a time, many per block).
struct Handle {
    ranges: Arc<HttpRanges>,
    url: String,
    size: u64,
    pos: u64,
    eof: bool,
    current: Option<(u64, LocalFile, std::fs::File)>,
}

impl Handle {
    fn read_at(&mut self, mut pos: u64, mut out: &mut [u8]) -> Result<()> {
        let block = self.ranges.block_size();
        while !out.is_empty() {
            let index = pos / block;
            if self.current.as_ref().map(|c| c.0) != Some(index) {
                self.current = None; // unpin the previous block first
                let local = self.ranges.block(&self.url, self.size, index)?;
                let file = std::fs::File::open(&*local)
                    .with_context(|| format!("source cache: opening {}", local.display()))?;
                self.current = Some((index, local, file));
            }
            let (_, local, file) = self.current.as_ref().expect("just set");
            let within = pos - index * block;
            let n = ((block - within) as usize).min(out.len());
            file.read_exact_at(&mut out[..n], within)
                .with_context(|| format!("source cache: reading {}", local.display()))?;
            out = &mut out[n..];
            pos += n as u64;
        }
        Ok(())
    }
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
        match resolve(name).and_then(|(ranges, url)| {
            let size = ranges.size(&url)?;
            Ok(Handle {
                ranges,
                url,
                size,
                pos: 0,
                eof: false,
                current: None,
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
        libc::SEEK_END => h.size.wrapping_add(offset),
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
        let avail = h.size.saturating_sub(h.pos);
        let n = want.min(avail) as usize;
        if (n as u64) < want {
            h.eof = true;
        }
        let out = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, n) };
        match h.read_at(h.pos, out) {
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
