"""Hospital systems resend records: the same local_ref or ref updates, never duplicates."""

from tests.records.helpers import counts, seed_case


def test_resubmitting_a_local_ref_updates_the_operation(client, tokens, db):
    first = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    corrected = seed_case() | {"blood_loss_ml": 350}
    second = client.post("/v1/operations/", json=corrected, headers=tokens.header("submitter_a"))
    assert second.status_code == 200
    assert second.json["id"] == first.json["id"]
    assert second.json["blood_loss_ml"] == 350
    assert second.json["version"] == 2
    assert second.headers["ETag"] != first.headers["ETag"]
    assert counts(db) | {"follow_ups": 0} == {"patients": 1, "operations": 1, "implants": 1, "intraop_events": 1,
                                              "postop_complications": 0, "follow_ups": 0}
    audit = db.execute("SELECT action, changed_fields FROM audit_events WHERE entity = 'operation' ORDER BY id")
    assert [row["action"] for row in audit] == ["create", "update"]


def test_identical_resubmission_changes_nothing(client, tokens, db):
    first = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json
    audit_before = db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"]
    again = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    assert again.status_code == 200
    assert again.json["version"] == first["version"] == 1
    assert db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"] == audit_before


def test_update_audit_names_only_the_changed_fields_with_their_values(client, tokens, db):
    client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    changed = seed_case() | {"blood_loss_ml": 350, "levels": {"from": "C3", "to": "C7"}}
    client.post("/v1/operations/", json=changed, headers=tokens.header("submitter_a"))
    update = db.execute("SELECT * FROM audit_events WHERE action = 'update'").fetchone()
    assert update["changed_fields"] == ["blood_loss_ml", "levels"]
    assert update["changes"] == {"blood_loss_ml": {"old": seed_case()["blood_loss_ml"], "new": 350},
                                 "levels": {"old": seed_case()["levels"], "new": {"from": "C3", "to": "C7"}}}


def test_replacing_events_replaces_them_whole(client, tokens, db):
    client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    no_events = seed_case() | {"intraop_events": [{"type": "dural_tear", "level": "C5", "grade": "II"}]}
    stored = client.post("/v1/operations/", json=no_events, headers=tokens.header("submitter_a")).json
    assert [event["type"] for event in stored["intraop_events"]] == ["dural_tear"]
    assert counts(db)["intraop_events"] == 1


def test_patient_ref_resubmitted_updates_the_patient(client, tokens, db):
    first = client.post("/v1/patients/", json={"ref": "P-1", "diagnosis": "aro"}, headers=tokens.header("submitter_a"))
    second = client.post("/v1/patients/", json={"ref": "P-1", "diagnosis": "iro", "genes": ["CLCN7"]},
                         headers=tokens.header("submitter_a"))
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json["id"] == first.json["id"]
    assert second.json["diagnosis"] == "iro"
    assert counts(db)["patients"] == 1


def test_two_operations_of_one_patient_share_the_patient(client, tokens, db):
    client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    client.post("/v1/operations/", json=seed_case() | {"local_ref": "TJH-2020-7", "operation_date": "2020-03-01"},
                headers=tokens.header("submitter_a"))
    assert counts(db)["patients"] == 1
    assert counts(db)["operations"] == 2


def test_find_a_patient_by_ref(client, tokens):
    created = client.post("/v1/patients/", json={"ref": "P-42", "diagnosis": "aro"}, headers=tokens.header("submitter_a"))
    found = client.get("/v1/patients/?ref=P-42", headers=tokens.header("submitter_a")).json["items"]
    assert [patient["id"] for patient in found] == [created.json["id"]]
    assert "ref" not in found[0]
