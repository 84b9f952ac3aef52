"""A write's one transaction, its BEGIN and COMMIT queued in pipeline mode (registry.db): a refused
write leaves nothing, and the connection goes back to the pool as it came (not in autocommit)."""

import json

from tests.records.helpers import seed_case


def _post(client, tokens, document: dict, key: str):
    return client.post("/v1/operations/", data=json.dumps(document), headers={
        **tokens.header("submitter_a"), "Idempotency-Key": key, "Content-Type": "application/json"})


def _count(db, table: str) -> int:
    return db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def test_a_refused_write_leaves_nothing_and_the_next_one_is_a_transaction(one_connection_app, tokens, db):
    client = one_connection_app.test_client()
    document = seed_case()
    unknown_patient = {name: value for name, value in document.items() if name != "patient"} | {"patient_id": 999999}
    audited = _count(db, "audit_events")  # the tokens' issue
    # refused after its key was claimed in the transaction: the claim goes with the rollback
    refused = _post(client, tokens, unknown_patient, "key-1")
    assert refused.status_code == 422, refused.get_data(as_text=True)
    assert (_count(db, "idempotency_keys"), _count(db, "operations"), _count(db, "audit_events")) == (0, 0, audited)

    created = _post(client, tokens, document, "key-2")
    assert created.status_code == 201, created.get_data(as_text=True)
    assert (_count(db, "idempotency_keys"), _count(db, "operations"), _count(db, "patients")) == (1, 1, 1)
    assert _count(db, "audit_events") == audited + 2
    # the pool's one connection, as a request that is not pipelined gets it
    with one_connection_app.extensions["database"].pool.connection() as conn:
        assert conn.autocommit is False
        conn.execute("INSERT INTO idempotency_keys (centre_id, key_hash, request_hash) VALUES (%s, %s, %s)",
                     (tokens.centre_a["id"], b"k" * 32, b"r" * 32))
        conn.rollback()
    assert _count(db, "idempotency_keys") == 1
