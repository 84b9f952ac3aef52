"""Outcome scores with their instrument and version, at baseline and at follow-up; the legacy
JOA / mJOA fields read and write the JOA 17-point and mJOA entries of the same list."""

import pytest

from tests.records.helpers import operation, seed_case, seed_follow_up
from tests.submissions.helpers import document

EVERY_INSTRUMENT = [
    {"instrument": "joa", "version": "17-point", "value": 9.5},
    {"instrument": "mjoa", "value": 12},
    {"instrument": "ndi", "version": "percent", "value": 38.0},
    {"instrument": "odi", "version": "2.1a", "value": 44.0},
    {"instrument": "eq5d5l_index", "value": 0.512, "value_set": "england"},
    {"instrument": "pain_nrs", "value": 7, "site": "arm"},
]


def _post(client, tokens, sent):
    return client.post("/v1/operations/", json=sent, headers=tokens.header("submitter_a"))


def _follow_up(client, tokens, operation_id, sent):
    return client.post(f"/v1/operations/{operation_id}/follow-ups", json=sent, headers=tokens.header("submitter_a"))


def test_every_instrument_reads_back_with_its_version_and_maximum(client, tokens):
    created = _post(client, tokens, operation(baseline_scores=EVERY_INSTRUMENT))
    assert created.status_code == 201, created.json
    read = client.get(created.headers["Location"], headers=tokens.header("submitter_a")).json
    scores = {entry["instrument"]: entry for entry in read["baseline_scores"]}
    assert {name: (e["version"], e["value"], e["maximum"]) for name, e in scores.items()} == {
        "joa": ("17-point", 9.5, 17), "mjoa": ("18-point", 12, 18), "ndi": ("percent", 38, 100),
        "odi": ("2.1a", 44, 100), "eq5d5l_index": ("5L", 0.512, 1), "pain_nrs": ("11-point", 7, 10)}
    assert scores["eq5d5l_index"]["value_set"] == "england"
    # the legacy form reads the JOA 17-point and mJOA entries
    assert read["preop_scores"] == {"joa": 9.5, "mjoa": 12}


def test_the_legacy_fields_write_the_list(client, tokens):
    created = _post(client, tokens, operation(baseline_scores=None, preop_scores={"joa": 11, "mjoa": 13})).json
    assert [(e["instrument"], e["version"], e["value"]) for e in created["baseline_scores"]] == [
        ("joa", "17-point", 11), ("mjoa", "18-point", 13)]
    legacy_form = {k: v for k, v in seed_follow_up().items() if k != "scores"} | {"joa": 15}
    follow_up = _follow_up(client, tokens, created["id"], legacy_form)
    read = client.get(follow_up.headers["Location"], headers=tokens.header("submitter_a")).json
    assert [(e["instrument"], e["version"], e["value"]) for e in read["scores"]] == [("joa", "17-point", 15)]
    assert (read["joa"], read["mjoa"]) == (15, None)


def test_the_29_point_lumbar_joa_is_not_the_17_point_one(client, tokens):
    lumbar = [{"instrument": "joa", "version": "29-point", "value": -2}]
    created = _post(client, tokens, operation(baseline_scores=lumbar)).json
    assert created["baseline_scores"][0] == {"instrument": "joa", "version": "29-point", "value": -2,
                                                   "maximum": 29, "value_set": None, "site": None}
    assert created["preop_scores"] is None  # the legacy joa is the 17-point one only


def test_a_legacy_joa_beside_a_lumbar_joa_is_two_scores(client, tokens):
    # what a read gives (both forms, both JOA versions) is accepted again as it came
    both = [{"instrument": "joa", "version": "17-point", "value": 10},
            {"instrument": "joa", "version": "29-point", "value": 14}]
    created = _post(client, tokens, operation(baseline_scores=both, preop_scores={"joa": 10}))
    assert created.status_code == 201, created.json
    assert [(e["version"], e["value"]) for e in created.json["baseline_scores"]] == [("17-point", 10), ("29-point", 14)]
    # the legacy field is the 17-point JOA: sent beside a lumbar JOA only, it is kept, not dropped
    lumbar_only = operation(local_ref="LUMBAR-AND-LEGACY", baseline_scores=both[1:], preop_scores={"joa": 12})
    created = _post(client, tokens, lumbar_only)
    assert created.status_code == 201, created.json
    assert sorted((e["version"], e["value"]) for e in created.json["baseline_scores"]) == [
        ("17-point", 12), ("29-point", 14)]
    assert created.json["preop_scores"]["joa"] == 12


@pytest.mark.parametrize("entry, field", [
    ({"instrument": "joa", "value": 10}, "version"),
    ({"instrument": "joa", "version": "17-point", "value": 17.5}, "value"),
    ({"instrument": "joa", "version": "17-point", "value": 10.25}, "value"),
    ({"instrument": "joa", "version": "29-point", "value": 30}, "value"),
    ({"instrument": "ndi", "version": "50-point", "value": 51}, "value"),
    ({"instrument": "ndi", "version": "2.1a", "value": 10}, "version"),
    ({"instrument": "odi", "value": 101}, "value"),
    ({"instrument": "pain_nrs", "value": 10, "maximum": 100, "site": "neck"}, "maximum"),
    ({"instrument": "eq5d5l_index", "value": 0.8}, "value_set"),
    ({"instrument": "eq5d5l_index", "value": 1.2, "value_set": "japan"}, "value"),
    ({"instrument": "mjoa", "value": 12, "value_set": "england"}, "value_set"),
])
def test_a_score_off_its_scale_is_refused_naming_the_field(client, tokens, db, entry, field):
    response = _post(client, tokens, operation(baseline_scores=[entry]))
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == [f"baseline_scores.0.{field}"]
    assert db.execute("SELECT count(*) AS n FROM operations").fetchone()["n"] == 0


def test_one_score_per_instrument_and_timepoint(client, tokens):
    twice = [{"instrument": "pain_nrs", "value": 7, "site": "arm"}, {"instrument": "pain_nrs", "value": 4, "site": "arm"}]
    response = _post(client, tokens, operation(baseline_scores=twice))
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["baseline_scores.1.instrument"]


def test_pain_nrs_names_its_site_and_is_scored_once_per_site(client, tokens):
    no_site = _post(client, tokens, operation(baseline_scores=[{"instrument": "pain_nrs", "value": 7}]))
    assert [e["field"] for e in no_site.json["errors"]] == ["baseline_scores.0.site"]
    odi_site = _post(client, tokens, operation(baseline_scores=[{"instrument": "odi", "value": 40, "site": "back"}]))
    assert [e["field"] for e in odi_site.json["errors"]] == ["baseline_scores.0.site"]
    neck_and_arm = [{"instrument": "pain_nrs", "value": 3, "site": "neck"},
                    {"instrument": "pain_nrs", "value": 7, "site": "arm"}]
    created = _post(client, tokens, operation(baseline_scores=neck_and_arm))
    assert created.status_code == 201, created.json
    assert [(e["site"], e["value"]) for e in created.json["baseline_scores"]] == [("neck", 3), ("arm", 7)]


def test_a_legacy_field_contradicting_the_list_is_refused(client, tokens):
    response = _post(client, tokens, operation(preop_scores={"joa": 9}))
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["preop_scores.joa"]
    created = _post(client, tokens, seed_case()).json
    response = _follow_up(client, tokens, created["id"], seed_follow_up() | {"joa": 13})
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["joa"]


def test_patching_one_form_replaces_the_other(client, tokens):
    created = _post(client, tokens, seed_case())
    patched = client.patch(created.headers["Location"], json={"preop_scores": {"joa": 11}},
                           headers=tokens.header("submitter_a") | {"If-Match": created.headers["ETag"]})
    assert patched.status_code == 200, patched.json
    assert [e["value"] for e in patched.json["baseline_scores"]] == [11]
    follow_up = _follow_up(client, tokens, created.json["id"], seed_follow_up())
    nrs = [{"instrument": "pain_nrs", "value": 3, "site": "neck"}]
    patched = client.patch(follow_up.headers["Location"], json={"scores": nrs},
                           headers=tokens.header("submitter_a") | {"If-Match": follow_up.headers["ETag"]})
    assert patched.status_code == 200, patched.json
    assert ([e["instrument"] for e in patched.json["scores"]], patched.json["joa"]) == (["pain_nrs"], None)
    patched = client.patch(follow_up.headers["Location"], json={"joa": 16},
                           headers=tokens.header("submitter_a") | {"If-Match": patched.headers["ETag"]})
    assert patched.status_code == 200, patched.json
    assert [(e["instrument"], e["value"]) for e in patched.json["scores"]] == [("joa", 16), ("pain_nrs", 3)]


def test_bulk_stores_and_judges_scores_as_the_record_api_does(client, tokens):
    good, bad = document(1), document(2)
    good["baseline_scores"] = EVERY_INSTRUMENT
    good["follow_ups"][0]["scores"] = [{"instrument": "joa", "version": "17-point", "value": 14},
                                       {"instrument": "odi", "value": 20}]
    bad["follow_ups"][0]["scores"] = [{"instrument": "eq5d5l_index", "value": 0.9}]
    answer = client.post("/v1/submissions/", json=[good, bad], headers=tokens.header("submitter_a")).json
    assert [r["outcome"] for r in answer["records"]] == ["created", "rejected"]
    assert [e["field"] for e in answer["records"][1]["errors"]] == ["follow_ups.0.scores.0.value_set"]
    operation_id = answer["records"][0]["operation_id"]
    read = client.get(f"/v1/operations/{operation_id}", headers=tokens.header("submitter_a")).json
    assert len(read["baseline_scores"]) == len(EVERY_INSTRUMENT)
    (follow_up,) = client.get(f"/v1/operations/{operation_id}/follow-ups",
                              headers=tokens.header("submitter_a")).json["items"]
    assert [(e["instrument"], e["version"], e["value"]) for e in follow_up["scores"]] == [
        ("joa", "17-point", 14), ("odi", None, 20)]
    # resent unchanged: unchanged
    again = client.post("/v1/submissions/", json=[good], headers=tokens.header("submitter_a")).json
    assert [r["outcome"] for r in again["records"]] == ["unchanged"]


def test_the_vocabularies_list_instruments_versions_and_value_sets(client, tokens):
    vocabularies = client.get("/v1/vocabularies/").json
    text = str(vocabularies)
    for code in ("eq5d5l_index", "29-point", "percent", "england"):
        assert code in text


def test_a_patched_score_without_its_instrument_is_refused_naming_it(client, tokens):
    """Found by schemathesis: a PATCH's partial score entry reached the score merge (a 500)."""
    created = _post(client, tokens, seed_case())
    patched = client.patch(created.headers["Location"], json={"baseline_scores": [{"value": 3}]},
                           headers=tokens.header("submitter_a") | {"If-Match": created.headers["ETag"]})
    assert patched.status_code == 422, patched.json
    assert [e["field"] for e in patched.json["errors"]] == ["baseline_scores.0.instrument"]
    follow_up = _follow_up(client, tokens, created.json["id"], seed_follow_up())
    patched = client.patch(follow_up.headers["Location"], json={"scores": [{"value": 0.0, "version": None}]},
                           headers=tokens.header("submitter_a") | {"If-Match": follow_up.headers["ETag"]})
    assert patched.status_code == 422, patched.json
    assert [e["field"] for e in patched.json["errors"]] == ["scores.0.instrument"]
