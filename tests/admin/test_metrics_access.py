"""/metrics counts every request by route and status: it is for the registry's own monitoring,
so it answers only a metrics (or operator) token, as Prometheus sends it."""

import pytest


def test_metrics_without_a_token_is_401_problem(client):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert "registry_http_requests_total" not in response.text


@pytest.mark.parametrize("name", ["submitter_a", "analyst", "centre_admin_a"])
def test_metrics_refuse_tokens_of_other_roles(client, tokens, name):
    response = client.get("/metrics", headers=tokens.header(name))
    assert response.status_code == 403
    assert "registry_http_requests_total" not in response.text


@pytest.mark.parametrize("name", ["metrics", "operator"])
def test_metrics_and_operator_tokens_read_the_metrics(client, tokens, name):
    client.get("/v1/operations/", headers=tokens.header("submitter_a"))
    response = client.get("/metrics", headers=tokens.header(name))
    assert response.status_code == 200
    assert 'registry_http_requests_total{endpoint="/v1/operations/",method="GET",status="200"}' in response.text


def test_a_revoked_metrics_token_is_refused(client, tokens):
    client.delete(f"/v1/tokens/{tokens.id('metrics')}", headers=tokens.header("operator"))
    assert client.get("/metrics", headers=tokens.header("metrics")).status_code == 401


def test_health_probes_stay_open(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
