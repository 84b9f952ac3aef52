"""Erasure is erasure: every trace goes at once, and no retry, replay or resend brings the patient back."""

import json

import psycopg
import pytest

from tests.records.helpers import count, seed_case, seed_follow_up
from tests.reports.maintenance import fold_queued
from tests.submissions.helpers import csv_body, csv_row, document

ERASED_REF = "TJH-P-0001"   # the seed case's patient


def _headers(tokens, key=None, **extra):
    return {**tokens.header("submitter_a"), **({"Idempotency-Key": key} if key else {}), **extra}


def _erase(client, tokens, patient_id):
    response = client.delete(f"/v1/patients/{patient_id}", headers=tokens.header("submitter_a"))
    assert response.status_code == 204, response.get_data(as_text=True)


def _seed_with_neighbour(client, tokens, key=None):
    """The seed case (to be erased) and another operation of another patient that stays."""
    erased = client.post("/v1/operations/", json=seed_case(), headers=_headers(tokens, key))
    assert erased.status_code == 201, erased.get_data(as_text=True)
    client.post(f"/v1/operations/{erased.json['id']}/follow-ups", json=seed_follow_up(), headers=_headers(tokens))
    kept = client.post("/v1/operations/", json=document(7, blood_loss_ml=450, duration_min=95, follow_ups=None),
                       headers=_headers(tokens))
    assert kept.status_code == 201, kept.get_data(as_text=True)
    return erased.json, kept.json


@pytest.mark.parametrize("maintained", [True, False], ids=["folded by the maintainer", "still queued"])
def test_the_report_tables_hold_no_clinical_fact_of_an_erased_operation_at_once(client, tokens, db, maintained):
    erased, kept = _seed_with_neighbour(client, tokens)
    if maintained:
        fold_queued(db)  # the erased operation's facts are in the report tables
    _erase(client, tokens, erased["patient_id"])
    total = client.get("/v1/reports/complications", headers=tokens.header("submitter_a")).json["total"]
    assert total["operations"] == 1  # every report, at once, maintainer or not
    fold_queued(db)  # the neighbour into the tallies (the erased operation is long gone)

    # not waiting for the next compaction: the log rows (with blood loss, duration, JOA) are gone
    assert db.execute("SELECT count(*) AS n FROM report_log WHERE operation_id = %s",
                      (erased["id"],)).fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM report_operations WHERE operation_id = %s",
                      (erased["id"],)).fetchone()["n"] == 0
    # no cell is left saying that some operation had the erased one's values (300 mL, 180 min)
    assert db.execute("SELECT count(*) AS n FROM report_histograms WHERE n = 0").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM report_tallies WHERE operations = 0").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM report_histograms WHERE metric = 'blood_loss' AND x = 300"
                      ).fetchone()["n"] == 0
    # the neighbour is still counted
    totals = db.execute("SELECT operations, blood_loss_sum FROM report_tallies WHERE centre_id = 0 AND dim = 'all'"
                        ).fetchone()
    assert (totals["operations"], totals["blood_loss_sum"]) == (1, 450)


def test_erasing_a_withdrawn_patient_leaves_no_log_rows_either(client, tokens, db):
    erased, _ = _seed_with_neighbour(client, tokens)
    url = f"/v1/patients/{erased['patient_id']}"
    etag = client.get(url, headers=_headers(tokens)).headers["ETag"]
    assert client.patch(url, json={"consent": "withdrawn"},
                        headers=_headers(tokens, **{"If-Match": etag})).status_code == 200
    fold_queued(db)  # the withdrawn facts are stored; its log rows folded
    _erase(client, tokens, erased["patient_id"])
    assert db.execute("SELECT count(*) AS n FROM report_log WHERE operation_id = %s",
                      (erased["id"],)).fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM report_operations WHERE operation_id = %s",
                      (erased["id"],)).fetchone()["n"] == 0


def test_bulk_submission_records_keep_nothing_of_an_erased_operation(client, tokens, db):
    json_report = client.post("/v1/submissions/", json=[document(1), document(2)],
                              headers=_headers(tokens, "bulk-json")).json
    csv_report = client.post("/v1/submissions/", data=csv_body([csv_row(1), csv_row(3)]),
                             headers=_headers(tokens, **{"Content-Type": "text/csv"})).json
    erased_operation = json_report["records"][0]["operation_id"]
    patient_id = client.get(f"/v1/operations/{erased_operation}", headers=_headers(tokens)).json["patient_id"]
    _erase(client, tokens, patient_id)

    for report, kept_ref in ((json_report, "OP-2"), (csv_report, "OP-3")):
        records = client.get(f"/v1/submissions/{report['id']}/records", headers=_headers(tokens)).json["items"]
        assert [record["outcome"] for record in records] == ["erased", "created"]
        assert records[0]["local_ref"] is None and records[0]["operation_id"] is None
        assert records[1]["local_ref"] == kept_ref
    rows = str(db.execute("SELECT * FROM submission_records").fetchall())
    assert "'OP-1'" not in rows
    assert db.execute("SELECT count(*) AS n FROM submission_records WHERE operation_id = %s",
                      (erased_operation,)).fetchone()["n"] == 0
    # the stored answer that listed it is gone too: its key is refused rather than replayed
    replay = client.post("/v1/submissions/", json=[document(1), document(2)], headers=_headers(tokens, "bulk-json"))
    assert replay.status_code == 410
    assert replay.mimetype == "application/problem+json"


def test_retrying_the_original_key_does_not_create_the_patient_again(client, tokens, db):
    erased, _ = _seed_with_neighbour(client, tokens, key="first-send")
    _erase(client, tokens, erased["patient_id"])

    retry = client.post("/v1/operations/", json=seed_case(), headers=_headers(tokens, "first-send"))
    assert retry.status_code == 410, retry.get_data(as_text=True)
    assert retry.mimetype == "application/problem+json"
    assert retry.json["type"].endswith("/erased")
    assert retry.json["errors"][0]["field"] == "Idempotency-Key"
    assert count(db, "patients") == 1 and count(db, "operations") == 1
    # the answer it stored (the erased operation, in full) is gone; the key stays, refused
    assert db.execute("SELECT count(*) AS n FROM idempotency_keys WHERE response_bytes IS NOT NULL"
                      " AND (patient_ids && ARRAY[%s]::bigint[] OR operation_ids && ARRAY[%s]::bigint[])",
                      (erased["patient_id"], erased["id"])).fetchone()["n"] == 0


@pytest.mark.parametrize("ref", [ERASED_REF, "ＴＪＨ-Ｐ-０００１"], ids=["same", "full-width look-alike"])
def test_resending_an_erased_patients_ref_is_refused_by_every_door(client, tokens, db, ref):
    erased, _ = _seed_with_neighbour(client, tokens)
    _erase(client, tokens, erased["patient_id"])
    resent = seed_case()
    resent["patient"]["ref"] = ref

    operation = client.post("/v1/operations/", json=resent, headers=_headers(tokens))
    assert operation.status_code == 410, operation.get_data(as_text=True)
    assert operation.mimetype == "application/problem+json"
    assert [error["field"] for error in operation.json["errors"]] == ["patient.ref"]

    patient = client.post("/v1/patients/", json=resent["patient"], headers=_headers(tokens, "new-key"))
    assert patient.status_code == 410
    assert [error["field"] for error in patient.json["errors"]] == ["ref"]

    for body, content_type in ((json.dumps([resent]).encode(), "application/json"),
                               (csv_body([csv_row(1, **{"patient.ref": ref})]), "text/csv")):
        bulk = client.post("/v1/submissions/", data=body, headers=_headers(tokens, **{"Content-Type": content_type}))
        assert bulk.status_code == 201, bulk.get_data(as_text=True)
        record = bulk.json["records"][0]
        assert record["outcome"] == "rejected"
        assert [error["field"] for error in record["errors"]] == ["patient.ref"]
    assert count(db, "patients") == 1 and count(db, "operations") == 1


def test_the_centre_lifts_an_erasure_when_the_patient_consents_again(client, tokens, db):
    erased, _ = _seed_with_neighbour(client, tokens)
    _erase(client, tokens, erased["patient_id"])
    # another centre cannot lift it, nor can the same ref at another centre be refused
    assert client.post("/v1/patients/lift-erasure", json={"ref": ERASED_REF},
                       headers=tokens.header("submitter_b")).status_code == 404
    assert client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_b")).status_code == 201

    lifted = client.post("/v1/patients/lift-erasure", json={"ref": ERASED_REF}, headers=_headers(tokens))
    assert lifted.status_code == 204
    assert db.execute("SELECT count(*) AS n FROM audit_events WHERE action = 'lift_erasure'").fetchone()["n"] == 1
    assert client.post("/v1/operations/", json=seed_case(), headers=_headers(tokens)).status_code == 201
    again = client.post("/v1/patients/lift-erasure", json={"ref": ERASED_REF}, headers=_headers(tokens))
    assert again.status_code == 404


def test_what_an_erasure_keeps_holds_no_ref_and_no_clinical_value(client, tokens, db):
    erased, _ = _seed_with_neighbour(client, tokens, key="first-send")
    _erase(client, tokens, erased["patient_id"])
    tombstones = db.execute("SELECT * FROM erased_patients").fetchall()
    assert len(tombstones) == 1
    assert set(tombstones[0]) == {"centre_id", "ref_tombstone", "erased_at"}
    assert bytes(tombstones[0]["ref_tombstone"]) not in {
        bytes(row["ref_hash"]) for row in db.execute("SELECT ref_hash FROM patients")}
    assert ERASED_REF not in str(db.execute("SELECT * FROM idempotency_keys").fetchall())


def test_audit_events_of_an_erased_patient_keep_who_when_and_what_but_no_values(client, tokens, db):
    # the trail's values column, whatever its name: here one the test adds, filled by default
    db.execute("ALTER TABLE audit_events ADD COLUMN test_values jsonb DEFAULT '{\"birth_year\": [null, 1973]}'")
    erased, kept = _seed_with_neighbour(client, tokens)
    identity = "SELECT centre_id, id, occurred_at, action, entity, entity_id, changed_fields FROM audit_events"
    before = db.execute(identity).fetchall()
    db.execute("ALTER TABLE audit_events ALTER COLUMN test_values DROP DEFAULT")
    _erase(client, tokens, erased["patient_id"])

    follow_up_ids = [row["entity_id"] for row in before if row["entity"] == "follow_up"]
    erased_records = {("patient", erased["patient_id"]), ("operation", erased["id"]),
                      *(("follow_up", id_) for id_ in follow_up_ids)}
    values = {}
    for row in db.execute("SELECT * FROM audit_events WHERE centre_id = %s AND action <> 'erase'",
                          (tokens.centre_a["id"],)):
        values.setdefault((row["entity"], row["entity_id"]), []).append(row["test_values"])
    for record in erased_records:
        assert values[record] == [None], record
    assert values[("operation", kept["id"])] == [{"birth_year": [None, 1973]}]
    assert values[("patient", kept["patient"]["id"])] == [{"birth_year": [None, 1973]}]
    # who, when, which record and which fields stay
    after = db.execute(identity).fetchall()
    assert all(row in after for row in before)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # and the trail is append-only otherwise
        db.execute("UPDATE audit_events SET test_values = NULL")
