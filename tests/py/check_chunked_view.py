"""Reads a mount's chunked view (`datacube mount --view chunked`) with GDAL 3.12 through rasterio's
wheels (the GDAL that rasterio 1.5, QGIS and most installs ship, which has no sharding), with
tensorstore and with zarr-python, and checks what GDAL says against the fixture: CRS, geotransform,
band ↔ (time, band) dimensions, block size, and the values against an independent numpy
implementation of the value formula. Runs in the venv scripts/setup makes for it (.venv-gdal,
Python >= 3.12).

Usage: check_chunked_view.py SPEC_JSON, where SPEC has
  view       the tile-year directory of the chunked view (MNT/35VLH/2024)
  native     (optional) the same tile-year of the sharded store: GDAL 3.12 must refuse it
  windows    {res: [y0, y1, x0, x1]} to read (every value checked against the formula), or null
             for whole arrays (the formula checked on a patch; the caller checks every value
             of what `out` receives)
  out        (optional) directory receiving RES.u16: GDAL's values as [time, band, y, x], uint16 LE
  readers    which of tensorstore, zarr must read the same values as GDAL
  epsg ulx uly width_m inner   the fixture's grid and the view's chunk extent per resolution
"""
import json
import os
import sys
from importlib.metadata import version

import numpy as np
import rasterio
import tensorstore as ts
import zarr
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

BAND_IDS = {"B01": 0, "B02": 1, "B03": 2, "B04": 3, "B05": 4, "B06": 5, "B07": 6, "B08": 7, "B8A": 8,
            "B09": 9, "B10": 10, "B11": 11, "B12": 12}
GROUPS = {"10m": ["B02", "B03", "B04", "B08"], "20m": ["B05", "B06", "B07", "B8A", "B11", "B12"],
          "60m": ["B01", "B09", "B10"]}


def mix(x):
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def formula(s, b, r, c, res, width_m):
    """The fixture's value of scene s, band id b at rows r × columns c (as tests/py/check_store.py)."""
    s, b = np.uint64(s), np.uint64(b)
    r = r.astype(np.uint64)[:, None]
    c = c.astype(np.uint64)[None, :]
    ym, xm = r * np.uint64(res), c * np.uint64(res)
    smooth = ((ym // 160) * 37 + (xm // 160) * 53 + 11 * s + 101 * b) % 1024
    noise = mix((s << np.uint64(48)) ^ (b << np.uint64(40)) ^ (r << np.uint64(20)) ^ c) % 64
    v = (1000 + 100 * b + smooth + noise).astype(np.uint16)
    if int(s) % 3 == 2:
        v[(10 * xm + 5 * ym) > 8 * width_m] = 0
    return v


def gdal_read(path, res, spec, window):
    """GDAL's view of one data array: checks its georeferencing and dimensions, returns the values
    of `window` (y0, y1, x0, x1) as [time, band, y, x]."""
    m = int(res[:-1])
    bands = GROUPS[res]
    n = spec["width_m"] // m
    with rasterio.open(f'ZARR:"{path}"') as d:
        assert d.driver == "Zarr", d.driver
        assert (d.width, d.height) == (n, n), (res, d.width, d.height)
        assert d.dtypes[0] == "uint16" and d.nodata == 0, (d.dtypes, d.nodata)
        assert d.crs.to_epsg() == spec["epsg"], (res, d.crs)
        assert tuple(d.transform)[:6] == (m, 0.0, spec["ulx"], 0.0, -m, spec["uly"]), (res, d.transform)
        inner = spec["inner"][res]
        assert d.block_shapes[0] == (inner, inner), (res, d.block_shapes[0])
        # Each GDAL band is one (time, band) plane, named by its dimension tags.
        nt = d.count // len(bands)
        assert nt * len(bands) == d.count, (res, d.count)
        plane = {}
        for k in range(1, d.count + 1):
            tags = d.tags(k)
            plane[(int(tags["DIM_time_INDEX"]), int(tags["DIM_band_INDEX"]))] = k - 1
        assert sorted(plane) == [(t, b) for t in range(nt) for b in range(len(bands))], res
        y0, y1, x0, x1 = window
        out = np.empty((nt, len(bands), y1 - y0, x1 - x0), np.uint16)
        # Block by block, every band of a block at once: GDAL decodes each chunk once.
        for by in range(y0 - y0 % inner, y1, inner):
            for bx in range(x0 - x0 % inner, x1, inner):
                ya, yb, xa, xb = max(by, y0), min(by + inner, y1), max(bx, x0), min(bx + inner, x1)
                a = d.read(window=Window(xa, ya, xb - xa, yb - ya))
                for (t, b), k in plane.items():
                    out[t, b, ya - y0:yb - y0, xa - x0:xb - x0] = a[k]
        return out


def check_formula(values, res, spec, window):
    m = int(res[:-1])
    y0, y1, x0, x1 = window
    r, c = np.arange(y0, y1), np.arange(x0, x1)
    for t in range(values.shape[0]):
        for bi, name in enumerate(GROUPS[res]):
            want = formula(t, BAND_IDS[name], r, c, m, spec["width_m"])
            assert (values[t, bi] == want).all(), (res, t, name, window)


def main():
    spec = json.loads(sys.argv[1])
    print(f"rasterio {rasterio.__version__}, GDAL {rasterio.__gdal_version__}, "
          f"tensorstore {version('tensorstore')}, zarr {zarr.__version__}, numpy {np.__version__}")
    # The GDAL in question: 3.12, which does not know sharding.
    assert rasterio.__gdal_version__.startswith("3.12."), rasterio.__gdal_version__
    if spec.get("native"):
        try:
            rasterio.open(f'ZARR:"{spec["native"]}/10m/data"').close()
            raise AssertionError("GDAL opened the sharded array itself")
        except RasterioIOError as e:
            assert "sharding_indexed" in str(e), e
        print("the sharded store: GDAL refuses it (Unsupported codec: sharding_indexed)")
    windows = spec.get("windows")
    for res in (windows or GROUPS):
        n = spec["width_m"] // int(res[:-1])
        path = f"{spec['view']}/{res}/data"
        window = tuple(windows[res]) if windows else (0, n, 0, n)
        y0, y1, x0, x1 = window
        values = gdal_read(path, res, spec, window)
        if windows:
            check_formula(values, res, spec, window)
        else:
            # A patch straddling inner chunks here; every value is checked by the caller.
            pa = (max(0, n // 2 - 70), min(n, n // 2 + 70), max(0, n - 90), n)
            check_formula(values[:, :, pa[0]:pa[1], pa[2]:pa[3]], res, spec, pa)
        region = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
        if "tensorstore" in spec["readers"]:
            a = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}}).result()
            assert list(a.domain.labels) == ["time", "band", "y", "x"], a.domain.labels
            assert np.array_equal(a[region].read().result(), values), (res, "tensorstore")
        if "zarr" in spec["readers"]:
            z = zarr.open_array(path, mode="r")
            assert z.chunks[2:] == (spec["inner"][res],) * 2, z.chunks
            assert np.array_equal(z[region], values), (res, "zarr-python")
        if spec.get("out"):
            values.astype("<u2").tofile(os.path.join(spec["out"], f"{res}.u16"))
        print(f"{res}: GDAL read {values.shape} {window}, georeferenced; "
              f"{', '.join(spec['readers']) or 'no other reader'} read the same")
    print("view ok")


if __name__ == "__main__":
    main()
