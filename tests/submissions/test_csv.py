"""CSV submissions: one row per operation, strict cells, errors naming the row and the column."""

from tests.records.helpers import counts
from tests.submissions.helpers import CSV_HEADER, csv_body, csv_row


def submit_csv(client, tokens, body: bytes, mode="partial", who="submitter_a"):
    return client.post(f"/v1/submissions/?mode={mode}", data=body, content_type="text/csv",
                       headers=tokens.header(who))


def test_a_csv_with_good_and_bad_rows_stores_exactly_the_good_rows(client, tokens, db):
    rows = [csv_row(1), csv_row(2, **{"intraop_events.0.instrument": ""}), csv_row(3),
            csv_row(4, duration_min="three hours"), csv_row(5, procedures="laminectomy;fusion;magic"), csv_row(6)]
    response = submit_csv(client, tokens, csv_body(rows))
    assert response.status_code == 201, response.json
    report = response.json
    assert (report["status"], report["total"], report["created"], report["rejected"]) == ("partially_accepted", 6, 3, 3)
    assert [(r["row"], r["outcome"]) for r in report["records"]] == [
        (2, "created"), (3, "rejected"), (4, "created"), (5, "rejected"), (6, "rejected"), (7, "created")]
    errors = {r["row"]: r["errors"] for r in report["records"] if r["outcome"] == "rejected"}
    assert errors[3] == [{"field": "intraop_events.0.instrument", "pointer": "/intraop_events/0/instrument",
                          "location": "csv", "column": "intraop_events.0.instrument",
                          "message": "An instrument breakage must name the instrument."}]
    assert [(e["column"], e["message"]) for e in errors[5]] == [("duration_min", "Not a valid integer.")]
    assert [(e["field"], e["column"]) for e in errors[6]] == [("procedures.2", "procedures")]
    stored = {row["local_ref"] for row in db.execute("SELECT local_ref FROM operations").fetchall()}
    assert stored == {"OP-1", "OP-3", "OP-6"}
    assert counts(db)["follow_ups"] == 3


def test_a_csv_with_a_bad_row_stores_nothing_in_atomic_mode(client, tokens, db):
    rows = [csv_row(1), csv_row(2, **{"levels.to": "C1"}), csv_row(3)]
    report = submit_csv(client, tokens, csv_body(rows), mode="atomic").json
    assert (report["status"], report["rejected"], report["not_stored"]) == ("rejected", 1, 2)
    assert report["records"][1]["errors"][0]["column"] == "levels.to"
    assert counts(db) == dict.fromkeys(counts(db), 0)


def test_resending_the_same_file_changes_nothing(client, tokens, db):
    body = csv_body([csv_row(1), csv_row(2), csv_row(3, duration_min="x")])
    first = submit_csv(client, tokens, body).json
    before = db.execute("SELECT id, version, updated_at FROM operations ORDER BY id").fetchall()
    audit = db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"]
    again = submit_csv(client, tokens, body).json
    assert [r["outcome"] for r in again["records"]] == ["unchanged", "unchanged", "rejected"]
    assert [r["operation_id"] for r in again["records"]] == [r["operation_id"] for r in first["records"]]
    assert db.execute("SELECT id, version, updated_at FROM operations ORDER BY id").fetchall() == before
    assert db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"] == audit


def test_a_fixed_row_resent_alone_is_created(client, tokens, db):
    submit_csv(client, tokens, csv_body([csv_row(1), csv_row(2, duration_min="x")]))
    report = submit_csv(client, tokens, csv_body([csv_row(2)])).json
    assert [r["outcome"] for r in report["records"]] == ["created"]
    assert counts(db)["operations"] == 2


def test_cells_are_typed_strictly(client, tokens):
    rows = [csv_row(1, **{"patient.birth_year": "1973.0"}), csv_row(2, **{"follow_ups.0.joa": "fourteen"}),
            csv_row(3, operation_date="01/03/2016"), csv_row(4, procedures="laminectomy;;fusion")]
    report = submit_csv(client, tokens, csv_body(rows)).json
    assert [e["column"] for r in report["records"] for e in r["errors"]] == [
        "patient.birth_year", "follow_ups.0.joa", "operation_date", "procedures"]


def test_booleans_lists_and_numbers_are_read_from_cells(client, tokens):
    header = CSV_HEADER + ["transfusion", "patient.genes", "instrumentation.implants.0.diameter_mm",
                           "intraop_events.0.retained_fragment"]
    row = csv_row(1, transfusion="FALSE", **{"patient.genes": "CLCN7; TCIRG1",
                                             "instrumentation.implants.0.diameter_mm": "3.5",
                                             "intraop_events.0.retained_fragment": "true"})
    report = submit_csv(client, tokens, csv_body([row], header)).json
    assert report["created"] == 1, report
    operation = client.get(f"/v1/operations/{report['records'][0]['operation_id']}",
                           headers=tokens.header("submitter_a")).json
    assert operation["transfusion"] is False
    assert operation["patient"]["genes"] == ["CLCN7", "TCIRG1"]
    assert operation["instrumentation"]["implants"][0]["diameter_mm"] == 3.5
    assert operation["intraop_events"][0]["retained_fragment"] is True


def test_a_row_with_the_wrong_number_of_cells_is_rejected_alone(client, tokens):
    body = csv_body([csv_row(1), csv_row(3)]).replace(b"OP-3,", b"OP-2,extra,", 1)
    report = submit_csv(client, tokens, body).json
    assert [r["outcome"] for r in report["records"]] == ["created", "rejected"]
    assert "cells" in report["records"][1]["errors"][0]["message"]


def test_groups_must_be_filled_without_gaps(client, tokens):
    header = CSV_HEADER + ["intraop_events.1.type", "intraop_events.2.type"]
    row = csv_row(1, **{"intraop_events.2.type": "dural_tear"})
    report = submit_csv(client, tokens, csv_body([row], header)).json
    assert report["records"][0]["errors"][0]["field"] == "intraop_events.1"


def test_unknown_columns_are_refused_naming_the_column(client, tokens, db):
    for column in ("surgeon", "levels.middle", "intraop_events.x.type", "intraop_events.50.type", "patient"):
        response = submit_csv(client, tokens, csv_body([csv_row(1)], CSV_HEADER + [column]))
        assert response.status_code == 422, column
        assert response.json["errors"][0]["field"] == column
        assert response.json["errors"][0]["location"] == "csv"
    assert db.execute("SELECT count(*) AS n FROM submissions").fetchone()["n"] == 0


def test_a_repeated_column_is_refused(client, tokens):
    response = submit_csv(client, tokens, csv_body([], CSV_HEADER + ["region"]))
    assert response.status_code == 422
    assert "twice" in response.json["errors"][0]["message"]


def test_a_header_without_local_ref_is_refused(client, tokens):
    header = [column for column in CSV_HEADER if column != "local_ref"]
    response = submit_csv(client, tokens, csv_body([], header))
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "local_ref"


def test_broken_quoting_and_empty_bodies_are_refused(client, tokens):
    assert submit_csv(client, tokens, b"").status_code == 422
    broken = csv_body([csv_row(1)]) + b'OP-2,"unterminated\r\n'
    assert submit_csv(client, tokens, broken).status_code == 422


def test_a_spreadsheet_byte_order_mark_and_blank_rows_are_fine(client, tokens):
    body = b"\xef\xbb\xbf" + csv_body([csv_row(1)]) + b",,,,,,,,,,,,,,,,,,,,\r\n"
    report = submit_csv(client, tokens, body).json
    assert (report["total"], report["created"]) == (1, 1)


def test_the_example_file_in_the_repository_is_accepted(client, tokens):
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent.parent / "examples" / "submission.csv"
    report = submit_csv(client, tokens, example.read_bytes()).json
    assert report["status"] == "accepted", report
    assert report["created"] >= 3
