"""Property-based API testing: schemathesis generates requests from openapi.yaml and checks the answers.

Every operation of the committed OpenAPI document (whatever it contains when the suite runs) is
exercised in-process through the Flask app, once per role — submitter, analyst, operator — against
a fresh database holding the seed case, with all of schemathesis' default checks: no 5xx, every
status code, content type, header and body as documented, invalid data refused, authentication
not ignored, and so on. Generation is derandomized with a fixed seed, so a failure replays.

The spec cannot express every rule (cross-field rules, opaque cursors, an Idempotency-Key reused
with another body, a stale If-Match): for a schema-valid request the registry may therefore also
answer its documented 412 or 422. `refusal_names_a_rule_the_spec_cannot_express` keeps that
allowance honest: a 422 to a schema-valid request must name fields, and never with a message
that says the request broke the published schema (wrong type, unknown field, out of range...),
which would mean the spec and the code disagree.
"""

from collections import defaultdict
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from tests.records.helpers import seed_case, seed_follow_up

ROOT = Path(__file__).resolve().parent.parent.parent
ROLES = ("submitter_a", "analyst", "operator")

# Examples per operation and role in the fuzzing phase (the examples and coverage phases add
# their own deterministic cases): 3 roles x every operation take about two minutes.
MAX_EXAMPLES = 15
SEED = 20240601

# marshmallow's messages for a request that breaks the structure the spec publishes
STRUCTURAL_MESSAGES = (
    "Not a valid", "Unknown field", "Missing data for required field", "Field may not be null",
    "Must be one of", "Length must be", "Longer than maximum length", "Shorter than minimum length",
    "Must be greater than", "Must be less than", "Invalid input type", "Invalid value",
)
# text a response body must never contain: a Python stack trace or a psycopg/PostgreSQL error
LEAKS = ("Traceback (most recent call last)", 'File "/', "psycopg", "SQLSTATE", "syntax error at or near")

CONFIG = SchemathesisConfig.from_dict({
    "seed": SEED,
    "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES, "database": "none"},
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "412", "422", "429", "5xx"]}},
    # A bulk submission answers each record: a malformed record is rejected in a 201 report
    # (see `bulk_rejection_is_reported`), the documented way it refuses invalid data.
    "operations": [{"include-path": "/v1/submissions/", "include-method": "POST", "checks": {
        "negative_data_rejection": {"expected-statuses": ["201", "400", "401", "403", "404", "405", "406", "409",
                                                          "413", "415", "422", "428", "429", "5xx"]}}}],
})
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml", config=CONFIG)

# (method path) -> statuses answered, over all roles: to show every operation was reached
ANSWERED: dict[str, set[int]] = defaultdict(set)


def refusal_names_a_rule_the_spec_cannot_express(ctx, response, case):
    """A schema-valid request refused with 422 names its fields, for a rule the spec cannot state."""
    meta = case.meta
    if response.status_code != 422 or meta is None or not meta.generation.mode.is_positive:
        return None
    errors = (response.json() or {}).get("errors") or []
    assert errors, "a 422 must name the fields at fault"
    for error in errors:
        message = error.get("message", "")
        assert not message.startswith(STRUCTURAL_MESSAGES), (
            f"schema-valid request refused for {error.get('field')!r}: {message!r} — the spec and the code disagree")
    return None


def bulk_rejection_is_reported(ctx, response, case):
    """A schema-violating bulk submission answered 201 must report a rejected record."""
    meta = case.meta
    if response.status_code != 201 or meta is None or not meta.generation.mode.is_negative:
        return None
    if case.operation.path == "/v1/submissions/" and case.method.upper() == "POST":
        assert response.json()["rejected"] >= 1, "a schema-violating submission was stored without a rejection"
    return None


def no_internals_in_the_body(ctx, response, case):
    """No stack trace, driver or SQL error text in any answer."""
    # bytes, not text: a report answered as PNG is binary (a leak would still be ASCII in it)
    body = response.content.decode("utf-8", "replace")
    for leak in LEAKS:
        assert leak not in body, f"the response body shows {leak!r}"
    return None


@pytest.fixture
def seeded(app, tokens):
    """The seed case, its follow-up, its patient and a bulk submission: ids 1 for generated ids to find."""
    client = app.test_client()
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    assert created.status_code == 201
    followed = client.post(f"/v1/operations/{created.json['id']}/follow-ups", json=seed_follow_up(),
                           headers=tokens.header("submitter_a"))
    assert followed.status_code == 201
    submitted = client.post("/v1/submissions/", json=[seed_case() | {"local_ref": "BULK-1"}],
                            headers=tokens.header("submitter_a"))
    assert submitted.status_code == 201
    # an erased patient whose ref is the documented example of POST /v1/patients/lift-erasure
    erased = client.post("/v1/patients/", json={"ref": "TJH-P-0999", "diagnosis": "aro"},
                         headers=tokens.header("submitter_a"))
    assert client.delete(f"/v1/patients/{erased.json['id']}", headers=tokens.header("submitter_a")).status_code == 204


def with_current_etag(case, app, headers):
    """Give a schema-valid update the record's current ETag, so updates are exercised past If-Match."""
    if "If-Match" not in case.headers or case.meta is None or not case.meta.generation.mode.is_positive:
        return
    current = app.test_client().get(case.formatted_path, headers=headers)
    if current.status_code == 200 and "ETag" in current.headers:
        case.headers["If-Match"] = current.headers["ETag"]


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # one database per operation and role
def test_api_conforms_to_its_openapi_document(case, role, app, tokens, seeded):
    case.operation.schema.app = app  # the checks' own extra requests (auth probes...) go to this app too
    headers = tokens.header(role)
    with_current_etag(case, app, headers)
    response = case.call_and_validate(app=app, headers=headers,
                                      additional_checks=[refusal_names_a_rule_the_spec_cannot_express,
                                                         bulk_rejection_is_reported, no_internals_in_the_body])
    ANSWERED[f"{case.method.upper()} {case.operation.path}"].add(response.status_code)


def test_every_operation_of_the_spec_succeeded_at_least_once():
    """The generated requests reached every operation past validation and authorisation."""
    if not ANSWERED:
        pytest.skip("run together with test_api_conforms_to_its_openapi_document")
    labels = {f"{method.upper()} {path}" for path, methods in schema.raw_schema["paths"].items()
              for method in methods if method in ("get", "post", "put", "patch", "delete")}
    never = sorted(label for label in labels if not any(200 <= status < 300 for status in ANSWERED[label]))
    assert not never, f"never answered with success: {never}"
