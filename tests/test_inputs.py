"""What users may pass as X, and the clear errors for what they may not."""

from __future__ import annotations

import json
import threading
from collections import Counter

import dask.array as da
import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, WrapperStore

import streammix as sm
from streammix.io.inputs import as_chunked

from .conftest import blobs, write_zarr

X = blobs(2000, d=3, k=2, seed=13)


class CountingStore(WrapperStore):
    """Records every key read from the wrapped store."""

    def __init__(self, store):
        super().__init__(store)
        self.reads: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def get(self, key, prototype, byte_range=None):
        with self._lock:
            self.reads[key] += 1
        return await self._store.get(key, prototype, byte_range)


def test_zarr_is_read_chunk_by_chunk_in_every_iteration(tmp_path):
    path = write_zarr(tmp_path / "x.zarr", X, 250)
    store = CountingStore(LocalStore(path, read_only=True))
    arr = zarr.open_array(store, mode="r")
    gm = sm.GaussianMixture(2, random_state=0).fit(arr)
    chunk_reads = {k: v for k, v in store.reads.items() if k.startswith("c/")}
    assert len(chunk_reads) == 8
    # every chunk read once per EM iteration, plus the initialisation passes
    assert min(chunk_reads.values()) >= gm.n_iter_
    assert len(set(chunk_reads.values())) == 1


def test_group_path_uses_its_array_X_and_float32_stays_float32(tmp_path):
    path = write_zarr(tmp_path / "g.zarr", X.astype(np.float32), 500, name="X")
    data = as_chunked(path)
    assert data.dtype == np.float32 and data.row_chunks == (500,) * 4
    gm = sm.GaussianMixture(2, random_state=0).fit(path)
    ref = sm.GaussianMixture(2, random_state=0).fit(X.astype(np.float32))
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-6)


def test_integer_zarr_is_read_as_float64(tmp_path):
    path = write_zarr(tmp_path / "i.zarr", np.round(X * 10).astype(np.int32), 500)
    assert as_chunked(path).dtype == np.float64


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros(5), "Expected 2D array, got 1D array"),
        (np.zeros((2, 2, 2)), "Expected 2D array, got 3D array"),
        (np.zeros((0, 3)), "0 sample"),
        (np.zeros((3, 0)), "0 feature"),
        (np.array([["a", "b"], ["c", "d"]]), "not numbers"),
        (np.ones((2, 2), dtype=complex), "Complex data not supported"),
    ],
)
def test_bad_arrays_give_clear_errors(bad, match):
    with pytest.raises((sm.InvalidInputError, TypeError), match=match):
        sm.GaussianMixture().fit(bad)


def test_nan_and_inf_name_the_first_bad_row(tmp_path):
    bad = X.copy()
    bad[1234, 1] = np.nan
    bad[1500, 0] = np.inf
    with pytest.raises(sm.InvalidInputError, match="row 1234 is the first"):
        sm.GaussianMixture(2).fit(bad)
    path = write_zarr(tmp_path / "nan.zarr", bad, 300)
    with pytest.raises(sm.InvalidInputError, match="row 1234 is the first"):
        sm.GaussianMixture(2, random_state=0).fit(path)
    gm = sm.GaussianMixture(2, random_state=0).fit(X)
    # Lazy results name a bad row of the chunk that failed first.
    with pytest.raises(sm.InvalidInputError, match="row (1234|1500) is"):
        gm.score_samples(path).compute()
    with pytest.raises(sm.InvalidInputError, match="row 1234 is the first"):
        gm.score(path)


def test_too_few_rows_for_the_components():
    with pytest.raises(
        ValueError, match="n_samples >= n_components.*n_components = 5, n_samples = 3"
    ):
        sm.GaussianMixture(5).fit(X[:3])


def test_feature_count_must_match_the_model():
    gm = sm.GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(
        sm.InvalidInputError, match="X has 2 features, but GaussianMixture is expecting 3"
    ):
        gm.score_samples(X[:, :2])


def test_column_chunking_is_refused_with_a_rechunk_hint(tmp_path):
    arr = zarr.create_array(str(tmp_path / "c.zarr"), shape=X.shape, chunks=(500, 1), dtype="f8")
    arr[:] = X
    with pytest.raises(sm.InvalidInputError, match="chunked along columns.*chunks=\\(rows, 3\\)"):
        sm.GaussianMixture().fit(str(tmp_path / "c.zarr"))
    with pytest.raises(sm.InvalidInputError, match="rechunk\\(\\{1: -1\\}\\)"):
        sm.GaussianMixture().fit(da.from_array(X, chunks=(500, 1)))


def test_missing_paths_and_groups_without_the_array(tmp_path):
    with pytest.raises(sm.InvalidInputError, match="No Zarr array or group.*does not exist"):
        sm.GaussianMixture().fit(str(tmp_path / "missing.zarr"))
    write_zarr(tmp_path / "g.zarr", X, 500, name="other")
    with pytest.raises(sm.InvalidInputError, match="no array 'X' \\(it holds: other\\)"):
        sm.GaussianMixture().fit(str(tmp_path / "g.zarr"))


def test_zarr_v2_with_pickle_or_object_codec_is_refused(tmp_path):
    path = tmp_path / "v2.zarr"
    zarr.create_array(str(path), shape=(4, 2), chunks=(2, 2), dtype="f8", zarr_format=2)
    meta = json.loads((path / ".zarray").read_text())
    meta["filters"] = [{"id": "pickle", "protocol": 5}]
    (path / ".zarray").write_text(json.dumps(meta))
    with pytest.raises(sm.InvalidInputError, match="codec\\(s\\) pickle"):
        sm.GaussianMixture().fit(str(path))
    meta["filters"] = None
    meta["dtype"] = "|O"
    (path / ".zarray").write_text(json.dumps(meta))
    with pytest.raises(sm.InvalidInputError, match="dtype object"):
        sm.GaussianMixture().fit(str(path))


def test_inputs_are_opened_read_only(tmp_path):
    from streammix.io.inputs import open_zarr_array

    path = write_zarr(tmp_path / "ro.zarr", X, 500)
    arr = open_zarr_array(path)
    assert arr.read_only
    with pytest.raises(Exception, match="read.only"):
        arr[0, 0] = 1.0
