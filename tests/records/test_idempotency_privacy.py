"""Idempotency records: nothing stored confirms a ref without the secret; a replay is the first answer's bytes."""

import hashlib
import json

from tests.records.helpers import seed_case
from tests.submissions.helpers import document

PATIENT = {"ref": "MRN-000417", "diagnosis": "aro", "sex": "female", "birth_year": 1990}


def _post_raw(client, tokens, path: str, body: bytes, key: str):
    return client.post(path, data=body, headers={**tokens.header("submitter_a"), "Idempotency-Key": key,
                                                 "Content-Type": "application/json"})


def _unkeyed_fingerprint(path: str, body: bytes) -> bytes:
    """The fingerprint as it was stored before: SHA-256 of method, path, query, media type and body."""
    digest = hashlib.sha256()
    for part in ("POST", path, "", "application/json"):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return digest.digest()


def _stored(db) -> str:
    rows = db.execute("SELECT * FROM idempotency_keys").fetchall()
    return str(rows) + "".join(bytes(row.get("response_bytes") or b"").decode("latin-1") for row in rows)


def test_a_backup_confirms_no_guessed_ref_from_the_stored_fingerprint(client, tokens, db):
    """An attacker with the database but not the secret rebuilds the body around each candidate
    ref (the stored answer gives every other field) and hashes it: nothing stored matches."""
    body = json.dumps(PATIENT).encode()
    assert _post_raw(client, tokens, "/v1/patients/", body, "retry-MRN-000417").status_code == 201

    candidates = [f"MRN-{n:06d}" for n in range(400, 440)]
    guesses = {_unkeyed_fingerprint("/v1/patients/", json.dumps(PATIENT | {"ref": ref}).encode())
               for ref in candidates}
    guesses |= {hashlib.sha256(json.dumps(PATIENT | {"ref": ref}).encode()).digest() for ref in candidates}
    stored = db.execute("SELECT request_hash FROM idempotency_keys").fetchall()
    assert len(stored) == 1
    assert bytes(stored[0]["request_hash"]) not in guesses
    # the key itself may carry the ref (clients do that): it is not kept in clear either
    assert "MRN-000417" not in _stored(db)
    assert "retry-MRN" not in _stored(db)


def test_a_retry_still_matches_its_key_after_the_fingerprint_is_keyed(client, tokens):
    body = json.dumps(PATIENT).encode()
    first = _post_raw(client, tokens, "/v1/patients/", body, "k-1")
    retry = _post_raw(client, tokens, "/v1/patients/", body, "k-1")
    other = _post_raw(client, tokens, "/v1/patients/", json.dumps(PATIENT | {"ref": "MRN-000418"}).encode(), "k-1")
    assert (first.status_code, retry.status_code, other.status_code) == (201, 201, 422)
    assert retry.headers["Idempotent-Replayed"] == "true"


def test_a_replay_returns_the_bytes_first_sent(client, tokens):
    body = json.dumps(seed_case()).encode()
    first = _post_raw(client, tokens, "/v1/operations/", body, "op-1")
    retry = _post_raw(client, tokens, "/v1/operations/", body, "op-1")
    assert first.status_code == retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_data() == first.get_data()
    assert (retry.headers["ETag"], retry.headers["Location"], retry.content_type) == (
        first.headers["ETag"], first.headers["Location"], first.content_type)


def test_a_replay_echoes_the_ref_exactly_as_first_answered(client, tokens, db):
    """A ref sent in another Unicode form is answered in its normal form (NFKC), with escapes:
    the replay puts back those same bytes, though the stored answer holds no ref."""
    for key, ref in (("p-1", "ＭＲＮ-０００４１９"), ("p-2", "Müller-7"), ("p-3", 'quote"and\\slash')):
        body = json.dumps(PATIENT | {"ref": ref}).encode()
        first = _post_raw(client, tokens, "/v1/patients/", body, key)
        retry = _post_raw(client, tokens, "/v1/patients/", body, key)
        assert first.status_code == 201, first.get_data(as_text=True)
        assert retry.get_data() == first.get_data(), ref
    assert first.json["ref"] == 'quote"and\\slash'
    stored = _stored(db)
    for fragment in ("MRN-000419", "Müller", "M\\u00fcller", "quote"):
        assert fragment not in stored, fragment


def test_a_bulk_answer_is_replayed_byte_for_byte(client, tokens):
    body = json.dumps([document(n) for n in range(3)]).encode()
    first = _post_raw(client, tokens, "/v1/submissions/", body, "bulk-1")
    retry = _post_raw(client, tokens, "/v1/submissions/", body, "bulk-1")
    assert first.status_code == 201, first.get_data(as_text=True)
    assert retry.get_data() == first.get_data()


def test_a_refused_token_claims_no_key(client, tokens, db):
    """A create's key is claimed in the same round trip as its token lookup: a revoked or expired
    token, or one of another role, is refused and leaves no claim, so the key works afterwards."""
    body = json.dumps(seed_case()).encode()
    db.execute("UPDATE tokens SET revoked_at = now() WHERE id = %s", (tokens.id("submitter_b"),))
    db.execute("UPDATE tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day'"
               " WHERE id = %s", (tokens.id("centre_admin_a"),))
    for name, status in (("submitter_b", 401), ("centre_admin_a", 401), ("analyst", 403)):
        answer = client.post("/v1/operations/", data=body, headers={
            **tokens.header(name), "Idempotency-Key": "same-key", "Content-Type": "application/json"})
        assert answer.status_code == status, name
    assert db.execute("SELECT count(*) AS n FROM idempotency_keys").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM operations").fetchone()["n"] == 0
    first = _post_raw(client, tokens, "/v1/operations/", body, "same-key")
    retry = _post_raw(client, tokens, "/v1/operations/", body, "same-key")
    assert (first.status_code, retry.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in first.headers and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_data() == first.get_data()
