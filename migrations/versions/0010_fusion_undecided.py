"""Fusion operations that no follow-up decided, kept in the report aggregates (issue 18).

The fusion report shows, beside the fusion rate, the fusion operations followed to 12 months
whose follow-ups never said fused or not fused: indeterminate, or not assessed. So that the
default fusion report (12 months) stays on the fast path, the facts carry
`fusion_undecided_12m` (the status of the latest follow-up at >= 12 months when none decided,
'not_assessed' when it recorded none), and three count measures join the aggregates, each with
its record-key sum (`key_<name>`, migration 0007):

- `fusion_followed`: fusion operations with a follow-up at >= 12 months (decided or not),
- `fusion_indeterminate`, `fusion_not_assessed`: those whose latest such follow-up says so and
  none decided.

Other thresholds and the imaging-method filter are computed by the report scan
(registry/reports/definitions.py), from the same follow-ups in the same order.

The facts view, the measures view, the log, compaction, refresh and rebuild are generated from
0002's, 0003's and 0007's templates with the new column and measures added, and every
aggregate is rebuilt from the base tables. Downgrade restores 0009's state (0007's forms).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""
from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NEW_MEASURES = [("fusion_followed", "bigint"), ("fusion_indeterminate", "bigint"), ("fusion_not_assessed", "bigint")]

# The latest follow-up at >= 12 months of a fusion operation that none decided (fd: 0003's
# deciding follow-up), in report_fusion_decision's order.
UNDECIDED_COLUMN = """,
       CASE WHEN 'fusion' = ANY(o.procedures) AND fd.status IS NULL THEN
           (SELECT coalesce(f.fusion_status, 'not_assessed') FROM follow_ups f
            WHERE f.centre_id = o.centre_id AND f.operation_id = o.id AND f.months_after >= 12
            ORDER BY f.follow_up_date DESC, f.months_after DESC, f.id DESC LIMIT 1)
       END AS fusion_undecided_12m"""

# 0007's extra columns of the facts and measures views
RECORD_KEY_FACT = ",\n       o.record_key"
RECORD_KEY_MEASURE = ",\n    f.record_key"

NEW_MEASURE_COLUMNS = """,
    ('fusion' = ANY(f.procedures) AND (f.fusion_status_12m IS NOT NULL OR f.fusion_undecided_12m IS NOT NULL))::int
        AS fusion_followed,
    (f.fusion_undecided_12m IS NOT DISTINCT FROM 'indeterminate')::int AS fusion_indeterminate,
    (f.fusion_undecided_12m IS NOT DISTINCT FROM 'not_assessed')::int AS fusion_not_assessed"""


def _module(revision_id):
    """A revision's module as alembic loaded it (a module name starting with a digit has no import)."""
    return context.script.get_revision(revision_id).module


def _measures_view(aggregates, cell_keys, measures, extra_columns) -> str:
    key_columns = ",\n    ".join(f"m.record_key * m.{name} AS key_{name}"
                                 for name in cell_keys.count_measures(measures))
    return f"""
CREATE VIEW report_operation_measures AS
SELECT m.*,
    {key_columns}
FROM ({aggregates.measures_select(extra_columns)}) m;"""


def _rebuilt_state(aggregates, cell_keys, measures, fact_columns, measures_extra) -> str:
    """Views, log, compaction, refresh and rebuild over these measures, then a rebuild."""
    all_measures = list(measures) + cell_keys.key_measures(measures)
    return f"""
{_measures_view(aggregates, cell_keys, measures, measures_extra)}
DROP TABLE report_log;
{cell_keys._log_table()}
{cell_keys._compact(aggregates, all_measures)}
{aggregates.refresh_function(fact_columns, "CREATE OR REPLACE FUNCTION")}
{aggregates.rebuild_function(all_measures, "CREATE OR REPLACE FUNCTION")}
SELECT report_rebuild();
"""


def upgrade() -> None:
    aggregates, cell_keys = _module("0002"), _module("0007")
    measures = list(aggregates.MEASURES) + NEW_MEASURES
    new_columns = ",\n    ".join(
        f"ADD COLUMN {name} {kind} NOT NULL DEFAULT 0"
        for name, kind in NEW_MEASURES + cell_keys.key_measures(NEW_MEASURES))
    facts_sql = cell_keys._facts_view(aggregates, RECORD_KEY_FACT + UNDECIDED_COLUMN)
    rebuilt = _rebuilt_state(aggregates, cell_keys, measures,
                             (*aggregates.FACT_COLUMNS, "record_key", "fusion_undecided_12m"),
                             RECORD_KEY_MEASURE + NEW_MEASURE_COLUMNS)
    op.execute(f"""
ALTER TABLE report_operations ADD COLUMN fusion_undecided_12m text;
{facts_sql}
ALTER TABLE report_tallies
    {new_columns};
DROP VIEW report_operation_measures;
{rebuilt}
""")


def downgrade() -> None:
    aggregates, cell_keys = _module("0002"), _module("0007")
    drop_columns = ",\n    ".join(f"DROP COLUMN {name}"
                                   for name, _ in NEW_MEASURES + cell_keys.key_measures(NEW_MEASURES))
    facts_sql = cell_keys._facts_view(aggregates, RECORD_KEY_FACT)
    rebuilt = _rebuilt_state(aggregates, cell_keys, aggregates.MEASURES, (*aggregates.FACT_COLUMNS, "record_key"),
                             RECORD_KEY_MEASURE)
    op.execute(f"""
DROP VIEW report_operation_measures;
DROP VIEW report_operation_facts;
{facts_sql}
ALTER TABLE report_operations DROP COLUMN fusion_undecided_12m;
ALTER TABLE report_tallies
    {drop_columns};
{rebuilt}
""")
