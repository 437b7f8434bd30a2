"""Checkpoint files: a fit's resumable state at a location, tied to the fit it belongs to.

Layer: edges (files and object stores). A checkpoint value (the engine's
:class:`~streammix.engine.batch_em.EMCheckpoint`, or
:class:`~streammix.engine.online_em.OnlineCheckpoint`) says what it holds as
JSON metadata and arrays (``to_files``/``from_files``); this module stores it
as a model directory (files first, manifest last, so a checkpoint rewritten
after every iteration is always whole) with the kind of checkpoint and the
fingerprint of the fit (settings and input) that made it.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import numpy as np

from ..errors import ModelFileError
from .location import Location
from .modelfile import read_model_dir, write_model_dir

C = TypeVar("C", bound="Checkpoint")


class Checkpoint(Protocol):
    def to_files(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    @classmethod
    def from_files(cls: type[C], meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> C: ...


def write_checkpoint(location: Location, checkpoint: Checkpoint, fingerprint: str) -> None:
    """Store ``checkpoint`` at ``location``, replacing the previous one whole."""
    meta, arrays = checkpoint.to_files()
    meta = {**meta, "kind": type(checkpoint).__name__, "fingerprint": fingerprint}
    write_model_dir(location, meta, arrays)


def read_checkpoint(location: Location, kind: type[C], fingerprint: str) -> C:
    """The checkpoint of type ``kind`` stored at ``location`` by the fit ``fingerprint``.

    Raises
    ------
    ModelFileError
        The checkpoint is damaged, of another kind, or belongs to another fit.
    """
    meta, arrays = read_model_dir(location)
    if meta.get("kind") != kind.__name__:
        raise ModelFileError(f"'{location}' is not a checkpoint of this kind of fit.")
    if meta.get("fingerprint") != fingerprint:
        raise ModelFileError(
            f"The checkpoint in '{location}' belongs to a fit with other settings or another "
            "input; remove it or resume with the same options."
        )
    try:
        return kind.from_files(meta, arrays)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"The checkpoint in '{location}' is damaged: {err}") from None
