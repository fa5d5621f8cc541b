//! MGRS tile names: validation, the UTM projection a tile's products use, and named tile sets.

use anyhow::Result;

/// The 77 MGRS tiles that cover Finland and its sea areas: the mount's default tile set.
pub const FINLAND: [&str; 77] = [
    "34VCM", "34VCN", "34VCP", "34VDL", "34VDM", "34VDN", "34VDP", "34VDQ", "34VDR", "34VEL",
    "34VEM", "34VEN", "34VEP", "34VEQ", "34VER", "34VFL", "34VFM", "34VFN", "34VFP", "34VFQ",
    "34VFR", "34WDB", "34WEA", "34WEB", "34WES", "34WET", "34WEV", "34WFA", "34WFB", "34WFC",
    "34WFS", "34WFT", "34WFU", "34WFV", "35VLG", "35VLH", "35VLJ", "35VLK", "35VLL", "35VMG",
    "35VMH", "35VMJ", "35VMK", "35VML", "35VNG", "35VNH", "35VNJ", "35VNK", "35VNL", "35VPH",
    "35VPJ", "35VPK", "35VPL", "35WMM", "35WMN", "35WMP", "35WMQ", "35WMR", "35WMS", "35WMT",
    "35WNM", "35WNN", "35WNP", "35WNQ", "35WNR", "35WNS", "35WNT", "35WPM", "35WPN", "35WPP",
    "35WPQ", "35WPR", "36VUP", "36VUQ", "36VUR", "36VVQ", "36VVR",
];

/// A named tile set (`finland`), if `name` is one.
pub fn named_set(name: &str) -> Option<&'static [&'static str]> {
    match name.to_ascii_lowercase().as_str() {
        "finland" => Some(&FINLAND),
        _ => None,
    }
}

/// Checks an MGRS 100 km tile name: UTM zone 01–60, latitude band C–X (no I, O), two square letters.
pub fn check_tile(tile: &str) -> Result<()> {
    let b = tile.as_bytes();
    let ok = b.len() == 5
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && (1..=60).contains(&((b[0] - b'0') * 10 + (b[1] - b'0')))
        && matches!(b[2], b'C'..=b'X')
        && !matches!(b[2], b'I' | b'O')
        && b[3..].iter().all(|c| c.is_ascii_uppercase());
    if !ok {
        anyhow::bail!("{tile:?} is not an MGRS tile name (like 35VLH)");
    }
    Ok(())
}

/// The EPSG code of the WGS 84 / UTM zone Sentinel-2 products of `tile` are projected in:
/// 326zz north of the equator (bands N–X), 327zz south (C–M).
pub fn utm_epsg(tile: &str) -> Result<u32> {
    check_tile(tile)?;
    let zone: u32 = tile[..2].parse()?;
    let north = tile.as_bytes()[2] >= b'N';
    Ok(if north { 32600 } else { 32700 } + zone)
}

/// Parses a `--tiles` value: comma-separated tile names and set names (`finland`), deduplicated,
/// in order.
pub fn parse_tiles(spec: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let names: Vec<String> = match named_set(part) {
            Some(set) => set.iter().map(|s| s.to_string()).collect(),
            None => {
                let t = part.to_ascii_uppercase();
                check_tile(&t)?;
                vec![t]
            }
        };
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    if out.is_empty() {
        anyhow::bail!("no tiles in {spec:?}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finland_is_77_distinct_valid_tiles() {
        let mut v = FINLAND.to_vec();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 77);
        for t in FINLAND {
            check_tile(t).unwrap();
            assert!(matches!(utm_epsg(t).unwrap(), 32634..=32636), "{t}");
        }
    }

    #[test]
    fn epsg_follows_zone_and_hemisphere() {
        assert_eq!(utm_epsg("35VLH").unwrap(), 32635);
        assert_eq!(utm_epsg("31UDQ").unwrap(), 32631);
        assert_eq!(utm_epsg("56HLH").unwrap(), 32756);
        assert!(utm_epsg("35ILH").is_err());
        assert!(utm_epsg("61VLH").is_err());
        assert!(utm_epsg("../..").is_err());
    }

    #[test]
    fn parses_lists_and_sets() {
        assert_eq!(
            parse_tiles("35vlh, 34VCM,35VLH").unwrap(),
            ["35VLH", "34VCM"]
        );
        assert_eq!(parse_tiles("finland").unwrap().len(), 77);
        assert!(parse_tiles("35VLH,nope").is_err());
    }
}
