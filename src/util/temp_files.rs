//! Names of temporary files (an atomic write in progress, a download not yet checked) that say
//! who writes them — `<host>-<pid>-<n>` — so that a cleanup removes only those whose writer is
//! gone and never a live writer's, whatever other processes share the directory: on this host,
//! files of processes that no longer exist; from other hosts (a directory on NFS or Lustre), files
//! untouched for a day.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long another host's temporary file must sit untouched before it counts as abandoned (its
/// process cannot be asked; a write takes seconds).
pub const FOREIGN_AGE: Duration = Duration::from_secs(24 * 3600);

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh `<host>-<pid>-<n>` for a temporary file of this process.
pub fn owner_tag() -> String {
    format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the temporary file at `path`, whose name ends in `tag` (`<host>-<pid>-<n>`, or an
/// older `<pid>-<n>`), belongs to a writer that is gone.
pub fn abandoned(tag: &str, path: &Path) -> bool {
    // The host may itself contain '-': split from the right.
    let mut fields = tag.rsplitn(3, '-');
    let (_n, pid, host) = (fields.next(), fields.next(), fields.next());
    let pid: Option<i32> = pid.and_then(|p| p.parse().ok());
    match (host, pid) {
        (Some(h), Some(pid)) if h == hostname() => !process_alive(pid),
        _ => std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > FOREIGN_AGE)),
    }
}

/// This process's name as a writer of shared files: `<host>-<pid>-<start ms>` (the start time
/// keeps a reused pid from taking over a dead writer's name).
pub fn writer_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{}-{}-{start}", hostname(), std::process::id())
    })
}

/// Whether the writer `id` (`writer_id` of some process), which last wrote at `written_ms`, is
/// gone: on this host, its process no longer exists; on another host, it has not written for a
/// day.
pub fn writer_gone(id: &str, written_ms: i64) -> bool {
    let mut fields = id.rsplitn(3, '-');
    let (_start, pid, host) = (fields.next(), fields.next(), fields.next());
    let pid: Option<i32> = pid.and_then(|p| p.parse().ok());
    match (host, pid) {
        (Some(h), Some(pid)) if h == hostname() => !process_alive(pid),
        _ => {
            let now = chrono::Utc::now().timestamp_millis();
            now - written_ms > FOREIGN_AGE.as_millis() as i64
        }
    }
}

fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This host's name as it goes into file names (`/` and `.` replaced by `_`).
pub fn hostname() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
        let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
        let name = if ok {
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        };
        let name: String = name
            .chars()
            .map(|c| if c == '/' || c == '.' { '_' } else { c })
            .collect();
        if name.is_empty() {
            "localhost".into()
        } else {
            name
        }
    })
}
