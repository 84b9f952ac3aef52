"""Migration 0013 (scores with their instrument and version) on a populated registry: rows
stored before keep their JOA and mJOA where they were and have no other score; up then down
gives back every row as it was, the JOA and mJOA scores stored meanwhile included."""

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from registry import migrate
from registry.operations import store as operations
from tests.reports import dataset

TABLES = ("patients", "operations", "implants", "intraop_events", "postop_complications", "follow_ups")
NRS = [{"instrument": "pain_nrs", "version": "11-point", "value": 6.0, "maximum": 10, "value_set": None}]


def _rows(conn) -> dict:
    return {table: conn.execute(f"SELECT * FROM {table} ORDER BY centre_id, id").fetchall() for table in TABLES}


def _without(rows, *columns) -> list:
    return [{k: v for k, v in row.items() if k not in columns} for row in rows]


def test_a_populated_registry_migrates_up_and_down_without_loss(empty_database_url):
    migrate.upgrade(empty_database_url, "0012")
    with psycopg.connect(empty_database_url, autocommit=True, row_factory=dict_row) as conn:
        centres = [conn.execute("INSERT INTO centres (code, name) VALUES (%s, %s) RETURNING id",
                                (code, code)).fetchone()["id"] for code in ("MIG-A", "MIG-B")]
        dataset.generate(conn, centres, seed=5, operations=60, recording=False)
        before = _rows(conn)
    assert any(row["preop_joa"] is not None for row in before["operations"])
    assert any(row["joa"] is not None for row in before["follow_ups"])

    migrate.upgrade(empty_database_url, "0013")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        after = _rows(conn)
        assert all(row["baseline_scores"] == [] for row in after["operations"])
        assert all(row["scores"] == [] for row in after["follow_ups"])
        assert _without(after["operations"], "baseline_scores") == before["operations"]
        assert _without(after["follow_ups"], "scores") == before["follow_ups"]
        # stored JOA reads as the 17-point version, in the list and in the legacy form
        row = next(row for row in after["operations"] if row["preop_joa"] is not None)
        document = operations.row_to_document(row, {"implants": [], "intraop_events": [],
                                                    "postop_complications": []}, None)
        assert document["baseline_scores"][0]["instrument"] == "joa"
        assert document["baseline_scores"][0]["version"] == "17-point"
        assert document["baseline_scores"][0]["value"] == float(row["preop_joa"])
        # the new scores can now be stored; the JOA and mJOA changed meanwhile must survive the way down
        conn.execute("UPDATE operations SET baseline_scores = %s, preop_joa = 12.5 WHERE id = %s",
                     (Jsonb(NRS), row["id"]))
        follow_up = after["follow_ups"][0]
        conn.execute("UPDATE follow_ups SET scores = %s, mjoa = 15 WHERE id = %s", (Jsonb(NRS), follow_up["id"]))
        conn.commit()
        changed = _rows(conn)

    migrate.downgrade(empty_database_url, "0012")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        down = _rows(conn)
        for table in TABLES:
            assert down[table] == _without(changed[table], "baseline_scores", "scores"), table
        assert next(r for r in down["operations"] if r["id"] == row["id"])["preop_joa"] == 12.5

    migrate.upgrade(empty_database_url, "head")
