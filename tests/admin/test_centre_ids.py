"""A centre's public ids count its own records only: another centre's writes leave no trace in
them, so no centre can count another's patients, operations, follow-ups, submissions or audit
entries from the ids it is given."""

import psycopg

from registry.reports.synthetic import generate
from tests.records.helpers import operation, seed_follow_up
from tests.submissions.helpers import document


def write_one_of_each(client, tokens, who: str, number: int) -> dict:
    """As `who`: a patient, an operation of it with a follow-up, and a bulk submission of one
    more operation (with its own patient and follow-up); the ids the answers gave, by table."""
    headers = tokens.header(who)

    def created(response):
        assert response.status_code == 201, response.json
        return response.json

    patient = created(client.post("/v1/patients/", json={"ref": f"P-{number}", "diagnosis": "ado_ii"},
                                  headers=headers))
    single = created(client.post("/v1/operations/", json=operation(
        patient=None, patient_id=patient["id"], local_ref=f"OP-{number}"), headers=headers))
    follow_up = created(client.post(f"/v1/operations/{single['id']}/follow-ups",
                                    json=dict(seed_follow_up(), local_ref=f"FU-{number}"), headers=headers))
    bulk = created(client.post("/v1/submissions/", json=[document(1000 + number)], headers=headers))
    bulk_operation = client.get(f"/v1/operations/{bulk['records'][0]['operation_id']}", headers=headers).json
    bulk_follow_up = client.get(f"/v1/operations/{bulk_operation['id']}/follow-ups", headers=headers).json
    return {"patients": [patient["id"], bulk_operation["patient_id"]],
            "operations": [single["id"], bulk_operation["id"]],
            "follow_ups": [follow_up["id"], bulk_follow_up["items"][0]["id"]],
            "submissions": [bulk["id"]]}


def test_a_centres_ids_show_nothing_of_another_centres_writes(client, tokens):
    mine = {"patients": [], "operations": [], "follow_ups": [], "submissions": []}
    number = 0
    for who in ("submitter_a", "submitter_b", "submitter_b", "submitter_a", "submitter_b", "submitter_a"):
        number += 1
        ids = write_one_of_each(client, tokens, who, number)
        if who == "submitter_a":
            for table, new in ids.items():
                mine[table] += new
    # consecutive from 1, in the order created: B's writes in between left no gaps
    for table, ids in mine.items():
        assert ids == list(range(1, len(ids) + 1)), table

    audit = client.get("/v1/audit/?limit=1000", headers=tokens.header("submitter_a")).json["items"]
    assert len(audit) > 20
    assert [event["id"] for event in audit] == list(range(1, len(audit) + 1))


def test_writers_of_one_centre_do_not_wait_for_each_others_commits(database_url, tokens):
    """Ids come from sequences, outside the transaction: a writer that has not committed yet
    holds no lock the next one needs (it may leave a gap, which shows only this centre's own)."""
    centre = tokens.centre_a["id"]
    insert = "INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, %s, 'ado_ii') RETURNING id"
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        first_id = first.execute(insert, (centre, b"first")).fetchone()[0]  # left uncommitted
        second.execute("SET lock_timeout = '2s'")
        second_id = second.execute(insert, (centre, b"second")).fetchone()[0]
        second.commit()
        first.rollback()
    assert second_id == first_id + 1


def test_a_restored_row_keeps_its_id_and_new_rows_follow_the_centres_highest(db, tokens):
    centre = tokens.centre_a["id"]
    db.execute("INSERT INTO patients (centre_id, id, ref_hash, diagnosis) VALUES (%s, 40, 'restored', 'ado_ii')",
               (centre,))
    db.execute("SELECT centre_ids_ensure(%s)", (centre,))
    new = db.execute("INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, 'new', 'ado_ii')"
                     " RETURNING id", (centre,)).fetchone()["id"]
    assert new == 41


def test_generated_centres_number_their_records_from_one_and_take_new_ones(db):
    generate(db, 300, seed=3, log=lambda line: None)
    for table in ("patients", "operations", "follow_ups"):
        per_centre = db.execute(f"SELECT max(id) AS last, count(*) AS n FROM {table} GROUP BY centre_id").fetchall()
        assert all(row["last"] == row["n"] for row in per_centre), table  # 1..n in every centre
    centre, last = db.execute("SELECT centre_id, max(id) FROM patients GROUP BY centre_id LIMIT 1").fetchone().values()
    patient = db.execute("INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, 'later', 'ado_ii')"
                         " RETURNING id", (centre,)).fetchone()["id"]
    assert patient == last + 1
