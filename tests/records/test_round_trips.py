"""What one create costs in statements and round trips to PostgreSQL (issue 14, decision 3), read
from libpq's trace of the request's connection: a POST /v1/operations with an Idempotency-Key is
three round trips whatever its patient (new inline, known inline, or named by `patient_id`):
BEGIN with the key's claim and the token lookup (and, for `patient_id`, the patient's read); one
statement writing the operation, its child rows and audit entries; the stored answer with COMMIT."""

import json

from tests.records.helpers import seed_case


def _traced_post(app, tokens, document: dict, key: str, trace_path) -> tuple:
    """(response, statements, round trips) of one POST on the pool's one connection."""
    pool = app.extensions["database"].pool
    with open(trace_path, "w") as trace:
        with pool.connection() as conn:
            conn.pgconn.trace(trace.fileno())
        response = app.test_client().post("/v1/operations/", data=json.dumps(document), headers={
            **tokens.header("submitter_a"), "Idempotency-Key": key, "Content-Type": "application/json"})
        with pool.connection() as conn:
            conn.pgconn.untrace()  # flushes libpq's buffer
    # libpq trace lines: timestamp, F (sent) or B (received), length, message
    directions = [line.split("\t")[1:4] for line in open(trace_path) if line.count("\t") >= 3]
    statements = sum(1 for direction, _, message in directions if direction == "F" and message.startswith("Execute"))
    round_trips = sum(1 for before, after in zip(directions, directions[1:]) if before[0] == "F" and after[0] == "B")
    return response, statements, round_trips


def test_a_create_is_three_round_trips_for_a_new_a_known_or_a_named_patient(one_connection_app, tokens, tmp_path):
    app, trace = one_connection_app, tmp_path / "trace"
    first = seed_case()
    # the token's first use is recorded apart (once a minute): out of the way before counting
    app.test_client().get("/v1/operations/", headers=tokens.header("submitter_a"))

    new = dict(first, patient=dict(first["patient"], ref="RT-NEW"), local_ref="RT-1")
    response, statements, round_trips = _traced_post(app, tokens, new, "key-new", trace)
    assert response.status_code == 201, response.get_data(as_text=True)
    # BEGIN, claim, token; patient + operation + children + audit; answer stored, COMMIT
    assert (statements, round_trips) == (6, 3)

    known = dict(new, local_ref="RT-2")  # the same patient again: the hospital's second operation
    response, statements, round_trips = _traced_post(app, tokens, known, "key-known", trace)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["patient_id"] == response.get_json()["patient"]["id"]
    assert (statements, round_trips) == (6, 3)

    patient_id = response.get_json()["patient_id"]
    named = {name: value for name, value in first.items() if name != "patient"} | {
        "patient_id": patient_id, "local_ref": "RT-3"}
    response, statements, round_trips = _traced_post(app, tokens, named, "key-named", trace)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["patient_id"] == patient_id
    # the patient is read with the token lookup, its dates checked before the write
    assert (statements, round_trips) == (7, 3)
