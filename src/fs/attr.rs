//! The vocabulary of the cube as a tree of files, without FUSE: what a node is (`Kind`, `Attr`),
//! why a request failed (`FsError`, mapped to an errno by `fuse`), and the request counters.

use std::fmt;
use std::sync::Arc;

/// Why a request failed; the FUSE layer maps these to errno values.
#[derive(Debug, Clone)]
pub enum FsError {
    NotFound,
    NotDir,
    IsDir,
    /// Materialization or store failure. It carries its cause (which file, key or request, and
    /// why) to where it becomes `EIO`, which logs it once with the path that was asked for.
    Io(Cause),
}

impl FsError {
    /// An I/O failure and its cause.
    pub fn io(cause: anyhow::Error) -> Self {
        FsError::Io(Cause(Arc::new(cause)))
    }
}

/// Errors compare by kind: a cause explains a failure, it does not make it another one.
impl PartialEq for FsError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound => f.write_str("no such file or directory"),
            FsError::NotDir => f.write_str("not a directory"),
            FsError::IsDir => f.write_str("is a directory"),
            FsError::Io(c) => c.fmt(f),
        }
    }
}

/// The cause of an I/O failure: the error with its whole context chain, shared by every
/// request that waited on the failed computation.
#[derive(Clone)]
pub struct Cause(Arc<anyhow::Error>);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl From<crate::util::Abandoned> for FsError {
    fn from(_: crate::util::Abandoned) -> Self {
        FsError::io(anyhow::anyhow!(
            "the computation was abandoned (the daemon is shutting down)"
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Attributes of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub kind: Kind,
    pub size: u64,
    /// Content changes while mounted (the stats file): never cache it.
    pub volatile: bool,
}

impl Attr {
    pub fn dir() -> Self {
        Attr {
            kind: Kind::Dir,
            size: 0,
            volatile: false,
        }
    }
    pub fn file(size: u64) -> Self {
        Attr {
            kind: Kind::File,
            size,
            volatile: false,
        }
    }
}

crate::counters! {
    /// Requests the cube answered (the FUSE adapter counts OPEN requests, answered once, and reads).
    pub struct CubeStats { lookups, opens, reads, bytes_served }
}
