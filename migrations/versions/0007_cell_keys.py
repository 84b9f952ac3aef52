"""Record keys and cell keys: what cell-key perturbation of cross-centre reports needs.

- `operations.record_key`: a random integer 0..255 drawn once per operation (the column's
  default, so every INSERT and COPY draws it; existing operations get theirs here) and never
  changed. It is never shown by the API.
- For every count measure `x` of the report aggregates (operations, numerators, denominators,
  the n of a summary), an additive measure `key_x`: the sum of the record keys of the
  operations counted by `x`. Summed over a cell like `x` itself (tallies, log, scans), it gives
  the cell key of that count: `key_x mod 256` (registry/reports/suppression.py). Keying each
  count on the records it counts, not on the cell's operations, means that the same records
  always get the same noise whatever query or report counts them: an analyst cannot average
  the noise away by asking for the same records under many filters.

The facts (`report_operations`) carry the record key; the measures view, the log, the tallies,
compaction, refresh and rebuild are generated from 0002's and 0003's templates with the key
measures added, and every aggregate is rebuilt from the base tables. Downgrade restores 0006's
state (0003's compaction and facts view, 0002's measures, refresh and rebuild).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""
from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _module(revision_id):
    """A revision's module as alembic loaded it (a module name starting with a digit has no import)."""
    return context.script.get_revision(revision_id).module


def count_measures(measures) -> list[str]:
    """The measures that count operations (0/1 per operation): every one but the value sums."""
    return [name for name, _ in measures if not name.endswith("_sum")]


def key_measures(measures) -> list[tuple[str, str]]:
    return [(f"key_{name}", "bigint") for name in count_measures(measures)]


def _facts_view(aggregates, extra_columns=""):
    # 0003's form of the facts view (fusion status through report_fusion_decision)
    return aggregates.facts_view(
        "fd.status", "\nLEFT JOIN LATERAL report_fusion_decision(o.centre_id, o.id, 12) fd ON true", extra_columns)


def _compact(aggregates, measures) -> str:
    """0003's report_compact over these measures."""
    names = [name for name, _ in measures]
    return _module("0003").COMPACT_FUNCTION.format(
        lock_id=aggregates.COMPACTION_LOCK_ID,
        signed_sums=",\n            ".join(f"sum(m.sign * m.{n}) AS {n}" for n in names),
        cell_sums=",\n            ".join(f"sum(c.{n})" for n in names),
        column_list=", ".join(names),
        add_excluded=",\n            ".join(f"{n} = t.{n} + excluded.{n}" for n in names))


def _log_table() -> str:
    return """
CREATE TABLE report_log (
    sign  smallint NOT NULL,
    LIKE report_operation_measures,
    id    bigint GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT report_log_pkey PRIMARY KEY (centre_id, id)
);"""


def upgrade() -> None:
    aggregates = _module("0002")
    keys = key_measures(aggregates.MEASURES)
    measures = list(aggregates.MEASURES) + keys
    key_columns = ",\n    ".join(f"m.record_key * m.{name} AS key_{name}"
                                 for name in count_measures(aggregates.MEASURES))
    facts_sql = _facts_view(aggregates, ",\n       o.record_key")
    measures_sql = aggregates.measures_select(",\n    f.record_key")
    add_keys = ",\n    ".join(f"ADD COLUMN {name} {kind} NOT NULL DEFAULT 0" for name, kind in keys)
    op.execute(f"""
-- Drawn once per row by the default (volatile, so ADD COLUMN draws one for each existing row).
ALTER TABLE operations ADD COLUMN record_key smallint NOT NULL DEFAULT floor(random() * 256)::smallint
    CONSTRAINT ck_operations_record_key CHECK (record_key BETWEEN 0 AND 255);
ALTER TABLE report_operations ADD COLUMN record_key smallint NOT NULL DEFAULT 0;
ALTER TABLE report_operations ALTER COLUMN record_key DROP DEFAULT;
{facts_sql}
-- The 0002 measures and the record key, then the record-key sum of each count measure.
CREATE OR REPLACE VIEW report_operation_measures AS
SELECT m.*,
    {key_columns}
FROM ({measures_sql}) m;
DROP TABLE report_log;
{_log_table()}
ALTER TABLE report_tallies
    {add_keys};
{_compact(aggregates, measures)}
{aggregates.refresh_function((*aggregates.FACT_COLUMNS, "record_key"), "CREATE OR REPLACE FUNCTION")}
{aggregates.rebuild_function(measures, "CREATE OR REPLACE FUNCTION")}
SELECT report_rebuild();
""")


def downgrade() -> None:
    aggregates = _module("0002")
    drop_keys = ",\n    ".join(f"DROP COLUMN {name}" for name, _ in key_measures(aggregates.MEASURES))
    op.execute(f"""
DROP TABLE report_log;
DROP VIEW report_operation_measures;
CREATE VIEW report_operation_measures AS
{aggregates.measures_select()};
{_log_table()}
DROP VIEW report_operation_facts;
{_facts_view(aggregates)}
ALTER TABLE report_operations DROP COLUMN record_key;
ALTER TABLE report_tallies
    {drop_keys};
{_compact(aggregates, aggregates.MEASURES)}
{aggregates.refresh_function(create="CREATE OR REPLACE FUNCTION")}
{aggregates.rebuild_function(create="CREATE OR REPLACE FUNCTION")}
ALTER TABLE operations DROP COLUMN record_key;
SELECT report_rebuild();
""")
