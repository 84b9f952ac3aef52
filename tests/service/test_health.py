import time

from registry import create_app, migrate
from tests.conftest import make_settings


def test_healthz_answers_without_touching_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_ready_when_schema_is_at_head(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["schema_revision"] == migrate.head_revision()


def test_readyz_is_503_when_schema_is_not_migrated(empty_database_url):
    app = create_app(make_settings(), empty_database_url)
    response = app.test_client().get("/readyz")
    app.extensions["database"].close()
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert "no revision" in response.json["detail"]


def test_readyz_is_503_quickly_when_database_is_unreachable():
    # Port 1 refuses connections at once: no server there.
    app = create_app(make_settings(pool_timeout=1.0), "postgresql://postgres@127.0.0.1:1/registry")
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    elapsed = time.monotonic() - started
    app.extensions["database"].close()
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"]
    assert elapsed < 5


def test_metrics_expose_request_counts(client, tokens):
    client.get("/healthz")
    response = client.get("/metrics", headers=tokens.header("metrics"))
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert 'registry_http_requests_total{endpoint="/healthz",method="GET",status="200"}' in response.text


def test_every_response_carries_a_request_id(client):
    response = client.get("/healthz")
    assert len(response.headers["X-Request-ID"]) >= 16


def test_a_sane_request_id_from_the_caller_is_kept(client):
    response = client.get("/nowhere", headers={"X-Request-ID": "hospital-42.retry-1"})
    assert response.headers["X-Request-ID"] == "hospital-42.retry-1"
    assert response.json["request_id"] == "hospital-42.retry-1"


def test_an_unsafe_request_id_is_replaced(client):
    response = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert response.headers["X-Request-ID"] != "bad id <script>"
    assert response.headers["X-Request-ID"].isalnum()
