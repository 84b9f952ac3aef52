""""None occurred" and "not recorded" are different answers, on the wire and in storage."""

import pytest

from tests.records.helpers import operation, seed_case, seed_follow_up

BREAKAGE = seed_case()["intraop_events"]


def _post(client, tokens, document):
    return client.post("/v1/operations/", json=document, headers=tokens.header("submitter_a"))


@pytest.mark.parametrize("sent, status", [
    ({"intraop_events": BREAKAGE}, "occurred"),
    ({"intraop_events": []}, "none"),
    ({"intraop_events": None}, "not_recorded"),          # the list left out
    ({"intraop_events": None, "intraop_events_status": "none"}, "none"),
    ({"intraop_events": [], "intraop_events_status": "not_recorded"}, "not_recorded"),
])
def test_intraoperative_events_read_back_with_their_status(client, tokens, sent, status):
    created = _post(client, tokens, operation(**sent))
    assert created.status_code == 201, created.json
    read = client.get(created.headers["Location"], headers=tokens.header("submitter_a")).json
    assert read["intraop_events_status"] == status
    assert read["intraop_events"] == (BREAKAGE if status == "occurred" else [])


def test_complications_left_out_are_not_recorded_and_an_empty_list_is_none(client, tokens):
    left_out = _post(client, tokens, operation(local_ref="OP-1", postop_complications=None)).json
    empty = _post(client, tokens, operation(local_ref="OP-2", postop_complications=[])).json
    assert left_out["postop_complications_status"] == "not_recorded"
    assert empty["postop_complications_status"] == "none"


def test_a_status_that_contradicts_its_list_is_refused_naming_it(client, tokens, db):
    listed_as_none = _post(client, tokens, operation(intraop_events_status="none"))
    assert listed_as_none.status_code == 422
    assert [e["field"] for e in listed_as_none.json["errors"]] == ["intraop_events_status"]
    occurred_without = _post(client, tokens, operation(postop_complications_status="occurred"))
    assert occurred_without.status_code == 422
    assert [e["field"] for e in occurred_without.json["errors"]] == ["postop_complications"]
    unknown_code = _post(client, tokens, operation(postop_complications_status="unknown"))
    assert [e["field"] for e in unknown_code.json["errors"]] == ["postop_complications_status"]
    assert db.execute("SELECT count(*) AS n FROM operations").fetchone()["n"] == 0


def test_a_patch_of_the_list_alone_moves_its_status(client, tokens):
    created = _post(client, tokens, operation(intraop_events=None))
    assert created.json["intraop_events_status"] == "not_recorded"
    patched = client.patch(created.headers["Location"], json={"intraop_events": []},
                           headers=tokens.header("submitter_a") | {"If-Match": created.headers["ETag"]})
    assert patched.status_code == 200, patched.json
    assert patched.json["intraop_events_status"] == "none"
    again = client.patch(created.headers["Location"], json={"intraop_events_status": "not_recorded"},
                         headers=tokens.header("submitter_a") | {"If-Match": patched.headers["ETag"]})
    assert again.json["intraop_events_status"] == "not_recorded"


def test_a_yes_no_field_not_recorded_reads_back_as_null_not_no(client, tokens):
    created = _post(client, tokens, operation(transfusion=None)).json
    assert "transfusion" in created and created["transfusion"] is None
    follow_up = seed_follow_up()
    del follow_up["revision_surgery"]
    stored = client.post(f"/v1/operations/{created['id']}/follow-ups", json=follow_up,
                         headers=tokens.header("submitter_a"))
    assert stored.status_code == 201, stored.json
    assert stored.json["revision_surgery"] is None
    said_no = client.post(f"/v1/operations/{created['id']}/follow-ups",
                          json=follow_up | {"local_ref": "FU-2", "revision_surgery": False},
                          headers=tokens.header("submitter_a")).json
    assert said_no["revision_surgery"] is False


def test_a_revision_reason_needs_a_revision_recorded_as_true(client, tokens):
    created = _post(client, tokens, seed_case()).json
    refused = client.post(f"/v1/operations/{created['id']}/follow-ups",
                          json=seed_follow_up() | {"revision_surgery": None, "revision_reason": "screw loosening"},
                          headers=tokens.header("submitter_a"))
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json["errors"]] == ["revision_reason"]


def test_who_reported_an_event_or_complication_reads_back(client, tokens):
    events = [dict(BREAKAGE[0], reported_by="surgeon")]
    complications = [{"type": "dysphagia", "grade": "I", "reported_by": "patient_reported"},
                     {"type": "vte", "grade": "II"}]
    created = _post(client, tokens, operation(intraop_events=events, postop_complications=complications)).json
    assert created["intraop_events"][0]["reported_by"] == "surgeon"
    assert [c["reported_by"] for c in created["postop_complications"]] == ["patient_reported", None]
    refused = _post(client, tokens, operation(local_ref="OP-2", intraop_events=[dict(BREAKAGE[0], reported_by="x")]))
    assert [e["field"] for e in refused.json["errors"]] == ["intraop_events.0.reported_by"]


def test_the_vocabularies_list_the_statuses_and_the_sources(client):
    vocabularies = client.get("/v1/vocabularies/").json
    assert [term["code"] for term in vocabularies["recording_status"]] == ["none", "occurred", "not_recorded"]
    assert [term["code"] for term in vocabularies["reported_by"]] == [
        "surgeon", "other_clinician", "patient_reported", "chart_review", "other_registry", "claims"]
