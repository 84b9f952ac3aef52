"""The audit trail shows what changed: who, when, which record, and its values old → new,
with the API's field names and values; never a patient's ref or a token's secret, and nothing
of an erased patient."""

import hashlib

from tests.records.helpers import operation, seed_case, seed_follow_up
from tests.submissions.helpers import document

SEED_REF = seed_case()["patient"]["ref"]


def _post(client, tokens, url, body, who="submitter_a"):
    response = client.post(url, json=body, headers=tokens.header(who))
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response.json


def _events(db, entity, entity_id=None):
    return db.execute("SELECT * FROM audit_events WHERE entity = %s AND (%s::bigint IS NULL OR entity_id = %s)"
                      " ORDER BY id", (entity, entity_id, entity_id)).fetchall()


def test_an_operation_update_records_each_changed_field_old_and_new_as_the_api_shows_it(client, tokens, db):
    created = _post(client, tokens, "/v1/operations/", seed_case())
    events = seed_case()["intraop_events"] + [{"type": "dural_tear", "level": "C5", "side": None,
                                                "management": "Primary suture"}]
    _post(client, tokens, "/v1/operations/", operation(levels={"from": "C3", "to": "C7"}, intraop_events=events,
                                                       operation_date="2016-02-01"))
    update = _events(db, "operation", created["id"])[-1]
    assert update["action"] == "update"
    assert update["changed_fields"] == ["intraop_events", "levels", "operation_date"]
    changes = update["changes"]
    assert changes["levels"] == {"old": {"from": "C3", "to": "C6"}, "new": {"from": "C3", "to": "C7"}}
    assert changes["operation_date"] == {"old": "2016-01-01", "new": "2016-02-01"}
    # a list is recorded whole, each item as the API shows it
    assert changes["intraop_events"]["old"] == created["intraop_events"]
    assert changes["intraop_events"]["new"][1] == {
        "type": "dural_tear", "instrument": None, "instrument_detail": None, "retained_fragment": None,
        "level": "C5", "side": None, "site": None, "grade": None, "management": "Primary suture",
        "description": None, "reported_by": None, "saves_grade": None}


def test_moving_an_operation_to_another_patient_records_the_patient_ids(client, tokens, db):
    created = _post(client, tokens, "/v1/operations/", seed_case())
    other = dict(seed_case()["patient"], ref="TJH-P-0002", birth_year=1980)
    moved = _post(client, tokens, "/v1/operations/", operation(patient=other))
    update = _events(db, "operation", created["id"])[-1]
    assert update["changes"] == {"patient_id": {"old": created["patient_id"], "new": moved["patient_id"]},
                                 "age_at_surgery": {"old": 43, "new": 36}}


def test_creation_records_the_new_values_and_deletion_the_old_ones(client, tokens, db):
    created = _post(client, tokens, "/v1/operations/", seed_case())
    follow_up = _post(client, tokens, f"/v1/operations/{created['id']}/follow-ups", seed_follow_up())
    assert client.delete(f"/v1/operations/{created['id']}", headers=tokens.header("submitter_a")).status_code == 204

    create, delete = _events(db, "operation", created["id"])
    for name, change in create["changes"].items():  # each value as the API shows it
        assert change == {"new": created[name]}, name
    assert create["changes"]["blood_loss_ml"] == {"new": 300}
    assert create["changes"]["patient_id"] == {"new": created["patient_id"]}
    assert "transfusion" not in create["changes"]  # null: nothing was given
    assert create["changed_fields"] == sorted(create["changes"])
    assert delete["changes"]["blood_loss_ml"] == {"old": 300}
    assert delete["changes"]["instrumentation"]["old"] == created["instrumentation"]
    assert {name for change in delete["changes"].values() for name in change} == {"old"}

    (follow_up_create,) = _events(db, "follow_up", follow_up["id"])
    assert follow_up_create["changes"]["joa"] == {"new": 14}
    assert follow_up_create["changes"]["operation_id"] == {"new": created["id"]}


def test_a_follow_up_date_is_named_date_as_in_the_api(client, tokens, db):
    created = _post(client, tokens, "/v1/operations/", seed_case())
    url = f"/v1/operations/{created['id']}/follow-ups"
    follow_up = _post(client, tokens, url, seed_follow_up())
    moved_date = {name: value for name, value in seed_follow_up().items() if name != "months_after"}
    _post(client, tokens, url, dict(moved_date, date="2020-03-01"))
    assert client.delete(f"/v1/follow-ups/{follow_up['id']}", headers=tokens.header("submitter_a")).status_code == 204

    create, update, delete = _events(db, "follow_up", follow_up["id"])
    for event in (create, update, delete):
        assert "follow_up_date" not in event["changed_fields"] and "follow_up_date" not in event["changes"]
    assert create["changes"]["date"] == {"new": "2020-01-01"}
    assert update["changed_fields"] == ["date", "months_after"]
    assert update["changes"] == {"date": {"old": "2020-01-01", "new": "2020-03-01"},
                                 "months_after": {"old": 48, "new": 50}}
    assert delete["changes"]["date"] == {"old": "2020-03-01"}


def test_older_events_show_the_follow_up_date_as_date_too(client, tokens, db):
    # as the code before migration 0009 wrote them: the column's name and no values
    db.execute("INSERT INTO audit_events (centre_id, actor_role, action, entity, entity_id, changed_fields)"
               " VALUES (%s, 'submitter', 'update', 'follow_up', 1, ARRAY['follow_up_date', 'months_after'])",
               (tokens.centre_a["id"],))
    (event,) = client.get("/v1/audit/?entity=follow_up", headers=tokens.header("submitter_a")).json["items"]
    assert event["changed_fields"] == ["date", "months_after"]
    assert event["changes"] is None


def test_a_patient_change_records_its_values_but_never_the_ref(client, tokens, db):
    created = _post(client, tokens, "/v1/operations/", seed_case())
    url = f"/v1/patients/{created['patient_id']}"
    etag = client.get(url, headers=tokens.header("submitter_a")).headers["ETag"]
    response = client.patch(url, json={"consent": "withdrawn"},
                            headers={**tokens.header("submitter_a"), "If-Match": etag})
    assert response.status_code == 200, response.get_data(as_text=True)

    create, withdraw = _events(db, "patient", created["patient_id"])
    assert create["changes"]["birth_year"] == {"new": 1973}
    assert "ref" not in create["changes"] and "genes" not in create["changes"]  # none given
    assert (withdraw["action"], withdraw["changes"]) == ("withdraw_consent",
                                                        {"consent": {"old": "active", "new": "withdrawn"}})
    trail = str(db.execute("SELECT * FROM audit_events").fetchall())
    ref_hash = db.execute("SELECT ref_hash FROM patients").fetchone()["ref_hash"]
    assert SEED_REF not in trail and bytes(ref_hash).hex() not in trail


def test_the_audit_endpoint_returns_the_values(client, tokens):
    created = _post(client, tokens, "/v1/operations/", seed_case())
    _post(client, tokens, "/v1/operations/", operation(blood_loss_ml=350))
    items = client.get(f"/v1/audit/?entity=operation&entity_id={created['id']}&action=update",
                       headers=tokens.header("submitter_a")).json["items"]
    assert [(item["changed_fields"], item["changes"]) for item in items] == [
        (["blood_loss_ml"], {"blood_loss_ml": {"old": 300, "new": 350}})]


def test_bulk_creations_record_the_same_values_as_the_record_api(client, tokens, db):
    bulk = client.post("/v1/submissions/", json=[document(1)], headers=tokens.header("submitter_a"))
    assert bulk.status_code == 201, bulk.get_data(as_text=True)
    single = _post(client, tokens, "/v1/operations/", document(1, follow_ups=None), who="submitter_b")
    _post(client, tokens, f"/v1/operations/{single['id']}/follow-ups", document(1)["follow_ups"][0], who="submitter_b")

    def changes(centre):
        rows = db.execute("SELECT entity, changed_fields, changes FROM audit_events WHERE centre_id = %s"
                          " AND action = 'create' AND entity IN ('patient', 'operation', 'follow_up') ORDER BY id",
                          (centre["id"],)).fetchall()
        for row in rows:  # the records' ids differ between the centres, nothing else
            for name in ("patient_id", "operation_id"):
                row["changes"].pop(name, None)
        return rows

    by_bulk = changes(tokens.centre_a)
    assert [row["entity"] for row in by_bulk] == ["patient", "operation", "follow_up"]
    assert by_bulk == changes(tokens.centre_b)
    assert by_bulk[2]["changes"]["date"] == {"new": "2020-01-01"}


def test_token_events_record_no_secret_and_no_hash(client, tokens, db):
    issued = client.post("/v1/tokens/", json={"centre_id": tokens.centre_a["id"], "role": "submitter",
                                              "label": "lab feed"}, headers=tokens.header("centre_admin_a"))
    assert issued.status_code == 201, issued.get_data(as_text=True)
    rotated = client.post(f"/v1/tokens/{issued.json['id']}/rotate", json={"grace_hours": 0},
                          headers=tokens.header("centre_admin_a"))
    assert rotated.status_code in (200, 201), rotated.get_data(as_text=True)

    create, rotate = _events(db, "token", issued.json["id"])
    assert create["changes"]["role"] == {"new": "submitter"}
    assert create["changes"]["label"] == {"new": "lab feed"}
    assert rotate["changes"]["successor_token_id"] == {"old": None, "new": rotated.json["id"]}
    trail = str(db.execute("SELECT * FROM audit_events").fetchall())
    for secret in (issued.json["token"], rotated.json["token"]):
        assert secret not in trail and hashlib.sha256(secret.encode()).hexdigest() not in trail
    for row in db.execute("SELECT token_hash FROM tokens"):
        assert bytes(row["token_hash"]).hex() not in trail


def test_erasure_clears_the_values_of_operations_deleted_or_moved_away_earlier(client, tokens, db):
    deleted = _post(client, tokens, "/v1/operations/", seed_case())
    deleted_follow_up = _post(client, tokens, f"/v1/operations/{deleted['id']}/follow-ups", seed_follow_up())
    assert client.delete(f"/v1/operations/{deleted['id']}", headers=tokens.header("submitter_a")).status_code == 204
    moved = _post(client, tokens, "/v1/operations/", operation(local_ref="TJH-2016-147"))
    other = dict(seed_case()["patient"], ref="TJH-P-0002")
    _post(client, tokens, "/v1/operations/", operation(local_ref="TJH-2016-147", patient=other))
    kept = _post(client, tokens, "/v1/operations/", operation(local_ref="TJH-2016-148", patient=other))

    assert client.delete(f"/v1/patients/{deleted['patient_id']}",
                         headers=tokens.header("submitter_a")).status_code == 204
    for entity, entity_id in (("patient", deleted["patient_id"]), ("operation", deleted["id"]),
                              ("follow_up", deleted_follow_up["id"]), ("operation", moved["id"])):
        events = [event for event in _events(db, entity, entity_id) if event["action"] != "erase"]
        assert events and all(event["changes"] is None for event in events), (entity, entity_id)
        assert all(event["changed_fields"] for event in events)  # which fields changed stays
    # the other patient's own operation keeps its values
    (kept_create,) = _events(db, "operation", kept["id"])
    assert kept_create["changes"]["blood_loss_ml"] == {"new": 300}
