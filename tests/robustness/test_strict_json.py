"""JSON that Python's parser misreads or trips over: duplicated keys and numbers too long to read.

`{"ref": "A", "ref": "B"}` used to be read as `{"ref": "B"}` (the last wins, silently), and an
integer of more than 4,300 digits made the parser raise a ValueError that answered 500. Both are
now field errors with a pointer to the key or the number: a 422 for one record, the rejection of
that element only in a partial batch.
"""

import json
from pathlib import Path

import pytest
import yaml

from tests.records.helpers import count, counts, seed_case, seed_follow_up
from tests.submissions.helpers import CSV_HEADER, csv_body, csv_row, document

JSON = "application/json"
HUGE = "9" * 5000  # over Python's int_max_str_digits (4,300)
SPEC = yaml.safe_load((Path(__file__).resolve().parent.parent.parent / "openapi.yaml").read_text())
# every endpoint taking one JSON record (bulk submissions take an array: tested below)
RECORD_ENDPOINTS = sorted((method.upper(), path) for path, item in SPEC["paths"].items()
                          for method, operation in item.items() if method in ("post", "put", "patch")
                          and "application/json" in operation.get("requestBody", {}).get("content", {})
                          and path != "/v1/submissions/")


def send(client, method, url, text: str, headers):
    return client.open(url, method=method, data=text.encode(), headers={**headers, "Content-Type": JSON})


def assert_refused_naming(response, field, pointer, status=422):
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    named = {(error["field"], error["pointer"]) for error in response.json["errors"]}
    assert (field, pointer) in named, response.json


def with_duplicate(document: dict, path: list, key: str, first) -> str:
    """`document` as JSON text with `key` at `path` sent twice, `first` before the real value."""
    marker = "__DUPLICATE__"
    target = document
    for part in path:
        target = target[part]
    target[marker] = None
    text = json.dumps(document)
    return text.replace(f'"{marker}": null', f'"{key}": {json.dumps(first)}')


@pytest.fixture
def stored(client, tokens):
    a = tokens.header("submitter_a")
    operation = client.post("/v1/operations/", json=seed_case(), headers=a)
    follow_up = client.post(f"/v1/operations/{operation.json['id']}/follow-ups", json=seed_follow_up(), headers=a)
    return {"operation": operation, "follow_up": follow_up, "patient_id": operation.json["patient_id"]}


def single_record_cases(stored):
    operation, follow_up = stored["operation"], stored["follow_up"]
    return {
        "patient": ("POST", "/v1/patients/", {"ref": "P-9", "diagnosis": "aro"}, [], "diagnosis", "iro"),
        "operation": ("POST", "/v1/operations/", seed_case() | {"local_ref": "OP-9"}, [], "local_ref", "OP-8"),
        "nested event": ("POST", "/v1/operations/", seed_case() | {"local_ref": "OP-9"}, ["intraop_events", 0],
                         "type", "dural_tear"),
        "inline patient": ("POST", "/v1/operations/", seed_case() | {"local_ref": "OP-9"}, ["patient"], "ref", "X"),
        "follow-up": ("POST", f"/v1/operations/{operation.json['id']}/follow-ups",
                      seed_follow_up() | {"local_ref": "FU-9"}, [], "joa", 1),
        "patient PUT": ("PUT", f"/v1/patients/{stored['patient_id']}", {"diagnosis": "aro"}, [], "diagnosis", "iro"),
        "operation PATCH": ("PATCH", f"/v1/operations/{operation.json['id']}", {"blood_loss_ml": 5}, [],
                            "blood_loss_ml", 6),
        "follow-up PUT": ("PUT", f"/v1/follow-ups/{follow_up.json['id']}", seed_follow_up(), [], "months_after", 3),
    }


CASES = ["patient", "operation", "nested event", "inline patient", "follow-up", "patient PUT", "operation PATCH",
         "follow-up PUT"]


def etag_of(client, url, headers):
    return client.get(url, headers=headers).headers["ETag"]


@pytest.mark.parametrize("case", CASES)
def test_a_duplicated_key_in_a_record_is_a_422_pointing_at_it(client, tokens, db, stored, case):
    a = tokens.header("submitter_a")
    method, url, body, path, key, first = single_record_cases(stored)[case]
    headers = {**a, "If-Match": etag_of(client, url, a)} if method in ("PUT", "PATCH") else a
    before = counts(db) | {"audit": count(db, "audit_events")}
    response = send(client, method, url, with_duplicate(body, path, key, first), headers)
    field = ".".join(map(str, path + [key]))
    assert_refused_naming(response, field, "/" + field.replace(".", "/"))
    assert response.json["type"].endswith("/invalid-input")
    assert counts(db) | {"audit": count(db, "audit_events")} == before


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("sign", ["", "-"])
def test_a_number_too_long_to_read_is_a_422_naming_its_field(client, tokens, db, stored, case, sign):
    a = tokens.header("submitter_a")
    method, url, body, path, key, _ = single_record_cases(stored)[case]
    headers = {**a, "If-Match": etag_of(client, url, a)} if method in ("PUT", "PATCH") else a
    target = body
    for part in path:
        target = target[part]
    target[key] = "__HUGE__"
    response = send(client, method, url, json.dumps(body).replace('"__HUGE__"', sign + HUGE), headers)
    field = ".".join(map(str, path + [key]))
    assert_refused_naming(response, field, "/" + field.replace(".", "/"))


@pytest.mark.parametrize("endpoint", RECORD_ENDPOINTS, ids=" ".join)
def test_every_record_endpoint_refuses_duplicated_keys_and_long_numbers(client, tokens, endpoint):
    """Checked for every one-record JSON body, before its view: an endpoint added later is covered."""
    method, path = endpoint
    url = "/".join("1" if part.startswith("{") else part for part in path.split("/"))  # refused before the id
    for text, field in (('{"code": "A", "code": "B"}', "code"), ('{"x": {"count": ' + HUGE + '}}', "x.count")):
        response = client.open(url, method=method, data=text,
                               headers={**tokens.header("submitter_a"), "Content-Type": JSON})
        assert_refused_naming(response, field, "/" + field.replace(".", "/"))


def test_a_key_with_a_slash_or_tilde_is_pointed_at_as_rfc_6901_says(client, tokens):
    response = send(client, "POST", "/v1/patients/", '{"ref": "P", "diagnosis": "aro", "a/b~c": 1, "a/b~c": 2}',
                    tokens.header("submitter_a"))
    assert_refused_naming(response, "a/b~c", "/a~1b~0c")


@pytest.mark.parametrize("text", ['{"ref": ' + HUGE + ', "diagnosis": ', '[' + HUGE + ']]', HUGE + " x"])
def test_broken_json_with_a_long_number_is_a_400_not_a_500(client, tokens, text):
    response = send(client, "POST", "/v1/patients/", text, tokens.header("submitter_a"))
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"


def test_a_sound_body_is_still_read_as_before(client, tokens):
    response = send(client, "POST", "/v1/patients/", ' \n{"ref": "P-1", "diagnosis": "aro", "birth_year": 1970}\n',
                    tokens.header("submitter_a"))
    assert response.status_code == 201, response.json


# --- bulk submissions: the element's own error ---------------------------------------------------

def batch_text(*elements: str) -> str:
    return "[" + ", ".join(elements) + "]"


@pytest.mark.parametrize("mode", ["partial", "atomic"])
def test_a_duplicated_key_rejects_its_element_of_a_batch(client, tokens, db, mode):
    spoiled = with_duplicate(document(2), ["patient"], "ref", "P-other")
    text = batch_text(json.dumps(document(1)), spoiled, json.dumps(document(3)))
    response = send(client, "POST", f"/v1/submissions/?mode={mode}", text, tokens.header("submitter_a"))
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    report = response.json
    assert report["records"][1]["outcome"] == "rejected"
    errors = report["records"][1]["errors"]
    assert ("patient.ref", "/patient/ref") in {(error["field"], error["pointer"]) for error in errors}
    if mode == "partial":
        assert (report["status"], report["created"]) == ("partially_accepted", 2)
        assert count(db, "operations") == 2
    else:
        assert (report["status"], report["created"]) == ("rejected", 0)
        assert count(db, "operations") == 0


@pytest.mark.parametrize("field", ["duration_min", "preop_scores.joa", "follow_ups.0.months_after"])
def test_a_number_too_long_to_read_rejects_its_element_of_a_batch(client, tokens, db, field):
    spoiled = document(2, preop_scores={"joa": 10})
    target = spoiled
    parts = [int(part) if part.isdigit() else part for part in field.split(".")]
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = "__HUGE__"
    text = batch_text(json.dumps(document(1)), json.dumps(spoiled).replace('"__HUGE__"', HUGE),
                      json.dumps(document(3)))
    response = send(client, "POST", "/v1/submissions/", text, tokens.header("submitter_a"))
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    report = response.json
    assert (report["created"], report["rejected"]) == (2, 1)
    assert field in {error["field"] for error in report["records"][1]["errors"]}
    assert count(db, "operations") == 2


@pytest.mark.parametrize("column", ["patient.birth_year", "duration_min", "follow_ups.0.joa"])
def test_a_number_too_long_to_read_in_a_csv_cell_rejects_its_row(client, tokens, db, column):
    rows = [csv_row(1), csv_row(2, **{column: HUGE}), csv_row(3)]
    response = client.post("/v1/submissions/", data=csv_body(rows, CSV_HEADER),
                           headers={**tokens.header("submitter_a"), "Content-Type": "text/csv"})
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    report = response.json
    assert (report["created"], report["rejected"]) == (2, 1)
    assert column in {error.get("column") for error in report["records"][1]["errors"]}
