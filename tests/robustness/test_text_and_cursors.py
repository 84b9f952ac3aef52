"""Text PostgreSQL cannot store, tampered cursors and look-alike refs: field errors, never 500s.

- NUL and lone surrogates (`\\ud800`) in any text, wherever it comes in (a record, one element of
  a batch, a CSV cell, a key, a query string, a header), are the error of their own field and
  row; the other records of a partial submission are stored.
- A cursor is the client's to send back, so an edited one is a 422 naming `cursor` on every list.
- A patient ref and a local_ref have one identity whatever Unicode spelling they arrive in
  (NFKC), and invisible or control characters in them are refused.
"""

import base64
import json
import unicodedata
from pathlib import Path

import pytest
import yaml

from tests.records.helpers import count, seed_case, seed_follow_up
from tests.submissions.helpers import csv_body, csv_row, document

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
JSON = "application/json"

NUL, SURROGATE, LOW_SURROGATE = "\x00", "\ud800", "\udfff"
UNSTORABLE = [NUL, SURROGATE, LOW_SURROGATE]


def post_raw(client, url, body, headers):
    """POST `body` as JSON with \\u escapes (json.dumps keeps lone surrogates as `\\ud800`)."""
    return client.post(url, data=json.dumps(body), headers={**headers, "Content-Type": JSON})


def assert_field_error(response, field, status=422):
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    assert field in {error["field"] for error in response.json["errors"]}, response.json


# --- text PostgreSQL cannot store ---------------------------------------------------------------

@pytest.mark.parametrize("bad", UNSTORABLE, ids=["nul", "high-surrogate", "low-surrogate"])
@pytest.mark.parametrize("url, field, body", [
    ("/v1/operations/", "notes", lambda bad: seed_case() | {"notes": f"a{bad}b"}),
    ("/v1/operations/", "local_ref", lambda bad: seed_case() | {"local_ref": f"OP{bad}"}),
    ("/v1/operations/", "patient.ref", lambda bad: seed_case() | {"patient": seed_case()["patient"] | {"ref": f"P{bad}"}}),
    ("/v1/patients/", "ref", lambda bad: {"ref": f"P{bad}", "diagnosis": "aro"}),
    ("/v1/patients/", "diagnosis_note", lambda bad: {"ref": "P-1", "diagnosis": "aro", "diagnosis_note": bad}),
], ids=["notes", "local_ref", "patient.ref", "ref", "diagnosis_note"])
def test_unstorable_text_in_a_record_is_a_field_error(client, tokens, db, bad, url, field, body):
    response = post_raw(client, url, body(bad), tokens.header("submitter_a"))
    assert_field_error(response, field)
    assert count(db, "patients") == 0


@pytest.mark.parametrize("bad", UNSTORABLE, ids=["nul", "high-surrogate", "low-surrogate"])
def test_unstorable_text_in_a_follow_up_is_a_field_error(client, tokens, bad):
    a = tokens.header("submitter_a")
    operation = client.post("/v1/operations/", json=seed_case(), headers=a).json
    response = post_raw(client, f"/v1/operations/{operation['id']}/follow-ups",
                        seed_follow_up() | {"local_ref": f"FU{bad}", "notes": bad}, a)
    assert_field_error(response, "local_ref")
    assert_field_error(response, "notes")


@pytest.mark.parametrize("bad", UNSTORABLE, ids=["nul", "high-surrogate", "low-surrogate"])
@pytest.mark.parametrize("where", ["local_ref", "notes", "patient.ref", "key"])
def test_unstorable_text_in_one_element_of_a_partial_batch_rejects_that_element_only(client, tokens, db, bad,
                                                                                       where):
    a = tokens.header("submitter_a")
    spoiled = document(2)
    if where == "local_ref":
        spoiled["local_ref"] = f"OP-2{bad}"
    elif where == "notes":
        spoiled["notes"] = f"note {bad}"
    elif where == "patient.ref":
        spoiled["patient"]["ref"] = f"P-2{bad}"
    else:
        spoiled[f"surgeon{bad}"] = "Dr X"
    response = post_raw(client, "/v1/submissions/", [document(1), spoiled, document(3)], a)
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    report = response.json
    assert (report["status"], report["created"], report["rejected"]) == ("partially_accepted", 2, 1)
    rejected = report["records"][1]
    assert rejected["outcome"] == "rejected"
    expected = f"surgeon{bad}" if where == "key" else where
    # what is stored and shown of the sender's text has the unstorable character replaced
    assert expected.replace(bad, "\ufffd") in {error["field"] for error in rejected["errors"]}
    assert count(db, "operations") == 2
    listed = client.get(f"/v1/submissions/{report['id']}/records", query_string={"outcome": "rejected"},
                        headers=a).json["items"]
    assert [item["index"] for item in listed] == [1]


@pytest.mark.parametrize("column", ["local_ref", "patient.ref", "intraop_events.0.instrument", "levels.from"])
def test_a_nul_in_a_csv_cell_rejects_that_row_only(client, tokens, db, column):
    rows = [csv_row(1), csv_row(2), csv_row(3)]
    rows[1][column] = rows[1][column] + NUL
    response = client.post("/v1/submissions/", data=csv_body(rows),
                           headers={**tokens.header("submitter_a"), "Content-Type": "text/csv"})
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    report = response.json
    assert (report["created"], report["rejected"]) == (2, 1)
    assert report["records"][1]["row"] == 3
    assert column in {error.get("column") for error in report["records"][1]["errors"]}
    assert count(db, "operations") == 2


@pytest.mark.parametrize("url, parameter", [("/v1/operations/", "local_ref"), ("/v1/patients/", "ref"),
                                            ("/v1/submissions/{id}/records", "local_ref")])
def test_a_nul_in_a_query_string_filter_is_a_field_error(client, tokens, url, parameter):
    a = tokens.header("submitter_a")
    submission = client.post("/v1/submissions/", json=[document(1)], headers=a).json
    response = client.get(url.format(id=submission["id"]) + f"?{parameter}=OP%00", headers=a)
    assert_field_error(response, parameter)
    assert response.json["errors"][0]["location"] == "query"


@pytest.mark.parametrize("key", ["key\x00", "key\ud800", "caf\xe9\x80"], ids=["nul", "surrogate", "latin-1"])
def test_an_idempotency_key_that_is_not_printable_text_is_a_field_error(client, tokens, key):
    """Header values reach the app as latin-1 text, or (test client) as given: never a 500."""
    response = client.post("/v1/patients/", json={"ref": "P-1", "diagnosis": "aro"},
                           environ_overrides={"HTTP_IDEMPOTENCY_KEY": key}, headers=tokens.header("submitter_a"))
    assert_field_error(response, "Idempotency-Key")


# --- tampered cursors ---------------------------------------------------------------------------

LISTS = sorted(path for path, item in SPEC["paths"].items()
               if any(parameter.get("name") == "cursor" for parameter in item.get("get", {}).get("parameters", [])))


def cursor_of(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


TAMPERED = {"string": cursor_of(["x"]), "huge number": cursor_of([10**30]), "boolean": cursor_of([True]),
            "object": cursor_of([{}]), "negative": cursor_of([-1]), "float": cursor_of([1.5]),
            "null": cursor_of([None]), "list": cursor_of([[1]]), "two keys": cursor_of([1, 2]),
            "no key": cursor_of([]), "bare object": cursor_of({"id": 1}), "bare number": cursor_of(1),
            "not base64": "!!!!", "not JSON": base64.urlsafe_b64encode(b"[1").decode(),
            "not UTF-8": base64.urlsafe_b64encode(b"\xff\xfe").decode(), "non-ASCII": "é"}


def test_every_list_is_tried():
    assert len(LISTS) >= 8, LISTS


@pytest.fixture
def listing(client, tokens):
    """GET a list as whichever test token may read it (roles may change, the lists stay)."""
    submission = client.post("/v1/submissions/", json=[document(1)], headers=tokens.header("submitter_a")).json

    def get(path: str, **query):
        url = path.format(submission_id=submission["id"], operation_id=submission["records"][0]["operation_id"])
        for name in tokens.secrets:
            response = client.get(url, query_string=query, headers=tokens.header(name))
            if response.status_code not in (401, 403, 404):
                return response
        raise AssertionError(f"no test token may read {path}")

    return get


def test_the_lists_answer_an_issued_cursor(listing):
    for path in LISTS:
        assert listing(path).status_code == 200, path
        assert listing(path, cursor=cursor_of([1])).status_code == 200, path


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("tampered", TAMPERED)
def test_a_tampered_cursor_is_a_422_naming_it(listing, path, tampered):
    response = listing(path, cursor=TAMPERED[tampered])
    assert_field_error(response, "cursor")
    assert response.json["errors"][0]["location"] == "query"


# --- look-alike refs ----------------------------------------------------------------------------

LOOK_ALIKES = {
    "NFC and NFD": (unicodedata.normalize("NFC", "Café-01"), unicodedata.normalize("NFD", "Café-01")),
    "full-width digits": ("TJH-01", "TJH-０１"),
    "full-width letters": ("TJH-01", "ＴＪＨ-01"),
    "no-break space": ("TJH 01", "TJH\u00a001"),
    "ligature": ("ﬁle-1", "file-1"),
}
INVISIBLE = {"zero-width space": "\u200b", "zero-width joiner": "\u200d", "right-to-left override": "\u202e",
             "left-to-right mark": "\u200e", "byte order mark": "\ufeff", "soft hyphen": "\u00ad",
             "line separator": "\u2028", "paragraph separator": "\u2029", "tab": "\t", "escape": "\x1b",
             "private use": "\ue000", "unassigned": "\U000e0fff", "word joiner": "\u2060"}


@pytest.mark.parametrize("pair", LOOK_ALIKES)
def test_look_alike_patient_refs_are_one_patient(client, tokens, db, pair):
    a = tokens.header("submitter_a")
    first, second = LOOK_ALIKES[pair]
    created = client.post("/v1/patients/", json={"ref": first, "diagnosis": "aro"}, headers=a)
    again = client.post("/v1/patients/", json={"ref": second, "diagnosis": "aro"}, headers=a)
    assert created.status_code == 201 and again.status_code == 200, again.json
    assert again.json["id"] == created.json["id"]
    found = client.get("/v1/patients/", query_string={"ref": second}, headers=a).json["items"]
    assert [patient["id"] for patient in found] == [created.json["id"]]
    # inline in an operation document, alone and in bulk JSON and CSV (describing the patient as
    # stored: an inline patient that differs from the stored one is refused)
    inline = {"ref": second, "diagnosis": "aro"}
    operation = client.post("/v1/operations/", json=seed_case() | {"patient": inline}, headers=a)
    assert operation.json["patient_id"] == created.json["id"]
    bulk = client.post("/v1/submissions/", json=[document(7, patient=inline)], headers=a).json
    csv_report = client.post("/v1/submissions/", data=csv_body([csv_row(8, **{
        "patient.ref": second, "patient.diagnosis": "aro", "patient.sex": "", "patient.birth_year": ""})]),
                             headers={**a, "Content-Type": "text/csv"}).json
    for report in (bulk, csv_report):
        assert report["created"] == 1, report
        stored = client.get(f"/v1/operations/{report['records'][0]['operation_id']}", headers=a).json
        assert stored["patient_id"] == created.json["id"]
    assert count(db, "patients") == 1


@pytest.mark.parametrize("pair", LOOK_ALIKES)
def test_look_alike_local_refs_are_one_operation_and_one_follow_up(client, tokens, db, pair):
    a = tokens.header("submitter_a")
    first, second = LOOK_ALIKES[pair]
    created = client.post("/v1/operations/", json=seed_case() | {"local_ref": first}, headers=a)
    again = client.post("/v1/operations/", json=seed_case() | {"local_ref": second, "blood_loss_ml": 1}, headers=a)
    assert created.status_code == 201 and again.status_code == 200, again.json
    assert again.json["id"] == created.json["id"] and again.json["local_ref"] == unicodedata.normalize("NFKC", first)
    found = client.get("/v1/operations/", query_string={"local_ref": second}, headers=a).json["items"]
    assert [operation["id"] for operation in found] == [created.json["id"]]
    replaced = client.put(f"/v1/operations/{created.json['id']}", json=seed_case() | {"local_ref": second},
                          headers={**a, "If-Match": again.headers["ETag"]})
    assert replaced.status_code == 200, replaced.json
    bulk = client.post("/v1/submissions/", json=[document(1, local_ref=second, patient=seed_case()["patient"],
                                                          follow_ups=None)], headers=a).json
    assert bulk["records"][0]["outcome"] in ("updated", "unchanged"), bulk
    assert bulk["records"][0]["local_ref"] == unicodedata.normalize("NFKC", first)
    follow_up = client.post(f"/v1/operations/{created.json['id']}/follow-ups",
                            json=seed_follow_up() | {"local_ref": "FU-" + first}, headers=a)
    follow_up_again = client.post(f"/v1/operations/{created.json['id']}/follow-ups",
                                  json=seed_follow_up() | {"local_ref": "FU-" + second}, headers=a)
    assert follow_up.status_code == 201 and follow_up_again.status_code == 200, follow_up_again.json
    assert follow_up_again.json["id"] == follow_up.json["id"]
    assert count(db, "operations") == 1 and count(db, "follow_ups") == 1


@pytest.mark.parametrize("character", INVISIBLE)
def test_invisible_and_control_characters_in_refs_are_refused(client, tokens, db, character):
    a = tokens.header("submitter_a")
    ref = f"TJH{INVISIBLE[character]}01"
    assert_field_error(client.post("/v1/patients/", json={"ref": ref, "diagnosis": "aro"}, headers=a), "ref")
    assert_field_error(client.post("/v1/operations/", json=seed_case() | {"local_ref": ref}, headers=a), "local_ref")
    assert_field_error(client.get("/v1/operations/", query_string={"local_ref": ref}, headers=a), "local_ref")
    report = client.post("/v1/submissions/", json=[document(1, local_ref=ref)], headers=a).json
    assert report["rejected"] == 1 and "local_ref" in {error["field"] for error in report["records"][0]["errors"]}
    assert count(db, "patients") == 0


def test_free_text_is_stored_verbatim_not_normalised(client, tokens):
    """Only identifiers are normalised: a note keeps the exact characters it was written with."""
    a = tokens.header("submitter_a")
    note = unicodedata.normalize("NFD", "Café ０１ \u200b")
    created = client.post("/v1/operations/", json=seed_case() | {"notes": note}, headers=a)
    assert client.get(f"/v1/operations/{created.json['id']}", headers=a).json["notes"] == note
