"""POST /fhir: transaction and batch Bundles written through /v1's own validation and services."""

import copy
import json

import pytest

from registry.fhir.mapping import operation_to_bundle
from tests.fhir.helpers import FHIR_JSON, demo_cases, every_score_case, validate
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


def seed_bundle() -> dict:
    operation, follow_ups = CASES[0][1:]
    return operation_to_bundle(operation, follow_ups)


def entry_index(bundle, code: str) -> int:
    """The index of the Observation entry coded `code` (blood-loss, duration...)."""
    return next(index for index, entry in enumerate(bundle["entry"])
                if entry["resource"]["resourceType"] == "Observation"
                and entry["resource"]["code"]["coding"][0]["code"] == code)


def issues(response, status) -> list[dict]:
    body = answer(response, status)
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def test_resending_a_bundle_updates_and_never_duplicates(client, tokens, db):
    bundle = seed_bundle()
    first = answer(post_bundle(client, bundle, tokens=tokens))
    stored = counts(db)
    again = answer(post_bundle(client, bundle, tokens=tokens))
    assert [entry["response"]["status"] for entry in again["entry"]] == ["200 OK"] * len(bundle["entry"])
    assert [entry["response"]["location"] for entry in again["entry"]] == [
        entry["response"]["location"] for entry in first["entry"]]
    assert counts(db) == stored
    # a corrected value is an update of the same operation, with a new version
    corrected = copy.deepcopy(bundle)
    corrected["entry"][entry_index(bundle, "blood-loss")]["resource"]["valueQuantity"]["value"] = 400
    updated = answer(post_bundle(client, corrected, tokens=tokens))
    operation_id = procedure_id(updated)
    assert operation_id == procedure_id(first)
    procedure_response = next(entry["response"] for entry in updated["entry"]
                              if entry["response"]["location"].startswith("Procedure/"))
    assert procedure_response["location"] == f"Procedure/{operation_id}/_history/2"
    assert procedure_response["etag"] == 'W/"2"'
    assert counts(db) == stored
    assert client.get(f"/v1/operations/{operation_id}", headers=tokens.header("submitter_a")).json[
        "blood_loss_ml"] == 400


def test_a_negative_blood_loss_is_refused_at_its_element_and_nothing_is_stored(client, tokens, db):
    bundle = seed_bundle()
    index = entry_index(bundle, "blood-loss")
    bundle["entry"][index]["resource"]["valueQuantity"]["value"] = -5
    [issue] = issues(post_bundle(client, bundle, tokens=tokens), 422)
    assert issue["expression"] == [f"Bundle.entry[{index}].resource.valueQuantity.value"]
    assert (issue["severity"], issue["code"]) == ("error", "invalid")
    assert issue["diagnostics"].startswith("blood_loss_ml:")
    assert set(counts(db).values()) == {0}


def test_a_transaction_with_one_bad_operation_stores_nothing(client, tokens, db):
    good = seed_bundle()
    operation, follow_ups = CASES[1][1:]
    bad = operation_to_bundle(dict(operation, levels={"from": "C6", "to": "C5"}), follow_ups)
    both = {"resourceType": "Bundle", "type": "transaction", "entry": good["entry"] + bad["entry"]}
    [issue] = issues(post_bundle(client, both, tokens=tokens), 422)
    procedure = len(good["entry"]) + 1  # the second operation's Procedure
    # the levels are the Procedure's body sites: the last one read is `to`
    assert issue["expression"][0].startswith(f"Bundle.entry[{procedure}].resource.bodySite[")
    assert set(counts(db).values()) == {0}


def test_a_batch_stores_the_valid_operations_and_answers_each_entry(client, tokens, db):
    good = seed_bundle()
    operation, follow_ups = CASES[1][1:]
    bad = operation_to_bundle(dict(operation, operation_date="2999-01-01", date_precision="day"), follow_ups)
    batch = {"resourceType": "Bundle", "type": "batch", "entry": good["entry"] + bad["entry"]}
    answered = answer(post_bundle(client, batch, tokens=tokens))
    assert answered["type"] == "batch-response"
    statuses = [entry["response"]["status"] for entry in answered["entry"]]
    assert statuses == ["201 Created"] * len(good["entry"]) + ["422 Unprocessable Entity"] * len(bad["entry"])
    outcome = answered["entry"][-1]["response"]["outcome"]
    procedure = len(good["entry"]) + 1
    assert outcome["issue"][0]["expression"] == [f"Bundle.entry[{procedure}].resource.performedDateTime"]
    assert counts(db)["operations"] == 1 and counts(db)["follow_ups"] == 1


def test_an_idempotency_key_replays_the_first_answer(client, tokens, db):
    bundle = seed_bundle()
    first = post_bundle(client, bundle, tokens=tokens, **{"Idempotency-Key": "fhir-1"})
    answer(first)
    audited = db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"]
    replay = post_bundle(client, bundle, tokens=tokens, **{"Idempotency-Key": "fhir-1"})
    assert replay.get_data() == first.get_data()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"] == audited
    # the same key with another body is refused, as on /v1
    other = copy.deepcopy(bundle)
    other["entry"][entry_index(bundle, "blood-loss")]["resource"]["valueQuantity"]["value"] = 301
    [issue] = issues(post_bundle(client, other, tokens=tokens, **{"Idempotency-Key": "fhir-1"}), 422)
    assert "Idempotency-Key" in issue["diagnostics"]


def test_another_centre_cannot_touch_the_operation(client, tokens):
    written = answer(post_bundle(client, seed_bundle(), tokens=tokens))
    operation_id = procedure_id(written)
    follow_up = copy.deepcopy(seed_bundle()["entry"][-1])
    follow_up["resource"]["partOf"] = [{"reference": f"Procedure/{operation_id}"}]
    follow_up["resource"]["subject"] = {"reference": "Patient/1"}
    only_follow_up = {"resourceType": "Bundle", "type": "transaction", "entry": [follow_up]}
    [issue] = issues(post_bundle(client, only_follow_up, token="submitter_b", tokens=tokens), 404)
    assert issue["code"] == "not-found"
    # centre B sending the same bundle writes its own operation, not centre A's
    theirs = answer(post_bundle(client, seed_bundle(), token="submitter_b", tokens=tokens))
    assert {entry["response"]["status"] for entry in theirs["entry"]} == {"201 Created"}
    assert client.get(f"/v1/operations/{operation_id}", headers=tokens.header("submitter_a")).json["version"] == 1
    assert len(client.get("/v1/operations/", headers=tokens.header("submitter_a")).json["items"]) == 1
    # the owner may add the follow-up of its stored operation by reference
    follow_up["resource"]["identifier"][0]["value"] = "TJH-2016-146-FU60"
    follow_up["request"]["url"] = follow_up["request"]["url"].replace("FU48", "FU60")
    [component] = [c for c in follow_up["resource"]["component"] if c["code"]["coding"][0]["code"] == "months-after"]
    component["valueQuantity"]["value"] = 60
    added = answer(post_bundle(client, only_follow_up, tokens=tokens))
    assert added["entry"][0]["response"]["status"] == "201 Created"


def test_a_token_is_required_and_must_be_a_submitters(client, tokens, db):
    bundle = json.dumps(seed_bundle())
    response = client.post("/fhir", data=bundle, content_type=FHIR_JSON)
    assert issues(response, 401)[0]["code"] == "login"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert issues(client.post("/fhir", data=bundle, content_type=FHIR_JSON, headers=tokens.header("analyst")),
                  403)[0]["code"] == "forbidden"
    assert set(counts(db).values()) == {0}


def test_the_patient_ref_never_appears_in_an_answer_or_the_database(client, tokens, db):
    bundle = seed_bundle()
    answers = [post_bundle(client, bundle, tokens=tokens, **{"Idempotency-Key": "ref-check"}),
               post_bundle(client, bundle, tokens=tokens, **{"Idempotency-Key": "ref-check"})]
    refused = copy.deepcopy(bundle)
    refused["entry"][0]["resource"]["birthDate"] = "2017"  # after the operation: a patient field error
    answers.append(post_bundle(client, refused, tokens=tokens))
    assert answers[-1].status_code == 422
    assert issues(answers[-1], 422)[0]["expression"] == ["Bundle.entry[0].resource.birthDate"]
    for response in answers:
        assert "TJH-P-0001" not in response.get_data(as_text=True)
    for table in ("patients", "audit_events", "idempotency_keys"):
        assert "TJH-P-0001" not in str(db.execute(f"SELECT * FROM {table}").fetchall()), table


def test_a_stored_operation_exported_and_posted_back_is_unchanged(client, tokens):
    operation, follow_ups = CASES[0][1:]
    stored, stored_follow_ups = stored_through_v1(client, tokens, operation, follow_ups, "submitter_a")
    exported = validate(operation_to_bundle(stored, stored_follow_ups))
    assert "TJH-P-0001" not in json.dumps(exported)
    written = answer(post_bundle(client, exported, tokens=tokens))
    assert {entry["response"]["status"] for entry in written["entry"]} == {"200 OK"}
    assert read_back(client, tokens, stored["id"]) == [stored, stored_follow_ups]


@pytest.mark.parametrize("body, status, expression", [
    ({"resourceType": "Patient"}, 400, "Bundle"),
    ({"resourceType": "Bundle", "type": "collection", "entry": []}, 400, "Bundle.type"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "MedicationRequest"}, "request": {"method": "POST", "url": "MedicationRequest"}}]},
     400, "Bundle.entry[0].resource.resourceType"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Procedure"}, "request": {"method": "DELETE", "url": "Procedure/1"}}]},
     400, "Bundle.entry[0].request"),
])
def test_a_bundle_the_registry_does_not_take_is_refused_with_its_element(client, tokens, db, body, status,
                                                                         expression):
    found = issues(post_bundle(client, body, tokens=tokens), status)
    assert expression in [item["expression"][0] for item in found]
    assert set(counts(db).values()) == {0}


def test_an_element_the_registry_would_lose_is_refused(client, tokens, db):
    bundle = seed_bundle()
    bundle["entry"][1]["resource"]["performer"] = [{"actor": {"display": "Dr X"}}]
    bundle["entry"][2]["resource"]["extension"].append({"url": "https://example.org/other", "valueString": "x"})
    found = issues(post_bundle(client, bundle, tokens=tokens), 400)
    assert {item["expression"][0] for item in found} == {
        "Bundle.entry[1].resource.performer",
        f"Bundle.entry[2].resource.extension[{len(bundle['entry'][2]['resource']['extension']) - 1}]"}
    assert set(counts(db).values()) == {0}


def test_a_code_outside_the_vocabulary_names_its_coding(client, tokens):
    bundle = seed_bundle()
    bundle["entry"][1]["resource"]["extension"][0]["valueCoding"]["code"] = "sideways"
    [issue] = issues(post_bundle(client, bundle, tokens=tokens), 422)
    assert issue["expression"] == ["Bundle.entry[1].resource.extension[0].valueCoding.code"]
    assert issue["diagnostics"].startswith("approach:")


def test_a_follow_up_before_its_operation_names_its_date(client, tokens, db):
    bundle = seed_bundle()
    follow_up = bundle["entry"][-1]["resource"]
    follow_up["component"] = [c for c in follow_up["component"] if c["code"]["coding"][0]["code"] != "months-after"]
    follow_up["effectiveDateTime"] = "2015-06-01"
    [issue] = issues(post_bundle(client, bundle, tokens=tokens), 422)
    assert issue["expression"] == [f"Bundle.entry[{len(bundle['entry']) - 1}].resource.effectiveDateTime"]
    assert set(counts(db).values()) == {0}


def test_the_documented_seed_bundle_posted_as_is_creates_the_seed_case(client, tokens):
    """The curl command of docs/fhir.md: the file's bytes, POSTed."""
    from pathlib import Path

    body = (Path(__file__).resolve().parents[2] / "docs" / "fhir-seed-bundle.json").read_bytes()
    response = client.post("/fhir", data=body, content_type=FHIR_JSON,
                           headers={**tokens.header("submitter_a"), "Idempotency-Key": "seed-case-1"})
    written = answer(response)
    assert {entry["response"]["status"] for entry in written["entry"]} == {"201 Created"}
    operation = client.get(f"/v1/operations/{procedure_id(written)}", headers=tokens.header("submitter_a")).json
    assert (operation["local_ref"], operation["blood_loss_ml"], operation["vertebra_count"]) == ("TJH-2016-146", 300, 4)


def test_two_operations_of_one_patient_share_its_patient_entry(client, tokens, db):
    bundle = seed_bundle()
    operation, _ = CASES[0][1:]
    second = operation_to_bundle(dict(operation, local_ref="TJH-2018-002", operation_date="2018-05-02",
                                      date_precision="day", intraop_events=[]))
    patient_url = bundle["entry"][0]["fullUrl"]
    for entry in second["entry"][1:]:  # the second operation names the first one's Patient entry
        text = json.dumps(entry).replace(second["entry"][0]["fullUrl"], patient_url)
        bundle["entry"].append(json.loads(text))
    written = answer(post_bundle(client, bundle, tokens=tokens))
    assert {entry["response"]["status"] for entry in written["entry"]} == {"201 Created"}
    assert (counts(db)["patients"], counts(db)["operations"]) == (1, 2)


def test_a_part_naming_another_patient_or_an_operation_sent_twice_is_refused(client, tokens, db):
    bundle = seed_bundle()
    index = entry_index(bundle, "blood-loss")
    bundle["entry"][index]["resource"]["subject"] = {"reference": "Patient/99"}
    again = copy.deepcopy(bundle["entry"][1])  # the Procedure again, same local_ref
    bundle["entry"].append(dict(again, fullUrl="urn:uuid:00000000-0000-4000-8000-000000000001"))
    bundle["entry"].append(copy.deepcopy(bundle["entry"][2]))  # an entry with a fullUrl already used
    found = issues(post_bundle(client, bundle, tokens=tokens), 400)
    assert {item["expression"][0] for item in found} >= {
        f"Bundle.entry[{index}].resource.subject", f"Bundle.entry[{len(bundle['entry']) - 2}].resource.identifier",
        f"Bundle.entry[{len(bundle['entry']) - 1}].fullUrl"}
    assert set(counts(db).values()) == {0}


def test_an_erased_patient_sent_again_is_gone_at_its_identifier(client, tokens, db):
    written = answer(post_bundle(client, seed_bundle(), tokens=tokens))
    patient_id = int(written["entry"][0]["response"]["location"].split("/")[1])
    erased = client.delete(f"/v1/patients/{patient_id}", headers=tokens.header("submitter_a"))
    assert erased.status_code == 204, erased.get_data(as_text=True)
    [issue] = issues(post_bundle(client, seed_bundle(), tokens=tokens), 410)
    assert (issue["code"], issue["expression"]) == ("deleted", ["Bundle.entry[0].resource.identifier[0].value"])
    assert counts(db)["operations"] == 0


def test_a_retry_after_erasure_does_not_replay_the_erased_answer(client, tokens, db):
    # the stored answer of a keyed transaction names the patient and operation by their locations:
    # erasing the patient must reach it, so the retry is refused as gone, as on /v1
    written = answer(post_bundle(client, seed_bundle(), tokens=tokens, **{"Idempotency-Key": "erase-me"}))
    patient_id = int(written["entry"][0]["response"]["location"].split("/")[1])
    erased = client.delete(f"/v1/patients/{patient_id}", headers=tokens.header("submitter_a"))
    assert erased.status_code == 204, erased.get_data(as_text=True)
    retry = post_bundle(client, seed_bundle(), tokens=tokens, **{"Idempotency-Key": "erase-me"})
    assert "Idempotent-Replayed" not in retry.headers
    [issue] = issues(retry, 410)
    assert issue["code"] == "deleted"
    assert counts(db)["operations"] == 0


def test_writes_through_fhir_are_audited_as_on_v1(client, tokens, db):
    bundle = seed_bundle()
    answer(post_bundle(client, bundle, tokens=tokens))
    corrected = copy.deepcopy(bundle)
    corrected["entry"][entry_index(bundle, "duration")]["resource"]["valueQuantity"]["value"] = 190
    answer(post_bundle(client, corrected, tokens=tokens))
    answer(post_bundle(client, corrected, tokens=tokens))  # unchanged: nothing audited
    rows = db.execute("SELECT action, entity FROM audit_events WHERE entity IN ('patient', 'operation',"
                      " 'follow_up') ORDER BY id").fetchall()
    assert [(row["action"], row["entity"]) for row in rows] == [
        ("create", "patient"), ("create", "operation"), ("create", "follow_up"), ("update", "operation")]


def test_every_score_instrument_round_trips_v1_fhir_v1_unchanged(client, tokens, db):
    operation, follow_ups = every_score_case()
    stored, stored_follow_ups = stored_through_v1(client, tokens, operation, follow_ups, "submitter_b")
    # the document sent as a Bundle stores what /v1 stores
    written = answer(post_bundle(client, operation_to_bundle(operation, follow_ups), tokens=tokens), 200)
    through_fhir = read_back(client, tokens, procedure_id(written))
    assert without_server_values(through_fhir) == without_server_values([stored, stored_follow_ups])
    assert len(through_fhir[0]["baseline_scores"]) == 7 and len(through_fhir[1][0]["scores"]) == 6
    # and the stored record exported and posted back is unchanged, every score kept
    exported = validate(operation_to_bundle(stored, stored_follow_ups))
    again = answer(post_bundle(client, exported, token="submitter_b", tokens=tokens))
    assert {entry["response"]["status"] for entry in again["entry"]} == {"200 OK"}
    assert read_back(client, tokens, stored["id"], "submitter_b") == [stored, stored_follow_ups]


def _score_entry(bundle, part: str) -> int:
    return next(index for index, entry in enumerate(bundle["entry"])
                if entry["resource"].get("identifier", [{}])[0].get("value", "").endswith(f"#{part}"))


def test_a_baseline_score_off_its_scale_is_refused_at_its_element_and_nothing_is_stored(client, tokens, db):
    operation, follow_ups = every_score_case()
    bundle = operation_to_bundle(operation, follow_ups)
    index = _score_entry(bundle, "baseline-pain-nrs-11-point-arm")
    bundle["entry"][index]["resource"]["valueQuantity"]["value"] = 11
    [issue] = issues(post_bundle(client, bundle, tokens=tokens), 422)
    assert issue["expression"] == [f"Bundle.entry[{index}].resource.valueQuantity.value"]
    assert issue["diagnostics"].startswith("baseline_scores.") and "runs from 0 to 10" in issue["diagnostics"]
    assert set(counts(db).values()) == {0}


def test_a_follow_up_score_without_its_value_set_is_refused_at_its_component(client, tokens, db):
    operation, follow_ups = every_score_case()
    bundle = operation_to_bundle(operation, follow_ups)
    index = next(index for index, entry in enumerate(bundle["entry"])
                 if entry["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "follow-up")
    components = bundle["entry"][index]["resource"]["component"]
    number = next(number for number, component in enumerate(components)
                  if component["code"]["coding"][0]["code"] == "eq5d5l_index")
    components[number]["extension"] = [extension for extension in components[number]["extension"]
                                       if not extension["url"].endswith("/eq5d-value-set")]
    [issue] = issues(post_bundle(client, bundle, tokens=tokens), 422)
    assert issue["expression"] == [f"Bundle.entry[{index}].resource.component[{number}]"]
    assert issue["diagnostics"].startswith("follow-up scores.3.value_set:")
    assert set(counts(db).values()) == {0}


def test_a_score_element_on_another_observation_is_refused_not_lost(client, tokens, db):
    bundle = seed_bundle()
    index = entry_index(bundle, "blood-loss")
    bundle["entry"][index]["resource"]["bodySite"] = {"text": "neck"}
    [issue] = issues(post_bundle(client, bundle, tokens=tokens), 400)
    assert issue["expression"] == [f"Bundle.entry[{index}].resource.bodySite"]
    assert set(counts(db).values()) == {0}


def test_a_score_given_in_another_element_than_its_quantity_is_refused_not_lost(client, tokens, db):
    operation, follow_ups = every_score_case()
    bundle = operation_to_bundle(operation, follow_ups)
    index = _score_entry(bundle, "baseline-ndi-percent")
    resource = bundle["entry"][index]["resource"]
    resource["valueInteger"] = round(resource.pop("valueQuantity")["value"])
    found = issues(post_bundle(client, bundle, tokens=tokens), 400)
    assert {item["expression"][0] for item in found} == {f"Bundle.entry[{index}].resource.valueInteger",
                                                          f"Bundle.entry[{index}].resource.valueQuantity"}
    assert set(counts(db).values()) == {0}
