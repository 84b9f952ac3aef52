"""A JSON array of operation documents: each record judged by the record API's rules."""

from tests.records.helpers import counts
from tests.submissions.helpers import document


def submit(client, tokens, documents, mode="partial", who="submitter_a", **headers):
    return client.post(f"/v1/submissions/?mode={mode}", json=documents, headers=tokens.header(who) | headers)


def test_a_batch_creates_every_operation_with_its_follow_up(client, tokens, db):
    response = submit(client, tokens, [document(1), document(2), document(3)])
    assert response.status_code == 201, response.json
    report = response.json
    assert (report["status"], report["total"], report["created"], report["rejected"]) == ("accepted", 3, 3, 0)
    assert [(r["index"], r["local_ref"], r["outcome"]) for r in report["records"]] == [
        (0, "OP-1", "created"), (1, "OP-2", "created"), (2, "OP-3", "created")]
    assert counts(db) == {"patients": 3, "operations": 3, "implants": 3, "intraop_events": 3,
                          "postop_complications": 0, "follow_ups": 3}
    operation = client.get(f"/v1/operations/{report['records'][0]['operation_id']}",
                           headers=tokens.header("submitter_a")).json
    assert operation["local_ref"] == "OP-1"
    assert (operation["vertebra_count"], operation["segment_count"], operation["age_at_surgery"]) == (4, 3, 43)
    assert operation["intraop_events"][0]["instrument"] == "drill_bit"
    follow_ups = client.get(f"/v1/operations/{operation['id']}/follow-ups", headers=tokens.header("submitter_a")).json
    assert [(f["local_ref"], f["months_after"], f["date"]) for f in follow_ups["items"]] == [
        ("OP-1-FU48", 48, "2020-01-01")]


def test_bulk_records_read_back_like_records_sent_one_by_one(client, tokens):
    single = client.post("/v1/operations/", json=document(1, follow_ups=None), headers=tokens.header("submitter_a")).json
    bulk = submit(client, tokens, [document(1, follow_ups=None)], who="submitter_b").json
    read = client.get(f"/v1/operations/{bulk['records'][0]['operation_id']}", headers=tokens.header("submitter_b")).json
    ignored = {"id", "patient_id", "patient", "created_at", "updated_at"}
    assert {k: v for k, v in read.items() if k not in ignored} == {k: v for k, v in single.items() if k not in ignored}


def test_free_text_with_tabs_newlines_and_backslashes_is_stored_and_audited_as_sent(client, tokens, db):
    # bulk writes COPY text it escapes itself: what reads back and what is audited must be the record API's
    text = 'a\\b\tc\nd\r"e" é \\N \\x41'
    sent = document(1, notes=text, follow_ups=None)
    sent["intraop_events"][0]["description"] = text
    single = client.post("/v1/operations/", json=sent, headers=tokens.header("submitter_a")).json
    with_follow_up = dict(sent, follow_ups=[dict(document(1)["follow_ups"][0], notes=text)])
    bulk = submit(client, tokens, [with_follow_up], who="submitter_b").json
    operation_id = bulk["records"][0]["operation_id"]
    read = client.get(f"/v1/operations/{operation_id}", headers=tokens.header("submitter_b")).json
    assert (read["notes"], read["intraop_events"][0]["description"]) == (text, text)
    ignored = {"id", "patient_id", "patient", "created_at", "updated_at"}
    assert {k: v for k, v in read.items() if k not in ignored} == {k: v for k, v in single.items() if k not in ignored}
    follow_ups = client.get(f"/v1/operations/{operation_id}/follow-ups", headers=tokens.header("submitter_b")).json
    assert follow_ups["items"][0]["notes"] == text
    audited = db.execute("SELECT entity_id, changed_fields, changes FROM audit_events"
                         " WHERE entity = 'operation' AND action = 'create' ORDER BY id").fetchall()
    assert [event["entity_id"] for event in audited] == [single["id"], operation_id]
    assert audited[0]["changed_fields"] == audited[1]["changed_fields"]
    assert audited[1]["changes"]["patient_id"] == {"new": read["patient_id"]}
    assert ({k: v for k, v in audited[0]["changes"].items() if k != "patient_id"}
            == {k: v for k, v in audited[1]["changes"].items() if k != "patient_id"})
    assert audited[1]["changes"]["notes"] == {"new": text}


def test_partial_stores_the_good_records_and_reports_the_bad_ones_by_index_and_field(client, tokens, db):
    bad_event = document(2)
    bad_event["intraop_events"][0]["instrument"] = None
    bad_date = document(3, operation_date="2999-01-01")
    report = submit(client, tokens, [document(1), bad_event, bad_date, document(4)]).json
    assert (report["status"], report["created"], report["rejected"]) == ("partially_accepted", 2, 2)
    rejected = {r["index"]: r for r in report["records"] if r["outcome"] == "rejected"}
    assert rejected[1]["errors"] == [{"field": "intraop_events.0.instrument", "pointer": "/intraop_events/0/instrument",
                                      "location": "json", "message": "An instrument breakage must name the instrument."}]
    assert [e["field"] for e in rejected[2]["errors"]] == ["operation_date"]
    assert rejected[1]["operation_id"] is None
    stored = {row["local_ref"] for row in db.execute("SELECT local_ref FROM operations").fetchall()}
    assert stored == {"OP-1", "OP-4"}
    assert counts(db)["patients"] == 2


def test_atomic_stores_nothing_when_one_record_is_rejected(client, tokens, db):
    bad = document(2, region="cervical", levels=None)
    response = submit(client, tokens, [document(1), bad, document(3)], mode="atomic")
    assert response.status_code == 201
    report = response.json
    assert (report["status"], report["created"], report["rejected"], report["not_stored"]) == ("rejected", 0, 1, 2)
    assert [r["outcome"] for r in report["records"]] == ["not_stored", "rejected", "not_stored"]
    assert report["records"][1]["errors"][0]["field"] == "levels"
    assert counts(db) == dict.fromkeys(counts(db), 0)
    assert db.execute("SELECT count(*) AS n FROM audit_events WHERE entity = 'operation'").fetchone()["n"] == 0
    # the submission and its report are kept, to fix and resend
    kept = client.get(f"/v1/submissions/{report['id']}", headers=tokens.header("submitter_a")).json
    assert (kept["status"], kept["rejected"], kept["not_stored"]) == ("rejected", 1, 2)


def test_atomic_stores_everything_when_every_record_is_good(client, tokens, db):
    report = submit(client, tokens, [document(1), document(2)], mode="atomic").json
    assert (report["status"], report["created"]) == ("accepted", 2)
    assert counts(db)["operations"] == 2


def test_resending_the_same_batch_changes_nothing(client, tokens, db):
    batch = [document(1), document(2), document(3)]
    first = submit(client, tokens, batch).json
    versions = db.execute("SELECT id, version, updated_at FROM operations ORDER BY id").fetchall()
    audit = db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"]
    again = submit(client, tokens, batch).json
    assert (again["status"], again["unchanged"], again["created"], again["updated"]) == ("accepted", 3, 0, 0)
    assert [r["operation_id"] for r in again["records"]] == [r["operation_id"] for r in first["records"]]
    assert db.execute("SELECT id, version, updated_at FROM operations ORDER BY id").fetchall() == versions
    assert db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"] == audit
    assert counts(db)["follow_ups"] == 3


def test_a_corrected_record_updates_its_operation_and_follow_up(client, tokens, db):
    submit(client, tokens, [document(1), document(2)])
    corrected = document(2, duration_min=200)
    corrected["follow_ups"][0].pop("scores")  # corrected in the legacy form: joa is the 17-point JOA
    corrected["follow_ups"][0]["joa"] = 15
    report = submit(client, tokens, [document(1), corrected]).json
    assert [r["outcome"] for r in report["records"]] == ["unchanged", "updated"]
    operation = db.execute("SELECT duration_min, version FROM operations WHERE local_ref = 'OP-2'").fetchone()
    assert (operation["duration_min"], operation["version"]) == (200, 2)
    assert db.execute("SELECT joa::float8 AS joa FROM follow_ups WHERE local_ref = 'OP-2-FU48'").fetchone()["joa"] == 15
    changes = db.execute("SELECT entity, changed_fields FROM audit_events WHERE action = 'update' ORDER BY id").fetchall()
    assert [(c["entity"], c["changed_fields"]) for c in changes] == [("operation", ["duration_min"]),
                                                                      ("follow_up", ["joa"])]


def test_every_creation_is_audited_like_the_record_api(client, tokens, db):
    report = submit(client, tokens, [document(1)]).json
    events = db.execute("SELECT entity, action, actor_token_id, actor_role, request_id FROM audit_events"
                        " WHERE entity IN ('patient', 'operation', 'follow_up') ORDER BY id").fetchall()
    assert [(e["entity"], e["action"]) for e in events] == [("patient", "create"), ("operation", "create"),
                                                           ("follow_up", "create")]
    assert {e["actor_token_id"] for e in events} == {tokens.id("submitter_a")}
    assert all(e["request_id"] for e in events)
    single = client.post("/v1/operations/", json=document(9, follow_ups=None), headers=tokens.header("submitter_b"))
    fields = db.execute("SELECT entity, changed_fields FROM audit_events WHERE action = 'create'"
                        " AND entity IN ('operation', 'patient') ORDER BY id").fetchall()
    assert fields[0]["changed_fields"] == fields[2]["changed_fields"]  # patients
    assert fields[1]["changed_fields"] == fields[3]["changed_fields"]  # operations
    assert report["records"][0]["operation_id"] and single.status_code == 201


def test_an_operation_sent_twice_in_one_batch_is_rejected_the_second_time(client, tokens):
    report = submit(client, tokens, [document(1), document(1)]).json
    assert [r["outcome"] for r in report["records"]] == ["created", "rejected"]
    assert report["records"][1]["errors"][0]["field"] == "local_ref"
    assert "index 0" in report["records"][1]["errors"][0]["message"]


def test_one_patient_described_two_ways_is_rejected(client, tokens):
    second = document(2)
    second["patient"]["ref"] = "P-1"
    second["patient"]["birth_year"] = 1980
    report = submit(client, tokens, [document(1), second]).json
    assert [r["outcome"] for r in report["records"]] == ["created", "rejected"]
    assert report["records"][1]["errors"][0]["field"] == "patient"


def test_several_operations_of_one_patient_share_the_patient(client, tokens, db):
    second = document(2)
    second["patient"] = document(1)["patient"]
    report = submit(client, tokens, [document(1), second]).json
    assert report["created"] == 2
    assert counts(db)["patients"] == 1


def test_a_follow_up_needs_a_local_ref_and_a_date_after_the_operation(client, tokens):
    no_ref = document(1)
    del no_ref["follow_ups"][0]["local_ref"]
    too_early = document(2)
    too_early["follow_ups"][0] = {"local_ref": "FU-2", "date": "2015-06-01"}
    report = submit(client, tokens, [no_ref, too_early]).json
    assert [e["field"] for e in report["records"][0]["errors"]] == ["follow_ups.0.local_ref"]
    assert [e["field"] for e in report["records"][1]["errors"]] == ["follow_ups.0.date"]


def test_a_follow_up_of_another_operation_is_not_taken_over(client, tokens):
    submit(client, tokens, [document(1)])
    thief = document(2)
    thief["follow_ups"][0]["local_ref"] = "OP-1-FU48"
    report = submit(client, tokens, [thief]).json
    assert report["records"][0]["errors"][0]["field"] == "follow_ups.0.local_ref"


def test_records_may_name_an_existing_patient_by_id(client, tokens):
    first = submit(client, tokens, [document(1)]).json
    patient_id = client.get(f"/v1/operations/{first['records'][0]['operation_id']}",
                            headers=tokens.header("submitter_a")).json["patient_id"]
    report = submit(client, tokens, [document(2, patient=None, patient_id=patient_id),
                                     document(3, patient=None, patient_id=patient_id + 1000)]).json
    assert [r["outcome"] for r in report["records"]] == ["created", "rejected"]
    assert report["records"][1]["errors"][0]["field"] == "patient_id"


def test_an_element_that_is_not_a_document_is_rejected_alone(client, tokens):
    report = submit(client, tokens, [document(1), 42, "text", None, document(2)]).json
    assert [r["outcome"] for r in report["records"]] == ["created", "rejected", "rejected", "rejected", "created"]


def test_a_body_that_is_not_a_json_array_is_refused_whole(client, tokens, db):
    for body in (b'{"local_ref": "x"}', b"[{}, {", b"[{}] trailing", b"[{} {}]", b"\xff\xfe"):
        response = client.post("/v1/submissions/", data=body, content_type="application/json",
                               headers=tokens.header("submitter_a"))
        assert response.status_code == 422, body
        assert response.mimetype == "application/problem+json"
    assert db.execute("SELECT count(*) AS n FROM submissions").fetchone()["n"] == 0


def test_an_empty_array_is_an_empty_submission(client, tokens):
    report = submit(client, tokens, []).json
    assert (report["status"], report["total"], report["records"]) == ("accepted", 0, [])


def test_unknown_fields_are_refused(client, tokens):
    report = submit(client, tokens, [document(1, surgeon="Dr X")]).json
    assert report["records"][0]["errors"][0]["field"] == "surgeon"


def test_an_unknown_mode_is_refused(client, tokens):
    response = submit(client, tokens, [document(1)], mode="sometimes")
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "mode"
