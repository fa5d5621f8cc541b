//! Splitting an intake over many processes with no coordination but the store: `--part I/N`
//! (e.g. a Slurm job array's `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`). Every process
//! computes the same assignment from the same tile-year list, so the parts are disjoint and
//! together cover everything.

use std::fmt;
use std::str::FromStr;

use crate::key::TileYear;

/// Part `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u64,
    pub count: u64,
}

impl Part {
    pub const WHOLE: Part = Part { index: 0, count: 1 };
}

impl FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid part {s:?}: expected I/N with 0 <= I < N (e.g. 3/10)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Part { index, count })
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The work units of a tile-year (a time chunk × a JP2-tile region, numbered by the tile's grid)
/// that one part computes: those whose number `u` has `u % count == index`.
pub type Regions = Part;

/// What part `part` of a run over `tile_years` does: whole tile-years when there are at least as
/// many tile-years as parts, else a share of one tile-year's regions.
pub fn assign(tile_years: &[TileYear], part: Part) -> Vec<(TileYear, Regions)> {
    let t = tile_years.len() as u64;
    if t == 0 {
        return Vec::new();
    }
    if part.count <= t {
        return tile_years
            .iter()
            .enumerate()
            .filter(|(k, _)| *k as u64 % part.count == part.index)
            .map(|(_, ty)| (ty.clone(), Part::WHOLE))
            .collect();
    }
    // More parts than tile-years: tile-year k is shared by parts k, k + t, k + 2t, ...
    let k = part.index % t;
    let share = (part.count - k).div_ceil(t);
    vec![(
        tile_years[k as usize].clone(),
        Part {
            index: part.index / t,
            count: share,
        },
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_disjoint_and_cover_every_region_of_every_tile_year() {
        let tys: Vec<TileYear> = ["35VLH", "35VLJ"]
            .iter()
            .flat_map(|t| [2023, 2024].map(|y| TileYear::new(t, y)))
            .collect();
        let regions = 121u64; // a 10 m tile-year: 11 x 11 JP2-tile regions
        for n in [1u64, 2, 3, 4, 5, 7, 9, 16] {
            let mut seen = std::collections::BTreeMap::new();
            for i in 0..n {
                for (ty, r) in assign(&tys, Part { index: i, count: n }) {
                    for reg in (0..regions).filter(|x| x % r.count == r.index) {
                        *seen.entry((ty.clone(), reg)).or_insert(0) += 1;
                    }
                }
            }
            assert_eq!(seen.len() as u64, 4 * regions, "N={n}: everything covered");
            assert!(seen.values().all(|c| *c == 1), "N={n}: nothing twice");
        }
    }

    #[test]
    fn parses_i_of_n() {
        assert_eq!(
            "3/10".parse::<Part>(),
            Ok(Part {
                index: 3,
                count: 10
            })
        );
        for bad in ["10/10", "1/0", "x/2", "3", "-1/4"] {
            assert!(bad.parse::<Part>().is_err(), "{bad}");
        }
    }
}
