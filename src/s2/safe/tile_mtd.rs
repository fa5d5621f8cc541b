//! `GRANULE/<granule>/MTD_TL.xml`: the tile geometry and angles.

use std::path::Path;

use super::xml::{self, find, find_all, invalid, required, required_parse};
use super::SafeError;
use crate::s2::bands::Resolution;
use crate::s2::scene::{parse_iso_ms, Grid};

#[derive(Debug, Clone, PartialEq)]
pub struct TileMtd {
    pub epsg: u32,
    /// Grids for 10, 20 and 60 m.
    pub grids: [Grid; 3],
    /// SENSING_TIME of the granule, ms since the epoch.
    pub sensing_time_ms: i64,
    pub sun_zenith: f64,
    pub sun_azimuth: f64,
}

pub fn parse_tile_mtd(text: &str, file: &Path) -> Result<TileMtd, SafeError> {
    let doc = xml::parse(text, file)?;
    let root = doc.root_element();
    let code = required(root, "HORIZONTAL_CS_CODE", file)?;
    let epsg = code
        .strip_prefix("EPSG:")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid(file, "HORIZONTAL_CS_CODE", code, "expected EPSG:<code>"))?;
    let sensing = required(root, "SENSING_TIME", file)?;
    let sensing_time_ms = parse_iso_ms(sensing)
        .ok_or_else(|| invalid(file, "SENSING_TIME", sensing, "not an ISO 8601 time"))?;

    let geocoding =
        find(root, "Tile_Geocoding").ok_or_else(|| xml::missing(file, "Tile_Geocoding"))?;
    let mut grids = Vec::with_capacity(3);
    for res in Resolution::ALL {
        let r = res.metres().to_string();
        let with_res = |name: &'static str| {
            find_all(geocoding, name)
                .find(|n| n.attribute("resolution") == Some(r.as_str()))
                .ok_or_else(|| xml::missing(file, &format!("{name} resolution=\"{r}\"")))
        };
        let size = with_res("Size")?;
        let pos = with_res("Geoposition")?;
        let xdim: f64 = required_parse(pos, "XDIM", file)?;
        let ydim: f64 = required_parse(pos, "YDIM", file)?;
        if xdim != res.metres() as f64 || ydim != -(res.metres() as f64) {
            return Err(invalid(
                file,
                "XDIM/YDIM",
                &format!("{xdim}/{ydim}"),
                &format!("expected {r}/-{r}"),
            ));
        }
        grids.push(Grid {
            nrows: required_parse(size, "NROWS", file)?,
            ncols: required_parse(size, "NCOLS", file)?,
            ulx: required_parse(pos, "ULX", file)?,
            uly: required_parse(pos, "ULY", file)?,
            res: xdim,
        });
    }
    let sun = find(root, "Mean_Sun_Angle").ok_or_else(|| xml::missing(file, "Mean_Sun_Angle"))?;
    Ok(TileMtd {
        epsg,
        grids: [grids[0], grids[1], grids[2]],
        sensing_time_ms,
        sun_zenith: required_parse(sun, "ZENITH_ANGLE", file)?,
        sun_azimuth: required_parse(sun, "AZIMUTH_ANGLE", file)?,
    })
}
