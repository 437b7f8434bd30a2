"""Model directories and published versions: JSON metadata plus ``.npy`` arrays, never pickle.

Layer: edges (files and object stores, through :mod:`streammix.io.location`).

Layout of a model directory (a local directory or a prefix of an object store)::

    model.json                 {"schema_version": 1, "kind": "GaussianMixture", ...,
                                "arrays": {"means": {"file": "means.1f0c...npy",
                                           "shape": [...], "dtype": "<f8",
                                           "sha256": "..."}}}
    means.1f0c...npy, weights.9a4e...npy, ...

Arrays are written and read with ``allow_pickle=False``; every file's SHA-256
is recorded, and files are named after their checksum. The manifest records
the SHA-256 of its own other fields too (``metadata_sha256``, of their
canonical JSON: sorted keys, no spaces), so a threshold, a history or a shape
edited or damaged in ``model.json`` is refused on read like an altered array;
``NaN`` and ``Infinity``, which strict JSON does not have, are refused on
their own. What the fields may hold is checked by :mod:`streammix.io.modelmeta`
when a model is loaded. A manifest written before ``metadata_sha256`` existed
is still read (every model saved by an earlier release has none), its fields
checked all the same; the checksum guards against accidents and hand edits,
not against someone who rewrites it. A model is written
file by file and its manifest, ``model.json``, last, in one write: a model is
loadable only once its manifest exists, and rewriting a model in place (a
checkpoint after every iteration) never touches the files the previous
manifest names until the new manifest has replaced it. A reader that finds a
file missing or altered reads the manifest again once, so it sees the old
model or the new one, never half of one. Neither renames nor symbolic links
are needed, so the same code serves local disks and object stores; a file of
a local model directory that is a symbolic link leading outside the directory
is refused (a model is what its directory holds).

Publishing (:func:`publish`) copies a model into a versions directory and
switches a small *pointer* object (``{"streammix_pointer": 1, "version": ...}``)
with one write; :func:`read_model_dir` follows a pointer once. A symbolic link
made by an older streammix's ``publish`` is still followed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InvalidInputError, ModelFileError, StreammixError
from .location import Location, as_location

SCHEMA_VERSION = 1
META_FILE = "model.json"
CHECKSUM_KEY = "metadata_sha256"
POINTER_KEY = "streammix_pointer"
POINTER_VERSION = 1
_READ_ATTEMPTS = 3

Where = str | os.PathLike[str] | Location


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


def _npy_bytes(name: str, arr: np.ndarray) -> bytes:
    a = np.ascontiguousarray(arr)
    if a.dtype.kind not in "biuf":
        raise ModelFileError(f"array {name!r} has non-numeric dtype {a.dtype}")
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _manifest(loc: Location) -> dict[str, Any] | None:
    """The parsed manifest of a model directory, or ``None`` when there is none."""
    meta_loc = loc.child(META_FILE)
    _check_inside(loc, meta_loc)
    try:
        raw = meta_loc.read_bytes()
    except InvalidInputError:
        return None
    try:
        meta = json.loads(raw, parse_constant=_not_json)
    except ValueError as err:
        raise ModelFileError(
            f"The model at '{loc}' is damaged: {META_FILE} is unreadable ({err})."
        ) from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"The model at '{loc}' is damaged: {META_FILE} is not an object.")
    return meta


def _canonical(doc: Mapping[str, Any]) -> bytes:
    """The bytes the metadata checksum is taken of: every field but the checksum."""
    fields = {k: v for k, v in doc.items() if k != CHECKSUM_KEY}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.encode()


def _check_metadata(src: Location, meta: Mapping[str, Any]) -> None:
    """Refuse a manifest whose fields do not match its metadata checksum."""
    recorded = meta.get(CHECKSUM_KEY)
    if recorded is None:
        return  # written before metadata checksums existed; fields are checked on load
    if not isinstance(recorded, str) or hashlib.sha256(_canonical(meta)).hexdigest() != recorded:
        raise ModelFileError(
            f"The model at '{src}' is damaged: {META_FILE} does not match its checksum "
            f"({CHECKSUM_KEY}); it was edited or corrupted. Save or fit the model again."
        )


def _check_inside(directory: Location, file: Location) -> None:
    if not file.resolves_within(directory):
        raise ModelFileError(
            f"The model at '{directory}' is damaged: {file.name} is a symbolic link to a file "
            "outside the model directory; a model's files must be inside it."
        )


def check_destination(path: Where) -> dict[str, Any] | None:
    """Refuse, before any work, to write a model over anything that is not a
    streammix model (a file, a pointer, a directory of other files, a root);
    return the manifest already there (if any).

    Raises
    ------
    ModelFileError, InvalidInputError, InvalidParameterError
        The destination cannot hold a model.
    """
    dest = as_location(path)
    dest.check_writable()
    if dest.isfile():
        raise ModelFileError(
            f"'{dest}' is a file (a published pointer?) and not a model directory; refusing "
            "to overwrite it. Save to another path, or publish to switch a pointer."
        )
    try:
        old = _manifest(dest)
    except ModelFileError:
        old = {}
    if old is None and dest.listdir():
        raise ModelFileError(
            f"'{dest}' exists and is not a streammix model directory; refusing to overwrite."
        )
    return old


def write_model_dir(path: Where, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """Write a model directory: array files first, the manifest last (replacing a model
    already there without ever exposing half of it). Returns the location's text."""
    dest = as_location(path)
    old = check_destination(dest)
    dest.makedirs()
    table = {}
    for name, arr in arrays.items():
        data = _npy_bytes(name, arr)
        digest = hashlib.sha256(data).hexdigest()
        fname = f"{name}.{digest[:16]}.npy"
        f = dest.child(fname)
        if not (old and _names_file(old, fname, digest)):
            f.write_bytes(data)
        table[name] = {
            "file": fname,
            "shape": list(np.shape(arr)),
            "dtype": np.asarray(arr).dtype.str,
            "sha256": digest,
        }
    doc = {k: v for k, v in _jsonable(dict(meta)).items() if k != CHECKSUM_KEY}
    doc["schema_version"] = SCHEMA_VERSION
    doc["arrays"] = table
    doc[CHECKSUM_KEY] = hashlib.sha256(_canonical(doc)).hexdigest()
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n"
    dest.child(META_FILE).write_bytes(text.encode())
    keep = {META_FILE} | {e["file"] for e in table.values()}
    for name in dest.listdir():
        if name not in keep and (name.endswith(".npy") or name.startswith(".")):
            dest.child(name).remove()
    return str(dest)


def _names_file(meta: Mapping[str, Any], fname: str, digest: str) -> bool:
    table = meta.get("arrays")
    if not isinstance(table, dict):
        return False
    return any(
        isinstance(e, dict) and e.get("file") == fname and e.get("sha256") == digest
        for e in table.values()
    )


def copy_model_dir(src: Where, dest: Where) -> Location:
    """Copy a model directory file by file, the manifest last; returns the copy."""
    source, target = as_location(src), as_location(dest)
    meta, arrays = read_model_dir(source)
    meta = {k: v for k, v in meta.items() if k not in ("arrays", "schema_version", CHECKSUM_KEY)}
    write_model_dir(target, meta, arrays)
    return target


def remove_model_dir(path: Where) -> None:
    """Remove a model: its manifest first (it stops being loadable), then its files."""
    loc = as_location(path)
    loc.child(META_FILE).remove()
    loc.remove()


# ------------------------------------------------------------------ reading
def resolve_model(path: Where) -> Location:
    """The model directory ``path`` names: itself, or the version a published
    pointer (or an older streammix's symbolic link) designates, resolved once."""
    loc = as_location(path)
    if loc.is_symlink():
        return loc.realpath()
    if not loc.exists():
        raise ModelFileError(f"No model at '{loc}': the path does not exist.")
    if not loc.isfile():
        return loc
    try:
        doc = json.loads(loc.read_bytes())
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get(POINTER_KEY) != POINTER_VERSION:
        raise ModelFileError(
            f"'{loc}' is a file but not a streammix pointer; a model is a directory."
        )
    version = doc.get("version")
    if not isinstance(version, str) or not version:
        raise ModelFileError(f"The pointer at '{loc}' is damaged: it names no version.")
    return loc.parent.resolve(version)


def read_model_dir(path: Where) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metadata and arrays of a model directory (or of the version a pointer names),
    with integrity checks.

    Raises
    ------
    ModelFileError
        Missing directory or metadata, invalid JSON (``NaN`` included), unknown
        schema version, metadata that do not match their checksum, missing,
        truncated or altered array files, pickled arrays, files linked from
        outside the directory.
    """
    src = resolve_model(path)
    for attempt in range(_READ_ATTEMPTS):
        meta = _manifest(src)
        if meta is None:
            raise ModelFileError(f"'{src}' is not a streammix model directory (no {META_FILE}).")
        try:
            return meta, _read_arrays(src, meta)
        except _ChangedUnderfoot:
            if attempt == _READ_ATTEMPTS - 1 or _manifest(src) == meta:
                raise
    raise AssertionError("unreachable")


class _ChangedUnderfoot(ModelFileError):
    """An array file is missing or does not match the manifest."""


def _read_arrays(src: Location, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelFileError(
            f"The model at '{src}' has schema version {version!r}; this streammix reads "
            f"version {SCHEMA_VERSION}. Refit the model or use a matching streammix release."
        )
    _check_metadata(src, meta)
    table = meta.get("arrays")
    if not isinstance(table, dict):
        raise ModelFileError(f"The model at '{src}' is damaged: no array table in {META_FILE}.")
    arrays = {}
    for name, entry in table.items():
        try:
            fname = str(entry["file"])
            shape, dtype, digest = tuple(entry["shape"]), np.dtype(entry["dtype"]), entry["sha256"]
        except (KeyError, TypeError) as err:
            raise ModelFileError(
                f"The model at '{src}' is damaged: bad entry for {name!r}."
            ) from err
        if "/" in fname or "\\" in fname or fname in ("", ".", ".."):
            raise ModelFileError(f"The model at '{src}' is damaged: bad file name {fname!r}.")
        _check_inside(src, src.child(fname))
        try:
            raw = src.child(fname).read_bytes()
        except (InvalidInputError, IsADirectoryError):
            raise _ChangedUnderfoot(
                f"The model at '{src}' is damaged: {fname} is missing."
            ) from None
        if hashlib.sha256(raw).hexdigest() != digest:
            raise _ChangedUnderfoot(
                f"The model at '{src}' is damaged: {fname} does not match its checksum "
                "(truncated or modified)."
            )
        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as err:
            raise ModelFileError(f"The model at '{src}' is damaged: {fname}: {err}") from None
        if arr.shape != shape or arr.dtype != dtype:
            raise ModelFileError(
                f"The model at '{src}' is damaged: {fname} has shape {arr.shape} and dtype "
                f"{arr.dtype}, the metadata say {shape} and {dtype}."
            )
        arrays[name] = arr
    return arrays


def model_checksum(path: Where) -> str:
    """SHA-256 of a model's manifest (which holds its arrays' checksums)."""
    src = resolve_model(path)
    try:
        return hashlib.sha256(src.child(META_FILE).read_bytes()).hexdigest()
    except InvalidInputError:
        raise ModelFileError(
            f"'{src}' is not a streammix model directory (no {META_FILE})."
        ) from None


def model_bytes(path: Where) -> int:
    """Bytes a model's files take (its manifest and the arrays it names)."""
    src = resolve_model(path)
    meta = _manifest(src) or {}
    names = [META_FILE] + [str(e["file"]) for e in (meta.get("arrays") or {}).values()]
    return sum(src.child(n).size() for n in names)


# --------------------------------------------------------------- publishing
def list_versions(versions: Where) -> list[str]:
    """Names of the model versions in a versions directory, oldest first (by name)."""
    store = as_location(versions)
    return [n for n in store.listdir() if not n.startswith(".")]


def write_pointer(target: Where, version: Where) -> None:
    """Point ``target`` at the model directory ``version`` with one write."""
    tgt, ver = as_location(target), as_location(version)
    doc = {POINTER_KEY: POINTER_VERSION, "version": tgt.parent.relative(ver)}
    if tgt.is_symlink():
        os.unlink(tgt.url)  # an older streammix's link becomes a pointer
    tgt.write_bytes((json.dumps(doc, sort_keys=True) + "\n").encode())


def publish(
    model: Where,
    target: Where,
    versions: Where | None = None,
    version: str | None = None,
    keep: int = 5,
) -> dict[str, Any]:
    """Make ``model`` the model at ``target`` with one write of a pointer.

    ``model`` (a model directory) is copied into ``versions`` (default: a
    ``versions`` directory beside ``target``) as ``version`` (default: a UTC
    time stamp), manifest last, and removed; ``target`` becomes a pointer to
    the copy; all but the ``keep`` newest versions are removed (never the
    current one). Readers of ``target`` resolve the pointer once and see the
    old model or the new one.
    """
    src, tgt = as_location(model), as_location(target)
    store = as_location(versions, tgt.storage_options) if versions else tgt.sibling("versions")
    for where in (tgt, store):
        where.check_writable()  # never a root or a bare bucket, never below a file
    read_model_dir(src)  # refuse to publish a missing or damaged model
    name = version or dt.datetime.now(dt.timezone.utc).strftime("v%Y%m%dT%H%M%S%fZ")
    dest = store.child(name)
    if dest.exists():
        raise StreammixError(f"Model version '{dest}' already exists.")
    if tgt.exists() and not tgt.is_symlink() and not tgt.isfile():
        raise StreammixError(
            f"'{tgt}' is a directory; publishing writes a small pointer there. Move it away first."
        )
    copy_model_dir(src, dest)
    write_pointer(tgt, dest)
    remove_model_dir(src)
    current = resolve_model(tgt)
    olds = list_versions(store)
    removed = []
    for old in olds[:-keep] if len(olds) > keep else []:
        loc = store.child(old)
        if loc != current:
            remove_model_dir(loc)
            removed.append(old)
    return {
        "job": "publish",
        "target": str(tgt),
        "version": name,
        "path": str(dest),
        "removed_versions": removed,
    }
