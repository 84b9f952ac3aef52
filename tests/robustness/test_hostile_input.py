"""Hostile input, each kind tried on every endpoint that takes it.

The endpoints come from openapi.yaml, so an endpoint added later is tried too (and fails
`test_every_body_endpoint_has_a_hostile_input_sample` until it is given a sample here). For each
kind of input the answer must be a 4xx problem+json (never a 500, never a stack trace, never a
driver or SQL message) and nothing may be stored: the clinical tables, the audit trail, centres
and tokens are counted before and after.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

from registry import create_app
from tests.conftest import make_settings
from tests.records.helpers import seed_case, seed_follow_up

ROOT = Path(__file__).resolve().parent.parent.parent
SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
METHODS = ("get", "post", "put", "patch", "delete")
OPERATIONS = sorted((method.upper(), path) for path, item in SPEC["paths"].items() for method in item
                    if method in METHODS)
BODY_ENDPOINTS = sorted((method.upper(), path) for path, item in SPEC["paths"].items()
                        for method, operation in item.items() if method in METHODS and "requestBody" in operation)
SECURED = [(method, path) for method, path in OPERATIONS
           if SPEC["paths"][path][method.lower()].get("security")]
# path parameters naming a record that belongs to one centre
CENTRE_OWNED = ("operation_id", "patient_id", "follow_up_id", "submission_id")

LEAKS = ("Traceback", 'File "/', "psycopg", "SQLSTATE", "syntax error", "Internal Server Error")
SQL_INJECTIONS = ("'; DROP TABLE operations; --", "1' OR '1'='1", "Robert'); DELETE FROM patients;--",
                  "\\'; SELECT pg_sleep(5); --", "%(centre_id)s", "$1 UNION SELECT token_hash FROM tokens")
CSV_INJECTIONS = ("=HYPERLINK(\"http://evil.example/\",\"click\")", "+1+cmd|' /C calc'!A0", "-2+3",
                  "@SUM(1+1)*cmd|' /C calc'!A0", "\t=1+1", "\r=1+1")
TRAVERSALS = ("../../../../etc/passwd", "..\\..\\windows\\win.ini", "%2e%2e%2f%2e%2e%2fetc", "/v1/centres/1",
              "....//....//")


@dataclass
class Sample:
    """A valid request body for an endpoint, and where to plant hostile values in it."""

    role: str
    body: Callable[[], object]
    text: str                       # dotted path of a free-text field
    array: str | None = None        # dotted path of a list field, if the body has one
    query: str = ""


def _operation(**changes):
    return seed_case() | changes


SAMPLES = {
    ("POST", "/v1/centres/"): Sample("operator", lambda: {"code": "HOSTILE", "name": "Hostile centre"}, "name"),
    ("POST", "/v1/tokens/"): Sample("operator", lambda: {"centre_id": 1, "role": "analyst", "label": "l"}, "label"),
    ("POST", "/v1/tokens/{token_id}/rotate"): Sample("operator", lambda: {"grace_hours": 1, "label": "l"}, "label"),
    ("POST", "/v1/patients/"): Sample("submitter_a", lambda: {"ref": "HOSTILE-P", "diagnosis": "aro"},
                                      "diagnosis_note", "genes"),
    ("PUT", "/v1/patients/{patient_id}"): Sample("submitter_a", lambda: {"diagnosis": "aro"}, "diagnosis_note",
                                                 "genes"),
    ("PATCH", "/v1/patients/{patient_id}"): Sample("submitter_a", lambda: {"sex": "female"}, "diagnosis_note",
                                                   "genes"),
    ("POST", "/v1/operations/"): Sample("submitter_a", lambda: _operation(local_ref="HOSTILE-OP"), "notes",
                                        "intraop_events"),
    ("PUT", "/v1/operations/{operation_id}"): Sample("submitter_a", lambda: _operation(blood_loss_ml=1), "notes",
                                                     "intraop_events"),
    ("PATCH", "/v1/operations/{operation_id}"): Sample("submitter_a", lambda: {"blood_loss_ml": 1}, "notes",
                                                       "intraop_events"),
    ("POST", "/v1/operations/{operation_id}/follow-ups"): Sample(
        "submitter_a", lambda: seed_follow_up() | {"local_ref": "HOSTILE-FU"}, "notes"),
    ("PUT", "/v1/follow-ups/{follow_up_id}"): Sample(
        "submitter_a", lambda: seed_follow_up() | {"scores": [{"instrument": "joa", "version": "17-point", "value": 15}]},
        "notes"),
    ("PATCH", "/v1/follow-ups/{follow_up_id}"): Sample("submitter_a", lambda: {"joa": 15}, "notes"),
    ("POST", "/v1/patients/lift-erasure"): Sample("submitter_a", lambda: {"ref": "HOSTILE-ERASED"}, "ref"),
    ("POST", "/v1/submissions/"): Sample("submitter_a", lambda: [_operation(local_ref="HOSTILE-BULK")], "0.notes",
                                         "0.intraop_events", query="?mode=atomic"),
}
WITH_ARRAYS = [endpoint for endpoint in BODY_ENDPOINTS if endpoint in SAMPLES and SAMPLES[endpoint].array]


def planted(body, dotted: str, value):
    """A copy of `body` with `value` at the dotted path."""
    body = json.loads(json.dumps(body))
    *parents, last = dotted.split(".")
    target = body
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return body


@pytest.fixture
def world(client, tokens):
    """One record of each kind in centre A; the ids the endpoints' paths need."""
    a = tokens.header("submitter_a")
    operation = client.post("/v1/operations/", json=seed_case(), headers=a).json
    follow_up = client.post(f"/v1/operations/{operation['id']}/follow-ups", json=seed_follow_up(), headers=a).json
    submission = client.post("/v1/submissions/", json=[_operation(local_ref="BULK-1")], headers=a).json
    erased = client.post("/v1/patients/", json={"ref": "HOSTILE-ERASED", "diagnosis": "aro"}, headers=a).json
    assert client.delete(f"/v1/patients/{erased['id']}", headers=a).status_code == 204  # lift-erasure's ref
    return {"operation_id": operation["id"], "patient_id": operation["patient_id"], "follow_up_id": follow_up["id"],
            "submission_id": submission["id"], "centre_id": tokens.centre_a["id"], "token_id": tokens.id("analyst")}


def snapshot(db) -> dict:
    """What a rejected request must not change."""
    counts = {table: db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]
              for table in ("centres", "tokens", "patients", "operations", "implants", "intraop_events",
                            "postop_complications", "follow_ups")}
    counts["versions"] = db.execute(
        "SELECT coalesce(sum(version), 0) AS n FROM (SELECT version FROM operations UNION ALL"
        " SELECT version FROM patients UNION ALL SELECT version FROM follow_ups) v").fetchone()["n"]
    counts["audit"] = db.execute("SELECT count(*) AS n FROM audit_events WHERE entity <> 'submission'").fetchone()["n"]
    counts["revoked"] = db.execute("SELECT count(*) AS n FROM tokens WHERE revoked_at IS NOT NULL").fetchone()["n"]
    return counts


def assert_refused(response, *statuses):
    """A problem+json refusal with one of `statuses`, leaking nothing."""
    assert response.status_code in statuses, f"{response.status_code}: {response.get_data(as_text=True)[:500]}"
    assert response.mimetype == "application/problem+json"
    text = response.get_data(as_text=True)
    for leak in LEAKS:
        assert leak not in text, f"the answer shows {leak!r}: {text[:500]}"


def assert_rejected_or_refused(endpoint, response, *statuses):
    """Refused outright, or — bulk submissions answer per record — every record rejected."""
    if endpoint == ("POST", "/v1/submissions/") and response.status_code == 201:
        assert response.json["status"] == "rejected" and response.json["created"] == 0, response.json
        return
    assert_refused(response, *statuses)


class Caller:
    """Sends a raw body to an endpoint with the right token, path ids and If-Match."""

    def __init__(self, client, tokens, world):
        self.client, self.tokens, self.world = client, tokens, world

    def url(self, path: str) -> str:
        return path.format(**self.world)

    def send(self, endpoint, data: bytes, content_type="application/json", headers=None, client=None):
        method, path = endpoint
        sample = SAMPLES[endpoint]
        sent = {**self.tokens.header(sample.role), "Content-Type": content_type, **(headers or {})}
        if method in ("PUT", "PATCH"):
            sent["If-Match"] = (client or self.client).get(self.url(path), headers=self.tokens.header(sample.role)
                                                           ).headers["ETag"]
        return (client or self.client).open(self.url(path) + sample.query, method=method, data=data, headers=sent)

    def send_json(self, endpoint, body, **kwargs):
        return self.send(endpoint, json.dumps(body).encode(), **kwargs)


@pytest.fixture
def caller(client, tokens, world):
    return Caller(client, tokens, world)


def test_every_body_endpoint_has_a_hostile_input_sample():
    missing = [endpoint for endpoint in BODY_ENDPOINTS if endpoint not in SAMPLES]
    assert not missing, f"add a Sample for {missing} to tests/robustness/test_hostile_input.py"


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_the_valid_sample_is_accepted(caller, endpoint):
    """The baseline: without the hostile part, each sample body succeeds (so refusals below are earned)."""
    response = caller.send_json(endpoint, SAMPLES[endpoint].body())
    assert 200 <= response.status_code < 300, response.get_data(as_text=True)[:500]


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
@pytest.mark.parametrize("raw", [b'{"local_ref": ', b"{'single': 'quotes'}", b'{"a": 1,}', b"\xff\xfe{\x00}",
                                 b'{"notes": "\xc3\x28"}', b'{"notes": "\xed\xa0\x80"}', b"NaN", b"\x00\x00\x00"])
def test_malformed_json_or_invalid_utf8_is_refused(caller, db, endpoint, raw):
    before = snapshot(db)
    assert_refused(caller.send(endpoint, raw), 400, 422)  # bulk submissions read a stream: 422
    assert snapshot(db) == before


# every JSON type but the one the endpoint takes (an empty body of the right type is a missing-fields
# case, which the record tests cover)
WRONG_BODIES = [(endpoint, body) for endpoint in BODY_ENDPOINTS for body in ([], {}, "text", 42, 4.2, True, None)
                if type(body) is not type(SAMPLES[endpoint].body())]


@pytest.mark.parametrize("endpoint, body", WRONG_BODIES, ids=[f"{e}-{b!r}" for e, b in WRONG_BODIES])
def test_a_body_of_the_wrong_type_is_refused(caller, db, endpoint, body):
    before = snapshot(db)
    assert_rejected_or_refused(endpoint, caller.send_json(endpoint, body), 400, 422)
    assert snapshot(db) == before


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
@pytest.mark.parametrize("wrong", [12345, 1.5, True, ["list"], {"an": "object"}], ids=repr)
def test_a_field_of_the_wrong_type_is_422_naming_it(caller, db, endpoint, wrong):
    sample = SAMPLES[endpoint]
    before = snapshot(db)
    response = caller.send_json(endpoint, planted(sample.body(), sample.text, wrong))
    assert_rejected_or_refused(endpoint, response, 422)
    errors = response.json.get("errors") or response.json["records"][0]["errors"]
    assert sample.text.split(".")[-1] in {error["field"].split(".")[-1] for error in errors}
    assert snapshot(db) == before


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_unknown_fields_are_422_naming_them(caller, db, endpoint):
    sample = SAMPLES[endpoint]
    body = sample.body()
    if isinstance(body, list):
        body[0]["is_admin"] = True
    else:
        body["is_admin"] = True
    before = snapshot(db)
    response = caller.send_json(endpoint, body)
    assert_rejected_or_refused(endpoint, response, 422)
    errors = response.json.get("errors") or response.json["records"][0]["errors"]
    assert "is_admin" in {error["field"] for error in errors}
    assert snapshot(db) == before


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_an_enormous_string_is_refused(caller, db, endpoint):
    """Over the field's length (422), or over MAX_RECORD_BYTES for one record (413) first."""
    sample = SAMPLES[endpoint]
    before = snapshot(db)
    assert_rejected_or_refused(endpoint, caller.send_json(endpoint, planted(sample.body(), sample.text, "x" * 2_000_000)),
                               422, 413)
    assert snapshot(db) == before


@pytest.mark.parametrize("endpoint", WITH_ARRAYS)
def test_an_enormous_array_is_refused(caller, db, endpoint):
    """Over the list's size (422), or over MAX_RECORD_BYTES for one record (413) first."""
    sample = SAMPLES[endpoint]
    item = {"type": "dural_tear"} if sample.array.endswith("intraop_events") else "CLCN7"
    before = snapshot(db)
    assert_rejected_or_refused(endpoint, caller.send_json(endpoint, planted(sample.body(), sample.array,
                                                                            [item] * 200_000)), 422, 413)
    assert snapshot(db) == before


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
@pytest.mark.parametrize("depth", [200, 100_000])
def test_deep_nesting_is_refused(caller, db, endpoint, depth):
    sample = SAMPLES[endpoint]
    marker = "__DEEP__"
    text = json.dumps(planted(sample.body(), sample.text, marker))
    for opening, closing in (("[", "]"), ('{"a":', "}")):
        nested = opening * depth + "1" + closing * depth
        before = snapshot(db)
        response = caller.send(endpoint, text.replace(json.dumps(marker), nested).encode())
        assert_rejected_or_refused(endpoint, response, 400, 422)
        assert snapshot(db) == before


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
@pytest.mark.parametrize("value", ["before\x00after", "\x00", "bell\x07", "escape\x1b[31m"], ids=repr)
def test_nul_and_control_characters_are_422(caller, db, endpoint, value):
    sample = SAMPLES[endpoint]
    before = snapshot(db)
    assert_rejected_or_refused(endpoint, caller.send_json(endpoint, planted(sample.body(), sample.text, value)), 422)
    assert snapshot(db) == before


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS)
def test_an_oversized_body_is_413(database_url, tokens, world, db, endpoint):
    limited = create_app(make_settings(max_content_length=64 * 1024), database_url)
    try:
        caller = Caller(limited.test_client(), tokens, world)
        sample = SAMPLES[endpoint]
        before = snapshot(db)
        body = json.dumps(planted(sample.body(), sample.text, "x" * 100_000)).encode()
        assert_refused(caller.send(endpoint, body), 413)
        assert snapshot(db) == before
    finally:
        limited.extensions["database"].close()


def test_an_oversized_chunked_body_is_413_under_gunicorn(gunicorn_url, tokens, db):
    """Without Content-Length (chunked), the limit holds while reading, under the real server."""
    import requests

    before = snapshot(db)

    def chunks():
        yield b'{"local_ref": "CHUNKED", "notes": "'
        for _ in range(70):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    response = requests.post(gunicorn_url + "/v1/operations/", data=chunks(), timeout=60,
                             headers={**tokens.header("submitter_a"), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert snapshot(db) == before


# --- stored verbatim, never executed ------------------------------------------------------------

STORING = ("operation local_ref and notes", "follow-up local_ref and notes", "patient ref and note", "centre name",
           "token label", "bulk operation local_ref and notes")


def store_and_read_back(client, tokens, world, what: str, payload: str) -> list[str]:
    """Store `payload` through one endpoint; return the values the registry gives back."""
    a, admin = tokens.header("submitter_a"), tokens.header("operator")
    if what == "operation local_ref and notes":
        created = client.post("/v1/operations/", json=_operation(local_ref=payload, notes=payload), headers=a)
        assert created.status_code == 201, created.json
        found = client.get("/v1/operations/", query_string={"local_ref": payload}, headers=a).json["items"]
        assert [item["id"] for item in found] == [created.json["id"]]
        read = client.get(f"/v1/operations/{created.json['id']}", headers=a).json
        return [read["local_ref"], read["notes"]]
    if what == "follow-up local_ref and notes":
        created = client.post(f"/v1/operations/{world['operation_id']}/follow-ups",
                              json=seed_follow_up() | {"local_ref": payload, "notes": payload}, headers=a)
        assert created.status_code == 201, created.json
        read = client.get(f"/v1/follow-ups/{created.json['id']}", headers=a).json
        return [read["local_ref"], read["notes"]]
    if what == "patient ref and note":
        created = client.post("/v1/patients/", json={"ref": payload, "diagnosis": "aro", "diagnosis_note": payload},
                              headers=a)
        assert created.status_code == 201, created.json
        assert created.json["ref"] == payload
        found = client.get("/v1/patients/", query_string={"ref": payload}, headers=a).json["items"]
        assert [item["id"] for item in found] == [created.json["id"]]
        return [client.get(f"/v1/patients/{created.json['id']}", headers=a).json["diagnosis_note"]]
    if what == "centre name":
        created = client.post("/v1/centres/", json={"code": "INJECTED", "name": payload}, headers=admin)
        assert created.status_code == 201, created.json
        return [client.get(f"/v1/centres/{created.json['id']}", headers=admin).json["name"]]
    if what == "token label":
        created = client.post("/v1/tokens/", json={"centre_id": 1, "role": "analyst", "label": payload}, headers=admin)
        assert created.status_code == 201, created.json
        listed = client.get("/v1/tokens/", query_string={"limit": 1000}, headers=admin).json["items"]
        return [token["label"] for token in listed if token["id"] == created.json["id"]]
    submitted = client.post("/v1/submissions/", json=[_operation(local_ref=payload, notes=payload)], headers=a)
    assert submitted.status_code == 201 and submitted.json["created"] == 1, submitted.json
    read = client.get("/v1/operations/", query_string={"local_ref": payload}, headers=a).json["items"]
    return [read[0]["local_ref"], read[0]["notes"]]


@pytest.mark.parametrize("what", STORING)
@pytest.mark.parametrize("payload", SQL_INJECTIONS + CSV_INJECTIONS + TRAVERSALS)
def test_injection_and_traversal_strings_are_stored_verbatim_and_never_executed(client, tokens, world, db, what,
                                                                                 payload):
    if "ref" in what:
        payload = payload.strip()  # refs refuse leading and trailing whitespace (a separate rule)
    before = snapshot(db)
    values = store_and_read_back(client, tokens, world, what, payload)
    assert values and all(value == payload for value in values)
    # every table is still there and nothing was deleted
    after = snapshot(db)
    assert all(after[name] >= before[name] for name in before)


def test_exported_report_csv_cells_are_neutralised(client, tokens, db):
    """Free text with formulas is stored, and no CSV report cell starts a spreadsheet formula."""
    a = tokens.header("submitter_a")
    for number, payload in enumerate(CSV_INJECTIONS):
        stored = client.post("/v1/operations/", json=_operation(local_ref=f"CSV-{number}", notes=payload,
                                                                indication_note=payload), headers=a)
        assert stored.status_code == 201
    import csv
    import io

    for report in ("complications", "fusion", "outcomes", "completeness", "centres"):
        response = client.get(f"/v1/reports/{report}", query_string={"format": "csv", "group_by": "centre"}
                              if report != "centres" else {"format": "csv"}, headers=a)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert response.mimetype == "text/csv"
        for row in csv.reader(io.StringIO(response.get_data(as_text=True))):
            for cell in row:
                numeric = cell.lstrip("-").replace(".", "", 1).replace("e-", "").replace("e+", "").isdigit()
                assert numeric or not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


# --- paths, tokens and centres ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/operations/..%2F..%2Fcentres%2F", "/v1/operations/1/../../centres/",
                                  "/v1/operations/%2e%2e/%2e%2e/tokens/", "/v1/patients/-1", "/v1/follow-ups/1.5",
                                  "/v1/operations/99999999999999999999999999", "/v1/operations/0x10",
                                  "/v1/operations/1%00", "/v1/operations/%00", "/v1/follow-ups/1;DROP TABLE x",
                                  "/v1/submissions/..%5C..%5C", "/v1/operations/1/follow-ups/../../../tokens/"])
def test_path_traversal_and_odd_ids_are_404(client, tokens, world, db, path):
    before = snapshot(db)
    for method in METHODS:
        response = client.open(path, method=method.upper(), json={}, headers=tokens.header("submitter_a"))
        assert_refused(response, 404, 405, 422)  # 422: a body validated before the id is looked up
    assert snapshot(db) == before


FORGED = {
    "no header": {},
    "empty bearer": {"Authorization": "Bearer "},
    "bare word": {"Authorization": "Bearer"},
    "basic auth": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    "unknown token": {"Authorization": "Bearer reg_" + "A" * 43},
    "token hash as token": {"Authorization": "Bearer " + "00" * 32},
    "sql in token": {"Authorization": "Bearer ' OR 1=1 --"},
    "huge token": {"Authorization": "Bearer " + "x" * 20_000},
    "two tokens": {"Authorization": "Bearer a, Bearer b"},
}


def ids_for(path: str, world: dict) -> str:
    return path.format(**world)


@pytest.mark.parametrize("endpoint", SECURED, ids=" ".join)
def test_forged_and_revoked_tokens_are_401_everywhere(client, tokens, world, db, endpoint):
    method, path = endpoint
    admin = tokens.header("operator")
    revoked_id, revoked = tokens.secrets["submitter_b"]
    assert client.delete(f"/v1/tokens/{revoked_id}", headers=admin).status_code == 200
    before = snapshot(db)
    for name, headers in {**FORGED, "revoked": {"Authorization": f"Bearer {revoked}"}}.items():
        response = client.open(ids_for(path, world), method=method, json={}, headers=headers)
        assert_refused(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name
    assert snapshot(db) == before


@pytest.mark.parametrize("endpoint", [endpoint for endpoint in OPERATIONS
                                      if any("{" + name + "}" in endpoint[1] for name in CENTRE_OWNED)], ids=" ".join)
def test_another_centres_ids_are_404_and_untouched(client, tokens, world, db, endpoint):
    """Centre B's submitter on centre A's records: 404 (not 403, which would confirm they exist)."""
    method, path = endpoint
    body = SAMPLES[endpoint].body() if endpoint in SAMPLES else None
    before = snapshot(db)
    response = client.open(ids_for(path, world), method=method, json=body,
                           headers={**tokens.header("submitter_b"), "If-Match": "*"})
    assert_refused(response, 404)
    assert snapshot(db) == before


def test_another_centres_patient_cannot_be_borrowed_by_id(client, tokens, world, db):
    borrowing = _operation(local_ref="BORROWED", patient_id=world["patient_id"])
    del borrowing["patient"]
    before = snapshot(db)
    response = client.post("/v1/operations/", json=borrowing, headers=tokens.header("submitter_b"))
    assert_refused(response, 422)
    assert snapshot(db) == before


def test_another_centres_records_stay_out_of_lists_and_filters(client, tokens, world):
    b = tokens.header("submitter_b")
    assert client.get("/v1/operations/", headers=b).json["items"] == []
    assert client.get("/v1/patients/", query_string={"ref": "TJH-P-0001"}, headers=b).json["items"] == []
    assert client.get("/v1/operations/", query_string={"patient_id": world["patient_id"]}, headers=b).json["items"] == []
    assert client.get("/v1/submissions/", headers=b).json["items"] == []
    own = client.get("/v1/audit/", query_string={"centre_id": world["centre_id"], "limit": 1000}, headers=b).json
    assert {event["centre_id"] for event in own["items"]} <= {tokens.centre_b["id"]}
