//! Equi7Grid, European zone, T3 tiles at 20 m: 300 km squares named by their lower-left corner in
//! units of 100 km (`E048N015T3` spans x 4 800 000..5 100 000, y 1 500 000..1 800 000 m). The CRS is
//! the zone's Azimuthal Equidistant projection, spelled in the items' `proj:wkt2` as ESRI-style
//! WKT1 (recent PROJ knows it as EPSG:27704); it is copied here verbatim from a real item.

use std::fmt;
use std::str::FromStr;

use super::{GSD, TILE_PX};

/// The EU zone's CRS exactly as EODC items and GeoTIFFs carry it.
pub const EU_WKT: &str = "PROJCS[\"Azimuthal_Equidistant\",GEOGCS[\"WGS 84\",DATUM[\"WGS_1984\",SPHEROID[\"WGS 84\",6378137,298.257223563,AUTHORITY[\"EPSG\",\"7030\"]],AUTHORITY[\"EPSG\",\"6326\"]],PRIMEM[\"Greenwich\",0],UNIT[\"degree\",0.0174532925199433],AUTHORITY[\"EPSG\",\"4326\"]],PROJECTION[\"Azimuthal_Equidistant\"],PARAMETER[\"latitude_of_center\",53],PARAMETER[\"longitude_of_center\",24],PARAMETER[\"false_easting\",5837287.81977],PARAMETER[\"false_northing\",2121415.69617],UNIT[\"metre\",1,AUTHORITY[\"EPSG\",\"9001\"]]]";

/// Projection parameters of the EU zone (CF `azimuthal_equidistant`).
pub const LAT_CENTER: f64 = 53.0;
pub const LON_CENTER: f64 = 24.0;
pub const FALSE_EASTING: f64 = 5_837_287.819_77;
pub const FALSE_NORTHING: f64 = 2_121_415.696_17;

/// Side of a T3 tile in metres.
pub const TILE_M: u64 = 300_000;
/// The sampling prefix of the 20 m EU grid in STAC `Equi7_TileID` (`EU020M_E048N015T3`).
pub const STAC_PREFIX: &str = "EU020M_";

/// One T3 tile of the EU zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Equi7Tile {
    /// Lower-left easting / 100 km.
    pub e: u32,
    /// Lower-left northing / 100 km.
    pub n: u32,
}

impl Equi7Tile {
    /// Lower-left corner (metres).
    pub fn llx(self) -> f64 {
        self.e as f64 * 100_000.0
    }

    pub fn lly(self) -> f64 {
        self.n as f64 * 100_000.0
    }

    /// GDAL geotransform of the tile's 20 m grid (upper-left origin).
    pub fn geotransform(self) -> [f64; 6] {
        [self.llx(), GSD, 0.0, self.lly() + TILE_M as f64, 0.0, -GSD]
    }

    /// STAC `proj:transform` of the tile ([a, b, c, d, e, f] = [20, 0, ulx, 0, -20, uly]).
    pub fn proj_transform(self) -> [f64; 6] {
        let g = self.geotransform();
        [g[1], g[2], g[0], g[4], g[5], g[3]]
    }

    /// STAC `Equi7_TileID`.
    pub fn stac_id(self) -> String {
        format!("{STAC_PREFIX}{self}")
    }

    /// Parses a STAC `Equi7_TileID` (`EU020M_E048N015T3`).
    pub fn from_stac_id(s: &str) -> Result<Self, String> {
        s.strip_prefix(STAC_PREFIX)
            .ok_or_else(|| {
                format!("Equi7_TileID {s:?}: not a tile of the EU 20 m grid ({STAC_PREFIX}…)")
            })?
            .parse()
    }

    /// Pixels per side.
    pub fn size(self) -> u64 {
        TILE_PX
    }
}

impl fmt::Display for Equi7Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E{:03}N{:03}T3", self.e, self.n)
    }
}

impl FromStr for Equi7Tile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an Equi7Grid T3 tile name (like E048N015T3)");
        let b = s.as_bytes();
        if b.len() != 10 || b[0] != b'E' || b[4] != b'N' || &s[8..] != "T3" {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, String> {
            let t = &s[r];
            if t.bytes().all(|c| c.is_ascii_digit()) {
                t.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let (e, n) = (num(1..4)?, num(5..8)?);
        if e % 3 != 0 || n % 3 != 0 {
            return Err(format!(
                "{s:?}: T3 tiles start at multiples of 300 km (E and N divisible by 3)"
            ));
        }
        Ok(Equi7Tile { e, n })
    }
}

/// Whether `name` looks like an Equi7 tile rather than an MGRS one (the CLI routes on it).
pub fn is_equi7_name(name: &str) -> bool {
    name.parse::<Equi7Tile>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_transform_of_a_real_tile() {
        let t: Equi7Tile = "E048N015T3".parse().unwrap();
        assert_eq!(t, Equi7Tile { e: 48, n: 15 });
        assert_eq!(t.to_string(), "E048N015T3");
        assert_eq!(t.stac_id(), "EU020M_E048N015T3");
        assert_eq!(Equi7Tile::from_stac_id("EU020M_E048N015T3"), Ok(t));
        // The real item's proj:transform and proj:bbox.
        assert_eq!(
            t.proj_transform(),
            [20.0, 0.0, 4_800_000.0, 0.0, -20.0, 1_800_000.0]
        );
        assert_eq!(t.llx() + (TILE_PX as f64) * GSD, 5_100_000.0);
        for bad in [
            "E48N015T3",
            "E048N015T1",
            "e048n015t3",
            "E049N015T3",
            "E048N015T3x",
            "E0+8N015T3",
        ] {
            assert!(bad.parse::<Equi7Tile>().is_err(), "{bad}");
        }
        assert!(Equi7Tile::from_stac_id("AF020M_E048N015T3").is_err());
    }

    #[test]
    fn the_wkt_is_the_equi7_eu_projection() {
        let srs = gdal::spatial_ref::SpatialRef::from_wkt(EU_WKT).unwrap();
        assert!(srs.is_projected());
        let p = |name: &str| srs.get_proj_param(name).unwrap().unwrap();
        assert_eq!(p("latitude_of_center"), LAT_CENTER);
        assert_eq!(p("longitude_of_center"), LON_CENTER);
        assert_eq!(p("false_easting"), FALSE_EASTING);
        assert_eq!(p("false_northing"), FALSE_NORTHING);
    }
}
