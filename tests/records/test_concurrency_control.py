"""Idempotency-Key makes retries safe; If-Match makes updates safe."""

import threading

import pytest

from tests.records.helpers import counts, seed_case


def post(client, tokens, key, document=None):
    return client.post("/v1/operations/", json=document or seed_case(),
                       headers={**tokens.header("submitter_a"), "Idempotency-Key": key})


def test_retry_with_the_same_key_returns_the_first_answer_without_a_second_write(client, tokens, db):
    first = post(client, tokens, "retry-1")
    audit_before = db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"]
    retry = post(client, tokens, "retry-1")
    assert retry.status_code == first.status_code == 201
    assert retry.json == first.json
    assert retry.headers["ETag"] == first.headers["ETag"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"] == audit_before


def test_replayed_answer_still_echoes_the_ref_but_never_stores_it(client, tokens, db):
    post(client, tokens, "retry-ref")
    retry = post(client, tokens, "retry-ref")
    assert retry.json["patient"]["ref"] == "TJH-P-0001"
    assert "TJH-P-0001" not in str(db.execute("SELECT * FROM idempotency_keys").fetchall())


def test_same_key_with_another_body_is_422(client, tokens, db):
    post(client, tokens, "retry-2")
    other = post(client, tokens, "retry-2", seed_case() | {"blood_loss_ml": 999})
    assert other.status_code == 422
    assert other.json["errors"][0]["field"] == "Idempotency-Key"
    assert db.execute("SELECT blood_loss_ml FROM operations").fetchone()["blood_loss_ml"] == 300


def test_keys_are_per_centre(client, tokens, db):
    post(client, tokens, "shared-key")
    other = client.post("/v1/operations/", json=seed_case(),
                        headers={**tokens.header("submitter_b"), "Idempotency-Key": "shared-key"})
    assert other.status_code == 201
    assert counts(db)["operations"] == 2


def test_a_refused_request_does_not_burn_its_key(client, tokens):
    bad = post(client, tokens, "retry-3", seed_case() | {"approach": "sideways"})
    assert bad.status_code == 422
    assert post(client, tokens, "retry-3").status_code == 201


def test_two_concurrent_requests_with_one_key_write_once(app, tokens, db):
    results = []
    barrier = threading.Barrier(2)

    def send():
        client = app.test_client()
        barrier.wait()
        results.append(post(client, tokens, "race-1"))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(response.status_code for response in results) == [201, 201]
    assert results[0].json["id"] == results[1].json["id"]
    assert counts(db)["operations"] == 1
    assert db.execute("SELECT count(*) AS n FROM audit_events WHERE entity = 'operation'").fetchone()["n"] == 1


def test_concurrent_submissions_of_one_local_ref_without_keys_make_one_operation(app, tokens, db):
    barrier = threading.Barrier(4)
    statuses = []

    def send(blood_loss):
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post("/v1/operations/", json=seed_case() | {"blood_loss_ml": blood_loss},
                                    headers=tokens.header("submitter_a")).status_code)

    threads = [threading.Thread(target=send, args=(300 + n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 201]
    assert counts(db)["operations"] == 1
    assert counts(db)["patients"] == 1


@pytest.fixture
def stored(client, tokens):
    return client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))


@pytest.mark.parametrize("method", ["put", "patch"])
def test_update_without_if_match_is_428(client, tokens, stored, method, db):
    body = seed_case() if method == "put" else {"blood_loss_ml": 1}
    response = getattr(client, method)(stored.headers["Location"], json=body, headers=tokens.header("submitter_a"))
    assert response.status_code == 428
    assert db.execute("SELECT version FROM operations").fetchone()["version"] == 1


@pytest.mark.parametrize("method", ["put", "patch"])
def test_stale_if_match_is_412_and_nothing_changes(client, tokens, stored, method, db):
    headers = {**tokens.header("submitter_a"), "If-Match": stored.headers["ETag"]}
    client.patch(stored.headers["Location"], json={"blood_loss_ml": 310}, headers=headers)
    body = seed_case() | {"blood_loss_ml": 999} if method == "put" else {"blood_loss_ml": 999}
    stale = getattr(client, method)(stored.headers["Location"], json=body, headers=headers)
    assert stale.status_code == 412
    assert stale.headers["ETag"] != stored.headers["ETag"]
    assert db.execute("SELECT blood_loss_ml FROM operations").fetchone()["blood_loss_ml"] == 310


def test_patch_with_current_etag_changes_only_the_sent_fields(client, tokens, stored):
    response = client.patch(stored.headers["Location"], json={"blood_loss_ml": 320, "transfusion": False},
                            headers={**tokens.header("submitter_a"), "If-Match": stored.headers["ETag"]})
    assert response.status_code == 200
    assert (response.json["blood_loss_ml"], response.json["transfusion"]) == (320, False)
    assert response.json["intraop_events"] == stored.json["intraop_events"]
    assert response.json["version"] == 2


def test_put_replaces_the_whole_document(client, tokens, stored):
    replacement = seed_case() | {"intraop_events": [], "notes": None}
    response = client.put(stored.headers["Location"], json=replacement,
                          headers={**tokens.header("submitter_a"), "If-Match": stored.headers["ETag"]})
    assert response.status_code == 200
    assert response.json["intraop_events"] == []
    assert response.json["notes"] is None


def test_put_onto_another_operations_local_ref_is_409(client, tokens, stored):
    client.post("/v1/operations/", json=seed_case() | {"local_ref": "OTHER"}, headers=tokens.header("submitter_a"))
    response = client.put(stored.headers["Location"], json=seed_case() | {"local_ref": "OTHER"},
                          headers={**tokens.header("submitter_a"), "If-Match": stored.headers["ETag"]})
    assert response.status_code == 409
    assert response.json["errors"][0]["field"] == "local_ref"


def test_patient_update_needs_if_match(client, tokens):
    created = client.post("/v1/patients/", json={"ref": "P-1", "diagnosis": "aro"}, headers=tokens.header("submitter_a"))
    url = created.headers["Location"]
    assert client.patch(url, json={"sex": "female"}, headers=tokens.header("submitter_a")).status_code == 428
    ok = client.patch(url, json={"sex": "female"}, headers={**tokens.header("submitter_a"),
                                                            "If-Match": created.headers["ETag"]})
    assert ok.status_code == 200
    assert client.patch(url, json={"sex": "male"}, headers={**tokens.header("submitter_a"),
                                                            "If-Match": created.headers["ETag"]}).status_code == 412
