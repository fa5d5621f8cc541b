//! The Zarr v3 hierarchy of docs/design.md §2, generated from a catalog: every metadata document and every
//! coordinate chunk of a tile-year, as (key, bytes). The mount serves exactly these bytes and
//! intake writes exactly these bytes, so the two are identical by construction.
//!
//! ```text
//! zarr.json                      group (layout version, collection)
//! TILE/zarr.json                 group (tile, EPSG)
//! TILE/YEAR/zarr.json            group (year, scene count, catalog time)
//! TILE/YEAR/RES/zarr.json        group (resolution, bands) + consolidated metadata
//! TILE/YEAR/RES/data             uint16 [time, band, y, x]
//! TILE/YEAR/{10m,20m}/scl         uint8 [time, y, x] (L2A only)
//! TILE/YEAR/RES/{time,band,x,y,spatial_ref,...}
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use zarrs::array::Array;
use zarrs::storage::store::MemoryStore;
use zarrs::storage::{ReadableStorageTraits, StoreKey};

use crate::collection::View;
use crate::s2::array::PixelArray;
use crate::s2::bands::Resolution;
use crate::s2::catalog::Catalog;
use crate::s2::chunking::array_shape;
use crate::s2::chunking::Chunking;
use crate::s2::product::ProductLevel;
use crate::s2::scene::Grid;
use crate::store::Store;
use crate::zarr_json::array_from_json;

pub const LAYOUT_VERSION: u32 = 1;

/// Geometry of one pixel array.
#[derive(Debug, Clone, Copy)]
pub struct DataGeometry {
    pub array: PixelArray,
    pub res: Resolution,
    pub scenes: u64,
    /// Planes per scene: bands (`data`) or 1 (`scl`).
    pub bands: u64,
    pub grid: Grid,
    /// Shape of one object (a chunk, or a shard), `[time, planes, y, x]`.
    pub object: [u64; 4],
}

impl DataGeometry {
    pub fn new(catalog: &Catalog, array: PixelArray, chunking: Chunking) -> Result<Self> {
        let res = array.res;
        let level = catalog.level();
        let first = catalog.scenes.first().context("catalog has no scenes")?;
        let grid = *first.grid(res);
        if let Some(s) = catalog.scenes.iter().find(|s| s.grid(res) != &grid) {
            anyhow::bail!(
                "{}: {} grid {:?} differs from {}'s {:?}",
                s.product_id,
                res,
                s.grid(res),
                first.product_id,
                grid
            );
        }
        Ok(DataGeometry {
            array,
            res,
            scenes: catalog.scenes.len() as u64,
            bands: array.planes(level),
            grid,
            object: chunking.object_planes(array, level),
        })
    }

    /// `[time, planes, y, x]`.
    pub fn shape(&self) -> [u64; 4] {
        [self.scenes, self.bands, self.grid.nrows, self.grid.ncols]
    }

    /// Objects (chunks, or shards) along (time, y, x).
    pub fn chunk_counts(&self) -> [u64; 3] {
        let c = self.object;
        [
            self.scenes.div_ceil(c[0]),
            self.grid.nrows.div_ceil(c[2]),
            self.grid.ncols.div_ceil(c[3]),
        ]
    }

    pub fn total_chunks(&self) -> u64 {
        self.chunk_counts().iter().product()
    }
}

/// All generated documents of a tile-year (plus the root and tile groups).
pub struct YearLayout {
    pub files: BTreeMap<String, Vec<u8>>,
    /// The metadata of each pixel array the level has (index = `PixelArray::index`).
    pub array_metadata: Vec<Option<Value>>,
}

impl YearLayout {
    /// The documents a store of layout `chunking` holds.
    pub fn build(catalog: &Catalog, chunking: Chunking) -> Result<Self> {
        Self::build_as(catalog, chunking, View::Native)
    }

    /// The documents a mount of a store of layout `chunking` serves through `view`: the store's
    /// own (native), or with every sharded pixel array presented as chunked by its inner chunks
    /// (`Chunking::presented_codecs`), the consolidated metadata too, and the root group saying
    /// which view it is. Never written to a store.
    pub fn build_as(catalog: &Catalog, chunking: Chunking, view: View) -> Result<Self> {
        let level = catalog.level();
        let wkt = crs_wkt(catalog.epsg)?;
        let mut files = BTreeMap::new();
        files.insert(
            "zarr.json".into(),
            root_group_view_file(chunking, level, view),
        );
        files.insert(
            format!("{}/zarr.json", catalog.tile),
            tile_group_file(&catalog.tile, catalog.epsg),
        );
        put_json(
            &mut files,
            &format!("{}/{}/zarr.json", catalog.tile, catalog.year),
            &group(json!({
                "year": catalog.year,
                "scene_count": catalog.scenes.len(),
                "catalog_time": catalog.created,
                "catalog_updated": catalog.updated,
                "resolutions": ["10m", "20m", "60m"],
            })),
        );
        let mut array_metadata = vec![None; PixelArray::ALL.len()];
        for res in Resolution::ALL {
            let geom = DataGeometry::new(catalog, PixelArray::data(res), chunking)?;
            let prefix = format!("{}/{}/{}", catalog.tile, catalog.year, res.name());
            let mut arrays = res_arrays(catalog, &geom, chunking, view, &wkt)?;
            let scl = PixelArray::scl(res);
            if PixelArray::of_level(level).contains(&scl) {
                let geom = DataGeometry::new(catalog, scl, chunking)?;
                arrays.insert(
                    scl.name().into(),
                    scl_array(catalog, &geom, chunking, view, &wkt),
                );
                array_metadata[scl.index()] = Some(arrays[scl.name()].0.clone());
            }
            let mut consolidated = Map::new();
            for (name, (meta, chunk)) in &arrays {
                put_json(&mut files, &format!("{prefix}/{name}/zarr.json"), meta);
                if let Some((key, bytes)) = chunk {
                    files.insert(format!("{prefix}/{name}/{key}"), bytes.clone());
                }
                consolidated.insert(name.clone(), meta.clone());
            }
            array_metadata[PixelArray::data(res).index()] = Some(arrays["data"].0.clone());
            let bands: Vec<&str> = level.res_bands(res).iter().map(|b| b.name).collect();
            let mut g = group(json!({
                "resolution": res.name(),
                "resolution_m": res.metres(),
                "bands": bands,
                "description": format!("Sentinel-2 {level} {} digital numbers at {} m, tile {}, {}", facts(level).what, res.metres(), catalog.tile, catalog.year),
            }));
            g["consolidated_metadata"] =
                json!({"kind": "inline", "must_understand": false, "metadata": consolidated});
            put_json(&mut files, &format!("{prefix}/zarr.json"), &g);
        }
        Ok(YearLayout {
            files,
            array_metadata,
        })
    }
}

/// The layout to work with on `store`: the one it records, or for a new store `requested`
/// (else the default), which is then recorded by creating the root group. Fails if the store
/// records another layout than `requested`.
pub fn establish(
    store: &dyn Store,
    requested: Option<Chunking>,
    level: ProductLevel,
) -> Result<Chunking> {
    let check = |found: Chunking| {
        match requested {
        Some(r) if r != found => anyhow::bail!(
            "{}: the store's layout is {found}, not {r}; a store keeps the layout it was made with (pass --layout {found}, or use another store)",
            store.describe()
        ),
        _ => Ok(found),
    }
    };
    if let Some(found) = Chunking::of_store(store)? {
        return check(found);
    }
    let chosen = requested.unwrap_or(Chunking::DEFAULT);
    if store.put_if_absent("zarr.json", &root_group_file(chosen, level))? {
        tracing::info!("{}: new store, layout {chosen}", store.describe());
        return Ok(chosen);
    }
    // Another process created it first.
    check(Chunking::of_store(store)?.context("store root zarr.json vanished")?)
}

/// The metadata documents of a tile-year under a catalog, for the store's layout: what a
/// generation's invalidation writes again.
pub fn metadata_files(chunking: Chunking) -> crate::generation::MetadataFiles<Catalog> {
    Box::new(move |catalog: &Catalog| Ok(YearLayout::build(catalog, chunking)?.files))
}

/// The root group's `zarr.json` (independent of any catalog), recording the store's
/// collection and layout.
pub fn root_group_file(chunking: Chunking, level: ProductLevel) -> Vec<u8> {
    root_group_view_file(chunking, level, View::Native)
}

/// The root group's `zarr.json` as a mount serves it through `view`: the store's, and for the
/// chunked view of a sharded store `attributes.datacube.view = "chunked"` as well.
pub fn root_group_view_file(chunking: Chunking, level: ProductLevel, view: View) -> Vec<u8> {
    let mut root = root_group(chunking, level);
    if chunking.effective_view(view) != View::Native {
        root["attributes"]["datacube"]["view"] = json!(view.to_string());
    }
    json_file(&root)
}

/// A tile group's `zarr.json` (needs only the tile's projection, not a catalog).
pub fn tile_group_file(tile: &str, epsg: u32) -> Vec<u8> {
    json_file(&group(
        json!({"tile": tile, "epsg": epsg, "crs": format!("EPSG:{epsg}")}),
    ))
}

pub(crate) fn json_file(v: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(v).expect("JSON");
    bytes.push(b'\n');
    bytes
}

pub(crate) fn put_json(files: &mut BTreeMap<String, Vec<u8>>, key: &str, v: &Value) {
    files.insert(key.to_string(), json_file(v));
}

pub(crate) fn group(attributes: Value) -> Value {
    json!({"zarr_format": 3, "node_type": "group", "attributes": attributes})
}

fn root_group(chunking: Chunking, level: ProductLevel) -> Value {
    let mut datacube =
        json!({"layout_version": LAYOUT_VERSION, "collection": level.stac_collection()});
    // Chunked stores record nothing, so that their root group stays what it always was.
    if let Some(l) = chunking.to_json() {
        datacube["layout"] = l;
    }
    group(json!({
        "datacube": datacube,
        "description": facts(level).root_description,
    }))
}

/// WKT of an EPSG code, from GDAL (PROJ database).
pub fn crs_wkt(epsg: u32) -> Result<String> {
    let srs = gdal::spatial_ref::SpatialRef::from_epsg(epsg)
        .with_context(|| format!("unknown EPSG:{epsg}"))?;
    Ok(srs.to_wkt()?)
}

pub(crate) type ArrayDoc = (Value, Option<(String, Vec<u8>)>);

/// Per-scene coordinate names carried by `data`'s `coordinates` attribute, so xarray attaches
/// them (and the level's offset variable after them).
const SCENE_COORDS: [&str; 8] = [
    "product_id",
    "processing_baseline",
    "platform",
    "relative_orbit",
    "cloud_cover",
    "sun_zenith",
    "sun_azimuth",
    "quantification_value",
];

/// What the documents of a level say about its values.
struct LevelFacts {
    /// `top-of-atmosphere` / `bottom-of-atmosphere`.
    what: &'static str,
    root_description: &'static str,
    /// The per-scene, per-band offset variable.
    offset_var: &'static str,
    /// The metadata elements the offsets and quantification come from.
    offset_element: &'static str,
    quantification_element: &'static str,
}

fn facts(level: ProductLevel) -> LevelFacts {
    match level {
        ProductLevel::L1C => LevelFacts {
            what: "top-of-atmosphere",
            root_description: "Sentinel-2 L1C datacube: TILE/YEAR/RESOLUTION groups, data[time, band, y, x]",
            offset_var: "radio_add_offset",
            offset_element: "RADIO_ADD_OFFSET",
            quantification_element: "QUANTIFICATION_VALUE",
        },
        ProductLevel::L2A => LevelFacts {
            what: "bottom-of-atmosphere",
            root_description: "Sentinel-2 L2A datacube: TILE/YEAR/RESOLUTION groups, data[time, band, y, x]; scl[time, y, x] (scene classification) in 10m and 20m",
            offset_var: "boa_add_offset",
            offset_element: "BOA_ADD_OFFSET",
            quantification_element: "BOA_QUANTIFICATION_VALUE",
        },
    }
}

/// The scene classification classes (`Scene_Classification_List` of `MTD_MSIL2A.xml`).
pub const SCL_CLASSES: [&str; 12] = [
    "no_data",
    "saturated_or_defective",
    "casted_shadows",
    "cloud_shadows",
    "vegetation",
    "not_vegetated",
    "water",
    "unclassified",
    "cloud_medium_probability",
    "cloud_high_probability",
    "thin_cirrus",
    "snow_or_ice",
];

/// L2A's `scl` array of a group: uint8 `(time, y, x)` on the group's grid, cut as its `data`.
fn scl_array(
    catalog: &Catalog,
    geom: &DataGeometry,
    chunking: Chunking,
    view: View,
    wkt: &str,
) -> ArrayDoc {
    let array = geom.array;
    let (chunk_grid, codecs) = chunking.presented_codecs(array, ProductLevel::L2A, view);
    let description = if array.res == crate::s2::product::SCL_RESOLUTION {
        "the product's SCL band (SCL_20m), unchanged".to_string()
    } else {
        format!(
            "the product's 20 m SCL band, each pixel repeated {0} x {0}",
            crate::s2::product::SCL_RESOLUTION.metres() / array.res.metres()
        )
    };
    let meta = json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": array_shape(array, geom.shape()),
        "data_type": "uint8",
        "chunk_grid": chunk_grid,
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "attributes": {
            "long_name": "scene classification",
            "description": description,
            "flag_values": (0..SCL_CLASSES.len() as u8).collect::<Vec<_>>(),
            "flag_meanings": SCL_CLASSES.join(" "),
            "nodata": 0,
            "grid_mapping": "spatial_ref",
            "coordinates": "spatial_ref",
            "_CRS": {"wkt": wkt, "url": format!("http://www.opengis.net/def/crs/EPSG/0/{}", catalog.epsg)},
        },
        "dimension_names": ["time", "y", "x"]
    });
    (meta, None)
}

fn res_arrays(
    catalog: &Catalog,
    geom: &DataGeometry,
    chunking: Chunking,
    view: View,
    wkt: &str,
) -> Result<BTreeMap<String, ArrayDoc>> {
    let res = geom.res;
    let level = catalog.level();
    let facts = facts(level);
    let t = geom.scenes;
    let nb = geom.bands;
    let g = geom.grid;
    let mut out = BTreeMap::new();
    let (chunk_grid, codecs) = chunking.presented_codecs(geom.array, level, view);
    let reflectance = format!("(data + {}) / quantification_value", facts.offset_var);
    let mut data_meta = json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": geom.shape(),
        "data_type": "uint16",
        "chunk_grid": chunk_grid,
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "attributes": {
            "long_name": format!("{} digital number", facts.what),
            "units": "1",
            "nodata": 0,
            "saturated": 65535,
            "reflectance": reflectance,
            "grid_mapping": "spatial_ref",
            "coordinates": format!("spatial_ref {} {}", SCENE_COORDS.join(" "), facts.offset_var),
            "_CRS": {"wkt": wkt, "url": format!("http://www.opengis.net/def/crs/EPSG/0/{}", catalog.epsg)},
        },
        "dimension_names": ["time", "band", "y", "x"]
    });
    if level == ProductLevel::L2A {
        // Constant over every baseline so far; per scene in `quantification_value`.
        let q = catalog.scenes.first().map_or(10000.0, |s| s.quantification);
        data_meta["attributes"]["BOA_QUANTIFICATION_VALUE"] = json!(q);
    }
    out.insert("data".to_string(), (data_meta, None));

    let scenes = &catalog.scenes;
    let time: Vec<i64> = scenes.iter().map(|s| s.sensing_time_ms).collect();
    out.insert(
        "time".into(),
        coord_i64(
            &time,
            json!({"standard_name": "time", "long_name": "sensing start (PRODUCT_START_TIME)",
                   "units": "milliseconds since 1970-01-01", "calendar": "proleptic_gregorian"}),
        )?,
    );
    let bands = level.res_bands(res);
    let band_names: Vec<String> = bands.iter().map(|b| b.name.to_string()).collect();
    let wavelengths: Vec<f64> = bands.iter().map(|b| b.wavelength_nm).collect();
    out.insert(
        "band".into(),
        coord_str(
            &band_names,
            "band",
            json!({"long_name": "MSI band", "central_wavelength_nm": wavelengths}),
        )?,
    );
    let xs: Vec<f64> = (0..g.ncols)
        .map(|i| g.ulx + (i as f64 + 0.5) * g.res)
        .collect();
    let ys: Vec<f64> = (0..g.nrows)
        .map(|j| g.uly - (j as f64 + 0.5) * g.res)
        .collect();
    let axis_attrs = |name: &str| json!({"standard_name": format!("projection_{name}_coordinate"), "long_name": format!("{name} coordinate of projection (pixel centre)"), "units": "m"});
    out.insert("x".into(), coord_f64(&xs, "x", axis_attrs("x"))?);
    out.insert("y".into(), coord_f64(&ys, "y", axis_attrs("y"))?);

    let gt = g.geotransform();
    let mut sr_attrs = json!({
        "crs_wkt": wkt,
        "spatial_ref": wkt,
        "GeoTransform": gt.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(" "),
        "epsg": catalog.epsg,
    });
    if let Some(cf) = utm_cf(catalog.epsg) {
        for (k, v) in cf.as_object().unwrap() {
            sr_attrs[k] = v.clone();
        }
    }
    out.insert(
        "spatial_ref".into(),
        (
            json!({
                "zarr_format": 3, "node_type": "array", "shape": [], "data_type": "int32",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": []}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": 0, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                "attributes": sr_attrs, "dimension_names": []
            }),
            None,
        ),
    );

    let col =
        |f: &dyn Fn(&crate::s2::scene::Scene) -> String| scenes.iter().map(f).collect::<Vec<_>>();
    out.insert(
        "product_id".into(),
        coord_str(
            &col(&|s| s.product_id.clone()),
            "time",
            json!({"long_name": "product name"}),
        )?,
    );
    out.insert(
        "processing_baseline".into(),
        coord_str(
            &col(&|s| s.baseline.clone()),
            "time",
            json!({"long_name": "processing baseline"}),
        )?,
    );
    out.insert(
        "platform".into(),
        coord_str(
            &col(&|s| s.platform.clone()),
            "time",
            json!({"long_name": "platform"}),
        )?,
    );
    let f64s =
        |f: &dyn Fn(&crate::s2::scene::Scene) -> f64| scenes.iter().map(f).collect::<Vec<f64>>();
    out.insert(
        "cloud_cover".into(),
        coord_f64(
            &f64s(&|s| s.cloud_cover),
            "time",
            json!({"long_name": "Cloud_Coverage_Assessment", "units": "percent"}),
        )?,
    );
    out.insert(
        "sun_zenith".into(),
        coord_f64(
            &f64s(&|s| s.mean_sun_zenith),
            "time",
            json!({"long_name": "mean sun zenith angle", "units": "degree"}),
        )?,
    );
    out.insert(
        "sun_azimuth".into(),
        coord_f64(
            &f64s(&|s| s.mean_sun_azimuth),
            "time",
            json!({"long_name": "mean sun azimuth angle", "units": "degree"}),
        )?,
    );
    out.insert(
        "quantification_value".into(),
        coord_f64(
            &f64s(&|s| s.quantification),
            "time",
            json!({"long_name": facts.quantification_element}),
        )?,
    );
    let orbits: Vec<i32> = scenes.iter().map(|s| s.relative_orbit as i32).collect();
    out.insert(
        "relative_orbit".into(),
        small_array(
            &orbits,
            &[t],
            &["time"],
            "int32",
            json!({"long_name": "relative orbit number"}),
        )?,
    );
    let mut offsets = Vec::with_capacity((t * nb) as usize);
    for s in scenes {
        for b in &bands {
            offsets.push(s.radio_offsets[b.id]);
        }
    }
    out.insert(
        facts.offset_var.into(),
        small_array(
            &offsets,
            &[t, nb],
            &["time", "band"],
            "int32",
            json!({"long_name": facts.offset_element, "description": format!("reflectance = {reflectance}; -1000 from baseline 04.00 on, 0 before")}),
        )?,
    );
    Ok(out)
}

/// CF grid-mapping attributes for WGS 84 / UTM (EPSG 326zz north, 327zz south).
fn utm_cf(epsg: u32) -> Option<Value> {
    let (zone, south) = match epsg {
        32601..=32660 => (epsg - 32600, false),
        32701..=32760 => (epsg - 32700, true),
        _ => return None,
    };
    Some(json!({
        "grid_mapping_name": "transverse_mercator",
        "longitude_of_central_meridian": zone as f64 * 6.0 - 183.0,
        "latitude_of_projection_origin": 0.0,
        "scale_factor_at_central_meridian": 0.9996,
        "false_easting": 500000.0,
        "false_northing": if south { 10000000.0 } else { 0.0 },
        "semi_major_axis": 6378137.0,
        "inverse_flattening": 298.257223563,
    }))
}

fn coord_i64(v: &[i64], attrs: Value) -> Result<ArrayDoc> {
    small_array(v, &[v.len() as u64], &["time"], "int64", attrs)
}

pub(crate) fn coord_f64(v: &[f64], dim: &str, attrs: Value) -> Result<ArrayDoc> {
    small_array(v, &[v.len() as u64], &[dim], "float64", attrs)
}

pub(crate) fn coord_str(v: &[String], dim: &str, attrs: Value) -> Result<ArrayDoc> {
    let meta = json!({
        "zarr_format": 3, "node_type": "array", "shape": [v.len()], "data_type": "string",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [v.len().max(1)]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": "", "codecs": [{"name": "vlen-utf8"}],
        "attributes": attrs, "dimension_names": [dim]
    });
    let refs: Vec<&str> = v.iter().map(String::as_str).collect();
    let chunk = encode_single_chunk(&meta, |a| {
        let arr = ndarray::ArrayD::<&str>::from_shape_vec(vec![refs.len()], refs.clone())?;
        a.store_chunk(&[0], arr)?;
        Ok(())
    })?;
    Ok((meta, chunk))
}

/// A numeric array stored as one uncompressed chunk (little-endian bytes codec).
pub(crate) fn small_array<T: zarrs::array::Element + Clone>(
    v: &[T],
    shape: &[u64],
    dims: &[&str],
    dtype: &str,
    attrs: Value,
) -> Result<ArrayDoc> {
    let chunk_shape: Vec<u64> = shape.iter().map(|s| (*s).max(1)).collect();
    let fill = if dtype.starts_with("float") {
        json!(0.0)
    } else {
        json!(0)
    };
    let meta = json!({
        "zarr_format": 3, "node_type": "array", "shape": shape, "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk_shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": attrs, "dimension_names": dims
    });
    let data = v.to_vec();
    let chunk = encode_single_chunk(&meta, |a| {
        let idx = vec![0u64; chunk_shape.len()];
        let arr = ndarray::ArrayD::<T>::from_shape_vec(
            chunk_shape.iter().map(|s| *s as usize).collect::<Vec<_>>(),
            data.clone(),
        )?;
        a.store_chunk(&idx, arr)?;
        Ok(())
    })?;
    Ok((meta, chunk))
}

/// Encodes the only chunk of a small array through zarrs (so the bytes are what a Zarr
/// implementation writes), returning its key relative to the array. `None` if the array is empty
/// or all fill value.
fn encode_single_chunk(
    meta: &Value,
    store_it: impl Fn(&Array<MemoryStore>) -> Result<()>,
) -> Result<Option<(String, Vec<u8>)>> {
    if meta["shape"]
        .as_array()
        .is_some_and(|s| s.iter().any(|d| d.as_u64() == Some(0)))
    {
        return Ok(None);
    }
    let store = Arc::new(MemoryStore::new());
    let array = array_from_json(store.clone(), "/a", meta)?;
    store_it(&array)?;
    let ndim = meta["shape"].as_array().map(|a| a.len()).unwrap_or(0);
    let rel = if ndim == 0 {
        "c".to_string()
    } else {
        format!("c/{}", vec!["0"; ndim].join("/"))
    };
    let key = StoreKey::new(format!("a/{rel}"))?;
    Ok(store.get(&key)?.map(|b| (rel, b.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::s2::product::ProductLevel::L1C;

    #[test]
    fn a_store_keeps_the_layout_it_was_made_with() {
        let store = crate::store::MemStore::new();
        let sharded: Chunking = "sharded:2048/128".parse().unwrap();
        assert_eq!(establish(&store, Some(sharded), L1C).unwrap(), sharded);
        assert_eq!(establish(&store, None, L1C).unwrap(), sharded);
        let e = establish(&store, Some(Chunking::Chunked), L1C).unwrap_err();
        assert!(
            e.to_string()
                .contains("layout is sharded:2048/128, not chunked"),
            "{e}"
        );
        // A store made before layouts were recorded is chunked.
        let old = crate::store::MemStore::new();
        old.put("zarr.json", &root_group_file(Chunking::Chunked, L1C))
            .unwrap();
        assert_eq!(establish(&old, None, L1C).unwrap(), Chunking::Chunked);
        assert!(establish(&old, Some(Chunking::SHARDED), L1C).is_err());
    }
}
