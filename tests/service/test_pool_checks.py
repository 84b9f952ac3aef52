"""Pooled connections the server dropped (restart, failover, a pooler's idle timeout) are
replaced before a request gets them, without a test query on every request."""

import time

from registry import db as registry_db


def drop_service_connections(db) -> int:
    return db.execute("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity"
                      " WHERE application_name = 'registry-main' AND datname = current_database()").fetchone()["n"]


def test_a_connection_dropped_while_idle_is_replaced_before_use(client, db, tokens):
    assert client.get("/v1/operations/", headers=tokens.header("submitter_a")).status_code == 200
    assert drop_service_connections(db) >= 1

    time.sleep(registry_db.CHECK_WHEN_IDLE_FOR + 0.2)
    response = client.get("/v1/operations/", headers=tokens.header("submitter_a"))

    assert response.status_code == 200, response.get_data(as_text=True)


def test_a_connection_in_steady_use_is_not_tested_at_every_checkout(app, client, tokens, monkeypatch):
    tested = []
    monkeypatch.setattr(registry_db.ConnectionPool, "check_connection", staticmethod(tested.append))
    for _ in range(5):
        assert client.get("/v1/operations/", headers=tokens.header("submitter_a")).status_code == 200

    # ten checkouts (token lookup, then the list); a new connection is tested once, then not again
    assert 1 <= len(tested) < 10
    assert len({id(conn) for conn in tested}) == len(tested)
