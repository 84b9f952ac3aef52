"""Every rule a data manager expects answers 422 naming the field, and stores nothing."""

import datetime as dt

import pytest

from tests.records.helpers import counts, operation, seed_case, seed_follow_up

TOMORROW = (dt.date.today() + dt.timedelta(days=1)).isoformat()
NEXT_YEAR = dt.date.today().year + 1


def with_patient(**changes):
    document = seed_case()
    document["patient"].update(changes)
    return document


def with_event(**changes):
    document = seed_case()
    document["intraop_events"][0].update(changes)
    for name, value in changes.items():
        if value is ...:
            del document["intraop_events"][0][name]
    return document


def with_nested(field, **changes):
    document = seed_case()
    document[field] = {**(document.get(field) or {}), **changes}
    return document


def with_implant(**changes):
    document = seed_case()
    document["instrumentation"]["implants"][0].update(changes)
    return document


def with_complication(**changes):
    document = seed_case()
    document["postop_complications"] = [{"type": "c5_palsy", "days_after": 2, "grade": "II", **changes}]
    return document


INVALID_OPERATIONS = {
    "unknown top-level field": (operation(surgeon="Dr X"), "surgeon"),
    "unknown nested field": (with_event(colour="red"), "intraop_events.0.colour"),
    "missing local_ref": (operation(local_ref=None), "local_ref"),
    "empty local_ref": (operation(local_ref=""), "local_ref"),
    "local_ref too long": (operation(local_ref="x" * 101), "local_ref"),
    "NUL byte in notes": (operation(notes="drill\x00bit"), "notes"),
    "notes too long": (operation(notes="x" * 4001), "notes"),
    "operation in the future": (operation(operation_date=TOMORROW), "operation_date"),
    "operation date malformed": (operation(operation_date="03/04/2016"), "operation_date"),
    "operation before 1900": (operation(operation_date="1899-12-31"), "operation_date"),
    "unknown approach": (operation(approach="sideways"), "approach"),
    "unknown region": (operation(region="elbow-ish"), "region"),
    "unknown procedure": (operation(procedures=["laminectomy", "magic"]), "procedures.1"),
    "no procedure": (operation(procedures=[]), "procedures"),
    "repeated procedure": (operation(procedures=["fusion", "fusion"]), "procedures"),
    "levels missing in the cervical spine": (operation(levels=None), "levels"),
    "levels out of order": (operation(levels={"from": "C6", "to": "C3"}), "levels.to"),
    "level not on the column": (operation(levels={"from": "C3", "to": "C8"}), "levels.to"),
    "level missing its end": (operation(levels={"from": "C3"}), "levels.to"),
    "duration zero": (operation(duration_min=0), "duration_min"),
    "duration over two days": (operation(duration_min=2881), "duration_min"),
    "duration as text": (operation(duration_min="180"), "duration_min"),
    "duration fractional": (operation(duration_min=180.5), "duration_min"),
    "negative blood loss": (operation(blood_loss_ml=-1), "blood_loss_ml"),
    "absurd blood loss": (operation(blood_loss_ml=50001), "blood_loss_ml"),
    "transfusion as string": (operation(transfusion="yes"), "transfusion"),
    "JOA above 17": (with_nested("preop_scores", joa=17.5), "preop_scores.joa"),
    "JOA negative": (with_nested("preop_scores", joa=-1), "preop_scores.joa"),
    "JOA in quarter points": (with_nested("preop_scores", joa=10.25), "preop_scores.joa"),
    "mJOA above 18": (with_nested("preop_scores", mjoa=19), "preop_scores.mjoa"),
    "immobilization weeks over two years": (with_nested("immobilization", weeks=105), "immobilization.weeks"),
    "immobilization without type": (operation(immobilization={"weeks": 4}), "immobilization.type"),
    "breakage without instrument": (with_event(instrument=None), "intraop_events.0.instrument"),
    "breakage with instrument omitted": (with_event(instrument=...), "intraop_events.0.instrument"),
    "unknown instrument": (with_event(instrument="spoon"), "intraop_events.0.instrument"),
    "retained fragment on a dural tear": (with_event(type="dural_tear", instrument=None),
                                          "intraop_events.0.retained_fragment"),
    "unknown event type": (with_event(type="mishap"), "intraop_events.0.type"),
    "ClassIntra grade VI": (with_event(grade="VI"), "intraop_events.0.grade"),
    "event level off the column": (with_event(level="C9"), "intraop_events.0.level"),
    "too many events": (operation(intraop_events=[{"type": "dural_tear"}] * 51), "intraop_events"),
    "complication without grade": (with_complication(grade=None), "postop_complications.0.grade"),
    "Clavien-Dindo grade IIIc": (with_complication(grade="IIIc"), "postop_complications.0.grade"),
    "complication ten years later": (with_complication(days_after=3651), "postop_complications.0.days_after"),
    "unknown complication": (with_complication(type="bad luck"), "postop_complications.0.type"),
    "unknown implant kind": (with_implant(kind="glue"), "instrumentation.implants.0.kind"),
    "implant count zero": (with_implant(count=0), "instrumentation.implants.0.count"),
    "implant side unknown": (with_implant(side="up"), "instrumentation.implants.0.side"),
    "unknown bone graft": (operation(bone_graft=["unicorn"]), "bone_graft.0"),
    "patient missing": (operation(patient=None), "patient"),
    "patient given twice": (operation(patient_id=1), "patient"),
    "patient ref missing": (with_patient(ref=None), "patient.ref"),
    "patient ref with padding": (with_patient(ref=" P1 "), "patient.ref"),
    "unknown diagnosis": (with_patient(diagnosis="brittle"), "patient.diagnosis"),
    "unknown gene": (with_patient(genes=["CLCN7", "XYZ1"]), "patient.genes.1"),
    "birth year in the future": (with_patient(birth_year=NEXT_YEAR), "patient.birth_year"),
    "birth year after the operation": (with_patient(birth_year=2017), "patient.birth_year"),
    "unknown consent": (with_patient(consent="maybe"), "patient.consent"),
    "unknown field in patient": (with_patient(name="John"), "patient.name"),
    "derived field sent": (operation(vertebra_count=4), "vertebra_count"),
}


@pytest.mark.parametrize("document, field", INVALID_OPERATIONS.values(), ids=INVALID_OPERATIONS.keys())
def test_invalid_operation_is_refused_naming_the_field(client, tokens, db, document, field):
    response = client.post("/v1/operations/", json=document, headers=tokens.header("submitter_a"))
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in [error["field"] for error in response.json["errors"]], response.json["errors"]
    assert counts(db) == dict.fromkeys(counts(db), 0)


def test_operation_outside_the_spine_needs_no_levels(client, tokens):
    document = operation(region="femur", levels=None, procedures=["fracture_fixation"], indication="fracture")
    assert client.post("/v1/operations/", json=document, headers=tokens.header("submitter_a")).status_code == 201


def test_patient_by_id_of_another_centre_is_refused(client, tokens, db):
    other = client.post("/v1/patients/", json=seed_case()["patient"], headers=tokens.header("submitter_b")).json
    document = operation(patient=None, patient_id=other["id"])
    response = client.post("/v1/operations/", json=document, headers=tokens.header("submitter_a"))
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "patient_id"
    assert db.execute("SELECT count(*) AS n FROM operations").fetchone()["n"] == 0


def _operation_id(client, tokens):
    return client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json["id"]


INVALID_FOLLOW_UPS = {
    "neither date nor months": ({"joa": 14}, "date"),
    "before the operation": ({"date": "2015-12-31"}, "date"),
    "in the future": ({"date": TOMORROW}, "date"),
    "months pointing to the future": ({"months_after": 1200}, "months_after"),
    "date and months disagree": ({"date": "2020-01-01", "months_after": 12}, "months_after"),
    "negative months": ({"months_after": -1}, "months_after"),
    "JOA above 17": ({"months_after": 12, "joa": 18}, "joa"),
    "mJOA above 18": ({"months_after": 12, "mjoa": 19}, "mjoa"),
    "unknown fusion status": ({"months_after": 12, "fusion_status": "glued"}, "fusion_status"),
    "unknown implant status": ({"months_after": 12, "implant_status": "vanished"}, "implant_status"),
    "unknown assessment": ({"months_after": 12, "assessment": "palpation"}, "assessment"),
    "revision reason without revision": ({"months_after": 12, "revision_reason": "loosening"}, "revision_reason"),
    "unknown field": ({"months_after": 12, "colour": "red"}, "colour"),
}


@pytest.mark.parametrize("follow_up, field", INVALID_FOLLOW_UPS.values(), ids=INVALID_FOLLOW_UPS.keys())
def test_invalid_follow_up_is_refused_naming_the_field(client, tokens, db, follow_up, field):
    operation_id = _operation_id(client, tokens)
    response = client.post(f"/v1/operations/{operation_id}/follow-ups", json=follow_up,
                           headers=tokens.header("submitter_a"))
    assert response.status_code == 422, response.json
    assert field in [error["field"] for error in response.json["errors"]]
    assert db.execute("SELECT count(*) AS n FROM follow_ups").fetchone()["n"] == 0


def test_moving_an_operation_after_its_follow_up_is_refused(client, tokens, db):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    client.post(f"/v1/operations/{created.json['id']}/follow-ups", json=seed_follow_up(),
                headers=tokens.header("submitter_a"))
    response = client.patch(created.headers["Location"], json={"operation_date": "2021-01-01"},
                            headers={**tokens.header("submitter_a"), "If-Match": created.headers["ETag"]})
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "operation_date"
    stored = db.execute("SELECT operation_date, version FROM operations").fetchone()
    assert (stored["operation_date"].isoformat(), stored["version"]) == ("2016-01-01", 1)


INVALID_PATIENTS = {
    "missing diagnosis": ({"ref": "P9"}, "diagnosis"),
    "birth year before 1880": ({"ref": "P9", "diagnosis": "aro", "birth_year": 1879}, "birth_year"),
    "repeated gene": ({"ref": "P9", "diagnosis": "aro", "genes": ["TCIRG1", "TCIRG1"]}, "genes"),
    "family history as 1": ({"ref": "P9", "diagnosis": "aro", "family_history": 1}, "family_history"),
    "ref of 101 characters": ({"ref": "P" * 101, "diagnosis": "aro"}, "ref"),
    "control character in ref": ({"ref": "P\x079", "diagnosis": "aro"}, "ref"),
}


@pytest.mark.parametrize("patient, field", INVALID_PATIENTS.values(), ids=INVALID_PATIENTS.keys())
def test_invalid_patient_is_refused_naming_the_field(client, tokens, db, patient, field):
    response = client.post("/v1/patients/", json=patient, headers=tokens.header("submitter_a"))
    assert response.status_code == 422
    assert field in [error["field"] for error in response.json["errors"]]
    assert db.execute("SELECT count(*) AS n FROM patients").fetchone()["n"] == 0


def test_a_body_that_is_not_an_object_is_refused(client, tokens, db):
    response = client.post("/v1/operations/", json=[seed_case()], headers=tokens.header("submitter_a"))
    assert response.status_code == 422
    assert counts(db)["operations"] == 0


def test_invalid_list_filters_name_the_parameter(client, tokens):
    response = client.get("/v1/operations/?approach=sideways&date_from=2020-01-01&date_to=2019-01-01",
                          headers=tokens.header("submitter_a"))
    assert response.status_code == 422
    assert {error["field"] for error in response.json["errors"]} == {"approach", "date_to"}
    assert all(error["location"] == "query" for error in response.json["errors"])
