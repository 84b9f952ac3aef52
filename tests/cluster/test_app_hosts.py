"""Two app hosts (two gunicorns on their own ports) on one database through PgBouncer, reports
on the standby, behind a round-robin client: what one host answered, the other honours.

Also the two failures of the three-tier setup a registry meets in practice: the standby dies
under load (writes carry on, reports fall back or answer 503, never 500), and PgBouncer
restarts under load (clients recover through their pools, nothing lost or doubled).
"""

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import requests

from tests.cluster.conftest import session_state_leaks
from tests.conftest import ROOT, TEST_SECRET
from tests.records.helpers import seed_case
from tests.robustness.conftest import free_port
from tests.robustness.test_concurrent_submitters import (INCREMENTS_PER_THREAD, Submitter,
                                                          increment_shared_operation, submit_own_operations)

pytestmark = pytest.mark.needs_pgbouncer

THREADS_PER_CENTRE = 6


@contextmanager
def app_host(url: str, data_dir: Path, environment: dict):
    """A gunicorn (1 worker x 4 threads) serving the registry through `url`; its base URL.

    Started as tests/robustness/conftest.py's gunicorn_serving starts one, but waiting out a slow
    readiness probe (that one gives up on the first probe over 2 s, which a machine busy with
    other work makes happen)."""
    port = free_port()
    (data_dir / "prometheus").mkdir(parents=True, exist_ok=True)
    variables = dict(os.environ, DATABASE_URL=url, REGISTRY_SECRET=TEST_SECRET.decode(),
                     REGISTRY_DATA_DIR=str(data_dir), REGISTRY_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1",
                     REGISTRY_THREADS="4", PROMETHEUS_MULTIPROC_DIR=str(data_dir / "prometheus"),
                     DB_POOL_TIMEOUT="2", LOG_LEVEL="WARNING", **environment)
    log_path = data_dir / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:registry.gunicorn_conf", "registry:create_app()"],
            env=variables, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(base_url + "/readyz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not become ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def hosts(cluster, cluster_database, tmp_path_factory):
    """Base URLs of two app hosts through PgBouncer, reports on the standby, as compose runs them."""
    environment = {"DB_PREPARE_THRESHOLD": "-1", "REPORTS_DATABASE_URL": cluster.standby.url(cluster_database)}
    url = cluster.pgbouncer.url(cluster_database)
    with app_host(url, tmp_path_factory.mktemp("host-a"), environment) as a, \
            app_host(url, tmp_path_factory.mktemp("host-b"), environment) as b:
        yield [a, b]


@pytest.fixture
def tokens(cluster_tokens):
    return cluster_tokens


@pytest.fixture
def primary(cluster, cluster_database):
    with psycopg.connect(cluster.primary.url(cluster_database), autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        yield conn


@pytest.fixture(autouse=True)
def no_session_state_left(cluster, cluster_database):
    yield
    assert session_state_leaks(cluster, cluster_database) == []


class RoundRobin(Submitter):
    """A hospital system whose requests a load balancer spreads over the hosts in turn."""

    def __init__(self, hosts: list[str], header: dict, statuses: Counter, lock: threading.Lock):
        super().__init__(hosts[0], header, statuses, lock)
        self._next_host = itertools.cycle(hosts)
        self.hosts_used = Counter()

    def send(self, method: str, path: str, **kwargs) -> requests.Response:
        self.base_url = next(self._next_host)
        self.hosts_used[self.base_url] += 1
        return super().send(method, path, **kwargs)


def test_concurrent_submitters_across_two_hosts_leave_exactly_the_expected_records(hosts, tokens, primary):
    statuses, lock = Counter(), threading.Lock()
    centres = ("submitter_a", "submitter_b")
    shared = {}
    for centre in centres:
        created = requests.post(hosts[0] + "/v1/operations/", headers=tokens.header(centre), timeout=30,
                                json=seed_case() | {"local_ref": f"{centre}-SHARED", "duration_min": 1})
        assert created.status_code == 201
        shared[centre] = created.json()["id"]
    audit_before = primary.execute("SELECT count(*) AS n FROM audit_events WHERE entity = 'operation'").fetchone()["n"]

    def work(centre: str, thread: int):
        submitter = RoundRobin(hosts, tokens.header(centre), statuses, lock)
        final = submit_own_operations(submitter, centre, thread)
        conflicts = increment_shared_operation(submitter, shared[centre])
        return final, conflicts, submitter.hosts_used

    with ThreadPoolExecutor(len(centres) * THREADS_PER_CENTRE) as pool:
        results = list(pool.map(lambda args: work(*args),
                                [(centre, thread) for centre in centres for thread in range(THREADS_PER_CENTRE)]))

    assert not [status for status in statuses if status >= 500]
    assert all(set(used) == set(hosts) for _, _, used in results), "every client reached both hosts"
    expected = {ref: loss for final, _, _ in results for ref, loss in final.items()}
    stored = {row["local_ref"]: row for row in primary.execute(
        "SELECT local_ref, blood_loss_ml, version FROM operations WHERE local_ref ~ '^submitter_[ab]-T'")}
    assert {ref: row["blood_loss_ml"] for ref, row in stored.items()} == expected
    assert all(row["version"] == 3 for row in stored.values())  # created, corrected, patched: no replay wrote
    increments = THREADS_PER_CENTRE * INCREMENTS_PER_THREAD
    for centre in centres:
        row = primary.execute("SELECT duration_min, version FROM operations WHERE id = %s",
                              (shared[centre],)).fetchone()
        assert row == {"duration_min": 1 + increments, "version": 1 + increments}, "no update lost between hosts"
    audited = primary.execute("SELECT count(*) AS n FROM audit_events WHERE entity = 'operation'").fetchone()["n"]
    assert audited - audit_before == 3 * len(expected) + len(centres) * increments


def test_a_retry_and_an_etag_given_by_one_host_are_honoured_by_the_other(hosts, tokens, primary):
    a, b = hosts
    headers = {**tokens.header("submitter_a"), "Idempotency-Key": "two-hosts-retry"}
    body = seed_case() | {"local_ref": "TWO-HOSTS-1"}
    first = requests.post(a + "/v1/operations/", json=body, headers=headers, timeout=30)
    retried = requests.post(b + "/v1/operations/", json=body, headers=headers, timeout=30)
    assert (first.status_code, retried.status_code) == (201, 201)
    assert retried.json()["id"] == first.json()["id"] and retried.headers["Idempotent-Replayed"] == "true"

    location = first.headers["Location"]
    changed = requests.patch(b + location, json={"blood_loss_ml": 111}, timeout=30,
                             headers={**tokens.header("submitter_a"), "If-Match": first.headers["ETag"]})
    stale = requests.patch(a + location, json={"blood_loss_ml": 222}, timeout=30,
                           headers={**tokens.header("submitter_a"), "If-Match": first.headers["ETag"]})
    assert (changed.status_code, stale.status_code) == (200, 412)
    assert requests.get(a + location, headers=tokens.header("submitter_a"), timeout=30).headers["ETag"] \
        == changed.headers["ETag"]

    trail = primary.execute("SELECT action, actor_token_id, changed_fields FROM audit_events"
                            " WHERE entity = 'operation' AND entity_id = %s ORDER BY id",
                            (first.json()["id"],)).fetchall()
    assert [(entry["action"], entry["actor_token_id"]) for entry in trail] == [
        ("create", tokens.id("submitter_a")), ("update", tokens.id("submitter_a"))]
    assert trail[1]["changed_fields"] == ["blood_loss_ml"]


class Load:
    """Writers creating operations (each retried with its Idempotency-Key until stored) and
    readers asking for reports, round-robin over the hosts, until stopped."""

    def __init__(self, hosts, tokens, prefix: str, writers: int = 4, readers: int = 2):
        self.hosts, self.tokens, self.prefix = hosts, tokens, prefix
        self.write_statuses, self.report_statuses, self.report_sources = Counter(), Counter(), Counter()
        self.stored, self.lock, self.stopping = set(), threading.Lock(), threading.Event()
        self.stored_at: list[float] = []  # monotonic time of each write's 201
        self.threads = [threading.Thread(target=self._write, args=(n,)) for n in range(writers)] + \
                       [threading.Thread(target=self._read, args=(n,)) for n in range(readers)]

    def _write(self, number: int):
        session, host = requests.Session(), itertools.cycle(self.hosts)
        for count in itertools.count():
            if self.stopping.is_set():
                return
            ref = f"{self.prefix}-{number}-{count}"
            headers = {**self.tokens.header("submitter_a"), "Idempotency-Key": ref}
            while True:  # a careful client retries until it has an answer
                try:
                    status = session.post(next(host) + "/v1/operations/", json=seed_case() | {"local_ref": ref},
                                          headers=headers, timeout=30).status_code
                except requests.ConnectionError:
                    status = "connection error"
                with self.lock:
                    self.write_statuses[status] += 1
                if status == 201:
                    with self.lock:
                        self.stored.add(ref)
                        self.stored_at.append(time.monotonic())
                    break
                time.sleep(0.1)

    def _read(self, number: int):
        session, host = requests.Session(), itertools.cycle(self.hosts)
        while not self.stopping.is_set():
            response = session.get(next(host) + "/v1/reports/complications", timeout=30,
                                   headers=self.tokens.header("analyst"))
            with self.lock:
                self.report_statuses[response.status_code] += 1
                self.report_sources[response.headers.get("Report-Database")] += 1
            time.sleep(0.05)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)


def test_the_standby_dying_under_load_leaves_writes_unaffected_and_reports_never_fail(
        cluster, hosts, tokens, primary):
    try:
        with Load(hosts, tokens, "STANDBY-DIES") as load:
            time.sleep(2)
            cluster.standby.stop("immediate")
            dead_at = sum(load.report_statuses.values())
            time.sleep(4)
        assert sum(load.report_statuses.values()) > dead_at, "reports were asked while the standby was dead"
    finally:
        cluster.standby.start()
        cluster.wait_for_replay()
    # every write answered at its first attempt: the standby is not on the write path
    assert set(load.write_statuses) == {201}, load.write_statuses
    # a report is read on the primary instead (or, before registry.replica is wired in, a 503)
    assert set(load.report_statuses) <= {200, 503}, load.report_statuses
    stored = {row["local_ref"] for row in primary.execute(
        "SELECT local_ref FROM operations WHERE local_ref LIKE 'STANDBY-DIES-%'")}
    assert stored == load.stored


def test_a_pgbouncer_restart_under_load_is_survived_with_nothing_lost_or_doubled(cluster, hosts, tokens, primary):
    with Load(hosts, tokens, "PGBOUNCER-RESTARTS", readers=1) as load:
        time.sleep(2)
        cluster.pgbouncer.restart()
        restarted_at = time.monotonic()
        time.sleep(4)
    recovered_after = min(t for t in load.stored_at if t > restarted_at) - restarted_at
    assert recovered_after < 3, f"the first write after the restart took {recovered_after:.1f} s"
    assert not [status for status in load.write_statuses if isinstance(status, int) and status >= 500
                and status != 503], load.write_statuses
    assert 500 not in load.report_statuses
    stored = [row["local_ref"] for row in primary.execute(
        "SELECT local_ref FROM operations WHERE local_ref LIKE 'PGBOUNCER-RESTARTS-%'")]
    assert sorted(stored) == sorted(load.stored), "each operation stored exactly once"
    # and the hosts are ready, without a restart of their own
    for host in hosts:
        assert requests.get(host + "/readyz", timeout=10).status_code == 200
