"""SAVES-V2 grades beside ClassIntra and Clavien-Dindo; Bridwell fusion grades beside fusion_status."""

import psycopg
import pytest

from tests.records.helpers import operation, seed_case, seed_follow_up
from tests.submissions.helpers import document


def test_the_seed_case_reads_back_with_its_grades_and_reporter(client, tokens):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    read = client.get(created.headers["Location"], headers=tokens.header("submitter_a")).json
    (event,) = read["intraop_events"]
    assert (event["type"], event["instrument"], event["reported_by"]) == ("instrument_breakage", "drill_bit", "surgeon")
    assert (event["grade"], event["saves_grade"]) == ("I", "1")
    assert (read["intraop_events_status"], read["postop_complications_status"]) == ("occurred", "none")


def test_a_complication_carries_its_saves_grade(client, tokens):
    complications = [{"type": "deep_infection", "days_after": 12, "grade": "IIIb", "saves_grade": "3"}]
    created = client.post("/v1/operations/", json=operation(postop_complications=complications),
                          headers=tokens.header("submitter_a")).json
    assert created["postop_complications"][0]["saves_grade"] == "3"


@pytest.mark.parametrize("grade, status", [("I", "fused"), ("II", "fused"), ("III", "indeterminate"),
                                           ("III", "not_fused"), ("IV", "not_fused")])
def test_a_bridwell_grade_goes_with_its_fusion_status(client, tokens, grade, status):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json
    response = client.post(f"/v1/operations/{created['id']}/follow-ups",
                           json=seed_follow_up() | {"fusion_status": status, "bridwell_grade": grade},
                           headers=tokens.header("submitter_a"))
    assert response.status_code == 201, response.json
    assert response.json["bridwell_grade"] == grade


@pytest.mark.parametrize("grade, status", [("I", "not_fused"), ("IV", "fused"), ("II", "not_assessed"), ("III", None)])
def test_a_bridwell_grade_that_contradicts_the_fusion_status_is_refused(client, tokens, db, grade, status):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json
    response = client.post(f"/v1/operations/{created['id']}/follow-ups",
                           json=seed_follow_up() | {"fusion_status": status, "bridwell_grade": grade},
                           headers=tokens.header("submitter_a"))
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["bridwell_grade"]
    assert db.execute("SELECT count(*) AS n FROM follow_ups").fetchone()["n"] == 0


def test_a_patch_that_breaks_the_bridwell_rule_is_refused(client, tokens):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json
    follow_up = client.post(f"/v1/operations/{created['id']}/follow-ups",
                            json=seed_follow_up() | {"fusion_status": "fused", "bridwell_grade": "I"},
                            headers=tokens.header("submitter_a"))
    patched = client.patch(follow_up.headers["Location"], json={"fusion_status": "not_fused"},
                           headers=tokens.header("submitter_a") | {"If-Match": follow_up.headers["ETag"]})
    assert patched.status_code == 422
    assert [e["field"] for e in patched.json["errors"]] == ["bridwell_grade"]


def test_bulk_applies_the_bridwell_rule_as_the_record_api_does(client, tokens):
    good, bad = document(1), document(2)
    good["follow_ups"][0].update(fusion_status="fused", bridwell_grade="II")
    bad["follow_ups"][0].update(fusion_status="fused", bridwell_grade="IV")
    answer = client.post("/v1/submissions/", json=[good, bad], headers=tokens.header("submitter_a")).json
    assert [r["outcome"] for r in answer["records"]] == ["created", "rejected"]
    assert [e["field"] for e in answer["records"][1]["errors"]] == ["follow_ups.0.bridwell_grade"]


def test_the_database_refuses_a_bridwell_grade_against_its_status(db, tokens):
    centre = tokens.centre_a["id"]
    patient = db.execute("INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, 'x', 'ado_ii')"
                         " RETURNING id", (centre,)).fetchone()["id"]
    operation_id = db.execute(
        "INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, procedures)"
        " VALUES (%s, %s, 'op-1', '2020-05-01', 'cervical', '{fusion}') RETURNING id", (centre, patient)).fetchone()["id"]
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO follow_ups (centre_id, operation_id, follow_up_date, months_after, fusion_status,"
                   " bridwell_grade) VALUES (%s, %s, '2021-05-01', 12, 'fused', 'IV')", (centre, operation_id))
