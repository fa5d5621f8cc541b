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

/// The resolution of the L2A scene classification (SCL) the formula [`scl`] is defined at.
pub const SCL_RES: u64 = 20;

/// The Level-2A scene classification (SCL, uint8, 20 m) of pixel (`r`, `c`) in scene `s`: 0
/// (`SC_NODATA`) outside the swath (the same partial swath as the bands, [`is_nodata`] at 20 m),
/// else one of the classes 1..=11 (`SC_SATURATED_DEFECTIVE` .. `SC_SNOW_ICE`):
/// `1 + mix((s << 48) ^ (0x5C1 << 36) ^ (r << 20) ^ c) % 11`.
///
/// Noise rather than a smooth field: every class occurs in every chunk, and a pixel moved by one is
/// caught. `0x5C1` in bits 36..47 (where the band formula has the bandId, at most 12 < 0x5C1) keeps
/// the SCL stream apart from every band's noise.
pub fn scl(s: u64, r: u64, c: u64, width_m: u64) -> u8 {
    if is_nodata(s, r, c, SCL_RES, width_m) {
        return 0;
    }
    1 + (mix((s << 48) ^ (0x5C1 << 36) ^ (r << 20) ^ c) % 11) as u8
}

/// `n`×`n` values of `f(r, c)`, row-major.
fn grid<T>(n: u64, f: impl Fn(u64, u64) -> T) -> Vec<T> {
    let mut v = Vec::with_capacity((n * n) as usize);
    for r in 0..n {
        for c in 0..n {
            v.push(f(r, c));
        }
    }
    v
}

/// A whole band of the formula: scene `s`, bandId `b`, `n`×`n` pixels of `res` metres, row-major.
pub fn band(s: u64, b: u64, n: u64, res: u64, width_m: u64) -> Vec<u16> {
    grid(n, |r, c| dn(s, b, r, c, res, width_m))
}

/// A whole SCL layer of scene `s`: `n`×`n` pixels of 20 m, row-major.
pub fn scl_band(s: u64, n: u64, width_m: u64) -> Vec<u8> {
    grid(n, |r, c| scl(s, r, c, width_m))
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

    #[test]
    fn scl_is_nodata_where_the_bands_are_and_a_class_elsewhere() {
        let w = 10_980;
        let n = w / SCL_RES;
        // Scene 2 misses its corner: SCL 0 exactly where every band is NODATA.
        for (r, c) in [(0, 0), (n - 1, n - 1), (n / 2, n - 1), (n - 1, 0)] {
            assert_eq!(scl(2, r, c, w) == 0, dn(2, 4, r, c, SCL_RES, w) == 0);
        }
        assert_eq!(scl(2, n - 1, n - 1, w), 0);
        // Elsewhere the classes 1..=11, all of them in a small window, and none other.
        let mut seen = [0usize; 256];
        for r in 0..40 {
            for c in 0..40 {
                seen[scl(0, r, c, w) as usize] += 1;
            }
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1..=11].iter().all(|&k| k > 0), "{:?}", &seen[..12]);
        assert!(seen[12..].iter().all(|&k| k == 0));
        // The formula as documented, at one pixel.
        let expected = 1 + (mix((7 << 48) ^ (0x5C1 << 36) ^ (3 << 20) ^ 5) % 11) as u8;
        assert_eq!(scl(7, 3, 5, w), expected);
        let v = scl_band(7, 6, w);
        assert_eq!((v.len(), v[3 * 6 + 5]), (36, expected));
    }
}
