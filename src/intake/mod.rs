//! What bulk intake of every collection shares: splitting the work over processes (`--part`) and
//! the one outcome a run over many tile-years does not count as a failure. Each collection's
//! intake (`s2::intake`, `s1::intake`) drives its own pipeline over these.

mod part;

pub use part::{assign, Part, Regions};

/// The source has no scenes of a tile-year (not an error for a run over many tile-years).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoScenes(pub String);

/// A search of the source merged into a tile-year's catalog: what an intake starts from and
/// what a mount's year is built on.
pub struct Prepared<C, M> {
    /// The latest generation (published by this call when the search grew the catalog).
    pub generation: std::sync::Arc<crate::generation::Generation<C>>,
    /// Whether this call published `generation`.
    pub published: bool,
    /// What the search changed, in the collection's terms (for its log and counters).
    pub merge: M,
}

/// `r`, with "the source has no scenes" as `None` rather than an error.
pub fn unless_no_scenes<T>(r: anyhow::Result<T>) -> anyhow::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is::<NoScenes>() => Ok(None),
        Err(e) => Err(e),
    }
}
