"""The stored latest JOA and mJOA come from one visit, so the default outcomes report is fast.

The outcomes report's default definition (timepoint=latest, registry/reports/definitions.py)
takes JOA, mJOA and the recovery rate from one visit: the latest follow-up that recorded JOA or
mJOA (by follow_up_date, then months_after, then id, all descending). The stored facts took each
score from its own latest visit (an mJOA-only visit after a JOA visit kept the older JOA), so
the default report could not use the aggregates: it scanned every follow-up per request (15 s
at a million operations).

Now `report_operation_facts.latest_joa` and `latest_mjoa` are the scores of that one visit (a
score it did not record is NULL, not taken from an earlier visit). The columns keep their
names and types, so the measures view, the log, the tallies, the histograms, compaction,
refresh and rebuild are unchanged; their figures (joa_post_n/_sum, mjoa_post_n/_sum,
recovery_n, the joa_post/mjoa_post/joa_pair histograms) follow the facts. 0011's
`report_live_measures` is recreated from 0012's measures view over the new facts, and every
aggregate is rebuilt from the base tables.

Downgrade restores 0012's facts view (each score's own latest visit) and rebuilds. No base
table changes either way.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28
"""
from alembic import context, op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# 0002's look-ups of each score's own latest visit, and the one visit that replaces both.
OWN_LATEST = {score: f"AND f.{score} IS NOT NULL ORDER BY" for score in ("joa", "mjoa")}
ONE_VISIT = "AND (f.joa IS NOT NULL OR f.mjoa IS NOT NULL) ORDER BY"


def _module(revision_id):
    """A revision's module as alembic loaded it (a module name starting with a digit has no import)."""
    return context.script.get_revision(revision_id).module


def _facts_view_0012() -> str:
    aggregates, cell_keys, undecided, clinical = _module("0002"), _module("0007"), _module("0010"), _module("0012")
    return cell_keys._facts_view(aggregates, undecided.RECORD_KEY_FACT + undecided.UNDECIDED_COLUMN
                                 + clinical.NEW_FACT_COLUMNS)


def _facts_view_one_visit() -> str:
    facts_sql = _facts_view_0012()
    for look_up in OWN_LATEST.values():
        assert facts_sql.count(look_up) == 1, look_up
        facts_sql = facts_sql.replace(look_up, ONE_VISIT)
    return facts_sql


def _measures_view_0012() -> str:
    aggregates, cell_keys, undecided, clinical = _module("0002"), _module("0007"), _module("0010"), _module("0012")
    return undecided._measures_view(
        aggregates, cell_keys, list(aggregates.MEASURES) + undecided.NEW_MEASURES + clinical.NEW_MEASURES,
        undecided.RECORD_KEY_MEASURE + undecided.NEW_MEASURE_COLUMNS + clinical.NEW_MEASURE_COLUMNS)


def _replace_facts(facts_sql: str) -> str:
    """The facts view replaced (same columns), the live measures over it recreated, every
    aggregate rebuilt."""
    return f"""
DROP VIEW report_live_measures;
{facts_sql}
{_module("0011").live_measures_view(_measures_view_0012())}
-- the rebuild reads every operation: about 15 min at a million on a loaded 2-core server,
-- past migrations/env.py's statement timeout (meant for a stuck lock, not for this)
SET LOCAL statement_timeout = 0;
SELECT report_rebuild();
SET LOCAL statement_timeout = '10min';
"""


def upgrade() -> None:
    op.execute(_replace_facts(_facts_view_one_visit()))


def downgrade() -> None:
    op.execute(_replace_facts(_facts_view_0012()))
