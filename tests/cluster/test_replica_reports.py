"""Reports on a streaming standby: how current they say they are, and never a wrong figure.

A standby too far behind, in a recovery conflict, or gone: the report is read on the primary
and says so. The standby is paused, conflicted and stopped here, and restored after each test.
"""

import time
from datetime import datetime, timezone

import psycopg
import pytest

from registry import create_app, replica
from registry.db import DatabaseUnavailable
from tests.cluster.conftest import cluster_settings
from tests.records.helpers import seed_case

pytestmark = pytest.mark.needs_pgbouncer

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/registry"  # port 1 refuses at once


@pytest.fixture
def client(cluster_app):
    return cluster_app.test_client()


@pytest.fixture
def tokens(cluster_tokens):
    return cluster_tokens


@pytest.fixture
def primary(cluster, cluster_database):
    with psycopg.connect(cluster.primary.url(cluster_database), autocommit=True) as conn:
        yield conn


@pytest.fixture
def app_context(cluster_app):
    with cluster_app.app_context():
        yield


def count_operations(conn) -> int:
    return conn.cursor(row_factory=psycopg.rows.tuple_row).execute("SELECT count(*) FROM operations").fetchone()[0]


def add_operation(client, tokens, local_ref: str) -> None:
    response = client.post("/v1/operations/", json=seed_case() | {"local_ref": local_ref},
                           headers=tokens.header("submitter_a"))
    assert response.status_code == 201, response.json


@pytest.fixture
def replay_paused(cluster, cluster_database):
    cluster.standby.execute("SELECT pg_wal_replay_pause()")
    yield
    cluster.standby.execute("SELECT pg_wal_replay_resume()")
    cluster.wait_for_replay()


@pytest.fixture
def standby_stopped(cluster, cluster_database, monkeypatch):
    monkeypatch.setattr(replica, "REPLICA_REST", 0.5)
    cluster.standby.stop("immediate")  # a crash, not a clean shutdown
    yield
    cluster.standby.start()
    cluster.wait_for_replay()


# --- freshness ---------------------------------------------------------------------------------

def test_the_primary_is_current_as_of_now(primary):
    state = replica.freshness(primary)
    assert state["database"] == "primary" and state["replay_lag_seconds"] == 0
    assert abs((datetime.now(timezone.utc) - state["as_of"]).total_seconds()) < 5


def test_a_standby_that_replayed_everything_is_current_as_of_now(cluster, cluster_database, client, tokens):
    add_operation(client, tokens, "FRESH-1")
    cluster.wait_for_replay()
    with psycopg.connect(cluster.standby.url(cluster_database)) as conn:
        state = replica.freshness(conn)
    assert state["database"] == "replica" and state["replay_lag_seconds"] == 0
    assert abs((datetime.now(timezone.utc) - state["as_of"]).total_seconds()) < 5


def test_a_standby_behind_is_current_as_of_its_last_replayed_commit(cluster, cluster_database, client, tokens,
                                                                     replay_paused):
    before = datetime.now(timezone.utc)
    add_operation(client, tokens, "BEHIND-1")
    time.sleep(0.5)
    with psycopg.connect(cluster.standby.url(cluster_database)) as conn:
        state = replica.freshness(conn)
    assert state["database"] == "replica"
    assert state["as_of"] < before, "the write after the pause is not in what the standby shows"
    assert state["replay_lag_seconds"] >= 0.5


# --- which database answers --------------------------------------------------------------------

def test_a_report_within_the_lag_bound_is_read_on_the_standby_and_true_as_of_its_time(
        cluster, app_context, client, tokens, primary, replay_paused):
    on_primary_before = count_operations(primary)
    add_operation(client, tokens, "BOUND-1")
    time.sleep(0.3)

    figure, state = replica.read_report(count_operations, max_lag=3600)

    assert state["database"] == "replica"
    assert figure == on_primary_before, "as of its as_of, the figure is exact"


def test_a_report_from_a_standby_behind_the_bound_is_read_on_the_primary(
        cluster, app_context, client, tokens, primary, replay_paused):
    add_operation(client, tokens, "BOUND-2")
    time.sleep(0.3)

    figure, state = replica.read_report(count_operations, max_lag=0.1)

    assert state["database"] == "primary" and state["replay_lag_seconds"] == 0
    assert figure == count_operations(primary)


def test_a_report_route_says_when_it_was_read_on_the_primary(cluster, cluster_app, client, tokens, primary,
                                                             replay_paused, monkeypatch):
    add_operation(client, tokens, "BOUND-3")
    time.sleep(1.2)
    settings = cluster_app.config["REGISTRY_SETTINGS"]
    monkeypatch.setitem(cluster_app.config, "REGISTRY_SETTINGS",
                        type(settings)(**{**settings.__dict__, "reports_max_lag_seconds": 1.0}))

    report = client.get("/v1/reports/complications", headers=tokens.header("submitter_a"))

    assert report.status_code == 200
    assert report.headers["Report-Database"] == "primary"
    assert report.json["total"]["operations"] == count_operations(primary)


def test_a_recovery_conflict_makes_the_report_read_the_primary(cluster, cluster_database, app_context, primary):
    read_on = []

    def report_in_the_way_of_replay(conn):
        """Holds a lock on operations on the standby while the primary takes it exclusively."""
        read_on.append(replica.freshness(conn)["database"])
        first = count_operations(conn)
        if read_on == ["replica"]:
            with primary.transaction():
                primary.execute("LOCK TABLE operations IN ACCESS EXCLUSIVE MODE")
            time.sleep(2.5)  # replay waits max_standby_streaming_delay (1 s), then cancels this report
        return first, count_operations(conn)

    (first, second), state = replica.read_report(report_in_the_way_of_replay, max_lag=3600)

    assert read_on == ["replica", "primary"]
    assert state["database"] == "primary"
    assert first == second == count_operations(primary)


def test_a_dead_standby_makes_reports_read_the_primary_and_writes_carry_on(
        cluster, cluster_app, client, tokens, primary, standby_stopped):
    add_operation(client, tokens, "DEAD-1")
    report = client.get("/v1/reports/complications", headers=tokens.header("submitter_a"))
    assert report.status_code == 200, report.json
    assert report.headers["Report-Database"] == "primary"

    # while the standby rests, reports do not wait for it
    began = time.monotonic()
    again = client.get("/v1/reports/complications", headers=tokens.header("submitter_a"))
    assert again.status_code == 200 and time.monotonic() - began < 1.0
    assert again.json["total"]["operations"] == primary.execute(
        "SELECT count(*) FROM operations WHERE centre_id = %s", (tokens.centre_a["id"],)).fetchone()[0]


def test_a_restarted_standby_answers_reports_again(cluster, cluster_app, client, tokens, standby_stopped):
    assert client.get("/v1/reports/outcomes", headers=tokens.header("submitter_a")).headers[
        "Report-Database"] == "primary"
    cluster.standby.start()
    cluster.wait_for_replay()
    deadline = time.monotonic() + 15
    while True:
        report = client.get("/v1/reports/outcomes", headers=tokens.header("submitter_a"))
        assert report.status_code == 200
        if report.headers["Report-Database"] == "replica" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert report.headers["Report-Database"] == "replica"
    cluster.standby.stop("fast")  # standby_stopped starts it again


def test_with_neither_database_reachable_a_report_is_unavailable_not_an_error(cluster):
    app = create_app(cluster_settings(cluster, "registry", reports_database_url=UNREACHABLE, pool_timeout=0.5),
                     UNREACHABLE)
    try:
        with app.app_context(), pytest.raises(DatabaseUnavailable):
            replica.read_report(count_operations, max_lag=30)
    finally:
        app.extensions["database"].close()
        app.extensions["reports_database"].close()
