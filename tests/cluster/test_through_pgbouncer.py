"""The registry through PgBouncer in transaction-pooling mode, reports on a streaming standby.

PgBouncer hands each transaction whichever server connection is free, so anything a transaction
leaves on its session (a SET, an advisory lock, a temporary table, LISTEN, a prepared statement)
reaches another client's next transaction. After every test, every server connection in the
pool is inspected for such leftovers.
"""

import os
import subprocess
import sys
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from registry import migrate
from tests.cluster.conftest import create_database, session_state_leaks
from tests.conftest import ROOT, TEST_SECRET
from tests.records.helpers import seed_case
from tests.submissions.helpers import csv_body, csv_row, document

pytestmark = pytest.mark.needs_pgbouncer


@pytest.fixture
def client(cluster_app):
    return cluster_app.test_client()


@pytest.fixture
def tokens(cluster_tokens):
    return cluster_tokens


@pytest.fixture
def primary(cluster, cluster_database):
    with psycopg.connect(cluster.primary.url(cluster_database), autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        yield conn


@pytest.fixture(autouse=True)
def no_session_state_left(request, cluster):
    yield
    if "cluster_database" in request.fixturenames:
        assert session_state_leaks(cluster, request.getfixturevalue("cluster_database")) == []


def registry_command(*args: str, database_url: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, DATABASE_URL=database_url, DB_PREPARE_THRESHOLD="-1",
                       REGISTRY_SECRET=TEST_SECRET.decode(), LOG_LEVEL="WARNING")
    return subprocess.run([str(Path(sys.executable).parent / "registry"), *args], env=environment, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


# --- migrations --------------------------------------------------------------------------------

@pytest.fixture
def fresh_database(cluster):
    name = create_database(cluster)
    yield name
    cluster.primary.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_two_deploys_migrating_at_once_through_pgbouncer_both_reach_head(cluster, fresh_database):
    url = cluster.pgbouncer.url(fresh_database)
    with ThreadPoolExecutor(2) as deploys:
        results = list(deploys.map(lambda _: registry_command("db", "upgrade", database_url=url), range(2)))
    assert [result.returncode for result in results] == [0, 0], [result.stderr[-2000:] for result in results]
    with psycopg.connect(cluster.primary.url(fresh_database)) as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()


def test_migrating_through_pgbouncer_leaves_no_session_state(cluster, fresh_database):
    result = registry_command("db", "upgrade", database_url=cluster.pgbouncer.url(fresh_database))
    assert result.returncode == 0, result.stderr[-2000:]
    assert session_state_leaks(cluster, fresh_database) == []


# --- writes ------------------------------------------------------------------------------------

def test_a_record_is_created_read_and_updated_with_if_match_through_pgbouncer(client, tokens, primary):
    created = client.post("/v1/operations/", json=seed_case() | {"local_ref": "PGB-1"},
                          headers=tokens.header("submitter_a"))
    assert created.status_code == 201, created.json
    location = created.headers["Location"]
    read = client.get(location, headers=tokens.header("submitter_a"))
    assert read.headers["ETag"] == created.headers["ETag"]

    changed = client.patch(location, json={"blood_loss_ml": 310},
                           headers={**tokens.header("submitter_a"), "If-Match": read.headers["ETag"]})
    stale = client.patch(location, json={"blood_loss_ml": 999},
                         headers={**tokens.header("submitter_a"), "If-Match": read.headers["ETag"]})

    assert changed.status_code == 200 and stale.status_code == 412
    row = primary.execute("SELECT blood_loss_ml, version FROM operations WHERE local_ref = 'PGB-1'").fetchone()
    assert row == {"blood_loss_ml": 310, "version": 2}
    assert [entry["action"] for entry in primary.execute(
        "SELECT action FROM audit_events WHERE entity = 'operation' AND entity_id = %s ORDER BY id",
        (created.json["id"],))] == ["create", "update"]


def test_a_retry_with_the_same_idempotency_key_returns_the_first_answer_through_pgbouncer(client, tokens, primary):
    headers = {**tokens.header("submitter_a"), "Idempotency-Key": "pgbouncer-retry"}
    body = seed_case() | {"local_ref": "PGB-RETRY"}
    first = client.post("/v1/operations/", json=body, headers=headers)
    retry = client.post("/v1/operations/", json=body, headers=headers)
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json["id"] == first.json["id"] and retry.headers.get("Idempotent-Replayed") == "true"
    assert primary.execute("SELECT count(*) AS n FROM operations WHERE local_ref = 'PGB-RETRY'").fetchone()["n"] == 1


def test_concurrent_submitters_through_a_pool_smaller_than_they_are(cluster_app, tokens, primary):
    """Twelve threads, PgBouncer's pool of six server connections: each transaction waits its turn."""

    def submit(number: int) -> int:
        client = cluster_app.test_client()
        body = document(1000 + number, follow_ups=None)
        headers = {**tokens.header("submitter_b"), "Idempotency-Key": f"concurrent-{number}"}
        statuses = [client.post("/v1/operations/", json=body, headers=headers).status_code for _ in range(2)]
        return statuses

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(submit, range(36)))
    assert statuses == [[201, 201]] * 36
    stored = primary.execute("SELECT count(*) AS n FROM operations WHERE local_ref ~ '^OP-10[0-3][0-9]$'"
                             ).fetchone()["n"]
    assert stored == 36


def test_a_bulk_submission_is_all_or_nothing_through_pgbouncer(client, tokens, primary):
    documents = [document(2000 + number) for number in range(40)]
    stored = client.post("/v1/submissions/?mode=atomic", json=documents, headers=tokens.header("submitter_a"))
    refused = client.post("/v1/submissions/?mode=atomic",
                          json=[document(3000), document(3001, operation_date="2999-01-01")],
                          headers=tokens.header("submitter_a"))

    assert (stored.status_code, stored.json["status"], stored.json["created"]) == (201, "accepted", 40)
    assert (refused.json["status"], refused.json["created"], refused.json["rejected"]) == ("rejected", 0, 1)
    refs = {row["local_ref"] for row in primary.execute(
        "SELECT local_ref FROM operations WHERE local_ref ~ '^OP-[23][0-9]{3}$'")}
    assert refs == {f"OP-{2000 + number}" for number in range(40)}
    assert primary.execute("SELECT count(*) AS n FROM follow_ups f JOIN operations o ON o.id = f.operation_id"
                           " WHERE o.local_ref ~ '^OP-2[0-9]{3}$'").fetchone()["n"] == 40


def test_a_csv_submission_through_pgbouncer(client, tokens, primary):
    body = csv_body([csv_row(4000 + number) for number in range(10)])
    response = client.post("/v1/submissions/", data=body, headers={**tokens.header("submitter_a"),
                                                                   "Content-Type": "text/csv"})
    assert (response.status_code, response.json["created"]) == (201, 10), response.json
    assert primary.execute("SELECT count(*) AS n FROM operations WHERE local_ref ~ '^OP-40[0-9]{2}$'"
                           ).fetchone()["n"] == 10


# --- reports on the standby --------------------------------------------------------------------

def test_a_report_is_read_on_the_standby_and_says_how_current_it_is(cluster, client, tokens, primary):
    for number in range(3):
        assert client.post("/v1/operations/", json=document(5000 + number, follow_ups=None),
                           headers=tokens.header("submitter_a")).status_code == 201
    cluster.wait_for_replay()

    report = client.get("/v1/reports/complications", headers=tokens.header("submitter_a"))

    assert report.status_code == 200, report.json
    assert report.headers["Report-Database"] == "replica"
    assert float(report.headers["Report-Replay-Lag"]) == 0.0
    assert report.headers["Report-As-Of"] != "unknown"
    own = primary.execute("SELECT count(*) AS n FROM operations WHERE centre_id = %s",
                          (tokens.centre_a["id"],)).fetchone()["n"]
    assert report.json["total"]["operations"] == own


def test_the_report_query_audit_is_written_on_the_primary(cluster, client, tokens, primary):
    before = primary.execute("SELECT count(*) AS n FROM report_queries").fetchone()["n"]
    assert client.get("/v1/reports/fusion?group_by=approach", headers=tokens.header("analyst")).status_code == 200
    assert primary.execute("SELECT count(*) AS n FROM report_queries").fetchone()["n"] == before + 1


def test_every_report_format_states_where_it_was_read(cluster, client, tokens):
    cluster.wait_for_replay()
    for answer in ("json", "csv", "svg"):
        response = client.get(f"/v1/reports/outcomes?format={answer}", headers=tokens.header("submitter_a"))
        assert response.status_code == 200
        assert response.headers["Report-Database"] == "replica", answer
