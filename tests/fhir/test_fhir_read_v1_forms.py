"""/v1 records in FHIR form (Accept: application/fhir+json): an operation is the transaction Bundle
that, POSTed to /fhir, recreates it field for field; a patient is a Patient, a follow-up an
Observation; JSON stays the default, with its ETag; errors stay /v1's problem+json."""

import json

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from registry.demo.cases import literature_cases, seed_case
from tests.fhir.test_fhir_read import MODELS, submit

FHIR_JSON = "application/fhir+json"
# what the registry sets, not the sender: the recreated operation has its own
SERVER_FIELDS = {"id", "patient_id", "version", "created_at", "updated_at"}


def fhir_form(client, tokens, path, accept=FHIR_JSON, who="submitter_a"):
    answer = client.get(path, headers={**tokens.header(who), "Accept": accept})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    assert answer.mimetype == FHIR_JSON
    assert "Accept" in answer.headers["Vary"]
    return answer, json.loads(answer.get_data())


def recorded(client, tokens, local_ref):
    """The operation with this local_ref and its follow-ups, as /v1 answers them (server fields aside)."""
    headers = tokens.header("submitter_a")
    [operation] = client.get("/v1/operations/", query_string={"local_ref": local_ref}, headers=headers).json["items"]
    follow_ups = client.get(f"/v1/operations/{operation['id']}/follow-ups", headers=headers).json["items"]
    strip = lambda record: {k: v for k, v in record.items() if k not in SERVER_FIELDS | {"operation_id"}}  # noqa: E731
    operation = strip(operation)
    operation["patient"] = strip(operation["patient"])
    return operation, [strip(f) for f in follow_ups]


@pytest.mark.parametrize("case", range(1 + len(literature_cases())),
                         ids=["seed", *(c[0]["local_ref"] for c in literature_cases())])
def test_an_operation_in_fhir_form_posted_to_fhir_recreates_it_field_for_field(client, tokens, case):
    document, follow_ups = ([seed_case()] + literature_cases())[case]
    stored = submit(client, tokens, document, follow_ups)
    before = recorded(client, tokens, document["local_ref"])

    json_answer = client.get(f"/v1/operations/{stored['id']}", headers=tokens.header("submitter_a"))
    assert json_answer.mimetype == "application/json"   # JSON stays the default
    assert "Accept" in json_answer.headers["Vary"]
    answer, bundle = fhir_form(client, tokens, f"/v1/operations/{stored['id']}",
                               accept="application/fhir+json; fhirVersion=4.0")
    assert answer.headers["ETag"] == json_answer.headers["ETag"]
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        MODELS[entry["resource"]["resourceType"]].model_validate(entry["resource"])
    assert document["patient"]["ref"].encode() not in answer.data

    # the operation is gone, then the Bundle brings it back exactly (to the same stored patient)
    deleted = client.delete(f"/v1/operations/{stored['id']}", headers=tokens.header("submitter_a"))
    assert deleted.status_code == 204
    posted = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR_JSON,
                         headers=tokens.header("submitter_a"))
    assert posted.status_code == 200, posted.get_data(as_text=True)[:1000]
    assert json.loads(posted.get_data())["type"] == "transaction-response"
    assert recorded(client, tokens, document["local_ref"]) == before

    # and POSTing it again changes nothing (conditional entries: an update, never a duplicate)
    again = client.post("/fhir", data=json.dumps(bundle), content_type=FHIR_JSON, headers=tokens.header("submitter_a"))
    assert again.status_code == 200
    assert recorded(client, tokens, document["local_ref"]) == before


def test_a_patient_and_a_follow_up_in_fhir_form(client, tokens):
    document, follow_ups = seed_case()
    stored = submit(client, tokens, document, follow_ups)
    answer, patient = fhir_form(client, tokens, f"/v1/patients/{stored['patient_id']}")
    Patient.model_validate(patient)
    assert patient["id"] == str(stored["patient_id"]) and patient["birthDate"] == "1973"
    assert document["patient"]["ref"].encode() not in answer.data
    json_answer = client.get(f"/v1/patients/{stored['patient_id']}", headers=tokens.header("submitter_a"))
    assert json_answer.mimetype == "application/json" and answer.headers["ETag"] == json_answer.headers["ETag"]

    [follow_up] = client.get(f"/v1/operations/{stored['id']}/follow-ups",
                             headers=tokens.header("submitter_a")).json["items"]
    _, observation = fhir_form(client, tokens, f"/v1/follow-ups/{follow_up['id']}", accept="application/json+fhir")
    Observation.model_validate(observation)
    assert observation["id"] == f"follow-up-{follow_up['id']}"
    assert observation["partOf"] == [{"reference": f"Procedure/{stored['id']}"}]
    assert observation["subject"] == {"reference": f"Patient/{stored['patient_id']}"}

    # a browser, a wildcard or plain JSON get JSON
    for accept in ("*/*", "application/json", "text/html,application/xhtml+xml,*/*;q=0.8",
                   "application/fhir+json; fhirVersion=5.0"):
        plain = client.get(f"/v1/follow-ups/{follow_up['id']}", headers={**tokens.header("submitter_a"),
                                                                          "Accept": accept})
        assert plain.mimetype == "application/json", accept


def test_errors_stay_problem_json_and_another_centre_gets_404(client, tokens):
    stored = submit(client, tokens, *seed_case())
    for path in (f"/v1/operations/{stored['id']}", f"/v1/patients/{stored['patient_id']}"):
        for who, status in (("submitter_b", 404), ("analyst", 403), (None, 401)):
            headers = {**(tokens.header(who) if who else {}), "Accept": FHIR_JSON}
            answer = client.get(path, headers=headers)
            assert answer.status_code == status
            assert answer.mimetype == "application/problem+json"


def test_openapi_documents_the_fhir_form_of_each_record():
    from pathlib import Path

    import yaml
    document = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())
    for path in ("/v1/operations/{operation_id}", "/v1/patients/{patient_id}", "/v1/follow-ups/{follow_up_id}"):
        content = document["paths"][path]["get"]["responses"]["200"]["content"]
        assert {"application/json", FHIR_JSON} <= set(content), path
