"""Migration 0012 (clinical depth) on a populated registry: operations stored before read as
recorded (an empty list was "none" under the old contract, so their rates do not move), and
up then down gives back every row as it was."""

import psycopg
from psycopg.rows import dict_row

from registry import migrate
from tests.reports import dataset

TABLES = ("patients", "operations", "implants", "intraop_events", "postop_complications", "follow_ups")
TALLY_COLUMNS = ("operations", "intraop_event", "postop_complication", "major_complication", "followed", "revision",
                 "fusion_fused", "joa_pre_n", "key_operations", "key_intraop_event")


def _rows(conn) -> dict:
    return {table: conn.execute(f"SELECT * FROM {table} ORDER BY centre_id, id").fetchall() for table in TABLES}


def _unversioned(rows) -> list:
    return [{k: v for k, v in row.items() if k not in ("version", "updated_at")} for row in rows]


def _tallies(conn) -> list:
    columns = ", ".join(TALLY_COLUMNS)
    return conn.execute(f"SELECT centre_id, dim, value, {columns} FROM report_tallies "
                        "ORDER BY centre_id, dim, value").fetchall()


def _populate(url) -> None:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        centres = [conn.execute("INSERT INTO centres (code, name) VALUES (%s, %s) RETURNING id",
                                (code, code)).fetchone()["id"] for code in ("MIG-A", "MIG-B")]
        dataset.generate(conn, centres, seed=3, operations=60, recording=False)
        conn.execute("SELECT report_rebuild()")  # the log folded: the tallies hold every figure


def test_a_populated_registry_migrates_up_and_down_without_loss(empty_database_url):
    migrate.upgrade(empty_database_url, "0011")
    _populate(empty_database_url)
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        before, tallies_before = _rows(conn), _tallies(conn)
        with_events = {(r["centre_id"], r["operation_id"]) for r in before["intraop_events"]}
        revisions = {(r["centre_id"], r["id"]): r["revision_surgery"] for r in before["follow_ups"]}
    assert with_events and len(before["operations"]) == 60

    migrate.upgrade(empty_database_url, "0012")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        operations = conn.execute("SELECT centre_id, id, intraop_events_recorded, postop_complications_recorded"
                                  " FROM operations").fetchall()
        # stored before: recorded, so an operation without events reads as "none", as it counted before
        assert all(row["intraop_events_recorded"] and row["postop_complications_recorded"] for row in operations)
        assert {(r["centre_id"], r["id"]): r["revision_surgery"]
                for r in conn.execute("SELECT * FROM follow_ups")} == revisions
        # every figure the old aggregates held is the same after the rebuild
        assert _tallies(conn) == tallies_before
        recorded = conn.execute("SELECT sum(intraop_recorded) AS i, sum(postop_recorded) AS p, sum(operations) AS n"
                                " FROM report_tallies WHERE centre_id = 0 AND dim = 'all'").fetchone()
        assert recorded["i"] == recorded["p"] == recorded["n"]
        # the new values can now be stored
        conn.execute("UPDATE operations SET postop_complications_recorded = false WHERE id = (SELECT min(id) FROM"
                     " operations o WHERE NOT EXISTS (SELECT 1 FROM postop_complications c"
                     " WHERE c.centre_id = o.centre_id AND c.operation_id = o.id))")
        conn.execute("UPDATE follow_ups SET revision_surgery = NULL"
                     " WHERE id = (SELECT min(id) FROM follow_ups WHERE NOT revision_surgery)")
        conn.execute("UPDATE intraop_events SET reported_by = 'surgeon', saves_grade = '2'"
                     " WHERE id = (SELECT min(id) FROM intraop_events)")
        conn.execute("UPDATE postop_complications SET reported_by = 'claims', saves_grade = '4'"
                     " WHERE id = (SELECT min(id) FROM postop_complications)")
        conn.execute("UPDATE follow_ups SET bridwell_grade = 'I' WHERE (centre_id, id) = (SELECT centre_id, id"
                     " FROM follow_ups WHERE fusion_status = 'fused' ORDER BY centre_id, id LIMIT 1)")
        conn.commit()

    migrate.downgrade(empty_database_url, "0011")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        after = _rows(conn)
        for table in TABLES:
            assert _unversioned(after[table]) == _unversioned(before[table]), table
        assert _tallies(conn) == tallies_before

    migrate.upgrade(empty_database_url, "head")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        assert _rows(conn)["operations"][0]["intraop_events_recorded"] is True
