"""Opens an S1 sigma0 tile-year with zarr-python, xarray and rioxarray, and checks what a user
relies on against the expectations passed as JSON (computed by the Rust test from the fixture plan):
dims and sizes, decoded time, dB after CF decoding, NaN for nodata, CRS and transform, decoded
sensing_date and orbit numbers."""
import json
import sys

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
import zarr

path, expect = sys.argv[1], json.loads(sys.argv[2])

group = zarr.open_group(path, mode="r")
assert group["VV"].shards == (30, 2500, 2500), group["VV"].shards
assert group["VV"].chunks == (30, 500, 500), group["VV"].chunks
assert str(group["VV"].dtype) == "int16"

ds = xr.open_zarr(path, consolidated=False)
assert ds.VV.dims == ("time", "y", "x"), ds.VV.dims
assert ds.sizes["time"] == expect["days"], ds.sizes
assert ds.sizes["y"] == 15000 and ds.sizes["x"] == 15000
times = [str(t)[:10] for t in ds.time.values.astype("datetime64[D]")]
assert times == expect["dates"], times

for p in expect["pixels"]:
    sel = dict(time=p["t"], y=p["row"], x=p["col"])
    vv = float(ds.VV.isel(**sel).values)
    vh = float(ds.VH.isel(**sel).values)
    for name, got, raw in (("VV", vv, p["vv"]), ("VH", vh, p["vh"])):
        if raw == -9999:
            assert np.isnan(got), (name, p, got)
        else:
            assert abs(got - raw * 0.1) < 1e-9, (name, p, got)
    sd = ds.sensing_date.isel(**sel).values
    if p["sensing"] is None:
        assert np.isnat(sd), (p, sd)
    else:
        assert str(sd.astype("datetime64[s]")) == p["sensing"], (p, sd)
        assert int(ds.relative_orbit_number.isel(**sel).values) == p["rel"], p
        assert int(ds.absolute_orbit_number.isel(**sel).values) == p["abs"], p

crs = ds.VV.rio.crs
assert crs is not None, "no CRS"
wkt = crs.to_wkt()
assert "Azimuthal" in wkt and "5837287.81977" in wkt, wkt
t = ds.VV.rio.transform()
assert tuple(round(v, 6) for v in t[:6]) == tuple(expect["transform"]), t
print("ok", ds.sizes["time"], "days")
