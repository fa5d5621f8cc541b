//! What a path of the virtual tree names. Pure: no I/O, no FUSE.
//!
//! Paths are store keys (`35VLH/2024/10m/data/c/0/0/1/2`; the root is `""`), so the virtual tree
//! and the persistent store share one namespace.

use std::collections::BTreeMap;

use crate::key::canonical_u64;

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
pub(crate) mod tests {
    use super::*;

    /// The files of a small year layout (shared with the collections' tree tests).
    pub(crate) fn files() -> BTreeMap<String, Vec<u8>> {
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
