"""Migration 0014 (the stored latest JOA and mJOA from one visit) on a populated registry: every
record stays as it was, the stored facts become the one latest visit's (an operation whose latest
visit recorded mJOA only has no latest JOA), and down gives back 0013's facts and aggregates."""

import psycopg
from psycopg.rows import dict_row

from registry import migrate
from tests.reports import dataset
from tests.service.migration_snapshots import aggregates as _aggregates, base_rows as _rows

def _populate(url) -> tuple:
    """A generated registry and one operation: JOA and mJOA at 6 months, mJOA only at 24."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        centres = [conn.execute("INSERT INTO centres (code, name) VALUES (%s, %s) RETURNING id",
                                (code, code)).fetchone()["id"] for code in ("MIG-A", "MIG-B")]
        dataset.generate(conn, centres, seed=4, operations=60)
        patient = conn.execute("INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, %s, 'ado_ii')"
                               " RETURNING id", (centres[0], b"one-visit-patient")).fetchone()["id"]
        operation = conn.execute(
            "INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, approach, procedures,"
            " instrumented, preop_joa) VALUES (%s, %s, 'one-visit', '2020-03-01', 'cervical', 'posterior',"
            " '{laminoplasty}', false, 9) RETURNING id", (centres[0], patient)).fetchone()["id"]
        conn.execute("INSERT INTO follow_ups (centre_id, operation_id, follow_up_date, months_after, joa, mjoa)"
                     " VALUES (%s, %s, '2020-09-01', 6, 13, 14), (%s, %s, '2022-03-01', 24, NULL, 16)",
                     (centres[0], operation, centres[0], operation))
        conn.execute("SELECT report_rebuild()")  # the log folded: the tallies hold every figure
        conn.execute("TRUNCATE report_changes")
    return centres[0], operation


def _latest(conn, key) -> tuple:
    row = conn.execute("SELECT latest_joa, latest_mjoa FROM report_operations WHERE centre_id = %s"
                       " AND operation_id = %s", key).fetchone()
    return row["latest_joa"], row["latest_mjoa"]


def test_a_populated_registry_migrates_up_and_down_without_loss(empty_database_url):
    migrate.upgrade(empty_database_url, "0013")
    key = _populate(empty_database_url)
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        before, aggregates_before = _rows(conn), _aggregates(conn)
        assert _latest(conn, key) == (13, 16)   # 0013: each score's own latest visit

    migrate.upgrade(empty_database_url, "0014")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        assert _rows(conn) == before
        assert _latest(conn, key) == (None, 16)  # the one latest visit: JOA not recorded there
        after = _aggregates(conn)
        assert after["facts"] == conn.execute("SELECT * FROM report_operation_facts"
                                              " ORDER BY centre_id, operation_id").fetchall()
        all_cells = "SELECT joa_post_n, mjoa_post_n FROM report_tallies WHERE centre_id = 0 AND dim = 'all'"
        counts = conn.execute(all_cells).fetchone()
        assert counts["joa_post_n"] < next(t["joa_post_n"] for t in aggregates_before["tallies"]
                                           if t["centre_id"] == 0 and t["dim"] == "all")
        assert after["histograms"] != aggregates_before["histograms"]

    migrate.downgrade(empty_database_url, "0013")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        assert _rows(conn) == before
        assert _aggregates(conn) == aggregates_before
        assert _latest(conn, key) == (13, 16)

    migrate.upgrade(empty_database_url, "head")
