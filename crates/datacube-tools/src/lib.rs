//! The tools around datacube that the daemon does not need: the patch benchmark (`bench`,
//! `bench-mount`, `bench-intake`), the synthetic SAFE archive writer (`fixture`) and COG
//! conversion (`convert cog`). A crate of their own, so the `datacube` binary that mounts does not
//! link plotting, JP2 writing or the benchmark; `datacube bench …` runs `datacube-tools bench …`.

pub mod bench;
pub mod cli;
pub mod convert;
pub mod fixture;
pub mod intake_bench;
pub mod mem_source;
pub mod synth;

pub use mem_source::MemSource;

/// The `datacube` binary: beside this one (a build or an install puts both in one directory),
/// else from `PATH`.
pub fn datacube_bin() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("datacube")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "datacube".into())
}
