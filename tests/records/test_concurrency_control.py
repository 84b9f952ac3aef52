"""Idempotency-Key makes retries safe; If-Match makes updates safe."""

import threading

import pytest

from tests.records.helpers import counts, seed_case, seed_follow_up


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


# --- If-Match is a real precondition: no `*`, no weak validators ------------------------------

def _records(client, tokens) -> dict:
    """URL, a full body and a one-field change of a stored record of each kind that takes If-Match."""
    a = tokens.header("submitter_a")
    operation = client.post("/v1/operations/", json=seed_case(), headers=a)
    follow_up = client.post(f"{operation.headers['Location']}/follow-ups", json=seed_follow_up(), headers=a)
    patient = client.post("/v1/patients/", json={"ref": "P-IFM", "diagnosis": "aro"}, headers=a)
    assert {operation.status_code, follow_up.status_code, patient.status_code} == {201}
    return {
        "operation": (operation.headers["Location"], seed_case() | {"blood_loss_ml": 999}, {"blood_loss_ml": 999}),
        "follow_up": (follow_up.headers["Location"], seed_follow_up() | {"notes": "changed"}, {"notes": "changed"}),
        "patient": (patient.headers["Location"], {"diagnosis": "aro", "sex": "female"}, {"sex": "female"}),
    }


def _versions(client, tokens, records) -> dict:
    return {kind: client.get(url, headers=tokens.header("submitter_a")).json["version"]
            for kind, (url, _, _) in records.items()}


# every (record, method) that takes If-Match; erasing a patient takes none
IF_MATCH_WRITES = [("operation", "put"), ("operation", "patch"), ("operation", "delete"), ("follow_up", "put"),
                   ("follow_up", "patch"), ("follow_up", "delete"), ("patient", "put"), ("patient", "patch")]


@pytest.mark.parametrize("kind, method", IF_MATCH_WRITES)
def test_if_match_star_is_refused_on_every_record_that_takes_if_match(client, tokens, kind, method):
    """`If-Match: *` matches any version, so it would overwrite blindly: 428, naming the header."""
    records = _records(client, tokens)
    url, full, change = records[kind]
    body = {"put": full, "patch": change, "delete": None}[method]
    response = getattr(client, method)(url, json=body, headers={**tokens.header("submitter_a"), "If-Match": "*"})
    assert response.status_code == 428, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["errors"][0]["field"] == "If-Match"
    assert response.json["errors"][0]["location"] == "headers"
    assert _versions(client, tokens, records) == {"operation": 1, "follow_up": 1, "patient": 1}


@pytest.mark.parametrize("kind, method", IF_MATCH_WRITES)
def test_a_weak_etag_never_matches(client, tokens, kind, method):
    """RFC 9110 §13.1.1: If-Match compares strongly, so `W/` + the current ETag is 412, nothing changes."""
    records = _records(client, tokens)
    url, full, change = records[kind]
    current = client.get(url, headers=tokens.header("submitter_a")).headers["ETag"]
    body = {"put": full, "patch": change, "delete": None}[method]
    response = getattr(client, method)(url, json=body,
                                       headers={**tokens.header("submitter_a"), "If-Match": f"W/{current}"})
    assert response.status_code == 412, response.json
    assert response.headers["ETag"] == current
    assert response.json["errors"][0]["field"] == "If-Match"
    assert "weak" in response.json["detail"].lower()
    assert _versions(client, tokens, records) == {"operation": 1, "follow_up": 1, "patient": 1}


def test_an_unquoted_etag_is_not_a_match(client, tokens, stored, db):
    response = client.patch(stored.headers["Location"], json={"blood_loss_ml": 1},
                            headers={**tokens.header("submitter_a"), "If-Match": stored.headers["ETag"].strip('"')})
    assert response.status_code == 412
    assert response.json["errors"][0]["field"] == "If-Match"
    assert db.execute("SELECT version FROM operations").fetchone()["version"] == 1


def test_the_current_etag_among_others_matches(client, tokens, stored):
    response = client.patch(stored.headers["Location"], json={"blood_loss_ml": 1},
                            headers={**tokens.header("submitter_a"),
                                     "If-Match": f'W/"0.0", "9.9", {stored.headers["ETag"]}'})
    assert response.status_code == 200


@pytest.mark.parametrize("if_match", ["*", "current"])
def test_sixteen_concurrent_puts_with_one_precondition_let_at_most_one_through(app, tokens, stored, db, if_match):
    """With `*` none may pass (it is refused); with the ETag they all read, exactly one wins."""
    headers = {**tokens.header("submitter_a"), "If-Match": "*" if if_match == "*" else stored.headers["ETag"]}
    barrier = threading.Barrier(16)
    statuses = []

    def put(blood_loss):
        client = app.test_client()
        barrier.wait()
        statuses.append(client.put(stored.headers["Location"], json=seed_case() | {"blood_loss_ml": blood_loss},
                                   headers=headers).status_code)

    threads = [threading.Thread(target=put, args=(400 + n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    version = db.execute("SELECT version FROM operations").fetchone()["version"]
    if if_match == "*":
        assert statuses == [428] * 16
        assert version == 1
    else:
        assert sorted(statuses) == [200] + [412] * 15
        assert version == 2
