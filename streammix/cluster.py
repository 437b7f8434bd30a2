"""Where jobs run: an embedded local Dask cluster, or an existing one.

Layer: edges. Nothing here runs at import time; :func:`connect` is a context
manager that starts (and stops) an embedded cluster, or connects to a running
scheduler by address or scheduler file, optionally over TLS.

The embedded cluster listens on 127.0.0.1 only, its HTTP endpoints (the
dashboard, when bokeh is installed) on a random loopback port, announced with
``dashboard=True``: anyone who can reach a Dask scheduler can run code on its
workers.

A terminal's Ctrl-C reaches every process of the foreground job, the embedded
cluster's worker processes too, and each would print its own traceback. Its
workers therefore ignore ``SIGINT`` (:func:`dask_setup`, run as a preload in
each worker process, restarted ones included): the driver handles the
interrupt and shuts the cluster down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import ClusterError

logger = logging.getLogger("streammix")


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """How to reach (or start) the cluster a job runs on.

    ``scheduler_address`` or ``scheduler_file`` selects an existing cluster;
    otherwise a local one is started with ``n_workers`` processes of
    ``threads_per_worker`` threads (default: one single-threaded worker per
    core) and ``memory_limit`` per worker (default: the machine's memory shared
    evenly).
    """

    scheduler_address: str | None = None
    scheduler_file: str | None = None
    n_workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | None = None
    dashboard: bool = False
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    timeout: float = 30.0

    @property
    def remote(self) -> bool:
        return bool(self.scheduler_address or self.scheduler_file)

    def security(self) -> Any:
        """A ``distributed.Security`` when TLS files are given, else ``None``."""
        files = (self.tls_ca_file, self.tls_cert, self.tls_key)
        if not any(files):
            return None
        if not all(files):
            raise ClusterError("TLS needs all of --tls-ca-file, --tls-cert and --tls-key.")
        for f in files:
            if not os.path.isfile(str(f)):
                raise ClusterError(f"TLS file not found: {f}")
        from distributed.security import Security

        return Security(
            tls_ca_file=self.tls_ca_file,
            tls_client_cert=self.tls_cert,
            tls_client_key=self.tls_key,
            require_encryption=True,
        )


def dask_setup(worker: Any) -> None:
    """Preload of the embedded cluster's worker processes (distributed calls it when a
    worker starts): ignore ``SIGINT``, which a terminal sends to the whole process
    group on Ctrl-C; the driver stops the work and shuts the cluster down."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _local_cluster(options: ClusterOptions) -> Any:
    from distributed import LocalCluster

    n_cores = os.cpu_count() or 1
    n_workers = options.n_workers or (
        n_cores if not options.threads_per_worker else max(1, n_cores // options.threads_per_worker)
    )
    threads = options.threads_per_worker or max(1, n_cores // n_workers)
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads,
        processes=True,
        host="127.0.0.1",
        # Dask serves HTTP (metrics, and the dashboard when bokeh is installed) even
        # when asked for no dashboard; a random port on loopback keeps it private and
        # never collides with another cluster's 8787. --dashboard only shows the link.
        dashboard_address="127.0.0.1:0",
        memory_limit=options.memory_limit or "auto",
        # Task failures reach the client as exceptions (one line from the CLI); the
        # workers' own logs of them would only repeat them as tracebacks.
        silence_logs=logging.CRITICAL,
        preload=[__name__],  # dask_setup: workers leave Ctrl-C to the driver
    )


@contextlib.contextmanager
def connect(options: ClusterOptions | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for the job; the embedded cluster lives as long as
    the block.

    Raises
    ------
    ClusterError
        The scheduler cannot be reached (address, file or TLS settings wrong) or
        the local cluster does not start.
    """
    from distributed import Client

    options = options or ClusterOptions()
    security = options.security()
    if options.remote:
        target = options.scheduler_address or f"scheduler file {options.scheduler_file}"
        if options.scheduler_file and not os.path.isfile(options.scheduler_file):
            raise ClusterError(f"Scheduler file not found: {options.scheduler_file}")
        try:
            client = Client(
                address=options.scheduler_address,
                scheduler_file=options.scheduler_file,
                security=security,
                timeout=options.timeout,
                set_as_default=True,
            )
        except (OSError, TimeoutError, ValueError, TypeError) as err:
            hint = (
                ""
                if security
                else " (for a TLS scheduler pass --tls-ca-file, --tls-cert and --tls-key)"
            )
            raise ClusterError(
                f"Cannot connect to the Dask scheduler at {target}: {err}{hint}"
            ) from None
        with client:
            logger.debug(
                "connected to %s (%d workers)",
                target,
                len(client.scheduler_info().get("workers", {})),
            )
            yield client
        return
    try:
        cluster = _local_cluster(options)
    except Exception as err:
        raise ClusterError(f"Cannot start the local Dask cluster: {err}") from None
    with cluster, Client(cluster, set_as_default=True) as client:
        logger.log(
            logging.INFO if options.dashboard else logging.DEBUG,
            "local cluster: %d workers x %d threads%s",
            len(cluster.workers),
            next(iter(cluster.workers.values())).nthreads if cluster.workers else 0,
            f", dashboard {cluster.dashboard_link}" if options.dashboard else "",
        )
        yield client
