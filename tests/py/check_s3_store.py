"""Opens a tile-year of a Zarr store straight from an S3 bucket with xarray (zarr-python + s3fs)
and checks every resolution equals the same tile-year read from a local directory store.

usage: check_s3_store.py ENDPOINT s3://BUCKET/PREFIX/TILE/YEAR LOCAL_STORE/TILE/YEAR
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (never from arguments).
"""
import os
import sys

import numpy as np
import xarray as xr

endpoint, remote, local = sys.argv[1:4]
so = {
    "endpoint_url": endpoint,
    "key": os.environ["AWS_ACCESS_KEY_ID"],
    "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
    "client_kwargs": {"region_name": "default"},
}
total = 0
for res in ("10m", "20m", "60m"):
    a = xr.open_zarr(f"{remote}/{res}", storage_options=so, consolidated=True)
    b = xr.open_zarr(f"{local}/{res}", consolidated=True)
    assert a.data.shape == b.data.shape, (res, a.data.shape, b.data.shape)
    da, db = a.data.values, b.data.values
    assert da.dtype == np.uint16 and np.array_equal(da, db), res
    assert (da != 0).any(), res
    for name in ("time", "band", "x", "y", "product_id", "radio_add_offset"):
        assert np.array_equal(a[name].values, b[name].values), (res, name)
    assert a.data.attrs == b.data.attrs, res
    total += da.size
print(f"ok {total}")
