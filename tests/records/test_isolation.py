"""A submitter sees and touches only its own centre's records; analysts, operators, centre admins and metrics tokens no patient data."""

import pytest

from tests.records.helpers import seed_case, seed_follow_up


@pytest.fixture
def records_of_b(client, tokens):
    """An operation with a follow-up and a patient, owned by centre B."""
    operation = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_b")).json
    follow_up = client.post(f"/v1/operations/{operation['id']}/follow-ups", json=seed_follow_up(),
                            headers=tokens.header("submitter_b")).json
    return {"operation": operation["id"], "patient": operation["patient_id"], "follow_up": follow_up["id"]}


def test_another_centres_records_are_404_for_every_method(client, tokens, records_of_b, db):
    a = {**tokens.header("submitter_a"), "If-Match": "*"}
    urls = [f"/v1/operations/{records_of_b['operation']}", f"/v1/patients/{records_of_b['patient']}",
            f"/v1/follow-ups/{records_of_b['follow_up']}"]
    valid_changes = [{"notes": "x"}, {"sex": "female"}, {"notes": "x"}]
    for url, changes in zip(urls, valid_changes):
        assert client.get(url, headers=a).status_code == 404, url
        assert client.patch(url, json=changes, headers=a).status_code == 404, url
        assert client.delete(url, headers=a).status_code == 404, url
    assert client.put(urls[0], json=seed_case(), headers=a).status_code == 404
    assert client.get(f"{urls[0]}/follow-ups", headers=a).status_code == 404
    assert client.post(f"{urls[0]}/follow-ups", json=seed_follow_up(), headers=a).status_code == 404
    assert db.execute("SELECT count(*) AS n FROM operations").fetchone()["n"] == 1
    assert db.execute("SELECT count(*) AS n FROM follow_ups").fetchone()["n"] == 1


def test_lists_show_only_the_own_centre(client, tokens, records_of_b):
    own = client.post("/v1/operations/", json=seed_case() | {"local_ref": "A-1"},
                      headers=tokens.header("submitter_a")).json
    a_operations = client.get("/v1/operations/", headers=tokens.header("submitter_a")).json["items"]
    assert [operation["local_ref"] for operation in a_operations] == ["A-1"]
    # ids are numbered per centre (A's first patient and B's are both 1): compare whole records
    a_patients = client.get("/v1/patients/", headers=tokens.header("submitter_a")).json["items"]
    assert [(patient["id"], patient["created_at"]) for patient in a_patients] == [
        (own["patient_id"], own["patient"]["created_at"])]


def test_same_local_ref_at_two_centres_is_two_operations(client, tokens, db):
    for name in ("submitter_a", "submitter_b"):
        assert client.post("/v1/operations/", json=seed_case(), headers=tokens.header(name)).status_code == 201
    assert db.execute("SELECT count(*) AS n FROM operations").fetchone()["n"] == 2
    assert db.execute("SELECT count(DISTINCT ref_hash) AS n FROM patients").fetchone()["n"] == 2


@pytest.mark.parametrize("role", ["analyst", "operator", "centre_admin_a", "metrics"])
def test_analysts_operators_centre_admins_and_metrics_get_no_patient_level_data(client, tokens, records_of_b, role):
    for url in ("/v1/operations/", "/v1/patients/", f"/v1/operations/{records_of_b['operation']}",
                f"/v1/follow-ups/{records_of_b['follow_up']}"):
        assert client.get(url, headers=tokens.header(role)).status_code == 403, url
    assert client.post("/v1/operations/", json=seed_case(), headers=tokens.header(role)).status_code == 403


def test_revoked_or_forged_tokens_get_401(client, tokens):
    client.delete(f"/v1/tokens/{tokens.id('submitter_a')}", headers=tokens.header("operator"))
    assert client.get("/v1/operations/", headers=tokens.header("submitter_a")).status_code == 401
    assert client.get("/v1/operations/", headers={"Authorization": "Bearer reg_" + "x" * 43}).status_code == 401
    assert client.get("/v1/operations/", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
