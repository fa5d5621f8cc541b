//! The pixel arrays of a Sentinel-2 resolution group, and the unit of work each one is cut into.
//!
//! Every level has a `data` array per resolution (`time, band, y, x`, uint16). Level-2A adds the
//! scene classification `scl` (`time, y, x`, uint8) at 20 m, where SCL is delivered, and at 10 m,
//! each 20 m class repeated 2 × 2, so that a 10 m patch finds its mask in its own group. `scl` is
//! cut along time, y and x exactly as `data` of the same group, so one patch window maps to the
//! same object indices in both; each array's objects are their own units of work (single flight,
//! writeback, records), and the fence and generation machinery sees each as its own `unit`.

use std::fmt;

use crate::s2::bands::{Band, Resolution};
use crate::s2::product::ProductLevel;

/// Which array of a resolution group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Var {
    /// The band files' digital numbers, `(time, band, y, x)`.
    Data,
    /// L2A scene classification, `(time, y, x)`.
    Scl,
}

/// One pixel array: a variable of a resolution group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PixelArray {
    pub res: Resolution,
    pub var: Var,
}

impl PixelArray {
    /// Every pixel array of any level (index = [`PixelArray::index`]).
    pub const ALL: [PixelArray; 5] = [
        PixelArray::data(Resolution::R10),
        PixelArray::data(Resolution::R20),
        PixelArray::data(Resolution::R60),
        PixelArray::scl(Resolution::R10),
        PixelArray::scl(Resolution::R20),
    ];

    pub const fn data(res: Resolution) -> Self {
        PixelArray {
            res,
            var: Var::Data,
        }
    }

    pub const fn scl(res: Resolution) -> Self {
        PixelArray { res, var: Var::Scl }
    }

    /// The arrays a level's cube has, data first.
    pub fn of_level(level: ProductLevel) -> Vec<PixelArray> {
        PixelArray::ALL
            .into_iter()
            .filter(|a| a.var == Var::Data || level == ProductLevel::L2A)
            .collect()
    }

    /// Position in [`PixelArray::ALL`] (per-array tables index by it).
    pub fn index(self) -> usize {
        match self.var {
            Var::Data => self.res.index(),
            Var::Scl => 3 + self.res.index(),
        }
    }

    /// The array's name in its group: `data`, `scl`.
    pub fn name(self) -> &'static str {
        match self.var {
            Var::Data => "data",
            Var::Scl => "scl",
        }
    }

    /// The array's path below its tile-year: `10m/data`, `20m/scl`.
    pub fn path(self) -> &'static str {
        use Resolution::*;
        match (self.res, self.var) {
            (R10, Var::Data) => "10m/data",
            (R20, Var::Data) => "20m/data",
            (R60, Var::Data) => "60m/data",
            (R10, Var::Scl) => "10m/scl",
            (R20, Var::Scl) => "20m/scl",
            (R60, Var::Scl) => "60m/scl",
        }
    }

    /// The unit name of the generation, fence and record machinery: the resolution for `data`
    /// (as it always was, so L1C stores keep their records), `10m-scl` for `scl`.
    pub fn unit(self) -> &'static str {
        use Resolution::*;
        match (self.res, self.var) {
            (r, Var::Data) => r.name(),
            (R10, Var::Scl) => "10m-scl",
            (R20, Var::Scl) => "20m-scl",
            (R60, Var::Scl) => "60m-scl",
        }
    }

    /// The array a unit name stands for.
    pub fn from_unit(unit: &str) -> Option<PixelArray> {
        PixelArray::ALL.into_iter().find(|a| a.unit() == unit)
    }

    /// The array at a path below a tile-year (`10m/data`).
    pub fn from_path(path: &str) -> Option<PixelArray> {
        let (group, name) = path.split_once('/')?;
        PixelArray::named(group, name)
    }

    /// The array `name` of resolution group `group` (`10m`, `scl`), without building a path (the
    /// mount asks on every lookup).
    pub fn named(group: &str, name: &str) -> Option<PixelArray> {
        PixelArray::ALL
            .into_iter()
            .find(|a| a.res.name() == group && a.name() == name)
    }

    /// Whether the array has a `band` dimension (`data`) or not (`scl`).
    pub fn has_bands(self) -> bool {
        self.var == Var::Data
    }

    /// Planes per scene: the level's bands of the group for `data`, 1 for `scl`.
    pub fn planes(self, level: ProductLevel) -> u64 {
        match self.var {
            Var::Data => level.res_bands(self.res).len() as u64,
            Var::Scl => 1,
        }
    }

    /// The data bands (`data`), or none.
    pub fn bands(self, level: ProductLevel) -> Vec<&'static Band> {
        match self.var {
            Var::Data => level.res_bands(self.res),
            Var::Scl => Vec::new(),
        }
    }

    /// Key levels of the chunk tree below the time index: `0/Y/X` for `data`, `Y/X` for `scl`.
    pub fn levels_below_time(self) -> usize {
        if self.has_bands() {
            3
        } else {
            2
        }
    }

    /// Bytes per value.
    pub fn value_bytes(self) -> usize {
        match self.var {
            Var::Data => 2,
            Var::Scl => 1,
        }
    }
}

impl fmt::Display for PixelArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_units_and_paths_round_trip() {
        for (i, a) in PixelArray::ALL.into_iter().enumerate() {
            assert_eq!(a.index(), i);
            assert_eq!(PixelArray::from_unit(a.unit()), Some(a));
            assert_eq!(PixelArray::from_path(a.path()), Some(a));
        }
        assert_eq!(PixelArray::data(Resolution::R20).unit(), "20m");
        assert_eq!(PixelArray::of_level(ProductLevel::L1C).len(), 3);
        assert_eq!(PixelArray::of_level(ProductLevel::L2A).len(), 5);
        assert_eq!(
            PixelArray::data(Resolution::R60).planes(ProductLevel::L2A),
            2
        );
        assert_eq!(
            PixelArray::data(Resolution::R60).planes(ProductLevel::L1C),
            3
        );
    }
}
