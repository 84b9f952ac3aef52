"""Migration 0015 (each outcome's baseline and latest follow-up value in the report facts) on a
populated registry: every record stays as it was, the stored facts equal the facts view and hold
each outcome's value at its own latest visit, the tallies and histograms are unchanged, and down
gives back 0014's facts and aggregates."""

import psycopg
from alembic.script import ScriptDirectory
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from registry import migrate
from registry.reports import scores
from tests.reports import dataset
from tests.service.migration_snapshots import aggregates as _aggregates, base_rows as _rows

def _populate(url) -> tuple:
    """A generated registry and one operation scored before surgery (JOA 10, NDI 40 %, neck pain
    7), at 6 months (JOA 12, NDI 30 %, neck pain 5) and at 24 months (neck pain 2 only)."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        centres = [conn.execute("INSERT INTO centres (code, name) VALUES (%s, %s) RETURNING id",
                                (code, code)).fetchone()["id"] for code in ("MIG-A", "MIG-B")]
        dataset.generate(conn, centres, seed=5, operations=60)
        patient = conn.execute("INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, %s, 'ado_ii')"
                               " RETURNING id", (centres[0], b"score-pairs-patient")).fetchone()["id"]
        operation = conn.execute(
            "INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, approach, procedures,"
            " instrumented, preop_joa, baseline_scores) VALUES (%s, %s, 'score-pairs', '2020-03-01', 'cervical',"
            " 'posterior', '{laminoplasty}', false, 10, %s) RETURNING id",
            (centres[0], patient, Jsonb([{"instrument": "ndi", "version": "percent", "value": 40},
                                         {"instrument": "pain_nrs", "version": "11-point", "value": 7,
                                          "site": "neck"}]))).fetchone()["id"]
        conn.execute(
            "INSERT INTO follow_ups (centre_id, operation_id, follow_up_date, months_after, joa, scores)"
            " VALUES (%s, %s, '2020-09-01', 6, 12, %s), (%s, %s, '2022-03-01', 24, NULL, %s)",
            (centres[0], operation, Jsonb([{"instrument": "ndi", "version": "percent", "value": 30},
                                           {"instrument": "pain_nrs", "version": "11-point", "value": 5,
                                            "site": "neck"}]),
             centres[0], operation, Jsonb([{"instrument": "pain_nrs", "version": "11-point", "value": 2,
                                            "site": "neck"}])))
        conn.execute("SELECT report_rebuild()")  # the log folded: the tallies hold every figure
        conn.execute("TRUNCATE report_changes")
    return centres[0], operation


def _pairs(conn, key) -> dict:
    row = conn.execute("SELECT * FROM report_operations WHERE centre_id = %s AND operation_id = %s", key).fetchone()
    return {column: value for column, value in row.items()
            if column.startswith(("baseline_", "latest_")) and column not in ("latest_joa", "latest_mjoa")}


def test_a_populated_registry_migrates_up_and_down_without_loss(empty_database_url):
    migrate.upgrade(empty_database_url, "0014")
    key = _populate(empty_database_url)
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        before, aggregates_before = _rows(conn), _aggregates(conn)
        assert _pairs(conn, key) == {}

    migrate.upgrade(empty_database_url, "0015")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        assert _rows(conn) == before
        after = _aggregates(conn)
        assert after["facts"] == conn.execute("SELECT * FROM report_operation_facts"
                                              " ORDER BY centre_id, operation_id").fetchall()
        recorded = {column: value for column, value in _pairs(conn, key).items() if value is not None}
        # each outcome's own latest visit: NDI from 6 months, neck pain from 24
        assert recorded == {"baseline_joa_17": 10, "latest_joa_17": 12, "baseline_ndi_percent": 40,
                            "latest_ndi_percent": 30, "baseline_pain_nrs_neck": 7, "latest_pain_nrs_neck": 2}
        # values, not measures: every stored figure is as it was
        assert after["tallies"] == aggregates_before["tallies"]
        assert after["histograms"] == aggregates_before["histograms"]
        live = conn.execute("SELECT * FROM report_live_measures ORDER BY centre_id, operation_id").fetchall()
        assert live == conn.execute("SELECT * FROM report_operation_measures"
                                    " ORDER BY centre_id, operation_id").fetchall()

    migrate.downgrade(empty_database_url, "0014")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        assert _rows(conn) == before
        assert _aggregates(conn) == aggregates_before
        assert _pairs(conn, key) == {}

    migrate.upgrade(empty_database_url, "head")


def test_every_outcome_of_the_scores_report_is_stored():
    """The report reads baseline_<name> and latest_<name> of every outcome; 0015 froze them."""
    migration = ScriptDirectory.from_config(migrate.alembic_config("")).get_revision("0015").module
    assert list(migration.OUTCOMES) == [(outcome.name, outcome.key) for outcome in scores.OUTCOMES]
