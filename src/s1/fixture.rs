//! The synthetic S1 slices of the test fixtures (what `datacube fixture --collection
//! sentinel-1-sig0` writes as GeoTIFFs and EODC-shaped items) and their value formula.
//!
//! Two tiles side by side, `E048N015T3` and `E051N015T3` (year 2024):
//! - 2024-01-20: three slices of ascending pass 146, 25 s apart, whose footprints overlap by 200
//!   rows; a second pass the same morning (descending 168) overlapping them; the third slice also
//!   covers the western edge of the eastern tile (two items, one per tile);
//! - 2024-01-26: an item whose files are all nodata;
//! - 2024-02-01: one slice, published twice (data versions V1M1R1 and V1M1R2; the newer wins);
//! - `extra_days` more days (every third day from 2024-03-01), one small slice each, so the time
//!   axis of the western tile spans more than one 30-day chunk.
//!
//! Footprints are rectangles (rows `r0..r1`, columns `c0..c1` of the tile's 15 000 × 15 000 grid)
//! straddling the shard boundaries at 2500; the VH footprint is the VV one minus its last 3
//! columns, so the merge's per-polarisation rule is exercised. Outside its footprint a file is
//! nodata (−9999). Inside, for item sensing time `s` (Unix seconds), polarisation `p` (VV 0, VH 1),
//! row `r`, column `c`:
//!
//! ```text
//! value = −2500 + (3·r + 7·c + 13·(s mod 8191) + 1009·p) mod 3001      (dB × 10, −250.0 … 50.0 dB)
//! abs_orbit_number = 40000 + day + relative_orbit   (day = days since 2014-10-01)
//! ```

use super::grid::Equi7Tile;
use super::NODATA;

/// One planned slice (one STAC item, two GeoTIFFs).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSlice {
    pub tile: Equi7Tile,
    /// Unix seconds.
    pub sensing_s: i64,
    pub relative_orbit: u32,
    pub ascending: bool,
    pub version: &'static str,
    /// VV footprint: rows `r0..r1`, columns `c0..c1`; `None` for an all-nodata item.
    pub footprint: Option<[u64; 4]>,
}

pub const WEST: Equi7Tile = Equi7Tile { e: 48, n: 15 };
pub const EAST: Equi7Tile = Equi7Tile { e: 51, n: 15 };
pub const YEAR: i32 = 2024;

fn at(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("fixture time")
        .timestamp()
}

/// The fixture's slices.
pub fn plan(extra_days: u32) -> Vec<PlannedSlice> {
    plan_with(extra_days, false)
}

/// The fixture's slices; `dense`: the benchmark's variant, whose first day covers the western tile
/// as real passes do (three slices of 5500 rows across the whole width, the second pass over its
/// eastern half), so reads and merges work on data rather than on absent strips.
pub fn plan_with(extra_days: u32, dense: bool) -> Vec<PlannedSlice> {
    let mut v = sparse_plan(extra_days);
    if dense {
        v[0].footprint = Some([0, 5500, 0, 15000]);
        v[1].footprint = Some([5000, 10500, 0, 15000]);
        v[2].footprint = Some([10000, 15000, 0, 15000]);
        v[4].footprint = Some([0, 15000, 7000, 15000]);
    }
    v
}

fn sparse_plan(extra_days: u32) -> Vec<PlannedSlice> {
    let p = |tile, t: &str, orbit, ascending, version, fp| PlannedSlice {
        tile,
        sensing_s: at(t),
        relative_orbit: orbit,
        ascending,
        version,
        footprint: fp,
    };
    let mut v = vec![
        p(
            WEST,
            "2024-01-20T16:50:56Z",
            146,
            true,
            "V1M1R2",
            Some([1800, 2900, 1900, 3300]),
        ),
        p(
            WEST,
            "2024-01-20T16:51:21Z",
            146,
            true,
            "V1M1R2",
            Some([2700, 3800, 1900, 3300]),
        ),
        p(
            WEST,
            "2024-01-20T16:51:46Z",
            146,
            true,
            "V1M1R2",
            Some([3600, 4700, 1900, 3300]),
        ),
        p(
            EAST,
            "2024-01-20T16:51:46Z",
            146,
            true,
            "V1M1R2",
            Some([3600, 4700, 0, 600]),
        ),
        p(
            WEST,
            "2024-01-20T05:25:53Z",
            168,
            false,
            "V1M1R2",
            Some([2300, 3200, 2800, 3800]),
        ),
        p(WEST, "2024-01-26T16:51:21Z", 146, true, "V1M1R2", None),
        p(
            WEST,
            "2024-02-01T05:17:40Z",
            95,
            false,
            "V1M1R1",
            Some([2400, 2700, 2400, 2700]),
        ),
        p(
            WEST,
            "2024-02-01T05:17:40Z",
            95,
            false,
            "V1M1R2",
            Some([2400, 2700, 2400, 2700]),
        ),
        p(
            EAST,
            "2024-02-05T16:43:10Z",
            44,
            true,
            "V1M1R2",
            Some([4800, 5300, 200, 900]),
        ),
    ];
    let start = at("2024-03-01T16:50:00Z");
    for i in 0..extra_days as i64 {
        let orbit = if i % 2 == 0 { 146 } else { 95 };
        v.push(PlannedSlice {
            tile: WEST,
            sensing_s: start + i * 3 * 86_400 + i * 37,
            relative_orbit: orbit,
            ascending: orbit == 146,
            version: "V1M1R2",
            footprint: Some([2450 + i as u64 % 7, 2560, 2440, 2555 + i as u64 % 5]),
        });
    }
    v
}

impl PlannedSlice {
    /// Footprint of polarisation `pol` (VH loses the last 3 columns).
    pub fn footprint_of(&self, pol: usize) -> Option<[u64; 4]> {
        self.footprint
            .map(|[r0, r1, c0, c1]| [r0, r1, c0, if pol == 1 { c1 - 3 } else { c1 }])
    }

    /// The value of polarisation `pol` at (`row`, `col`) of the tile.
    pub fn value(&self, pol: usize, row: u64, col: u64) -> i16 {
        match self.footprint_of(pol) {
            Some([r0, r1, c0, c1]) if (r0..r1).contains(&row) && (c0..c1).contains(&col) => {
                value(self.sensing_s, pol, row, col)
            }
            _ => NODATA,
        }
    }

    pub fn day(&self) -> i32 {
        super::day_of(self.sensing_s)
    }

    pub fn absolute_orbit(&self) -> i32 {
        40_000 + self.day() + self.relative_orbit as i32
    }

    /// `SIG0_20240120T165146`.
    fn stem(&self) -> String {
        let t = chrono::DateTime::from_timestamp(self.sensing_s, 0).unwrap_or_default();
        format!("SIG0_{}", t.format("%Y%m%dT%H%M%S"))
    }

    fn orbit_tag(&self) -> String {
        format!(
            "{}{:03}",
            if self.ascending { 'A' } else { 'D' },
            self.relative_orbit
        )
    }

    /// STAC item id, as EODC spells it.
    pub fn item_id(&self) -> String {
        format!(
            "{}_{}_{}_EU020M_{}_S1AIWGRDH",
            self.stem(),
            self.orbit_tag(),
            self.tile,
            self.version
        )
    }

    /// The asset's file name.
    pub fn file_name(&self, pol: usize) -> String {
        format!(
            "{}__{}_{}_{}_EU020M_{}_S1AIWGRDH_TUWIEN.tif",
            self.stem(),
            super::POLARISATIONS[pol],
            self.orbit_tag(),
            self.tile,
            self.version
        )
    }

    /// The asset's URL path (below the host), as on data.eodc.eu.
    pub fn asset_path(&self, pol: usize) -> String {
        format!(
            "collections/{}/{}/EQUI7_EU020M/{}/{}",
            super::STAC_COLLECTION,
            self.version,
            self.tile,
            self.file_name(pol)
        )
    }

    /// The GRD product name the GeoTIFF tag `parent` carries (shape of a real one).
    pub fn parent(&self) -> String {
        let t = chrono::DateTime::from_timestamp(self.sensing_s, 0).unwrap_or_default();
        let e = chrono::DateTime::from_timestamp(self.sensing_s + 25, 0).unwrap_or_default();
        format!(
            "S1A_IW_GRDH_1SDV_{}_{}_{:06}_{:06X}_{:04X}.zip",
            t.format("%Y%m%dT%H%M%S"),
            e.format("%Y%m%dT%H%M%S"),
            self.absolute_orbit(),
            (self.sensing_s / 60) as u32 & 0xFFFFFF,
            (self.sensing_s % 65536) as u32
        )
    }
}

/// The formula (inside a footprint).
pub fn value(sensing_s: i64, pol: usize, row: u64, col: u64) -> i16 {
    let v =
        (3 * row + 7 * col + 13 * (sensing_s.rem_euclid(8191) as u64) + 1009 * pol as u64) % 3001;
    -2500 + v as i16
}

/// An EODC-shaped STAC item for `s`, served from `data_url` (`https://data.eodc.eu`) and STAC root
/// `stac_url`: the real item of `tests/data/reference/eodc` with this slice's fields.
pub fn item_json(s: &PlannedSlice, data_url: &str, stac_url: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(REAL_ITEM).expect("reference item");
    let id = s.item_id();
    let iso = chrono::DateTime::from_timestamp(s.sensing_s, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (llx, lly) = (s.tile.llx(), s.tile.lly());
    let top = lly + super::grid::TILE_M as f64;
    v["id"] = id.clone().into();
    let p = &mut v["properties"];
    p["datetime"] = iso.into();
    p["Equi7_TileID"] = s.tile.stac_id().into();
    p["proj:bbox"] = serde_json::json!([llx, lly, llx + 300_000.0, top]);
    p["proj:transform"] = serde_json::json!(s.tile.proj_transform().map(|x| x as i64));
    p["proj:geometry"]["coordinates"] = serde_json::json!([[
        [llx, lly],
        [llx, top],
        [llx + 300_000.0, top],
        [llx + 300_000.0, lly],
        [llx, lly]
    ]]);
    p["sat:relative_orbit"] = s.relative_orbit.into();
    p["sat:orbit_state"] = if s.ascending {
        "ascending"
    } else {
        "descending"
    }
    .into();
    let stac = stac_url.trim_end_matches('/');
    for l in v["links"].as_array_mut().expect("links") {
        match l["rel"].as_str() {
            Some("self") => {
                l["href"] =
                    format!("{stac}/collections/{}/items/{id}", super::STAC_COLLECTION).into()
            }
            Some("root") => l["href"] = stac.into(),
            _ => l["href"] = format!("{stac}/collections/{}", super::STAC_COLLECTION).into(),
        }
    }
    let assets = v["assets"].as_object_mut().expect("assets");
    for (pol, name) in super::POLARISATIONS.iter().enumerate() {
        let a = &mut assets[*name];
        a["href"] = format!("{}/{}", data_url.trim_end_matches('/'), s.asset_path(pol)).into();
        if let Some(alt) = a.get_mut("alternate").and_then(|x| x.get_mut("local")) {
            alt["href"] = format!(
                "/eodc/products/eodc.eu/S1_CSAR_IWGRDH/SIG0/{}/EQUI7_EU020M/{}/{}",
                s.version,
                s.tile,
                s.file_name(pol)
            )
            .into();
        }
    }
    if let Some(t) = assets.get_mut("thumbnail") {
        t["href"] = format!(
            "{}/{}/thumbnail",
            data_url.trim_end_matches('/'),
            s.asset_path(0)
        )
        .into();
    }
    v
}

const REAL_ITEM: &str = include_str!(
    "../../tests/data/reference/eodc/stac-item-SIG0_20240120T165146_A146_E048N015T3_EU020M_V1M1R2_S1AIWGRDH.json"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_items_parse_back_and_name_their_files() {
        for s in plan(2) {
            let v = item_json(&s, "https://data.eodc.eu", "https://stac.eodc.eu/api/v1");
            let parsed = super::super::item::parse_item(&v).unwrap();
            assert_eq!(parsed.tile, s.tile.to_string());
            assert_eq!(parsed.sensing_s, s.sensing_s);
            assert_eq!(parsed.version, s.version);
            assert_eq!(
                parsed.assets[1],
                format!("https://data.eodc.eu/{}", s.asset_path(1))
            );
        }
        let first = &plan(0)[2];
        assert_eq!(
            first.item_id(),
            "SIG0_20240120T165146_A146_E048N015T3_EU020M_V1M1R2_S1AIWGRDH"
        );
        assert_eq!(
            first.file_name(1),
            "SIG0_20240120T165146__VH_A146_E048N015T3_EU020M_V1M1R2_S1AIWGRDH_TUWIEN.tif"
        );
    }
}
