"""One writer at a time per output: a lease held while a job writes its output.

Layer: edges (files and object stores, through :mod:`streammix.io.location`).

Two runs of a job on one output would each end correct (chunks are written
whole, with the same bytes by both), but one could see the other's output
half made and take it for a foreign one. So a run holds a lease on its output
while it prepares and writes it, and a second run **waits** for the lease
(logging once whom it waits for), then goes on: it finds the output complete
and writes nothing, or finishes what is missing. The lease is the object
``<output>.lease`` beside the output; it names the run holding it (an id, the
host and the process), for people and for the second run's log.

* Local disks: the lease file is locked with ``flock``, which the kernel
  releases however the process ends (``SIGKILL`` included), so a killed run
  never holds up the next one. A run that releases the lease removes the file;
  a run that was waiting on it checks, once it has the lock, that the file it
  locked is still the one at that path, and tries again otherwise.
* Object stores have no locks, and not every store has conditional writes, so
  the lease is one object written with one PUT, holding an expiry ``ttl``
  seconds ahead that its holder renews every ``ttl / 3`` seconds. A run takes a
  lease that is absent, expired or its own: it writes its own, waits
  ``settle`` seconds for a concurrent run's PUT to land, and reads the lease
  back; it holds the lease when it reads its own id. Hosts' clocks must agree
  to well within ``ttl``. A run killed without releasing its lease (``SIGKILL``)
  holds up the next run until the lease expires. This is best effort: two
  runs whose PUTs are more than ``settle`` apart in flight could both go on,
  which still ends with a correct output (see :mod:`streammix.io.outputs`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidParameterError, StreammixError
from .location import Location

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the object-store protocol serves
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("streammix")

SUFFIX = ".lease"
TTL = 60.0
"""Seconds an object-store lease lasts unless renewed; ``STREAMMIX_LEASE_TTL`` sets
another (shorter: a killed run holds up the next one less long; longer: slower
clocks and stores are tolerated)."""
TTL_VARIABLE = "STREAMMIX_LEASE_TTL"


def lease_ttl() -> float:
    """The object-store lease's lifetime: ``STREAMMIX_LEASE_TTL`` or :data:`TTL`."""
    text = os.environ.get(TTL_VARIABLE)
    if text is None:
        return TTL
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 3 * SETTLE):
        raise InvalidParameterError(
            f"{TTL_VARIABLE} must be a number of seconds >= {3 * SETTLE:g}; got {text!r}."
        )
    return value


SETTLE = 0.5
"""Seconds between writing an object-store lease and reading it back."""
POLL = 1.0
"""Seconds between looks at an object-store lease held by another run."""


def lease_location(target: Location) -> Location:
    """Where the lease of ``target`` is kept: beside it."""
    return target.sibling(target.name + SUFFIX)


def _holder() -> dict[str, Any]:
    return {"run": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid()}


def _describe(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "another run"
    return f"run {doc.get('run', '?')} (process {doc.get('pid', '?')} on {doc.get('host', '?')})"


@contextlib.contextmanager
def holding(
    target: Location, *, ttl: float | None = None, settle: float = SETTLE, poll: float = POLL
) -> Iterator[None]:
    """Hold the lease of ``target`` for the block, waiting for another run's first.

    Examples
    --------
    >>> import tempfile, os
    >>> from streammix.io.location import as_location
    >>> out = as_location(os.path.join(tempfile.mkdtemp(), "scores.zarr"))
    >>> with holding(out):
    ...     lease_location(out).exists()
    True
    >>> lease_location(out).exists()
    False
    """
    lease = lease_location(target)
    if target.is_local and fcntl is not None:
        with _locked_file(lease.url, target):
            yield
    else:
        with _object_lease(lease, target, lease_ttl() if ttl is None else ttl, settle, poll):
            yield


# ------------------------------------------------------------- local disks
@contextlib.contextmanager
def _locked_file(path: str, target: Location) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    holder = _read_fd(fd)
                    logger.info(
                        "%s is writing %s; waiting for it to finish", _describe(holder), target
                    )
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                current = os.stat(path)
                same = (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # the holder released and removed the file we waited on
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_holder()).encode())
        yield
    finally:
        # Removed while still locked: a run waiting on this file sees it is gone.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _read_fd(fd: int) -> Any:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------- object stores
def _read(lease: Location) -> Any:
    try:
        if not lease.exists():
            return None
        return json.loads(lease.read_bytes())
    except (StreammixError, ValueError):
        return None  # unreadable: a lease being replaced, or damaged; taken as absent


def _write(lease: Location, me: dict[str, Any], ttl: float) -> None:
    lease.write_bytes(json.dumps({**me, "expires": time.time() + ttl}).encode())


def _expired(doc: Any) -> bool:
    try:
        return float(doc["expires"]) <= time.time()
    except (TypeError, KeyError, ValueError):
        return True


@contextlib.contextmanager
def _object_lease(
    lease: Location, target: Location, ttl: float, settle: float, poll: float
) -> Iterator[None]:
    me = _holder()
    waited = False
    while True:
        current = _read(lease)
        if current is None or _expired(current) or current.get("run") == me["run"]:
            _write(lease, me, ttl)
            time.sleep(settle)
            current = _read(lease)
            if isinstance(current, dict) and current.get("run") == me["run"]:
                break
        if not waited:
            logger.info("%s is writing %s; waiting for it to finish", _describe(current), target)
            waited = True
        time.sleep(poll)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(lease, target, me, ttl, stop), name="streammix-lease", daemon=True
    )
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(StreammixError):
            current = _read(lease)
            if isinstance(current, dict) and current.get("run") == me["run"]:
                lease.remove()


def _renew(
    lease: Location, target: Location, me: dict[str, Any], ttl: float, stop: threading.Event
) -> None:
    while not stop.wait(ttl / 3):
        current = _read(lease)
        if isinstance(current, dict) and current.get("run") not in (None, me["run"]):
            logger.warning("%s took over the lease on %s", _describe(current), target)
            return
        try:
            _write(lease, me, ttl)
        except StreammixError as err:
            logger.warning("could not renew the lease on %s: %s", target, err)
