"""Opens a tile-year of a datacube store (or mount) with zarr-python, xarray and rioxarray and checks
it against expectations computed independently of the store (the fixture plan) and against a numpy
implementation of the value formula. Usage: check_store.py YEAR_DIR EXPECT_JSON"""
import json
import sys

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
import zarr

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
BAND_IDS = {"B01": 0, "B02": 1, "B03": 2, "B04": 3, "B05": 4, "B06": 5, "B07": 6, "B08": 7, "B8A": 8,
            "B09": 9, "B10": 10, "B11": 11, "B12": 12}


def mix(x):
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def formula(s, b, r, c, res, width_m):
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


def main():
    year_dir, expect = sys.argv[1], json.loads(sys.argv[2])
    root = zarr.open_group(year_dir, mode="r")
    assert root.attrs["scene_count"] == len(expect["times_ms"]), dict(root.attrs)
    for res, bands in [("10m", ["B02", "B03", "B04", "B08"]), ("20m", ["B05", "B06", "B07", "B8A", "B11", "B12"]),
                       ("60m", ["B01", "B09", "B10"])]:
        m = int(res[:-1])
        ds = xr.open_zarr(f"{year_dir}/{res}", consolidated=True)
        da = ds["data"]
        n = expect["width_m"] // m
        assert da.dims == ("time", "band", "y", "x"), da.dims
        assert da.shape == (len(expect["times_ms"]), len(bands), n, n), da.shape
        assert da.dtype == np.uint16, da.dtype
        assert list(ds.band.values) == bands, ds.band.values
        times = ds.time.values.astype("datetime64[ms]").astype(np.int64)
        assert list(times) == expect["times_ms"], (times, expect["times_ms"])
        assert list(ds.product_id.values) == expect["product_ids"]
        assert (ds.radio_add_offset.values == np.array(expect["offsets"])[:, None]).all()
        assert ds.x.values[0] == expect["ulx"] + m / 2 and ds.y.values[0] == expect["uly"] - m / 2
        assert np.allclose(np.diff(ds.x.values), m) and np.allclose(np.diff(ds.y.values), -m)
        assert da.rio.crs.to_epsg() == expect["epsg"], da.rio.crs
        assert tuple(da.rio.transform())[:6] == (m, 0.0, expect["ulx"], 0.0, -m, expect["uly"]), da.rio.transform()
        # A patch time series straddling chunk edges, against the formula.
        cs = {10: 512, 20: 256, 60: 128}[m]
        r = np.arange(cs - 40, min(cs + 60, n))
        c = np.arange(max(0, n - 90), n)
        patch = da.isel(y=slice(r[0], r[-1] + 1), x=slice(c[0], c[-1] + 1)).values
        for t in range(patch.shape[0]):
            for bi, name in enumerate(bands):
                want = formula(t, BAND_IDS[name], r, c, m, expect["width_m"])
                assert (patch[t, bi] == want).all(), (res, t, name)
        print(f"{res}: {da.shape} ok, patch {patch.shape} equals the formula")
    print("store ok")


if __name__ == "__main__":
    main()
