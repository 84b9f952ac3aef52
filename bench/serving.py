"""Shared by the benchmarks that start their own gunicorn."""

import http.client
import subprocess
import time


def wait_until_healthy(server: subprocess.Popen, port: int, seconds: float) -> subprocess.Popen:
    """Return `server` once GET /healthz answers 200 on `port`; stop it and exit if it never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"the server on port {port} did not start within {seconds:.0f} s")
