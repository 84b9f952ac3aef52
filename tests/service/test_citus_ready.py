"""The schema stays ready to be distributed by centre on Citus, read from the catalog.

Citus shards a distributed table by one column (here `centre_id`) and enforces a primary key,
a unique key or a foreign key between distributed tables only when it includes that column: a
key without it would need to look at every shard. So every table holding a centre's data
carries `centre_id`, in its primary key, in each unique key, and in each foreign key to another
centre table (matched to that table's `centre_id`). A table that cannot (looked up before the
centre is known, or about every centre) must be listed below as a reference or local table,
with why. docs/scale-out.md gives the recipe these keys make possible.
"""

import psycopg
import pytest

# Copied to every node (Citus reference tables): small, read by every centre's rows.
REFERENCE_TABLES = {
    "centres": "the distribution key's own table; every centre table's foreign key points at it",
    "tokens": "a bearer token is found by its hash before its centre is known (authentication); "
              "a few rows per centre",
}
# Kept on the coordinator only (Citus local tables): bookkeeping, not a centre's data.
LOCAL_TABLES = {
    "alembic_version": "the schema version, one row",
    "report_flush_pending": "which transactions still have report aggregates to fold in (by transaction "
                            "id, emptied at commit); no centre's data",
}

CENTRE_COLUMN = "centre_id"

TABLES = """
SELECT c.oid, c.relname AS name,
       EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = %(column)s
               AND NOT a.attisdropped) AS has_centre
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""

# Primary keys, unique and exclusion constraints, and unique indexes that are not constraints:
# whether each includes the centre column.
KEYS = """
SELECT t.relname AS table_name, i.relname AS key_name,
       CASE WHEN con.contype = 'p' THEN 'primary key' WHEN con.contype = 'x' THEN 'exclusion constraint'
            WHEN con.contype = 'u' THEN 'unique key' ELSE 'unique index' END AS kind,
       EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = %(column)s
               AND a.attnum = ANY (x.indkey)) AS includes_centre
FROM pg_index x
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_class i ON i.oid = x.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = t.oid
WHERE t.relnamespace = 'public'::regnamespace AND (x.indisunique OR con.contype = 'x')
"""

# Foreign keys, with whether the referencing table's centre column is matched to the referenced one's.
FOREIGN_KEYS = """
SELECT con.conname AS key_name, src.relname AS table_name, dst.relname AS referenced,
       EXISTS (SELECT FROM unnest(con.conkey, con.confkey) AS pair(src_column, dst_column)
               JOIN pg_attribute sa ON sa.attrelid = con.conrelid AND sa.attnum = pair.src_column
               JOIN pg_attribute da ON da.attrelid = con.confrelid AND da.attnum = pair.dst_column
               WHERE sa.attname = %(column)s AND da.attname = %(column)s) AS matches_centre
FROM pg_constraint con
JOIN pg_class src ON src.oid = con.conrelid
JOIN pg_class dst ON dst.oid = con.confrelid
WHERE con.contype = 'f' AND src.relnamespace = 'public'::regnamespace
"""


def read_catalog(conn) -> dict:
    parameters = {"column": CENTRE_COLUMN}
    return {
        "tables": conn.execute(TABLES, parameters).fetchall(),
        "keys": conn.execute(KEYS, parameters).fetchall(),
        "foreign_keys": conn.execute(FOREIGN_KEYS, parameters).fetchall(),
    }


def centre_tables(catalog) -> set[str]:
    listed = REFERENCE_TABLES.keys() | LOCAL_TABLES.keys()
    return {table["name"] for table in catalog["tables"] if table["name"] not in listed}


def tables_without_centre_id(catalog) -> list[str]:
    return [table["name"] for table in catalog["tables"]
            if table["name"] in centre_tables(catalog) and not table["has_centre"]]


def tables_without_primary_key(catalog) -> list[str]:
    with_primary_key = {key["table_name"] for key in catalog["keys"] if key["kind"] == "primary key"}
    return sorted(centre_tables(catalog) - with_primary_key)


def keys_without_centre_id(catalog) -> list[str]:
    return [f"{key['table_name']}: {key['kind']} {key['key_name']}" for key in catalog["keys"]
            if key["table_name"] in centre_tables(catalog) and not key["includes_centre"]]


def foreign_keys_across_centres(catalog) -> list[str]:
    centre = centre_tables(catalog)
    return [f"{key['table_name']} -> {key['referenced']}: {key['key_name']}" for key in catalog["foreign_keys"]
            if key["table_name"] in centre and key["referenced"] in centre and not key["matches_centre"]]


def reference_tables_pointing_at_centre_tables(catalog) -> list[str]:
    # Citus refuses a foreign key from a reference table to a distributed one.
    centre = centre_tables(catalog)
    return [f"{key['table_name']} -> {key['referenced']}: {key['key_name']}" for key in catalog["foreign_keys"]
            if key["table_name"] in REFERENCE_TABLES and key["referenced"] in centre]


@pytest.fixture
def catalog(database_url):
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        yield read_catalog(conn)


def test_every_reference_and_local_table_listed_exists(catalog):
    assert (REFERENCE_TABLES.keys() | LOCAL_TABLES.keys()) <= {table["name"] for table in catalog["tables"]}


def test_every_table_not_listed_as_reference_or_local_carries_centre_id(catalog):
    assert tables_without_centre_id(catalog) == [], f"add {CENTRE_COLUMN}, or list the table with why"


def test_every_centre_table_has_a_primary_key(catalog):
    assert tables_without_primary_key(catalog) == []


def test_every_primary_and_unique_key_of_a_centre_table_includes_centre_id(catalog):
    assert keys_without_centre_id(catalog) == []


def test_every_foreign_key_between_centre_tables_matches_centre_id(catalog):
    assert foreign_keys_across_centres(catalog) == []


def test_no_reference_table_points_at_a_centre_table(catalog):
    assert reference_tables_pointing_at_centre_tables(catalog) == []


def test_the_checks_find_each_kind_of_violation(database_url):
    """A table added the wrong way is caught, whichever rule it breaks."""
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        conn.execute("CREATE TABLE no_centre (id bigint PRIMARY KEY)")
        conn.execute("CREATE TABLE no_key (centre_id bigint)")
        conn.execute("CREATE TABLE keyed_badly (centre_id bigint, id bigint PRIMARY KEY, code text UNIQUE,"
                     " operation_id bigint REFERENCES no_centre (id))")
        conn.execute("CREATE UNIQUE INDEX keyed_badly_code_idx ON keyed_badly (lower(code))")
        conn.execute("ALTER TABLE tokens ADD COLUMN operation_id bigint, ADD CONSTRAINT tokens_operation_fkey"
                     " FOREIGN KEY (centre_id, operation_id) REFERENCES operations (centre_id, id)")
        catalog = read_catalog(conn)
        conn.rollback()

    assert tables_without_centre_id(catalog) == ["no_centre"]
    assert tables_without_primary_key(catalog) == ["no_key"]
    assert sorted(keys_without_centre_id(catalog)) == [
        "keyed_badly: primary key keyed_badly_pkey", "keyed_badly: unique index keyed_badly_code_idx",
        "keyed_badly: unique key keyed_badly_code_key", "no_centre: primary key no_centre_pkey"]
    assert foreign_keys_across_centres(catalog) == ["keyed_badly -> no_centre: keyed_badly_operation_id_fkey"]
    assert reference_tables_pointing_at_centre_tables(catalog) == ["tokens -> operations: tokens_operation_fkey"]
