"""`registry import FILE --centre CODE`: the same submission from the command line."""

import json

from registry.cli import cli
from tests.records.helpers import counts
from tests.submissions.helpers import csv_body, csv_row, document


def test_import_of_a_csv_file_stores_the_good_rows_and_prints_the_bad(runner, tokens, db, tmp_path):
    path = tmp_path / "back-catalogue.csv"
    path.write_bytes(csv_body([csv_row(1), csv_row(2, duration_min="long"), csv_row(3)]))
    result = runner.invoke(cli, ["import", str(path), "--centre", "CENTRE-A"])
    assert result.exit_code == 1, result.output
    assert "partially_accepted; 3 records: 2 created" in result.output
    assert "row 3\tOP-2\tduration_min\tNot a valid integer." in result.output
    assert counts(db)["operations"] == 2
    submission = db.execute("SELECT token_id, format, mode, status FROM submissions").fetchone()
    assert submission == {"token_id": None, "format": "csv", "mode": "partial", "status": "partially_accepted"}
    roles = {row["actor_role"] for row in db.execute("SELECT actor_role FROM audit_events WHERE entity = 'operation'")}
    assert roles == {"cli"}


def test_import_of_a_json_file_atomically(runner, tokens, db, tmp_path):
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([document(1), document(2)]))
    result = runner.invoke(cli, ["import", str(path), "--center", "CENTRE-B", "--mode", "atomic"])
    assert result.exit_code == 0, result.output
    assert "accepted; 2 records: 2 created" in result.output
    centre = db.execute("SELECT DISTINCT centre_id FROM operations").fetchall()
    assert centre == [{"centre_id": tokens.centre_b["id"]}]


def test_importing_the_same_file_twice_changes_nothing(runner, tokens, db, tmp_path):
    path = tmp_path / "batch.csv"
    path.write_bytes(csv_body([csv_row(1), csv_row(2)]))
    runner.invoke(cli, ["import", str(path), "--centre", "CENTRE-A"])
    audit = db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"]
    again = runner.invoke(cli, ["import", str(path), "--centre", "CENTRE-A"])
    assert again.exit_code == 0
    assert "2 unchanged" in again.output
    assert db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"] == audit


def test_import_refuses_an_unknown_centre_and_an_unreadable_file(runner, tokens, tmp_path):
    path = tmp_path / "batch.csv"
    path.write_bytes(b"local_ref,surgeon\r\nOP-1,Dr X\r\n")
    assert "no centre with code NOPE" in runner.invoke(cli, ["import", str(path), "--centre", "NOPE"]).output
    result = runner.invoke(cli, ["import", str(path), "--centre", "CENTRE-A"])
    assert result.exit_code != 0
    assert "surgeon" in result.output
