"""POST /fhir: transaction and batch Bundles written through /v1's own validation and services."""

import copy
import json

import pytest

from registry.fhir.mapping import operation_to_bundle
from tests.fhir.helpers import FHIR_JSON, demo_cases, validate
from tests.records.helpers import counts

CASES = demo_cases()
# What the registry sets itself, and so differs between two stores of the same document
_SERVER_SET = {"id", "patient_id", "operation_id", "created_at", "updated_at", "version"}


def post_bundle(client, bundle, token="submitter_a", tokens=None, **headers):
    return client.post("/fhir", data=json.dumps(bundle), content_type=FHIR_JSON,
                       headers={**tokens.header(token), **headers})


def answer(response, status=200):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == FHIR_JSON
    return validate(response.get_json())


def without_server_values(value):
    if isinstance(value, dict):
        return {key: without_server_values(item) for key, item in value.items() if key not in _SERVER_SET}
    if isinstance(value, list):
        return [without_server_values(item) for item in value]
    return value


def stored_through_v1(client, tokens, operation, follow_ups, token):
    created = client.post("/v1/operations/", json=operation, headers=tokens.header(token))
    assert created.status_code == 201, created.json
    operation_id = created.json["id"]
    for follow_up in follow_ups:
        response = client.post(f"/v1/operations/{operation_id}/follow-ups", json=follow_up,
                               headers=tokens.header(token))
        assert response.status_code == 201, response.json
    return read_back(client, tokens, operation_id, token)


def read_back(client, tokens, operation_id, token="submitter_a"):
    operation = client.get(f"/v1/operations/{operation_id}", headers=tokens.header(token)).json
    follow_ups = client.get(f"/v1/operations/{operation_id}/follow-ups", headers=tokens.header(token)).json["items"]
    return [operation, follow_ups]


def procedure_id(response_bundle) -> int:
    locations = [entry["response"]["location"] for entry in response_bundle["entry"]]
    [location] = [location for location in locations if location.startswith("Procedure/")]
    return int(location.split("/")[1])


@pytest.mark.parametrize("name, operation, follow_ups", CASES, ids=[case[0] for case in CASES])
def test_a_case_posted_as_a_bundle_reads_back_as_its_v1_submission(client, tokens, name, operation, follow_ups):
    written = answer(post_bundle(client, operation_to_bundle(operation, follow_ups), tokens=tokens))
    assert written["type"] == "transaction-response"
    assert all(entry["response"]["status"] == "201 Created" for entry in written["entry"])
    through_fhir = read_back(client, tokens, procedure_id(written))
    # the same document through /v1, in another centre (its local_refs are its own there)
    through_v1 = stored_through_v1(client, tokens, operation, follow_ups, "submitter_b")
    assert without_server_values(through_fhir) == without_server_values(through_v1)
    assert through_fhir[0]["local_ref"] == operation["local_ref"]
