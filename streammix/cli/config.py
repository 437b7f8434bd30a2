"""The ``--config`` file: option defaults per command, checked like a pipeline step.

Layer: edges (CLI). A TOML file with a table per command (its options by their
canonical names; dashes read as underscores, older names still read), plus
``[cluster]`` (the cluster options, for every command) and ``[storage]`` (fsspec
storage options, for every command, as ``--storage-options``). Every key and
value is checked against the declarations in :mod:`streammix.jobs.catalog`:
an unknown key or table, or a bad value, is a usage error naming the file.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from ..errors import InvalidInputError, StreammixError
from ..io.location import as_location
from ..jobs.catalog import CLUSTER_OPTIONS
from ..jobs.declaration import Option, OptionError, UnknownKey, canonical_keys, key_spelling
from ..jobs.kinds import BadValue
from .commands import COMMAND_JOBS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _read(path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(as_location(path).read_text())
    except InvalidInputError:
        raise click.BadParameter(f"config file not found: {path}", param_hint="--config") from None
    except (StreammixError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise click.BadParameter(f"cannot read {path}: {err}", param_hint="--config") from None


def _check(table: Any, options: Sequence[Option], name: str, path: str) -> dict[str, Any]:
    """The table's values by canonical name, each checked; the values stay as
    written (click converts them as it converts command-line values)."""
    where = f"[{name}] of {path}"
    if not isinstance(table, Mapping):
        raise click.UsageError(f"{where} must be a table.")
    try:
        values = canonical_keys(table, options)
    except UnknownKey as err:
        raise click.UsageError(f"unknown key {err.key!r} in {where}{err.hint}") from None
    except OptionError as err:
        raise click.UsageError(f"{err.worded(key_spelling)} in {where}") from None
    by_name = {o.name: o for o in options}
    for key, value in values.items():
        try:
            by_name[key].value(value)
        except BadValue as err:
            raise click.UsageError(f"{key} in {where} {err.predicate()}.") from None
    return values


def load_config(path: str | None, commands: Sequence[str]) -> dict[str, Any]:
    """A click ``default_map`` from the TOML file at ``path`` (a path or URL)."""
    if not path:
        return {}
    doc = _read(path)
    unknown = set(doc) - set(commands) - {"cluster", "storage"}
    if unknown:
        raise click.BadParameter(
            f"unknown table(s) in {path}: {', '.join(sorted(unknown))} (expected cluster, "
            f"storage or a command: {', '.join(commands)})",
            param_hint="--config",
        )
    shared = _check(doc.get("cluster") or {}, CLUSTER_OPTIONS, "cluster", path)
    storage = doc.get("storage")
    if storage is not None:
        if not isinstance(storage, Mapping):
            raise click.UsageError(f"[storage] of {path} must be a table of storage options.")
        shared["storage_options"] = dict(storage)
    out: dict[str, Any] = {}
    for name in commands:
        job = COMMAND_JOBS[name]
        options = job.options + (CLUSTER_OPTIONS if job.cluster else ())
        out[name] = {**shared, **_check(doc.get(name) or {}, options, name, path)}
    return out
