//! The vocabulary of the cube as a tree of files, without FUSE: what a node is (`Kind`, `Attr`),
//! why a request failed (`FsError`, mapped to an errno by `fuse`), and the request counters.

/// Why a request failed; the FUSE layer maps these to errno values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    NotDir,
    IsDir,
    /// Materialization or store failure (logged where it happened).
    Io,
}

impl From<crate::util::Abandoned> for FsError {
    fn from(_: crate::util::Abandoned) -> Self {
        FsError::Io
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
    /// Requests the cube answered (the FUSE adapter counts reads).
    pub struct CubeStats { lookups, opens, reads, bytes_served }
}
