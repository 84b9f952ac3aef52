"""Record keys (migration 0007): drawn once per operation, summed per count into cell keys, and
removed again by the downgrade."""

import psycopg
import pytest
from psycopg.rows import dict_row

from registry import migrate
from registry.reports import store
from tests.records.helpers import operation
from tests.reports import dataset

OBJECTS_QUERY = """
SELECT 'column' AS kind, table_name || '.' || column_name AS name,
       data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') AS definition
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'view', viewname, definition FROM pg_views WHERE schemaname = 'public'
UNION ALL
SELECT 'function', p.oid::regprocedure::text, pg_get_functiondef(p.oid)
FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


def objects(url):
    with psycopg.connect(url) as conn:
        return conn.execute(OBJECTS_QUERY).fetchall()


def fill(url, seed):
    """A few centres' operations, written at whatever revision the database is at."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        ids = [conn.execute("INSERT INTO centres (code, name) VALUES (%s, %s) RETURNING id",
                            (f"KEY-{seed}-{n}", f"Centre {n}")).fetchone()["id"] for n in range(2)]
        dataset.generate(conn, ids, seed=seed, operations=60)


def test_existing_operations_get_a_key_and_the_downgrade_restores_0006(empty_database_url):
    migrate.upgrade(empty_database_url, "0006")
    fill(empty_database_url, 1)
    before = objects(empty_database_url)

    migrate.upgrade(empty_database_url, "0007")
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        keys = [r["record_key"] for r in conn.execute("SELECT record_key FROM operations")]
        assert len(keys) == 60 and all(0 <= k <= 255 for k in keys)
        assert len(set(keys)) > 20  # drawn for each row, not one default for all
        # the rebuild at upgrade filled the key sums of the operations already there
        total = conn.execute("SELECT key_operations FROM report_tallies WHERE centre_id = 0 AND dim = 'all'"
                             ).fetchone()["key_operations"]
        assert total == conn.execute(
            "SELECT sum(o.record_key) AS s FROM operations o JOIN patients p"
            " ON p.centre_id = o.centre_id AND p.id = o.patient_id WHERE p.consent = 'active'").fetchone()["s"]
    fill(empty_database_url, 2)  # new operations draw their key from the default

    migrate.downgrade(empty_database_url, "0006")
    assert objects(empty_database_url) == before
    with psycopg.connect(empty_database_url, row_factory=dict_row) as conn:
        # the aggregates still hold every operation written before and after the round trip
        assert conn.execute("SELECT operations FROM report_tallies WHERE centre_id = 0 AND dim = 'all'"
                            ).fetchone()["operations"] == conn.execute(
            "SELECT count(*) AS n FROM report_operations WHERE counted").fetchone()["n"]


def test_a_count_and_its_key_are_summed_alike_for_a_fusion_threshold(db, registry):
    """At a non-default fusion threshold the scan recomputes fusion per operation, keys too."""
    measures = ["operations", "fusion_assessed", "fusion_fused"]
    cells = store.fetch_cells(db, ["centre"], {}, measures, [], min_months=0)
    operations = dataset.load(db)
    for centre_id in registry:
        decided = []
        for o in dataset.counted(operations):
            if o["centre_id"] != centre_id or "fusion" not in o["procedures"]:
                continue
            deciding = dataset.latest(o["follow_ups"], lambda f: f["fusion_status"] in ("fused", "not_fused"))
            if deciding:
                decided.append((o["record_key"], deciding["fusion_status"]))
        cell = cells[("centre",)][(str(centre_id),)]
        assert cell.measures["key_fusion_assessed"] == sum(k for k, _ in decided)
        assert cell.measures["key_fusion_fused"] == sum(k for k, s in decided if s == "fused")


def test_the_record_key_is_never_shown(client, tokens):
    created = client.post("/v1/operations/", json=operation(), headers=tokens.header("submitter_a"))
    assert created.status_code == 201, created.json
    assert "record_key" not in created.get_data(as_text=True)
    for path in ("/v1/operations/", f"/v1/operations/{created.json['id']}", "/v1/patients/",
                 f"/v1/audit/?entity=operation&entity_id={created.json['id']}"):
        response = client.get(path, headers=tokens.header("submitter_a"))
        assert response.status_code == 200, (path, response.json)
        assert "record_key" not in response.get_data(as_text=True), path
    # the audit event of the creation holds the operation's values, and not its key
    [event] = response.json["items"]
    assert event["action"] == "create" and "operation_date" in event["changes"]

