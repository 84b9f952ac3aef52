"""What gunicorn answers by itself, and how it starts and stops (a real gunicorn, raw sockets).

Requests gunicorn refuses before the application sees them (a request line over its limit,
a header over its limit, a NUL byte in a header) are answered as problem+json like every
other answer, never as an HTML page. Two instances on one machine do not share gunicorn's
control socket, and a SIGTERM after an Idempotency-Key replay stops the service in seconds.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import psycopg
import pytest
import requests
from psycopg import sql

from registry.problems import PROBLEM_TYPE_BASE, PROBLEM_TYPES
from tests.conftest import ROOT, TEST_SECRET
from tests.robustness.conftest import free_port, gunicorn_serving


def raw_exchange(base_url: str, request: bytes) -> tuple[int, dict, bytes]:
    """Send raw bytes, read the answer until the server closes: (status, headers, body)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def module_database_url(server_url, template_database):
    """A database of this module's own (the template must stay free for other tests' copies)."""
    name = f"registry_limits_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                     sql.Identifier(template_database)))
    yield psycopg.conninfo.make_conninfo(**psycopg.conninfo.conninfo_to_dict(server_url) | {"dbname": name})
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def served(module_database_url, tmp_path_factory):
    """One gunicorn for the module: these requests never reach the database."""
    with gunicorn_serving(module_database_url, tmp_path_factory.mktemp("limits"), workers=1) as (base_url, _log):
        yield base_url


MALFORMED = {
    "request line over 4094 bytes": (b"GET /v1/operations/?q=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: r\r\n\r\n",
                                     414, "uri-too-long"),
    "header over 8190 bytes": (b"GET /healthz HTTP/1.1\r\nHost: r\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n",
                               431, "headers-too-large"),
    "more than 100 headers": (b"GET /healthz HTTP/1.1\r\nHost: r\r\n"
                              + b"".join(b"X-H%d: 1\r\n" % n for n in range(120)) + b"\r\n",
                              431, "headers-too-large"),
    "NUL byte in a header": (b"GET /healthz HTTP/1.1\r\nHost: r\r\nX-Bad: a\x00b\r\n\r\n", 400, "malformed-request"),
    "malformed request line": (b"GET\r\n\r\n", 400, "malformed-request"),
    "header without a colon": (b"GET /healthz HTTP/1.1\r\nHost: r\r\nno colon here\r\n\r\n", 400, "malformed-request"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_requests_gunicorn_refuses_are_answered_as_problem_json(served, name):
    request, status, slug = MALFORMED[name]
    answered, headers, body = raw_exchange(served, request)
    assert answered == status
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert problem["type"] == PROBLEM_TYPE_BASE + slug and PROBLEM_TYPES[slug][0] == status
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    assert b"<html" not in body.lower()


def test_the_limits_the_answers_state_are_the_ones_enforced(served):
    _, _, body = raw_exchange(served, MALFORMED["request line over 4094 bytes"][0])
    assert "4094 bytes" in json.loads(body)["detail"]
    _, _, body = raw_exchange(served, MALFORMED["header over 8190 bytes"][0])
    assert "8190 bytes" in json.loads(body)["detail"] and "100 headers" in json.loads(body)["detail"]
    # just under the limits, the request is served
    line = b"GET /healthz?q=" + b"x" * (4094 - len(b"GET /healthz?q= HTTP/1.1")) + b" HTTP/1.1\r\nHost: r\r\n"
    assert raw_exchange(served, line + b"Connection: close\r\n\r\n")[0] == 200


def test_the_sync_worker_answers_problem_json_too(module_database_url, tmp_path):
    with gunicorn_serving(module_database_url, tmp_path, workers=1, threads=1) as (url, _log):
        status, headers, body = raw_exchange(url, MALFORMED["NUL byte in a header"][0])
    assert (status, headers["content-type"]) == (400, "application/problem+json")
    assert json.loads(body)["type"] == PROBLEM_TYPE_BASE + "malformed-request"


# --- instances and signals ------------------------------------------------------------------

@contextmanager
def gunicorn_process(database_url: str, data_dir, home, extra_env: dict | None = None):
    """gunicorn with the registry's settings, HOME and XDG_RUNTIME_DIR in `home`: (process, base URL)."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, DATABASE_URL=database_url, REGISTRY_SECRET=TEST_SECRET.decode(),
                       REGISTRY_DATA_DIR=str(data_dir), REGISTRY_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2",
                       REGISTRY_THREADS="4", LOG_LEVEL="WARNING", HOME=str(home), XDG_RUNTIME_DIR=str(home),
                       **(extra_env or {}))
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(data_dir / "gunicorn.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:registry.gunicorn_conf",
                                    "registry:create_app()"], env=environment, cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base_url + "/healthz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or a probe slow on a busy machine
                pass
            assert process.poll() is None and time.monotonic() < deadline, (data_dir / "gunicorn.log").read_text()
            time.sleep(0.2)
        time.sleep(0.5)  # the control socket, when there is one, is opened once the workers are up
        yield process, base_url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_two_instances_on_one_machine_share_no_control_socket(database_url, tmp_path):
    """gunicorn's default control socket is one path per user: a second instance took it over, and
    `gunicornc` then talked to (and could stop) the wrong service. Now there is none by default."""
    home = tmp_path / "home"
    home.mkdir()
    with gunicorn_process(database_url, tmp_path / "one", home) as (first, _), \
            gunicorn_process(database_url, tmp_path / "two", home) as (second, _):
        sockets = [path for path in home.rglob("*") if path.is_socket()]
        assert sockets == [], f"shared control socket(s): {sockets}"
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=15)
        assert second.poll() is None


def test_a_control_socket_asked_for_is_the_instances_own(database_url, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    one, two = tmp_path / "one.ctl", tmp_path / "two.ctl"
    with gunicorn_process(database_url, tmp_path / "one", home, {"REGISTRY_CONTROL_SOCKET": str(one)}), \
            gunicorn_process(database_url, tmp_path / "two", home, {"REGISTRY_CONTROL_SOCKET": str(two)}):
        assert one.is_socket() and two.is_socket()
        assert [path for path in home.rglob("*") if path.is_socket()] == []


def test_sigterm_right_after_an_idempotency_key_replay_stops_within_seconds(database_url, tmp_path, tokens):
    """The replay is answered on a kept-alive connection the client leaves open, as a retrying
    client does; SIGTERM must not wait for graceful_timeout (20 s) and a SIGKILL."""
    with gunicorn_process(database_url, tmp_path / "data", tmp_path) as (process, base_url):
        session = requests.Session()
        headers = {**tokens.header("submitter_a"), "Idempotency-Key": "stop-after-replay"}
        body = {"ref": "P-STOP", "diagnosis": "aro"}
        assert session.post(base_url + "/v1/patients/", json=body, headers=headers).status_code == 201
        replay = session.post(base_url + "/v1/patients/", json=body, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=25)
        stopped_in = time.monotonic() - started
        session.close()
    log = (tmp_path / "data" / "gunicorn.log").read_text()
    assert stopped_in < 5, f"stopped in {stopped_in:.1f} s"
    assert "SIGKILL" not in log and "was sent SIGKILL" not in log
