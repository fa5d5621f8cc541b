//! The same-day merge: the slices of one UTC day (consecutive slices of a pass overlap at their
//! edges; a second pass on another relative orbit may cover the tile again) become one time entry.
//!
//! The rule, per pixel:
//! 1. Slices are taken in priority order: **earliest sensing time first** (then item id). A
//!    polarisation's value is that of the first slice in which it is valid (not −9999), so a valid
//!    value is never overwritten, by nodata or by a later slice.
//! 2. The pixel's `sensing_date`, `absolute_orbit_number` and `relative_orbit_number` are those of
//!    the slice its **VV** value came from; where VV is nodata in every slice, of the slice its VH
//!    value came from; where both are, the fill values. (In real files both polarisations share one
//!    footprint, so both values come from one slice; the rule only decides the rare edge pixel.)
//!
//! Earliest-wins keeps the per-pixel metadata exact (each value is labelled with the slice it was
//! read from, never with a later slice's time) and makes a day's result independent of the order
//! the search returned its items in.

use super::{NODATA, NO_DATE, NO_ORBIT};

/// One slice's window (both polarisations) and its per-slice metadata.
pub struct SliceWindow<'a> {
    pub vv: &'a [i16],
    pub vh: &'a [i16],
    /// Seconds since 2014-10-01T00:00:00Z.
    pub sensing: i64,
    pub absolute_orbit: i32,
    pub relative_orbit: i16,
}

/// The merged day (one window of each of the five arrays), initially all fill.
pub struct DayWindow {
    pub vv: Vec<i16>,
    pub vh: Vec<i16>,
    pub sensing: Vec<i64>,
    pub absolute_orbit: Vec<i32>,
    pub relative_orbit: Vec<i16>,
}

impl DayWindow {
    pub fn fill(n: usize) -> Self {
        DayWindow {
            vv: vec![NODATA; n],
            vh: vec![NODATA; n],
            sensing: vec![NO_DATE; n],
            absolute_orbit: vec![NO_ORBIT as i32; n],
            relative_orbit: vec![NO_ORBIT as i16; n],
        }
    }

    /// Merges the next slice in priority order into the day; true when every pixel has both
    /// polarisations (no later slice can change anything).
    pub fn add(&mut self, s: &SliceWindow) -> bool {
        let n = self.vv.len();
        assert!(s.vv.len() == n && s.vh.len() == n, "window sizes differ");
        let mut complete = true;
        for i in 0..n {
            let mut label = false;
            if self.vv[i] == NODATA && s.vv[i] != NODATA {
                self.vv[i] = s.vv[i];
                label = true;
            }
            if self.vh[i] == NODATA && s.vh[i] != NODATA {
                self.vh[i] = s.vh[i];
                // Labels the pixel only while no slice gave it a VV value.
                label |= self.vv[i] == NODATA && self.sensing[i] == NO_DATE;
            }
            if label {
                self.sensing[i] = s.sensing;
                self.absolute_orbit[i] = s.absolute_orbit;
                self.relative_orbit[i] = s.relative_orbit;
            }
            complete &= self.vv[i] != NODATA && self.vh[i] != NODATA;
        }
        complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const N: i16 = NODATA;

    #[test]
    fn earliest_valid_value_wins_per_polarisation_and_labels_follow_vv() {
        // Pixels: 0 both valid in A and B; 1 only B; 2 nowhere; 3 VV in B only, VH in A only;
        // 4 VH only in A, then VV in B: the label moves to B with VV.
        let a = SliceWindow {
            vv: &[10, N, N, N, N],
            vh: &[20, N, N, 23, 24],
            sensing: 100,
            absolute_orbit: 1,
            relative_orbit: 7,
        };
        let b = SliceWindow {
            vv: &[11, 12, N, 13, 14],
            vh: &[21, 22, N, N, 25],
            sensing: 125,
            absolute_orbit: 1,
            relative_orbit: 7,
        };
        let c = SliceWindow {
            vv: &[99, 99, N, 99, 99],
            vh: &[99, 99, 99, 99, 99],
            sensing: 3600,
            absolute_orbit: 2,
            relative_orbit: 9,
        };
        let mut d = DayWindow::fill(5);
        for s in [&a, &b, &c] {
            d.add(s);
        }
        assert_eq!(d.vv, [10, 12, N, 13, 14]);
        assert_eq!(d.vh, [20, 22, 99, 23, 24]);
        assert_eq!(d.sensing, [100, 125, 3600, 125, 125]);
        assert_eq!(d.absolute_orbit, [1, 1, 2, 1, 1]);
        assert_eq!(d.relative_orbit, [7, 7, 9, 7, 7]);
        let mut empty = DayWindow::fill(2);
        empty.add(&SliceWindow {
            vv: &[N, N],
            vh: &[N, N],
            sensing: 5,
            absolute_orbit: 3,
            relative_orbit: 4,
        });
        assert_eq!(empty.sensing, [NO_DATE, NO_DATE]);
        assert_eq!(empty.relative_orbit, [0, 0]);
    }
}
