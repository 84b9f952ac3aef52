"""Large submissions are handled chunk by chunk, validated in worker processes, with the same results."""

import json

import pytest

from registry.submissions import reading, service
from tests.conftest import make_settings
from tests.records.helpers import counts
from tests.submissions.helpers import document
from tests.submissions.test_json_batches import submit


@pytest.fixture
def settings():
    return make_settings(validation_workers=2)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(service, "CHUNK_SIZE", 3)


def test_a_submission_of_many_chunks_gives_every_record_its_result(client, tokens, db, small_chunks):
    batch = [document(n) for n in range(10)]
    batch[4]["intraop_events"][0]["instrument"] = None
    batch[7] = document(1)  # sent twice
    report = submit(client, tokens, batch).json
    assert [r["outcome"] for r in report["records"]] == ["created"] * 4 + ["rejected"] + ["created"] * 2 + \
        ["rejected"] + ["created"] * 2
    assert report["records"][4]["errors"][0]["field"] == "intraop_events.0.instrument"
    assert "index 1" in report["records"][7]["errors"][0]["message"]
    assert counts(db)["operations"] == 8


def test_an_atomic_submission_of_many_chunks_stores_nothing_when_the_last_record_fails(client, tokens, db,
                                                                                       small_chunks):
    batch = [document(n) for n in range(10)]
    batch[-1]["region"] = "moon"
    report = submit(client, tokens, batch, mode="atomic").json
    assert (report["status"], report["rejected"], report["not_stored"]) == ("rejected", 1, 9)
    assert counts(db)["operations"] == 0


def test_the_json_reader_yields_elements_across_read_boundaries(monkeypatch):
    import io

    monkeypatch.setattr(reading, "READ_SIZE", 7)
    body = json.dumps([document(n) for n in range(3)] + [1, 2.5, "x", None, True, [1, 2]]).encode()
    items = [item for _, item, _ in reading.json_records(io.BytesIO(body))]
    assert items == [document(n) for n in range(3)] + [1, 2.5, "x", None, True, [1, 2]]
    assert [index for index, _, _ in reading.json_records(io.BytesIO(b" [ 12 , 345 ] "))] == [0, 1]
    assert [item for _, item, _ in reading.json_records(io.BytesIO(b"[12,345]"))] == [12, 345]


def test_a_chunk_the_set_based_path_cannot_write_is_written_record_by_record(client, tokens, db, monkeypatch):
    import psycopg.errors

    from registry.submissions import bulk

    def collide(*args, **kwargs):
        raise psycopg.errors.UniqueViolation("a concurrent request took a local_ref")

    monkeypatch.setattr(bulk, "insert_operations", collide)
    report = submit(client, tokens, [document(1), document(2)]).json
    assert [r["outcome"] for r in report["records"]] == ["created", "created"]
    assert counts(db)["operations"] == counts(db)["follow_ups"] == 2
    assert db.execute("SELECT count(*) AS n FROM audit_events WHERE entity = 'patient'").fetchone()["n"] == 2


def test_a_validation_worker_that_dies_does_not_fail_the_submission(client, tokens, db, small_chunks, monkeypatch):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from registry.submissions import validation

    def dead_worker(raws, location, *, in_parallel):
        died = Future()
        died.set_exception(BrokenProcessPool("a worker was killed"))
        return [died]

    monkeypatch.setattr(validation, "submit_chunk", dead_worker)
    report = submit(client, tokens, [document(n) for n in range(7)]).json
    assert report["created"] == 7


def test_a_chunk_of_only_unreadable_rows(client, tokens, small_chunks):
    from tests.submissions.helpers import csv_body, csv_row

    good = csv_body([csv_row(n) for n in range(1, 4)])
    bad_rows = b"OP-x,too,few,cells\r\n" * 3
    body = good + bad_rows + b"\r\n".join(good.split(b"\r\n")[1:2]).replace(b"OP-1", b"OP-9").replace(b"P-1", b"P-9") + b"\r\n"
    report = client.post("/v1/submissions/", data=body, content_type="text/csv", headers=tokens.header("submitter_a")).json
    assert [r["outcome"] for r in report["records"]] == ["created"] * 3 + ["rejected"] * 3 + ["created"]
