"""The schema is owned by alembic: up, down and up again reach the same schema."""

import psycopg
import pytest

from registry import migrate, vocabulary

SCHEMA_QUERY = """
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, column_name
"""
CONSTRAINT_QUERY = """
SELECT conrelid::regclass::text AS table_name, conname, pg_get_constraintdef(oid) AS definition
FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2
"""


def snapshot(url):
    with psycopg.connect(url) as conn:
        return conn.execute(SCHEMA_QUERY).fetchall(), conn.execute(CONSTRAINT_QUERY).fetchall()


def test_upgrade_downgrade_upgrade_round_trip(empty_database_url):
    migrate.upgrade(empty_database_url)
    at_head = snapshot(empty_database_url)
    assert at_head[0], "upgrade created no tables"

    migrate.downgrade(empty_database_url, "base")
    with psycopg.connect(empty_database_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_name <> 'alembic_version'").fetchall()
    assert tables == []

    migrate.upgrade(empty_database_url)
    assert snapshot(empty_database_url) == at_head


def test_every_centre_table_is_keyed_by_centre(db):
    """Citus-ready: centre data tables lead their primary key with centre_id."""
    rows = db.execute("""
        SELECT c.conrelid::regclass::text AS table_name, a.attname AS first_column
        FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'p' AND c.connamespace = 'public'::regnamespace""").fetchall()
    first = {row["table_name"]: row["first_column"] for row in rows}
    for table in ("patients", "operations", "implants", "intraop_events", "postop_complications",
                  "follow_ups", "audit_events", "idempotency_keys"):
        assert first[table] == "centre_id", table


ENUM_COLUMNS = [
    ("patients", "diagnosis", vocabulary.DIAGNOSIS),
    ("patients", "sex", vocabulary.SEX),
    ("patients", "consent", vocabulary.CONSENT),
    ("operations", "approach", vocabulary.APPROACH),
    ("operations", "region", vocabulary.REGION),
    ("operations", "indication", vocabulary.INDICATION),
    ("implants", "kind", vocabulary.IMPLANT_KIND),
    ("intraop_events", "type", vocabulary.INTRAOP_EVENT),
    ("intraop_events", "instrument", vocabulary.INSTRUMENT),
    ("intraop_events", "grade", vocabulary.CLASSINTRA_GRADE),
    ("postop_complications", "type", vocabulary.POSTOP_COMPLICATION),
    ("postop_complications", "grade", vocabulary.CLAVIEN_DINDO_GRADE),
    ("follow_ups", "fusion_status", vocabulary.FUSION_STATUS),
    ("follow_ups", "implant_status", vocabulary.IMPLANT_STATUS),
    ("intraop_events", "reported_by", vocabulary.REPORTED_BY),
    ("intraop_events", "saves_grade", vocabulary.SAVES_GRADE),
    ("postop_complications", "saves_grade", vocabulary.SAVES_GRADE),
    ("follow_ups", "bridwell_grade", vocabulary.BRIDWELL_GRADE),
    ("postop_complications", "reported_by", vocabulary.REPORTED_BY),
]


@pytest.mark.parametrize("table, column, codes", ENUM_COLUMNS, ids=[f"{t}.{c}" for t, c, _ in ENUM_COLUMNS])
def test_database_checks_match_vocabulary(db, table, column, codes):
    definition = db.execute(
        "SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname = %s",
        (f"ck_{table}_{column}",)).fetchone()
    if definition is None:  # named after the wire field rather than the column
        definition = db.execute(
            "SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND pg_get_constraintdef(oid) LIKE %s",
            (table, f"%({column} = ANY%")).fetchone()
    assert definition is not None, f"no CHECK on {table}.{column}"
    for code in codes:
        assert f"'{code}'" in definition["d"], f"{code} missing from {table}.{column} CHECK"


def test_audit_trail_refuses_update_and_delete(db, tokens):
    assert db.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"] > 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("UPDATE audit_events SET action = 'forged'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM audit_events")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("TRUNCATE audit_events")


def test_follow_up_before_its_operation_is_refused_by_the_database(db, tokens):
    centre = tokens.centre_a["id"]
    patient = db.execute("INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, 'x', 'ado_ii')"
                         " RETURNING id", (centre,)).fetchone()["id"]
    operation = db.execute(
        "INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, procedures)"
        " VALUES (%s, %s, 'op-1', '2020-05-01', 'cervical', '{laminectomy}') RETURNING id",
        (centre, patient)).fetchone()["id"]
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO follow_ups (centre_id, operation_id, follow_up_date, months_after)"
                   " VALUES (%s, %s, '2020-04-01', 0)", (centre, operation))


def test_levels_out_of_order_are_refused_by_the_database(db, tokens):
    centre = tokens.centre_a["id"]
    patient = db.execute("INSERT INTO patients (centre_id, ref_hash, diagnosis) VALUES (%s, 'x', 'ado_ii')"
                         " RETURNING id", (centre,)).fetchone()["id"]
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        db.execute(
            "INSERT INTO operations (centre_id, patient_id, local_ref, operation_date, region, procedures,"
            " level_from, level_to) VALUES (%s, %s, 'op-1', '2020-05-01', 'cervical', '{fusion}', 'C6', 'C3')",
            (centre, patient))
    assert refused.value.diag.constraint_name == "ck_operations_levels_ordered"
