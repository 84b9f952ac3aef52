"""Submissions are recorded and read back later; idempotent; a centre sees only its own."""

from registry.submissions import service
from tests.records.helpers import counts
from tests.submissions.helpers import csv_body, csv_row, document
from tests.submissions.test_json_batches import submit


def test_a_submission_is_recorded_with_who_when_and_counts(client, tokens):
    report = submit(client, tokens, [document(1), document(2, region="moon")]).json
    response = client.get(f"/v1/submissions/{report['id']}", headers=tokens.header("submitter_a"))
    assert response.status_code == 200
    kept = response.json
    assert kept["token_id"] == tokens.id("submitter_a")
    assert (kept["format"], kept["mode"], kept["status"]) == ("json", "partial", "partially_accepted")
    assert (kept["total"], kept["created"], kept["rejected"]) == (2, 1, 1)
    assert kept["received_at"] <= kept["completed_at"]


def test_rejected_records_can_be_listed_to_fix_and_resend(client, tokens):
    rows = [csv_row(n, duration_min="x" if n % 3 == 0 else "180") for n in range(1, 11)]
    report = client.post("/v1/submissions/", data=csv_body(rows), content_type="text/csv",
                         headers=tokens.header("submitter_a")).json
    rejected = client.get(f"/v1/submissions/{report['id']}/records?outcome=rejected",
                          headers=tokens.header("submitter_a")).json
    assert [(r["row"], r["local_ref"]) for r in rejected["items"]] == [(4, "OP-3"), (7, "OP-6"), (10, "OP-9")]
    assert all(r["errors"][0]["column"] == "duration_min" for r in rejected["items"])


def test_per_record_results_are_paged(client, tokens, monkeypatch):
    monkeypatch.setattr(service, "FIRST_PAGE", 2)
    report = submit(client, tokens, [document(n) for n in range(5)]).json
    assert [r["index"] for r in report["records"]] == [0, 1]
    seen, cursor = [], report["records_next_cursor"]
    while cursor:
        page = client.get(f"/v1/submissions/{report['id']}/records?limit=2&cursor={cursor}",
                          headers=tokens.header("submitter_a")).json
        seen += [r["index"] for r in page["items"]]
        cursor = page["next_cursor"]
    assert seen == [2, 3, 4]


def test_submissions_are_listed_newest_first(client, tokens):
    first = submit(client, tokens, [document(1)]).json
    second = submit(client, tokens, [document(2, region="moon")]).json
    listed = client.get("/v1/submissions/", headers=tokens.header("submitter_a")).json
    assert [s["id"] for s in listed["items"]] == [second["id"], first["id"]]
    only = client.get("/v1/submissions/?status=rejected", headers=tokens.header("submitter_a")).json
    assert [s["id"] for s in only["items"]] == [second["id"]]


def test_another_centres_submission_is_not_found(client, tokens):
    report = submit(client, tokens, [document(1)]).json
    for path in (f"/v1/submissions/{report['id']}", f"/v1/submissions/{report['id']}/records"):
        response = client.get(path, headers=tokens.header("submitter_b"))
        assert response.status_code == 404, path
    assert client.get("/v1/submissions/", headers=tokens.header("submitter_b")).json["items"] == []


def test_only_submitters_submit(client, tokens):
    assert submit(client, tokens, [document(1)], who="analyst").status_code == 403
    assert client.post("/v1/submissions/", json=[document(1)]).status_code == 401


def test_the_same_local_refs_at_two_centres_are_two_operations(client, tokens, db):
    submit(client, tokens, [document(1)])
    report = submit(client, tokens, [document(1)], who="submitter_b").json
    assert report["created"] == 1
    assert counts(db)["operations"] == 2


def test_an_idempotency_key_replays_the_first_answer_without_a_second_submission(client, tokens, db):
    first = submit(client, tokens, [document(1), document(2, region="moon")], **{"Idempotency-Key": "batch-1"})
    again = submit(client, tokens, [document(1), document(2, region="moon")], **{"Idempotency-Key": "batch-1"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert db.execute("SELECT count(*) AS n FROM submissions").fetchone()["n"] == 1


def test_an_idempotency_key_reused_for_another_batch_is_refused(client, tokens, db):
    submit(client, tokens, [document(1)], **{"Idempotency-Key": "batch-1"})
    other = submit(client, tokens, [document(2)], **{"Idempotency-Key": "batch-1"})
    assert other.status_code == 422
    assert other.json["errors"][0]["field"] == "Idempotency-Key"
    assert counts(db)["operations"] == 1


def test_an_idempotent_csv_submission(client, tokens, db):
    body = csv_body([csv_row(1)])
    headers = tokens.header("submitter_a") | {"Idempotency-Key": "csv-1"}
    first = client.post("/v1/submissions/", data=body, content_type="text/csv", headers=headers)
    again = client.post("/v1/submissions/", data=body, content_type="text/csv", headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json["records"][0]["outcome"] == "created"
    assert again.json == first.json
    assert db.execute("SELECT count(*) AS n FROM submissions").fetchone()["n"] == 1


def test_other_media_types_are_refused(client, tokens):
    response = client.post("/v1/submissions/", data=b"<xml/>", content_type="application/xml",
                           headers=tokens.header("submitter_a"))
    assert response.status_code == 415


def test_a_body_over_the_size_limit_is_refused(app, client, tokens, db):
    app.config["MAX_CONTENT_LENGTH"] = 2048
    response = submit(client, tokens, [document(n) for n in range(5)])
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert counts(db)["operations"] == 0


def test_patient_refs_are_not_kept_in_the_submission_report(client, tokens, db):
    sent = document(1)
    sent["patient"]["ref"] = "HOSPITAL-MRN-123456"
    rejected = document(2, region="moon")
    rejected["patient"]["ref"] = "HOSPITAL-MRN-654321"
    report = submit(client, tokens, [sent, rejected], **{"Idempotency-Key": "k"})
    assert "HOSPITAL-MRN" not in report.text
    for table in ("submissions", "submission_records", "idempotency_keys", "audit_events", "patients"):
        assert "HOSPITAL-MRN" not in str(db.execute(f"SELECT * FROM {table}").fetchall()), table
