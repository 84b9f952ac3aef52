"""Every error is RFC 9457 problem+json, whatever raised it."""

import pytest

from registry import create_app
from tests.conftest import make_settings

PROBLEM = "application/problem+json"


def assert_problem(response, status):
    assert response.status_code == status, response.data
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_unknown_path_is_404_problem(client):
    body = assert_problem(client.get("/v1/no-such-thing"), 404)
    assert body["instance"] == "/v1/no-such-thing"


def test_wrong_method_is_405_problem(client):
    assert_problem(client.delete("/healthz"), 405)


def test_missing_token_is_401_problem(client):
    response = client.get("/v1/centres/")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_token_is_401_problem(client, tokens):
    assert_problem(client.get("/v1/centres/", headers={"Authorization": "Bearer reg_forged"}), 401)


def test_body_in_unsupported_media_type_is_415(client, tokens):
    response = client.post("/v1/centres/", data="code=X", headers={**tokens.header("operator"),
                                                                   "Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(response, 415)


def test_oversized_body_is_413(database_url, tokens):
    app = create_app(make_settings(max_content_length=1024), database_url)
    response = app.test_client().post("/v1/centres/", json={"code": "BIG", "name": "x" * 5000},
                                      headers=tokens.header("operator"))
    app.extensions["database"].close()
    assert_problem(response, 413)


def test_malformed_json_is_a_problem_not_a_crash(client, tokens):
    response = client.post("/v1/centres/", data="{not json", headers={**tokens.header("operator"),
                                                                      "Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    assert response.mimetype == PROBLEM


def test_invalid_fields_are_422_naming_each_field(client, tokens):
    response = client.post("/v1/centres/", json={"code": "lower case", "colour": "red"},
                           headers=tokens.header("operator"))
    body = assert_problem(response, 422)
    fields = {error["field"]: error for error in body["errors"]}
    assert set(fields) == {"code", "name", "colour"}
    assert fields["colour"]["message"] == "Unknown field."
    assert fields["code"]["pointer"] == "/code"
    assert fields["code"]["location"] == "json"


def test_invalid_query_parameter_is_422_in_the_query(client, tokens):
    body = assert_problem(client.get("/v1/centres/?limit=0", headers=tokens.header("operator")), 422)
    assert body["errors"][0]["field"] == "limit"
    assert body["errors"][0]["location"] == "query"


@pytest.fixture
def crashing_app(database_url):
    app = create_app(make_settings(), database_url)

    @app.get("/crash")
    def crash():
        raise RuntimeError("secret internal detail")

    return app


def test_unhandled_error_is_500_problem_without_stack_trace(crashing_app):
    response = crashing_app.test_client().get("/crash")
    body = assert_problem(response, 500)
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert body["detail"]


def test_a_single_record_body_is_limited_to_max_record_bytes(database_url, tokens):
    app = create_app(make_settings(max_record_bytes=4096), database_url)
    client = app.test_client()
    big = client.post("/v1/centres/", json={"code": "BIG", "name": "x" * 5000}, headers=tokens.header("operator"))
    small = client.post("/v1/centres/", json={"code": "SMALL", "name": "x" * 100}, headers=tokens.header("operator"))
    bulk = client.post("/v1/submissions/", json=[{"local_ref": "x" * 5000}], headers=tokens.header("submitter_a"))
    app.extensions["database"].close()
    assert_problem(big, 413)
    assert small.status_code == 201
    assert bulk.status_code != 413  # bulk submissions take up to MAX_CONTENT_LENGTH
