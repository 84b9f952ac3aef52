"""Slow clients cannot starve the service (a real gunicorn, raw sockets).

A client that sends its body a byte at a time holds the thread reading it. The body must
arrive within REQUEST_BODY_TIMEOUT (extended by its size at REQUEST_BODY_MIN_RATE), else the
request is answered 408 problem+json and the thread is free again; and the body is read whole
before a database connection is taken, so a trickling upload never holds one.
"""

import json
import socket
import threading
import time

import psycopg
import pytest
import requests

from tests.records.helpers import seed_case
from tests.robustness.conftest import gunicorn_serving

BODY_TIMEOUT = 1.5  # seconds; the default is 10


class SlowClient:
    """A connection that sends a request's headers at once, then its body one byte per `every` seconds."""

    def __init__(self, base_url: str, path: str, headers: dict, body: bytes, every: float = 0.5):
        host, port = base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: registry\r\n{head}"
                          f"Content-Length: {len(body)}\r\n\r\n".encode())
        self.body, self.every, self.answer = body, every, b""
        self.stop = threading.Event()
        self.sender = threading.Thread(target=self._trickle, daemon=True)
        self.sender.start()

    def _trickle(self):
        for byte in self.body:
            if self.stop.wait(self.every):
                return
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:  # the server closed the connection: it answered
                return

    def read_answer(self) -> tuple[int, str, dict]:
        """(status, content type, JSON body) of the answer, reading until the server closes or it is whole."""
        while b"\r\n\r\n" not in self.answer or len(self.answer.split(b"\r\n\r\n", 1)[1]) < _length(self.answer):
            data = self.sock.recv(65536)
            if not data:
                break
            self.answer += data
        head, _, body = self.answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        return int(lines[0].split()[1]), fields.get("content-type", ""), json.loads(body or b"null")

    def close(self):
        self.stop.set()
        self.sock.close()


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 62


@pytest.fixture
def slow_body_server(database_url, tmp_path):
    """gunicorn (2 workers x 4 threads, the default) with a short body deadline."""
    with gunicorn_serving(database_url, tmp_path, extra_env={"REQUEST_BODY_TIMEOUT": str(BODY_TIMEOUT)}) as served:
        yield served[0]


def test_sixteen_slow_bodies_neither_starve_healthz_nor_hang(slow_body_server):
    body = json.dumps({"ref": "SLOW", "diagnosis": "aro"}).encode()
    clients = [SlowClient(slow_body_server, "/v1/patients/", {"Content-Type": "application/json"}, body)
               for _ in range(16)]
    try:
        time.sleep(0.3)  # every thread of both workers is now reading a slow body
        started = time.monotonic()
        health = requests.get(slow_body_server + "/healthz", timeout=15)
        waited = time.monotonic() - started
        assert health.status_code == 200
        # the slow bodies ahead of it time out in two rounds of BODY_TIMEOUT at most
        assert waited < 2 * BODY_TIMEOUT + 2.5, f"/healthz took {waited:.1f} s"

        answers = [client.read_answer() for client in clients]
    finally:
        for client in clients:
            client.close()
    for status, content_type, problem in answers:
        assert (status, content_type) == (408, "application/problem+json")
        assert problem["type"].endswith("/request-timeout")
        assert problem["status"] == 408


def test_a_slow_bulk_upload_holds_no_database_connection(slow_body_server, tokens, database_url):
    """Before, the bulk view opened its transaction (token lookup included) and then streamed the body."""
    body = json.dumps([seed_case()]).encode()
    client = SlowClient(slow_body_server, "/v1/submissions/",
                        {"Content-Type": "application/json", **tokens.header("submitter_a")}, body, every=0.2)
    try:
        time.sleep(BODY_TIMEOUT * 0.6)
        with psycopg.connect(database_url, autocommit=True) as conn:
            in_transaction = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'registry-%%' AND state LIKE 'idle in transaction%%'").fetchone()[0]
        assert in_transaction == 0
        status, content_type, problem = client.read_answer()
    finally:
        client.close()
    assert (status, content_type) == (408, "application/problem+json")


def test_a_large_body_sent_at_a_fair_rate_is_not_cut_off(database_url, tmp_path, tokens):
    """The deadline grows with what has arrived: a body taking over twice the timeout at a fair rate is served."""
    documents = [json.dumps(seed_case() | {"local_ref": f"FAIR-{index}"}) for index in range(40)]
    body = ("[" + ",".join(documents) + " " * 400_000 + "]").encode()  # JSON allows the padding
    piece = 10_000  # bytes every 0.1 s: 100 kB/s, about 4 s in all
    env = {"REQUEST_BODY_TIMEOUT": str(BODY_TIMEOUT), "REQUEST_BODY_MIN_RATE": "50000"}
    with gunicorn_serving(database_url, tmp_path, extra_env=env) as (base_url, _log):
        def paced():
            for start in range(0, len(body), piece):
                yield body[start:start + piece]
                time.sleep(0.1)

        started = time.monotonic()
        response = requests.post(base_url + "/v1/submissions/", data=paced(), timeout=30,
                                 headers={"Content-Type": "application/json", **tokens.header("submitter_a")})
        took = time.monotonic() - started
    assert response.status_code == 201, response.text[:300]
    assert (response.json()["total"], response.json()["created"]) == (40, 40)
    assert took > 2 * BODY_TIMEOUT  # it did outlast the bare timeout
