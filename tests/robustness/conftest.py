"""A real gunicorn serving the registry, for the tests that need processes and sockets."""

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, TEST_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn_serving(database_url: str, data_dir: Path, *, workers: int = 2, threads: int = 4,
                     pool_timeout: float = 2.0, extra_env: dict | None = None):
    """Start gunicorn with the registry's own settings file on a free port.

    Yields (base URL, path of the server's log), the log so a test can look for worker timeouts.
    """
    port = free_port()
    metrics = data_dir / "prometheus"
    metrics.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "gunicorn.log"
    environment = dict(
        os.environ,
        DATABASE_URL=database_url,
        REGISTRY_SECRET=TEST_SECRET.decode(),
        REGISTRY_DATA_DIR=str(data_dir),
        REGISTRY_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY=str(workers),
        REGISTRY_THREADS=str(threads),
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
        DB_POOL_TIMEOUT=str(pool_timeout),
        LOG_LEVEL="WARNING",
        **(extra_env or {}),
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:registry.gunicorn_conf", "registry:create_app()"],
            env=environment, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base_url + "/readyz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or a probe slow on a busy machine
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not become ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base_url, log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def gunicorn_url(database_url, tmp_path):
    """Base URL of a gunicorn (2 workers x 4 threads) serving the test's database."""
    with gunicorn_serving(database_url, tmp_path) as (base_url, _log):
        yield base_url
