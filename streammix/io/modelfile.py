"""Model directories: JSON metadata plus ``.npy`` arrays, never pickle.

Layer: edges (files).

Layout of a model directory::

    model.json            {"schema_version": 1, "kind": "GaussianMixture", ...,
                           "arrays": {"means": {"file": "means.npy", "shape": [...],
                                                "dtype": "float64", "sha256": "..."}}}
    means.npy, weights.npy, ...

Arrays are written and read with ``allow_pickle=False``; every file's SHA-256
is recorded, so truncation or corruption is refused on load rather than
producing a wrong model. A directory is written beside its destination and
renamed into place, so readers see the old model or the new one, never half
of one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError

SCHEMA_VERSION = 1
META_FILE = "model.json"

# kind -> function(meta, arrays) -> estimator; filled by the estimator modules.
_LOADERS: dict[str, Callable[[dict[str, Any], dict[str, np.ndarray]], Any]] = {}


def register_kind(
    kind: str, loader: Callable[[dict[str, Any], dict[str, np.ndarray]], Any]
) -> None:
    _LOADERS[kind] = loader


def _jsonable(value: Any) -> Any:
    """Plain JSON values; non-finite floats become ``None``."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_model_dir(
    path: str | os.PathLike[str], meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> Path:
    """Write a model directory atomically (replacing an existing model directory)."""
    dest = Path(path)
    foreign = dest.exists() and not (dest / META_FILE).is_file()
    if foreign and (not dest.is_dir() or any(dest.iterdir())):
        raise ModelFileError(
            f"'{dest}' exists and is not a streammix model directory; refusing to overwrite."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        table = {}
        for name, arr in arrays.items():
            a = np.ascontiguousarray(arr)
            if a.dtype.kind not in "biuf":
                raise ModelFileError(f"array {name!r} has non-numeric dtype {a.dtype}")
            f = tmp / f"{name}.npy"
            with f.open("wb") as fh:
                np.save(fh, a, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            table[name] = {
                "file": f.name,
                "shape": list(a.shape),
                "dtype": a.dtype.str,
                "sha256": _sha256(f),
            }
        doc = dict(_jsonable(dict(meta)))
        doc["schema_version"] = SCHEMA_VERSION
        doc["arrays"] = table
        with (tmp / META_FILE).open("w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex}"
            os.replace(dest, old)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_model_dir(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metadata and arrays of a model directory, with integrity checks.

    Raises
    ------
    ModelFileError
        Missing directory or metadata, invalid JSON, unknown schema version,
        missing, truncated or altered array files, pickled arrays.
    """
    given = Path(path)
    if not given.exists():
        raise ModelFileError(f"No model at '{given}': the path does not exist.")
    # Resolve a published link (models/current -> versions/v...) once, so every file
    # comes from the same version even if the link is switched meanwhile.
    src = given.resolve()
    meta_path = src / META_FILE
    if not meta_path.is_file():
        raise ModelFileError(f"'{src}' is not a streammix model directory (no {META_FILE}).")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise ModelFileError(
            f"The model at '{src}' is damaged: {META_FILE} is unreadable ({err})."
        ) from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"The model at '{src}' is damaged: {META_FILE} is not an object.")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelFileError(
            f"The model at '{src}' has schema version {version!r}; this streammix reads "
            f"version {SCHEMA_VERSION}. Refit the model or use a matching streammix release."
        )
    table = meta.get("arrays")
    if not isinstance(table, dict):
        raise ModelFileError(f"The model at '{src}' is damaged: no array table in {META_FILE}.")
    arrays = {}
    for name, entry in table.items():
        try:
            f = src / str(entry["file"])
            shape, dtype, digest = tuple(entry["shape"]), np.dtype(entry["dtype"]), entry["sha256"]
        except (KeyError, TypeError) as err:
            raise ModelFileError(
                f"The model at '{src}' is damaged: bad entry for {name!r}."
            ) from err
        if f.parent != src or not f.is_file():
            raise ModelFileError(f"The model at '{src}' is damaged: {f.name} is missing.")
        if _sha256(f) != digest:
            raise ModelFileError(
                f"The model at '{src}' is damaged: {f.name} does not match its checksum "
                "(truncated or modified)."
            )
        try:
            arr = np.load(f, allow_pickle=False)
        except ValueError as err:
            raise ModelFileError(f"The model at '{src}' is damaged: {f.name}: {err}") from None
        if arr.shape != shape or arr.dtype != dtype:
            raise ModelFileError(
                f"The model at '{src}' is damaged: {f.name} has shape {arr.shape} and dtype "
                f"{arr.dtype}, the metadata say {shape} and {dtype}."
            )
        arrays[name] = arr
    return meta, arrays


def load(path: str | os.PathLike[str]) -> Any:
    """Load any streammix model saved with ``save``.

    Examples
    --------
    >>> import numpy as np, streammix, tempfile, os
    >>> gm = streammix.GaussianMixture.from_parameters([1.0], [[0.0, 0.0]], [np.eye(2)])
    >>> d = os.path.join(tempfile.mkdtemp(), "model")
    >>> _ = gm.save(d)
    >>> float(streammix.load(d).score_samples(np.zeros((1, 2)))[0])  # doctest: +ELLIPSIS
    -1.83787...
    """
    from .. import estimators  # noqa: F401 - registers the model kinds

    meta, arrays = read_model_dir(path)
    kind = meta.get("kind")
    loader = _LOADERS.get(str(kind))
    if loader is None:
        raise ModelFileError(f"The model at '{path}' is of unknown kind {kind!r}.")
    try:
        return loader(meta, arrays)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"The model at '{path}' is invalid: {err}") from None
