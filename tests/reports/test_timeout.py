"""A report whose queries run past REPORT_TIMEOUT is stopped by the database and answered with a
503 problem, before gunicorn's worker timeout would kill the worker with an HTML page."""

import pytest

from registry.reports import service
from tests.conftest import make_settings


@pytest.fixture
def settings():
    return make_settings(report_timeout=0.2)


def test_a_report_past_the_timeout_is_a_503_problem(client, tokens, monkeypatch):
    def slow_report(conn, *args):
        conn.execute("SELECT pg_sleep(2)")

    monkeypatch.setattr(service, "build_report", slow_report)
    response = client.get("/v1/reports/complications", query_string={"group_by": "approach,region"},
                          headers=tokens.header("analyst"))
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.json["type"].endswith("report-timeout")
    assert "0.2 s" in response.json["detail"]


def test_a_report_within_the_timeout_answers(client, tokens):
    response = client.get("/v1/reports/complications", query_string={"group_by": "approach,region"},
                          headers=tokens.header("analyst"))
    assert response.status_code == 200
