"""Reading a centre's records on /fhir: every resource the mapping emits, read by id and valid R4;
searches by identifier, patient, date (with prefixes) and last update, paged by `next` links; a
centre reaches its own records only, analysts none, and the patient's ref never appears."""

import copy
import json
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from fhir.resources.R4B.adverseevent import AdverseEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.procedure import Procedure

import registry.fhir.reading  # noqa: F401  (attaches the read routes to /fhir before an app is made)
from registry.demo.cases import seed_case
from registry.fhir import mapping

FHIR_JSON = "application/fhir+json"
MODELS = {"Patient": Patient, "Procedure": Procedure, "Condition": Condition, "Device": Device,
          "AdverseEvent": AdverseEvent, "Observation": Observation, "Bundle": Bundle,
          "OperationOutcome": OperationOutcome}
SEED_REF = seed_case()[0]["patient"]["ref"]
# digits str.isdigit() takes and int() reads (or not): no FHIR id is written with them
ARABIC_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def fhir(response, status=200, resource_type=None) -> dict:
    """The body of a FHIR answer, after checking status, content type and R4 validity."""
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    assert response.mimetype == FHIR_JSON
    body = json.loads(response.get_data())
    if resource_type:
        assert body["resourceType"] == resource_type
    MODELS[body["resourceType"]].model_validate(body)
    for entry in body.get("entry", []):
        MODELS[entry["resource"]["resourceType"]].model_validate(entry["resource"])
    return body


def outcome(response, status: int, code: str) -> dict:
    body = fhir(response, status, "OperationOutcome")
    assert body["issue"][0]["code"] == code
    return body


def submit(client, tokens, document, follow_ups=(), who="submitter_a") -> int:
    answer = client.post("/v1/operations/", json=document, headers=tokens.header(who))
    assert answer.status_code == 201, answer.json
    for follow_up in follow_ups:
        added = client.post(f"/v1/operations/{answer.json['id']}/follow-ups", json=follow_up,
                            headers=tokens.header(who))
        assert added.status_code == 201, added.json
    return answer.json


def variant(local_ref: str, patient_ref: str, operation_date: str) -> dict:
    document = copy.deepcopy(seed_case()[0])
    document.update(local_ref=local_ref, operation_date=operation_date, date_precision="day")
    document["patient"]["ref"] = patient_ref
    return document


@pytest.fixture
def seed(client, tokens):
    operation, follow_ups = seed_case()
    return submit(client, tokens, operation, follow_ups)


def test_every_resource_of_the_seed_case_is_read_by_id_and_valid_r4(client, tokens, seed, db):
    headers = tokens.header("submitter_a")
    procedure = fhir(client.get(f"/fhir/Procedure/{seed['id']}", headers=headers), 200, "Procedure")
    assert procedure["id"] == str(seed["id"])
    assert procedure["identifier"] == [{"system": mapping.OPERATION_IDENTIFIER, "value": "TJH-2016-146"}]
    assert procedure["subject"] == {"reference": f"Patient/{seed['patient_id']}"}
    assert procedure["meta"]["versionId"] == "1"

    patient_answer = client.get(f"/fhir/Patient/{seed['patient_id']}", headers=headers)
    patient = fhir(patient_answer, 200, "Patient")
    assert patient["birthDate"] == "1973" and patient["gender"] == "male"
    assert "identifier" not in patient
    assert patient_answer.headers["ETag"] == 'W/"1"'

    # every resource the mapping makes of the stored operation, follow-up included, by its own id
    from registry.operations.store import get_operation
    from registry.follow_ups.store import list_follow_ups
    stored = get_operation(db, tokens.centre_a["id"], seed["id"])
    follow_ups = list_follow_ups(db, tokens.centre_a["id"], seed["id"], None, 10)
    expected = mapping.operation_to_resources(stored, follow_ups)
    assert {r["resourceType"] for r in expected} >= {"Patient", "Condition", "Procedure", "Device",
                                                      "AdverseEvent", "Observation"}
    for resource in expected:
        answer = client.get(f"/fhir/{resource['resourceType']}/{resource['id']}", headers=headers)
        read = fhir(answer, 200, resource["resourceType"])
        assert {k: v for k, v in read.items() if k != "meta"} == json.loads(json.dumps(resource, default=str))
        assert SEED_REF.encode() not in answer.data   # the patient's ref never leaves the registry


def test_another_centres_ids_are_404_and_analysts_get_no_patient_data(client, tokens, seed):
    paths = [f"/fhir/Procedure/{seed['id']}", f"/fhir/Patient/{seed['patient_id']}",
             f"/fhir/Device/{seed['id']}-instrumentation", "/fhir/Procedure?_count=5", "/fhir/Patient"]
    for path in paths[:3]:
        outcome(client.get(path, headers=tokens.header("submitter_b")), 404, "not-found")
    # centre B's searches find nothing of centre A's
    for path in paths[3:]:
        assert "entry" not in fhir(client.get(path, headers=tokens.header("submitter_b")), 200, "Bundle")
    for path in paths:
        outcome(client.get(path, headers=tokens.header("analyst")), 403, "forbidden")
        answer = client.get(path)
        outcome(answer, 401, "login")
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("/fhir/Procedure/999999", "/fhir/Procedure/abc", "/fhir/Patient/99999999999999999999",
                 "/fhir/Procedure/\u00b2", f"/fhir/Patient/{str(seed['patient_id']).translate(ARABIC_DIGITS)}",
                 "/fhir/Observation/follow-up-x", f"/fhir/Device/{seed['id']}-nothing"):
        outcome(client.get(path, headers=tokens.header("submitter_a")), 404, "not-found")


def search(client, tokens, resource_type="Procedure", who="submitter_a", **query) -> tuple[list[dict], list[dict]]:
    """(resources of every page, bundles) of a search, following `next` links."""
    bundle = fhir(client.get(f"/fhir/{resource_type}", query_string=query, headers=tokens.header(who)),
                  200, "Bundle")
    bundles = [bundle]
    while next_link := [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]:
        url = urlsplit(next_link[0])
        bundle = fhir(client.get(f"{url.path}?{url.query}", headers=tokens.header(who)), 200, "Bundle")
        bundles.append(bundle)
    resources = [entry["resource"] for page in bundles for entry in page.get("entry", [])]
    for page in bundles:
        assert page["type"] == "searchset"
        assert all(entry["fullUrl"].endswith(f"/fhir/{entry['resource']['resourceType']}/{entry['resource']['id']}")
                   for entry in page.get("entry", []))
    return resources, bundles


def test_procedure_searches_by_date_prefix_identifier_patient_and_last_update_page_by_next_links(client, tokens):
    dates = ["2019-06-30", "2020-01-01", "2020-03-15", "2020-12-31", "2021-01-01", "2021-07-04", "2022-02-02"]
    stored = {d: submit(client, tokens, variant(f"OP-{d}", f"PAT-{i % 3}", d)) for i, d in enumerate(dates)}
    submit(client, tokens, variant("OTHER-CENTRE", "PAT-B", "2020-05-05"), who="submitter_b")

    def local_refs(**query):
        resources, bundles = search(client, tokens, **query)
        return [r["identifier"][0]["value"] for r in resources], bundles

    everything, pages = local_refs(_count=3)
    assert everything == [f"OP-{d}" for d in dates]   # each once, in id order, none of centre B's
    assert len(pages) == 3 and [len(p.get("entry", [])) for p in pages] == [3, 3, 1]

    def dated(**query):
        return {ref.removeprefix("OP-") for ref in local_refs(**query)[0]}

    assert dated(date="ge2020-03-15") == {d for d in dates if d >= "2020-03-15"}
    assert dated(date="gt2020-03-15") == {d for d in dates if d > "2020-03-15"}
    assert dated(date="le2020-03-15") == {d for d in dates if d <= "2020-03-15"}
    assert dated(date="lt2020-03-15") == {d for d in dates if d < "2020-03-15"}
    assert dated(date="2020-03-15") == dated(date="eq2020-03-15") == {"2020-03-15"}
    assert dated(date="ne2020-03-15") == set(dates) - {"2020-03-15"}
    # a value names the range of its precision: 2020 is the whole year
    assert dated(date="eq2020") == {d for d in dates if d.startswith("2020")}
    assert dated(date="gt2020") == {d for d in dates if d >= "2021"}
    assert dated(date="lt2020-12") == {d for d in dates if d < "2020-12"}
    assert dated(date=["ge2020-01-01", "lt2021-01-01"]) == {d for d in dates if d.startswith("2020")}
    assert dated(date="sa2021") == {"2022-02-02"} and dated(date="eb2020") == {"2019-06-30"}

    identifier = f"{mapping.OPERATION_IDENTIFIER}|OP-2020-03-15"
    assert dated(identifier=identifier) == {"2020-03-15"}
    assert dated(identifier="OP-2021-07-04") == {"2021-07-04"}
    assert dated(identifier="https://elsewhere.example/ids|OP-2021-07-04") == set()
    assert dated(identifier=f"{mapping.OPERATION_IDENTIFIER}|OTHER-CENTRE") == set()   # centre B's

    patient_id = stored["2019-06-30"]["patient_id"]
    with_patient = {d for i, d in enumerate(dates) if i % 3 == 0}
    assert dated(patient=f"Patient/{patient_id}") == dated(patient=str(patient_id)) == with_patient
    assert dated(patient=f"Patient/{patient_id}", date="ge2020") == {d for d in with_patient if d >= "2020"}

    now = datetime.now(timezone.utc)
    assert dated(_lastUpdated=f"ge{(now - timedelta(hours=1)).date().isoformat()}") == set(dates)
    assert dated(_lastUpdated=f"gt{(now + timedelta(days=1)).date().isoformat()}") == set()
    assert dated(_lastUpdated=f"lt{(now - timedelta(days=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}") == set()
    assert dated(_lastUpdated=f"eq{now.year}") == set(dates)
    assert dated(_id=f"{stored['2022-02-02']['id']},{stored['2020-01-01']['id']}") == {"2022-02-02", "2020-01-01"}


@pytest.mark.parametrize("query, code", [
    ({"date": "ge2020-13-01"}, "invalid"),
    ({"date": "approximately"}, "invalid"),
    ({"date": "ap2020"}, "not-supported"),
    ({"_lastUpdated": "ge2020-01-01T25:00:00Z"}, "invalid"),
    ({"_count": "0"}, "invalid"),
    ({"_count": "5000"}, "invalid"),
    ({"_count": "\u00b2"}, "invalid"),
    ({"_cursor": "not-ours"}, "invalid"),
    ({"code": "laminectomy"}, "not-supported"),
    ({"identifier": "a,b"}, "not-supported"),
])
def test_a_search_parameter_the_server_cannot_honour_is_a_400(client, tokens, query, code):
    answer = client.get("/fhir/Procedure", query_string=query, headers=tokens.header("submitter_a"))
    issue = outcome(answer, 400, code)["issue"][0]
    assert next(iter(query)) in issue["diagnostics"]


def test_patient_search_by_ref_finds_the_patient_without_answering_the_ref(client, tokens, seed):
    found, _ = search(client, tokens, "Patient", identifier=f"{mapping.PATIENT_REF_IDENTIFIER}|{SEED_REF}")
    assert [p["id"] for p in found] == [str(seed["patient_id"])]
    answer = client.get("/fhir/Patient", query_string={"identifier": SEED_REF}, headers=tokens.header("submitter_a"))
    assert SEED_REF.encode() not in answer.data
    assert search(client, tokens, "Patient", identifier="TJH-P-9999")[0] == []
    # another centre sending the same ref finds nothing of centre A's
    assert search(client, tokens, "Patient", who="submitter_b", identifier=SEED_REF)[0] == []
    assert [p["id"] for p in search(client, tokens, "Patient", _lastUpdated=f"ge{date.today().year}")[0]] == \
        [str(seed["patient_id"])]


def test_metadata_lists_the_reads_searches_and_export(client):
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement
    statement = json.loads(client.get("/fhir/metadata").get_data())
    CapabilityStatement.model_validate(statement)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for resource_type in ("Patient", "Procedure", "Condition", "Device", "AdverseEvent", "Observation"):
        assert {"code": "read"} in resources[resource_type]["interaction"]
    assert {p["name"] for p in resources["Procedure"]["searchParam"]} == \
        {"identifier", "patient", "date", "_lastUpdated", "_id"}
    assert {p["name"] for p in resources["Patient"]["searchParam"]} == {"identifier", "_lastUpdated", "_id"}
    assert [o["name"] for o in resources["Patient"]["operation"]] == ["export"]


def test_every_score_reads_back_by_id_and_in_a_bulk_export(client, tokens, db):
    from tests.fhir.helpers import every_score_case
    from tests.fhir.test_bulk_export import download, kick_off, manifest_of
    stored = submit(client, tokens, *every_score_case())
    headers = tokens.header("submitter_a")
    neck = fhir(client.get(f"/fhir/Observation/{stored['id']}-baseline-pain-nrs-11-point-neck", headers=headers),
                200, "Observation")
    assert (neck["valueQuantity"]["value"], neck["bodySite"]["coding"][0]["code"]) == (7, "neck")
    assert neck["partOf"] == [{"reference": f"Procedure/{stored['id']}"}]
    eq5d = fhir(client.get(f"/fhir/Observation/{stored['id']}-baseline-eq5d5l-index-5L", headers=headers))
    assert eq5d["valueQuantity"]["value"] == -0.123
    [follow_up] = client.get(f"/v1/operations/{stored['id']}/follow-ups", headers=headers).json["items"]
    read = fhir(client.get(f"/fhir/Observation/follow-up-{follow_up['id']}", headers=headers), 200, "Observation")
    scored = [(component["code"]["coding"][0]["code"], component["valueQuantity"]["value"])
              for component in read["component"] if "extension" in component]
    assert scored == [("joa", 21), ("ndi", 9), ("odi", 12.5), ("eq5d5l_index", 0.85), ("pain_nrs", 2),
                      ("pain_nrs", 0)]
    # a bulk export holds the same Observations
    manifest = manifest_of(client, tokens, kick_off(client, tokens, _type="Observation"))
    exported = {resource["id"]: resource for output in manifest["output"]
                for resource in download(client, tokens, output["url"])[1]}
    assert exported[f"{stored['id']}-baseline-pain-nrs-11-point-neck"]["valueQuantity"]["value"] == 7
    assert exported[f"follow-up-{follow_up['id']}"]["component"] == read["component"]
