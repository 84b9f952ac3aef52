"""FHIR Bulk Data export of a centre's own records: kick-off (202 + Content-Location), the
manifest, and NDJSON files streamed from the database, every line valid R4; a centre's own
records only, as of the export's transactionTime; signed, expiring status URLs."""

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

import registry.fhir.bulk_export as bulk_export
import registry.fhir.reading  # noqa: F401  (attaches the read routes to /fhir before an app is made)
from registry.demo.cases import literature_cases, seed_case
from registry.fhir import mapping
from tests.fhir.test_fhir_read import MODELS, submit, variant

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def kick_off(client, tokens, who="submitter_a", path="/fhir/$export", **query) -> str:
    answer = client.get(path, query_string=query, headers={**tokens.header(who), **ASYNC})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return answer.headers["Content-Location"]


def manifest_of(client, tokens, status_url, who="submitter_a") -> dict:
    answer = client.get(local(status_url), headers=tokens.header(who))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "application/json"
    return answer.json


def download(client, tokens, url, who="submitter_a") -> tuple[bytes, list[dict]]:
    answer = client.get(local(url), headers={**tokens.header(who), "Accept": "application/fhir+ndjson"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "application/fhir+ndjson"
    body = answer.get_data()
    return body, [json.loads(line) for line in body.decode().splitlines()]


@pytest.fixture
def cases(client, tokens):
    """The seed case and the demo cases in centre A, one operation in centre B."""
    stored = [submit(client, tokens, *case) for case in [seed_case(), *literature_cases()]]
    submit(client, tokens, variant("B-ONLY", "B-PATIENT", "2020-02-02"), who="submitter_b")
    return stored


def test_the_seed_and_demo_cases_export_as_valid_ndjson_equal_to_the_reads(client, tokens, cases, monkeypatch):
    monkeypatch.setattr(bulk_export, "BATCH", 2)   # several cursor batches per file
    status_url = kick_off(client, tokens)
    manifest = manifest_of(client, tokens, status_url)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith("/fhir/$export")
    assert manifest["transactionTime"].endswith("Z")
    assert [o["type"] for o in manifest["output"]] == list(mapping.SUPPORTED_TYPES)
    exported = {}
    for output in manifest["output"]:
        body, resources = download(client, tokens, output["url"])
        assert all(r["resourceType"] == output["type"] for r in resources)
        for resource in resources:
            MODELS[resource["resourceType"]].model_validate(resource)
            exported[(resource["resourceType"], resource["id"])] = resource
        for document, _ in [seed_case(), *literature_cases()]:
            assert document["patient"]["ref"].encode() not in body
        assert b"B-ONLY" not in body and b"B-PATIENT" not in body

    # exactly the resources the reads answer for centre A's records, equal to them
    # (each operation's FHIR form: its Patient, its own resources, one Observation per follow-up)
    own_resources = 0
    for stored in cases:
        bundle = client.get(f"/v1/operations/{stored['id']}",
                            headers={**tokens.header("submitter_a"), "Accept": "application/fhir+json"}).json
        own_resources += sum(e["resource"]["resourceType"] != "Patient" for e in bundle["entry"])
    patient_ids = {str(s["patient_id"]) for s in cases}
    assert {i for t, i in exported if t == "Procedure"} == {str(s["id"]) for s in cases}
    assert {i for t, i in exported if t == "Patient"} == patient_ids
    assert len(exported) == own_resources + len(patient_ids)
    for (resource_type, resource_id), resource in exported.items():
        read = client.get(f"/fhir/{resource_type}/{resource_id}", headers=tokens.header("submitter_a"))
        assert json.loads(read.get_data()) == resource


def test_a_type_list_and_since_export_only_what_changed_and_nothing_after_transaction_time(client, tokens):
    first = submit(client, tokens, variant("OP-1", "P-1", "2020-01-01"))
    second = submit(client, tokens, variant("OP-2", "P-2", "2020-02-02"))
    earlier = manifest_of(client, tokens, kick_off(client, tokens, _type="Patient,Procedure"))
    assert [o["type"] for o in earlier["output"]] == ["Patient", "Procedure"]

    # a change and a new record after the first export's transactionTime
    etag = client.get(f"/v1/operations/{second['id']}", headers=tokens.header("submitter_a")).headers["ETag"]
    changed = client.patch(f"/v1/operations/{second['id']}", json={"blood_loss_ml": 450},
                           headers={**tokens.header("submitter_a"), "If-Match": etag})
    assert changed.status_code == 200, changed.json
    third = submit(client, tokens, variant("OP-3", "P-3", "2021-03-03"))

    # the earlier export, downloaded now, holds what was unchanged at its transactionTime
    _, procedures = download(client, tokens, earlier["output"][1]["url"])
    assert [p["id"] for p in procedures] == [str(first["id"])]
    # an export since then holds the changed and the new operation, nothing else
    since = manifest_of(client, tokens, kick_off(client, tokens, path="/fhir/Patient/$export",
                                                 _type="Procedure", _since=earlier["transactionTime"]))
    _, procedures = download(client, tokens, since["output"][0]["url"])
    assert [p["id"] for p in procedures] == [str(second["id"]), str(third["id"])]
    _, patients = download(client, tokens, manifest_of(client, tokens, kick_off(
        client, tokens, _type="Patient", _since=earlier["transactionTime"]))["output"][0]["url"])
    assert [p["id"] for p in patients] == [str(third["patient_id"])]


def test_an_export_is_reached_by_its_own_centre_only_with_a_token(client, tokens, cases):
    status_url = kick_off(client, tokens)
    file_url = manifest_of(client, tokens, status_url)["output"][0]["url"]
    for url in (status_url, file_url):
        assert client.get(local(url), headers=tokens.header("submitter_b")).status_code == 404
        assert client.get(local(url), headers=tokens.header("analyst")).status_code == 403
        assert client.get(local(url)).status_code == 401
    token = urlsplit(status_url).path.rsplit("/", 1)[1]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(f"/fhir/$export-status/{tampered}", headers=tokens.header("submitter_a")).status_code == 404
    # centre B's export holds centre B's operation only
    b_manifest = manifest_of(client, tokens, kick_off(client, tokens, who="submitter_b", _type="Procedure"),
                             who="submitter_b")
    _, procedures = download(client, tokens, b_manifest["output"][0]["url"], who="submitter_b")
    assert [p["identifier"][0]["value"] for p in procedures] == ["B-ONLY"]


def test_an_expired_export_is_gone(client, tokens, monkeypatch):
    status_url = kick_off(client, tokens)
    monkeypatch.setattr(bulk_export, "EXPORT_LIFETIME", timedelta(seconds=-1))
    answer = client.get(local(status_url), headers=tokens.header("submitter_a"))
    assert answer.status_code == 404 and b"expired" in answer.data


@pytest.mark.parametrize("headers, query, status, code", [
    ({"Accept": "application/fhir+json"}, {}, 400, "required"),         # no Prefer: respond-async
    (ASYNC, {"_type": "Patient,Encounter"}, 400, "not-supported"),
    (ASYNC, {"_since": "yesterday"}, 400, "invalid"),
    (ASYNC, {"_since": "2024-01-01T00:00:00"}, 400, "invalid"),          # an instant has a time zone
    (ASYNC, {"_outputFormat": "application/fhir+xml"}, 400, "not-supported"),
    (ASYNC, {"_typeFilter": "Procedure?date=ge2020"}, 400, "not-supported"),
])
def test_a_kick_off_the_server_cannot_honour_is_an_operation_outcome(client, tokens, headers, query, status, code):
    answer = client.get("/fhir/$export", query_string=query, headers={**tokens.header("submitter_a"), **headers})
    assert answer.status_code == status
    assert answer.mimetype == "application/fhir+json"
    assert json.loads(answer.get_data())["issue"][0]["code"] == code
