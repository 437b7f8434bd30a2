"""A real multi-process Dask cluster for tests: ``dask scheduler`` + ``dask worker``
processes started through the ``dask`` command line on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from distributed import Client

DASK = str(Path(sys.executable).parent / "dask")


class DaskCluster:
    """Scheduler plus ``n_workers`` single-threaded worker processes (each with a nanny)."""

    def __init__(self, directory: Path, n_workers: int = 2, tls: dict | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = self.directory / "scheduler.json"
        self.n_workers = n_workers
        self.tls = tls or {}
        self.procs: list[subprocess.Popen] = []

    def _tls_args(self) -> list[str]:
        if not self.tls:
            return []
        return [
            "--tls-ca-file",
            self.tls["ca"],
            "--tls-cert",
            self.tls["cert"],
            "--tls-key",
            self.tls["key"],
        ]

    def _spawn(self, args: list[str], log: str) -> None:
        out = open(self.directory / log, "w")  # noqa: SIM115 - closed with the process
        self.procs.append(
            subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def start(self) -> DaskCluster:
        if self.scheduler_file.exists():
            self.scheduler_file.unlink()
        protocol = ["--protocol", "tls"] if self.tls else []
        self._spawn(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.scheduler_file),
                *protocol,
                *self._tls_args(),
            ],
            "scheduler.log",
        )
        for i in range(self.n_workers):
            self._spawn(
                [
                    DASK,
                    "worker",
                    "--scheduler-file",
                    str(self.scheduler_file),
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--memory-limit",
                    "4GiB",
                    "--name",
                    f"w{i}",
                    *self._tls_args(),
                ],
                f"worker{i}.log",
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.scheduler_file.exists():
                try:
                    with self.client(timeout=5) as c:
                        c.wait_for_workers(self.n_workers, timeout=30)
                        return self
                except (OSError, TimeoutError):
                    pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the test cluster did not start")

    @property
    def address(self) -> str:
        import json

        return json.loads(self.scheduler_file.read_text())["address"]

    def client(self, timeout: float = 10) -> Client:
        security = None
        if self.tls:
            from distributed.security import Security

            security = Security(
                tls_ca_file=self.tls["ca"],
                tls_client_cert=self.tls["cert"],
                tls_client_key=self.tls["key"],
                require_encryption=True,
            )
        return Client(
            scheduler_file=str(self.scheduler_file),
            timeout=timeout,
            security=security,
            set_as_default=False,
        )

    def worker_pids(self) -> list[int]:
        with self.client() as c:
            return list(c.run(os.getpid).values())

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()

    def __enter__(self) -> DaskCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
