//! What a path of the virtual tree names. Pure: no I/O, no FUSE.
//!
//! Paths are store keys (`35VLH/2024/10m/data/c/0/0/1/2`; the root is `""`), so the virtual tree
//! and the persistent store share one namespace.

use std::collections::BTreeMap;

use crate::key::{canonical_u64, ChunkIndex};
use crate::s2::bands::Resolution;

/// Directory of daemon-generated files at the root.
pub const STATS_DIR: &str = ".datacube";
/// The live statistics file.
pub const STATS_FILE: &str = ".datacube/stats.json";

/// Nodes above and at the year level (known without resolving a catalog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'a> {
    Root,
    RootMeta,
    StatsDir,
    StatsFile,
    Tile(&'a str),
    TileMeta(&'a str),
    Year(&'a str, i32),
    /// Anything below a year: needs the year's catalog.
    InYear {
        tile: &'a str,
        year: i32,
        rest: &'a str,
    },
}

/// Classifies `path` against the configured tiles and years; `None` = no such node.
pub fn classify<'a>(path: &'a str, tiles: &[String], years: &[i32]) -> Option<Node<'a>> {
    if path.is_empty() {
        return Some(Node::Root);
    }
    match path {
        "zarr.json" => return Some(Node::RootMeta),
        STATS_DIR => return Some(Node::StatsDir),
        STATS_FILE => return Some(Node::StatsFile),
        _ => {}
    }
    let mut parts = path.splitn(3, '/');
    let tile = parts.next()?;
    if !tiles.iter().any(|t| t == tile) {
        return None;
    }
    let Some(second) = parts.next() else {
        return Some(Node::Tile(tile));
    };
    if second == "zarr.json" {
        return parts.next().is_none().then_some(Node::TileMeta(tile));
    }
    let year = i32::try_from(canonical_u64(second)?).ok()?;
    if !years.contains(&year) {
        return None;
    }
    match parts.next() {
        None => Some(Node::Year(tile, year)),
        Some(rest) if !rest.is_empty() => Some(Node::InYear { tile, year, rest }),
        Some(_) => None,
    }
}

/// Nodes below a year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YearNode {
    /// A generated metadata or coordinate file (bytes in the year's layout).
    StaticFile,
    StaticDir,
    /// A directory of the `data` array's chunk tree (`c`, `c/T`, `c/T/0`, `c/T/0/Y`).
    ChunkDir,
    Chunk(Resolution, ChunkIndex),
}

/// Classifies `key` (the full path) below a resolved year. `files` is the year layout's files;
/// `counts(res)` gives the data array's chunk grid `[nt, ny, nx]`.
pub fn classify_in_year(
    key: &str,
    rest: &str,
    files: &BTreeMap<String, Vec<u8>>,
    counts: impl Fn(Resolution) -> [u64; 3],
) -> Option<YearNode> {
    if files.contains_key(key) {
        return Some(YearNode::StaticFile);
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() >= 3 && parts[1] == "data" && parts[2] == "c" {
        let res = Resolution::ALL.into_iter().find(|r| r.name() == parts[0])?;
        let [nt, ny, nx] = counts(res);
        let idx = |i: usize, n: u64| canonical_u64(parts[i]).filter(|v| *v < n);
        return match parts.len() {
            3 => Some(YearNode::ChunkDir),
            4 => idx(3, nt).map(|_| YearNode::ChunkDir),
            5 => (idx(3, nt).is_some() && parts[4] == "0").then_some(YearNode::ChunkDir),
            6 => (idx(3, nt).is_some() && parts[4] == "0" && idx(5, ny).is_some())
                .then_some(YearNode::ChunkDir),
            7 if parts[4] == "0" => Some(YearNode::Chunk(
                res,
                ChunkIndex {
                    t: idx(3, nt)?,
                    y: idx(5, ny)?,
                    x: idx(6, nx)?,
                },
            )),
            _ => None,
        };
    }
    let prefix = format!("{key}/");
    files
        .range(prefix.clone()..)
        .next()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|_| YearNode::StaticDir)
}

/// Immediate children of a static directory `key` in `files`: (name, is_dir), sorted, unique.
pub fn static_children(key: &str, files: &BTreeMap<String, Vec<u8>>) -> Vec<(String, bool)> {
    let prefix = format!("{key}/");
    let mut out: Vec<(String, bool)> = Vec::new();
    for k in files.range(prefix.clone()..).map(|(k, _)| k) {
        let Some(tail) = k.strip_prefix(&prefix) else {
            break;
        };
        let (name, is_dir) = match tail.split_once('/') {
            Some((n, _)) => (n, true),
            None => (tail, false),
        };
        if out.last().map(|(n, _)| n.as_str()) != Some(name) {
            out.push((name.to_string(), is_dir));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BTreeMap<String, Vec<u8>> {
        [
            "35VLH/2024/zarr.json",
            "35VLH/2024/10m/zarr.json",
            "35VLH/2024/10m/data/zarr.json",
            "35VLH/2024/10m/time/zarr.json",
            "35VLH/2024/10m/time/c/0",
        ]
        .iter()
        .map(|k| (k.to_string(), vec![]))
        .collect()
    }

    #[test]
    fn classifies_top_levels() {
        let tiles = vec!["35VLH".to_string()];
        let years = vec![2023, 2024];
        let c = |p| classify(p, &tiles, &years);
        assert_eq!(c(""), Some(Node::Root));
        assert_eq!(c("zarr.json"), Some(Node::RootMeta));
        assert_eq!(c(".datacube/stats.json"), Some(Node::StatsFile));
        assert_eq!(c("35VLH"), Some(Node::Tile("35VLH")));
        assert_eq!(c("35VLH/zarr.json"), Some(Node::TileMeta("35VLH")));
        assert_eq!(c("35VLH/2024"), Some(Node::Year("35VLH", 2024)));
        assert_eq!(
            c("35VLH/2024/10m"),
            Some(Node::InYear {
                tile: "35VLH",
                year: 2024,
                rest: "10m"
            })
        );
        for bad in [
            "35VLJ",
            "35VLH/2025",
            "35VLH/02024",
            "35VLH/zarr.json/x",
            "..",
            "35VLH/+2024",
        ] {
            assert_eq!(c(bad), None, "{bad}");
        }
    }

    #[test]
    fn classifies_below_a_year() {
        let f = files();
        let counts = |_| [2u64, 3, 3];
        let c = |rest: &str| classify_in_year(&format!("35VLH/2024/{rest}"), rest, &f, counts);
        assert_eq!(c("zarr.json"), Some(YearNode::StaticFile));
        assert_eq!(c("10m"), Some(YearNode::StaticDir));
        assert_eq!(c("10m/time/c"), Some(YearNode::StaticDir));
        assert_eq!(c("10m/time/c/0"), Some(YearNode::StaticFile));
        assert_eq!(c("10m/data/c"), Some(YearNode::ChunkDir));
        assert_eq!(c("10m/data/c/1/0/2"), Some(YearNode::ChunkDir));
        assert_eq!(
            c("10m/data/c/1/0/2/0"),
            Some(YearNode::Chunk(
                Resolution::R10,
                ChunkIndex { t: 1, y: 2, x: 0 }
            ))
        );
        for bad in [
            "10m/data/c/2",
            "10m/data/c/1/1",
            "10m/data/c/1/0/3/0",
            "10m/data/c/1/0/2/00",
            "10m/data/c/1/0/2/0/0",
            "15m/data/c",
            "10m/nope",
            "10m/data/c/-1",
        ] {
            assert_eq!(c(bad), None, "{bad}");
        }
    }

    #[test]
    fn lists_static_children_once() {
        let f = files();
        assert_eq!(
            static_children("35VLH/2024", &f),
            [("10m".to_string(), true), ("zarr.json".to_string(), false)]
        );
        assert_eq!(
            static_children("35VLH/2024/10m", &f),
            [
                ("data".to_string(), true),
                ("time".to_string(), true),
                ("zarr.json".to_string(), false)
            ]
        );
    }
}
