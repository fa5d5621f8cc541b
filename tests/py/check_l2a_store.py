"""Opens an L2A tile-year of a datacube store (or mount) with zarr-python, xarray and rioxarray and
checks it against expectations computed independently of the store (the fixture plan) and a numpy
implementation of the value formulas, then runs the README's cloud-masked reflectance example.
Usage: check_l2a_store.py YEAR_DIR EXPECT_JSON"""
import json
import sys

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
import zarr

from check_store import BAND_IDS, formula, mix

GROUPS = [("10m", ["B02", "B03", "B04", "B08"]), ("20m", ["B05", "B06", "B07", "B8A", "B11", "B12"]),
          ("60m", ["B01", "B09"])]
# SCL classes a training loader keeps: vegetation, not vegetated, water, unclassified, snow.
CLEAR = [4, 5, 6, 7, 11]


def scl_formula(s, r, c, width_m):
    """The fixture's SCL at 20 m (datacube_tools::synth::scl)."""
    s = np.uint64(s)
    r = r.astype(np.uint64)[:, None]
    c = c.astype(np.uint64)[None, :]
    v = (1 + mix((s << np.uint64(48)) ^ (np.uint64(0x5C1) << np.uint64(36)) ^ (r << np.uint64(20)) ^ c)
         % np.uint64(11)).astype(np.uint8)
    if int(s) % 3 == 2:
        v[(10 * c * 20 + 5 * r * 20) > 8 * width_m] = 0
    return v


def main():
    year_dir, expect = sys.argv[1], json.loads(sys.argv[2])
    nt = len(expect["times_ms"])
    root = zarr.open_group(year_dir, mode="r")
    assert root.attrs["scene_count"] == nt, dict(root.attrs)
    w = expect["width_m"]
    for res, bands in GROUPS:
        m = int(res[:-1])
        ds = xr.open_zarr(f"{year_dir}/{res}", consolidated=True)
        da = ds["data"]
        n = w // m
        assert da.dims == ("time", "band", "y", "x") and da.shape == (nt, len(bands), n, n), (da.dims, da.shape)
        assert da.dtype == np.uint16 and list(ds.band.values) == bands, (da.dtype, ds.band.values)
        times = ds.time.values.astype("datetime64[ms]").astype(np.int64)
        assert list(times) == expect["times_ms"], (times, expect["times_ms"])
        assert list(ds.product_id.values) == expect["product_ids"]
        assert "radio_add_offset" not in ds, list(ds.variables)
        assert ds.boa_add_offset.dims == ("time", "band")
        assert (ds.boa_add_offset.values == np.array(expect["offsets"])[:, None]).all(), ds.boa_add_offset.values
        assert da.attrs["BOA_QUANTIFICATION_VALUE"] == 10000, da.attrs
        assert da.attrs["reflectance"] == "(data + boa_add_offset) / quantification_value", da.attrs
        assert (ds.quantification_value.values == 10000).all()
        assert da.rio.crs.to_epsg() == expect["epsg"], da.rio.crs
        assert tuple(da.rio.transform())[:6] == (m, 0.0, expect["ulx"], 0.0, -m, expect["uly"])
        r = np.arange(n - 70, n)
        c = np.arange(0, 50)
        patch = da.isel(y=slice(r[0], r[-1] + 1), x=slice(c[0], c[-1] + 1)).values
        for t in range(nt):
            for bi, name in enumerate(bands):
                assert (patch[t, bi] == formula(t, BAND_IDS[name], r, c, m, w)).all(), (res, t, name)
        if res == "60m":
            assert "scl" not in ds, list(ds.variables)
            continue
        scl = ds["scl"]
        assert scl.dims == ("time", "y", "x") and scl.shape == (nt, n, n) and scl.dtype == np.uint8, scl
        assert scl.rio.crs.to_epsg() == expect["epsg"]
        k = 20 // m
        got = scl.isel(y=slice(r[0], r[-1] + 1), x=slice(c[0], c[-1] + 1)).values
        for t in range(nt):
            assert (got[t] == scl_formula(t, r // k, c // k, w)).all(), (res, t)
        print(f"{res}: data {da.shape}, scl {scl.shape} ok")
    # The README's example: clear-sky reflectance of a 10 m patch time series.
    ds = xr.open_zarr(f"{year_dir}/10m", consolidated=True)
    patch = ds.isel(x=slice(100, 164), y=slice(200, 264))
    refl = ((patch.data + patch.boa_add_offset) / patch.quantification_value).where(patch.scl.isin(CLEAR))
    r, c = np.arange(200, 264), np.arange(100, 164)
    for t in range(nt):
        mask = np.isin(scl_formula(t, r // 2, c // 2, w), CLEAR)
        for bi, name in enumerate(GROUPS[0][1]):
            want = (formula(t, BAND_IDS[name], r, c, 10, w).astype(np.int64) + expect["offsets"][t]) / 10000.0
            got = refl.values[t, bi]
            assert np.allclose(got[mask], want[mask]) and np.isnan(got[~mask]).all(), (t, name)
    print(f"masked reflectance: {int(np.isfinite(refl.values).sum())} clear values of {refl.size}")
    print("l2a store ok")


if __name__ == "__main__":
    main()
