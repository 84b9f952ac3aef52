"""Hostile input through the FHIR door: never a 500, always FHIR JSON (a Bundle or an OperationOutcome)."""

import pytest


@pytest.mark.parametrize("path, statuses", [
    ("/fhir/CodeSystem?url=%00", {200}),
    ("/fhir/ValueSet?url=%ED%A0%80", {200}),                   # a lone surrogate, UTF-8 encoded
    ("/fhir/CodeSystem?url=" + "x" * 100_000, {200, 414}),
    ("/fhir/CodeSystem/%00", {404}),
    ("/fhir/ValueSet/" + "a" * 5_000, {404}),
    ("/fhir/CodeSystem?_format=%00", {406}),
    ("/fhir/CodeSystem?_count=-1", {400}),
    ("/fhir/CodeSystem/../../v1/centres/", {404}),
])
def test_hostile_fhir_requests_are_answered_in_fhir(client, path, statuses):
    response = client.get(path)
    assert response.status_code in statuses
    assert response.mimetype == "application/fhir+json"
    body = response.json
    assert body["resourceType"] == ("Bundle" if response.status_code == 200 else "OperationOutcome")
    if response.status_code == 200:
        assert body["total"] == 0 and "entry" not in body


# --- bodies sent to the write path -----------------------------------------------------------

import copy  # noqa: E402
import json  # noqa: E402

from registry.fhir.mapping import operation_to_bundle  # noqa: E402
from tests.fhir.helpers import demo_cases, element_paths, validate  # noqa: E402
from tests.records.helpers import counts  # noqa: E402

FHIR_JSON = "application/fhir+json"
DEEP = "[" * 100_000 + "]" * 100_000


def outcome_of(response, status: int) -> list[dict]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    body = validate(response.get_json())
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def seed_bundle_text() -> str:
    return json.dumps(operation_to_bundle(*demo_cases()[0][1:]))


@pytest.mark.parametrize("path", ["/fhir", "/fhir/", "/fhir/CodeSystem", "/fhir/metadata", "/fhir/no-such"])
@pytest.mark.parametrize("body", [DEEP, '{"resourceType": "Bundle", "type": "transaction", "entry": ' + DEEP + "}"])
def test_a_body_nested_too_deeply_is_an_outcome_never_problem_json(client, tokens, path, body):
    response = client.post(path, data=body, content_type=FHIR_JSON, headers=tokens.header("submitter_a"))
    assert response.status_code in (400, 404, 405)
    outcome_of(response, response.status_code)


def test_bodies_that_are_not_json_or_read_ambiguously_are_outcomes(client, tokens, db):
    headers = tokens.header("submitter_a")
    [issue] = outcome_of(client.post("/fhir", data="not json", content_type=FHIR_JSON, headers=headers), 400)
    assert "JSON" in issue["diagnostics"]
    outcome_of(client.post("/fhir", data=b"\xff\xfe", content_type=FHIR_JSON, headers=headers), 400)
    outcome_of(client.post("/fhir", data="<Bundle/>", content_type="application/fhir+xml", headers=headers), 415)
    # a key sent twice, a number too long to read: each named at its element
    twice = '{"resourceType": "Bundle", "type": "batch", "type": "transaction", "entry": []}'
    [issue] = outcome_of(client.post("/fhir", data=twice, content_type=FHIR_JSON, headers=headers), 422)
    assert issue["expression"] == ["Bundle.type"]
    long_number = seed_bundle_text().replace('"value": 300', '"value": ' + "9" * 5000)
    [issue] = outcome_of(client.post("/fhir", data=long_number, content_type=FHIR_JSON, headers=headers), 422)
    assert issue["expression"][0].endswith(".resource.valueQuantity.value")
    assert set(counts(db).values()) == {0}


@pytest.mark.parametrize("text", ["a\u0000b", "\ud800"])
def test_unstorable_text_is_refused_at_its_element(client, tokens, db, text):
    bundle = json.loads(seed_bundle_text())
    bundle["entry"][1]["resource"]["note"][0]["text"] = text
    response = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR_JSON,
                           headers=tokens.header("submitter_a"))
    [issue] = outcome_of(response, 422)
    assert issue["expression"] == ["Bundle.entry[1].resource.note[0].text"]
    assert set(counts(db).values()) == {0}


def test_elements_of_the_wrong_json_type_are_outcomes_never_a_500(client, tokens, db):
    """Every 7th element of the seed Bundle in turn replaced by a value of another JSON type, through
    HTTP (tests/fhir/test_mapping.py replaces every element, against the mapping alone)."""
    bundle = json.loads(seed_bundle_text())
    for number, path in enumerate(element_paths(bundle)[::7]):
        mutated = copy.deepcopy(bundle)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = [None, 7, "x", [], {}, True][number % 6]
        response = client.post("/fhir", data=json.dumps(mutated), content_type=FHIR_JSON,
                               headers=tokens.header("submitter_a"))
        assert response.status_code < 500, (path, response.get_data(as_text=True))
        assert response.mimetype == FHIR_JSON
        if response.status_code >= 400:
            assert response.get_json()["resourceType"] == "OperationOutcome"
    # a refused transaction stores nothing; a mutation of an ignored element (a display) wrote the one case
    assert counts(db)["operations"] <= 1


@pytest.mark.parametrize("depth", [100, 800])
def test_a_value_nested_deeper_than_any_fhir_element_is_refused_at_its_place(client, tokens, db, depth):
    # the parser reads ~1000 levels; copying and reading 800 of them exhausted the recursion (a 500)
    text = seed_bundle_text().replace('"type": "transaction"', '"type": "transaction", "meta": '
                                      + "[" * depth + "]" * depth, 1)
    [issue] = outcome_of(client.post("/fhir", data=text, content_type=FHIR_JSON,
                                     headers={**tokens.header("submitter_a"), "Idempotency-Key": "deep"}), 400)
    assert issue["code"] == "structure"
    assert issue["expression"][0].startswith("Bundle.meta[0][0]")
    assert set(counts(db).values()) == {0}


def test_errors_the_app_answers_as_problem_json_are_outcomes_under_fhir(app, client):
    """The app answers these classes as problem+json (registry.problems); under /fhir they are outcomes."""
    import psycopg.errors

    def too_deep():
        raise RecursionError("maximum recursion depth exceeded")

    def constraint():
        raise psycopg.errors.CheckViolation("violates ck_operations_blood_loss_ml")

    app.add_url_rule("/fhir/_too_deep", "fhir._too_deep", too_deep)
    app.add_url_rule("/fhir/_constraint", "fhir._constraint", constraint)
    outcome_of(client.get("/fhir/_too_deep"), 500)
    [issue] = outcome_of(client.get("/fhir/_constraint"), 422)
    assert issue["code"] == "invariant"
