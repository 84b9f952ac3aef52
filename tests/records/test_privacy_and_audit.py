"""Consent withdrawal, erasure and the audit trail."""

from tests.records.helpers import counts, seed_case, seed_follow_up


def _seed(client, tokens):
    operation = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json
    client.post(f"/v1/operations/{operation['id']}/follow-ups", json=seed_follow_up(),
                headers=tokens.header("submitter_a"))
    return operation


def test_withdrawing_consent_is_audited_without_clinical_content(client, tokens, db):
    operation = _seed(client, tokens)
    patient_url = f"/v1/patients/{operation['patient_id']}"
    etag = client.get(patient_url, headers=tokens.header("submitter_a")).headers["ETag"]
    response = client.patch(patient_url, json={"consent": "withdrawn"},
                            headers={**tokens.header("submitter_a"), "If-Match": etag})
    assert response.status_code == 200
    assert response.json["consent"] == "withdrawn"
    event = db.execute("SELECT * FROM audit_events WHERE action = 'withdraw_consent'").fetchone()
    assert event["entity_id"] == operation["patient_id"]
    assert event["changed_fields"] == ["consent"]
    assert counts(db)["operations"] == 1  # kept, but counted nowhere in reports


def test_erasing_a_patient_removes_every_record_of_theirs(client, tokens, db):
    operation = client.post("/v1/operations/", json=seed_case(),
                            headers={**tokens.header("submitter_a"), "Idempotency-Key": "k1"}).json
    client.post(f"/v1/operations/{operation['id']}/follow-ups", json=seed_follow_up(),
                headers={**tokens.header("submitter_a"), "Idempotency-Key": "k2"})
    client.post("/v1/operations/", json=seed_case() | {"local_ref": "B-keep"}, headers=tokens.header("submitter_b"))

    response = client.delete(f"/v1/patients/{operation['patient_id']}", headers=tokens.header("submitter_a"))
    assert response.status_code == 204
    assert counts(db) == {"patients": 1, "operations": 1, "implants": 1, "intraop_events": 1,
                          "postop_complications": 0, "follow_ups": 0}
    # the keys stay (a retry is refused, never re-run) but their stored answers are gone
    keys = db.execute("SELECT response_bytes, erased_at FROM idempotency_keys").fetchall()
    assert len(keys) == 2 and all(key["response_bytes"] is None and key["erased_at"] for key in keys)
    erase = db.execute("SELECT * FROM audit_events WHERE action = 'erase'").fetchone()
    assert (erase["entity"], erase["entity_id"], erase["changed_fields"]) == ("patient", operation["patient_id"], [])
    assert client.get(f"/v1/operations/{operation['id']}", headers=tokens.header("submitter_a")).status_code == 404


def test_audit_trail_records_who_when_and_what(client, tokens):
    _seed(client, tokens)
    events = client.get("/v1/audit/", headers=tokens.header("submitter_a")).json["items"]
    by_entity = {(event["entity"], event["action"]) for event in events}
    assert {("patient", "create"), ("operation", "create"), ("follow_up", "create")} <= by_entity
    operation_event = next(event for event in events if event["entity"] == "operation")
    assert operation_event["actor_token_id"] == tokens.id("submitter_a")
    assert operation_event["actor_role"] == "submitter"
    assert operation_event["request_id"]
    assert "intraop_events" in operation_event["changed_fields"]


def test_submitter_reads_only_its_own_centres_audit(client, tokens):
    _seed(client, tokens)
    events_b = client.get("/v1/audit/", headers=tokens.header("submitter_b")).json["items"]
    assert all(event["centre_id"] == tokens.centre_b["id"] for event in events_b)
    assert not any(event["entity"] == "operation" for event in events_b)
    # a submitter cannot widen its view with centre_id
    widened = client.get(f"/v1/audit/?centre_id={tokens.centre_a['id']}", headers=tokens.header("submitter_b"))
    assert all(event["centre_id"] == tokens.centre_b["id"] for event in widened.json["items"])


def test_admin_reads_every_centres_audit_and_analyst_none(client, tokens):
    _seed(client, tokens)
    events = client.get("/v1/audit/?entity=operation", headers=tokens.header("operator")).json["items"]
    assert [event["centre_id"] for event in events] == [tokens.centre_a["id"]]
    assert client.get("/v1/audit/", headers=tokens.header("analyst")).status_code == 403


def test_deleting_an_operation_is_audited(client, tokens, db):
    operation = _seed(client, tokens)
    assert client.delete(f"/v1/operations/{operation['id']}", headers=tokens.header("submitter_a")).status_code == 204
    assert counts(db)["operations"] == 0 and counts(db)["follow_ups"] == 0
    assert db.execute("SELECT count(*) AS n FROM audit_events WHERE action = 'delete'").fetchone()["n"] == 1
