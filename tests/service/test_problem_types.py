"""One problem `type` per kind of error, whichever endpoint or layer answered it.

A refused field is `invalid-input` whether webargs, a view, the idempotency check, a cursor, a
bulk submission or a database constraint refused it; a missing record is `not-found` whether
the path or the id was unknown. Every type answered is one of the documented PROBLEM_TYPES.
"""

import pytest

from registry.problems import PROBLEM_TYPE_BASE, PROBLEM_TYPES
from tests.records.helpers import seed_case


def kind(response) -> str:
    assert response.mimetype == "application/problem+json", response.get_data(as_text=True)[:300]
    problem_type = response.json["type"]
    assert problem_type.startswith(PROBLEM_TYPE_BASE), problem_type
    slug = problem_type.removeprefix(PROBLEM_TYPE_BASE)
    assert slug in PROBLEM_TYPES, f"{slug} is not a documented problem type"
    assert PROBLEM_TYPES[slug][0] == response.status_code, (slug, response.status_code)
    return slug


def invalid_inputs(client, tokens):
    """A 422 from each place that refuses input."""
    a = tokens.header("submitter_a")
    operation = client.post("/v1/operations/", json=seed_case(), headers=a).json
    client.post("/v1/patients/", json={"ref": "P-1", "diagnosis": "aro"}, headers={**a, "Idempotency-Key": "k"})
    borrowing = {name: value for name, value in seed_case().items() if name != "patient"} | {"patient_id": 10**9}
    return {
        "schema (webargs)": client.post("/v1/patients/", json={"diagnosis": "no such"}, headers=a),
        "query parameter": client.get("/v1/operations/?limit=0", headers=a),
        "unknown patient_id (view)": client.post("/v1/operations/", json=borrowing, headers=a),
        "merged PATCH (view)": client.patch(f"/v1/operations/{operation['id']}", json={"region": None},
                                            headers={**a, "If-Match": client.get(
                                                f"/v1/operations/{operation['id']}", headers=a).headers["ETag"]}),
        "idempotency key reused": client.post("/v1/patients/", json={"ref": "P-2", "diagnosis": "aro"},
                                              headers={**a, "Idempotency-Key": "k"}),
        "cursor": client.get("/v1/operations/?cursor=WyJ4Il0", headers=a),
        "unreadable bulk body": client.post("/v1/submissions/", data=b"{}", headers={**a, "Content-Type":
                                                                                       "application/json"}),
        "duplicated key": client.post("/v1/patients/", data=b'{"ref": "P", "ref": "Q", "diagnosis": "aro"}',
                                      headers={**a, "Content-Type": "application/json"}),
    }


def test_every_422_is_invalid_input(client, tokens):
    answers = invalid_inputs(client, tokens)
    for name, response in answers.items():
        assert response.status_code == 422, (name, response.get_data(as_text=True)[:300])
    assert {name: kind(response) for name, response in answers.items()} == dict.fromkeys(answers, "invalid-input")


def test_a_database_constraint_refusal_is_invalid_input_too(app):
    """The last line of defence answers like validation does (its own type was `constraint-violation`)."""
    from types import SimpleNamespace

    from registry.problems import handle_integrity_error

    refused = SimpleNamespace(diag=SimpleNamespace(constraint_name="ck_operations_blood_loss_ml"))
    with app.test_request_context("/v1/operations/"):
        response = handle_integrity_error(refused)
    assert response.status_code == 422
    assert response.json["type"] == PROBLEM_TYPE_BASE + "invalid-input"
    assert response.json["errors"][0]["field"] == "blood_loss_ml"


def test_an_unknown_path_and_an_unknown_record_are_both_not_found(client, tokens):
    a = tokens.header("submitter_a")
    assert kind(client.get("/v1/no-such-thing", headers=a)) == "not-found"
    assert kind(client.get("/v1/operations/999999", headers=a)) == "not-found"


@pytest.mark.parametrize("request_, expected", [
    (("post", "/v1/patients/", {"data": b"{not json", "content_type": "application/json"}), "malformed-request"),
    (("delete", "/healthz", {}), "method-not-allowed"),
    (("post", "/v1/patients/", {"data": b"ref=1", "content_type": "text/plain"}), "unsupported-media-type"),
    (("get", "/v1/operations/", {"no_token": True}), "unauthorized"),
    (("patch", "/v1/operations/{id}", {"json": {"blood_loss_ml": 1}}), "precondition-required"),
    (("patch", "/v1/operations/{id}", {"json": {"blood_loss_ml": 1}, "if_match": '"stale"'}), "precondition-failed"),
])
def test_each_kind_has_its_documented_type(client, tokens, request_, expected):
    method, url, options = request_
    a = tokens.header("submitter_a")
    operation = client.post("/v1/operations/", json=seed_case(), headers=a).json
    headers = {} if options.get("no_token") else dict(a)
    if "if_match" in options:
        headers["If-Match"] = options["if_match"]
    kwargs = {name: value for name, value in options.items() if name in ("data", "json", "content_type")}
    response = getattr(client, method)(url.format(id=operation["id"]), headers=headers, **kwargs)
    assert kind(response) == expected


def test_a_body_too_large_is_body_too_large(database_url, tokens):
    from registry import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(max_record_bytes=1024), database_url)
    try:
        response = app.test_client().post("/v1/patients/", json={"ref": "P", "diagnosis": "aro",
                                                                 "diagnosis_note": "x" * 5000},
                                          headers=tokens.header("submitter_a"))
    finally:
        app.extensions["database"].close()
        app.extensions["reports_database"].close()
    assert kind(response) == "body-too-large"
