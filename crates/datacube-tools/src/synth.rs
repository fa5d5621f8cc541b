//! The synthetic pixel-value formula of docs/design.md §7: the oracle every test compares against.
//!
//! `s` is the scene's position on the deduplicated time axis (a superseded reprocessed duplicate uses
//! `s + 1000`), `b` the MTD bandId, `r`/`c` the pixel row/column at the band's resolution `res`.

pub use datacube::util::mix;

/// True where the scene is outside its (partial) swath: every third scene misses a corner.
pub fn is_nodata(s: u64, r: u64, c: u64, res: u64, width_m: u64) -> bool {
    let ym = r.wrapping_mul(res);
    let xm = c.wrapping_mul(res);
    s % 3 == 2
        && 10u64.wrapping_mul(xm).wrapping_add(5u64.wrapping_mul(ym)) > 8u64.wrapping_mul(width_m)
}

/// The digital number of pixel (`r`, `c`) of band `b` in scene `s`; 0 (NODATA) outside the swath.
pub fn dn(s: u64, b: u64, r: u64, c: u64, res: u64, width_m: u64) -> u16 {
    if is_nodata(s, r, c, res, width_m) {
        return 0;
    }
    let ym = r * res;
    let xm = c * res;
    let smooth = ((ym / 160) * 37 + (xm / 160) * 53 + 11 * s + 101 * b) % 1024;
    let noise = mix((s << 48) ^ (b << 40) ^ (r << 20) ^ c) % 64;
    (1000 + 100 * b + smooth + noise) as u16
}

/// A whole band of the formula: scene `s`, bandId `b`, `n`×`n` pixels of `res` metres, row-major.
pub fn band(s: u64, b: u64, n: u64, res: u64, width_m: u64) -> Vec<u16> {
    let mut v = Vec::with_capacity((n * n) as usize);
    for r in 0..n {
        for c in 0..n {
            v.push(dn(s, b, r, c, res, width_m));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_splitmix64() {
        // The first two outputs of SplitMix64 seeded with 0 (published reference values).
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn nodata_only_on_every_third_scene_and_in_the_corner() {
        let w = 10_980;
        assert!(!is_nodata(0, 1097, 1097, 10, w));
        assert!(!is_nodata(2, 0, 0, 10, w));
        assert!(is_nodata(2, 1097, 1097, 10, w));
        assert_eq!(dn(5, 3, 1097, 1097, 10, w), 0);
        // DN range: 1000 + 100 b + [0, 1024) + [0, 64).
        let v = dn(0, 12, 10, 10, 20, w);
        assert!((2200..2200 + 1088).contains(&v), "{v}");
    }
}
