"""A real S3-compatible server for tests: moto in server mode, on 127.0.0.1.

The server runs as its own process (``python -m moto.server``), the way the s3fs
project tests against it. Authentication is enforced: the tests create an IAM
user with an access key first, so a wrong key or secret is refused as a real
store would refuse it. :class:`CountingProxy` sits between clients and the
server when a test needs to count the requests a job makes.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """``moto.server`` on a free loopback port, with one IAM user allowed everything."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = Path(log_dir)
        self.proc: subprocess.Popen | None = None
        self.key_id = ""
        self.secret = ""

    def start(self) -> S3Server:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / "moto.log", "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2).read()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("the S3 test server did not start") from None
                time.sleep(0.1)
        self._create_user()
        return self

    def _create_user(self) -> None:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
            region_name=REGION,
        )
        iam.create_user(UserName="streammix-tests")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="streammix-tests", PolicyName="all", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="streammix-tests")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        # From now on every request must be signed by a known key.
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=10).read()

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The standard AWS environment that reaches this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": endpoint or self.url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(
            key=self.key_id,
            secret=self.secret,
            endpoint_url=self.url,
            skip_instance_cache=True,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CountingProxy:
    """A plain HTTP proxy in front of ``target`` that counts requests by method and path.

    Requests are forwarded unchanged (the Host header too, so signatures hold).
    """

    def __init__(self, target: str, put_delay: float = 0.0) -> None:
        self.target = target.split("://", 1)[1]
        self.put_delay = put_delay  # seconds added to every PUT: a slow store
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path.split("?", 1)[0]
                with proxy.lock:
                    proxy.counts[(self.command, path)] += 1
                if self.command == "PUT" and proxy.put_delay:
                    time.sleep(proxy.put_delay)
                conn = http.client.HTTPConnection(proxy.target, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def gets(self, suffix: str = "") -> dict[str, int]:
        """GET requests per path (paths ending with ``suffix``)."""
        with self.lock:
            return {p: n for (m, p), n in self.counts.items() if m == "GET" and p.endswith(suffix)}

    def requests(self, prefix: str) -> dict[tuple[str, str], int]:
        """Requests by method and path, for paths starting with ``prefix``."""
        with self.lock:
            return {k: n for k, n in self.counts.items() if k[1].startswith(prefix)}

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def upload(fs, local: Path, url: str) -> None:
    """Copy a local directory tree (or file) to ``url`` on the server."""
    target = url.split("://", 1)[1]
    if local.is_file():
        fs.put_file(str(local), target)
        return
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{target}/{path.relative_to(local).as_posix()}")


def environ_with(env: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``env`` (for child processes)."""
    return {**os.environ, **env}
