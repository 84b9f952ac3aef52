"""The scores report's default timepoint from the stored facts (issue 15).

The scores report (registry/reports/scores.py) pairs each operation's baseline value of an
outcome (one instrument on one scale: version, pain site, EQ-5D-5L value set) with its value at
the latest follow-up that recorded that outcome. It computed both per request from the base
tables (operations.baseline_scores, follow_ups.scores and the JOA/mJOA columns), hashed to the
operations scanned: past the report timeout at a million operations.

Now the facts carry them: for each outcome of OUTCOMES, `report_operation_facts` (and so the
stored `report_operations`, the measures view, the log and 0011's `report_live_measures`) has
`baseline_<name>` (the operation's baseline value) and `latest_<name>` (the value at the latest
follow-up that recorded the outcome, by follow_up_date, then months_after, then id, all
descending), float8, NULL when not recorded. So timepoint=latest is a scan over the stored
rows with no join, and an operation with queued changes counts by its live facts, as every
stored figure does. They are values, not measures: the tallies and histograms are unchanged.
timepoint=12m still reads the follow-ups per request (the baselines are taken from the facts).

The facts view, the measures view, the log, compaction, refresh and rebuild are generated from
0002's, 0003's, 0007's, 0010's, 0012's and 0014's templates with the new columns added, and
every aggregate is rebuilt from the base tables. Downgrade restores 0014's state and rebuilds.
No base table changes either way.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""
from alembic import context, op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# The outcomes as registry/reports/scores.py names and keys them (instrument|version|site or
# value set), frozen with this migration: a new outcome needs a migration of its own.
OUTCOMES = (
    ("joa_17", "joa|17-point|"), ("joa_29", "joa|29-point|"), ("mjoa_18", "mjoa|18-point|"),
    ("ndi_50", "ndi|50-point|"), ("ndi_percent", "ndi|percent|"),
    ("odi_2_0", "odi|2.0|"), ("odi_2_1a", "odi|2.1a|"), ("odi_unversioned", "odi||"),
    *((f"eq5d5l_{value_set}", f"eq5d5l_index|5L|{value_set}")
      for value_set in ("england", "us", "germany", "netherlands", "japan", "china", "canada", "spain", "korea",
                        "uk_crosswalk")),
    *((f"pain_nrs_{site}", f"pain_nrs|11-point|{site}") for site in ("neck", "arm", "back", "leg")),
    ("pain_nrs_site_unknown", "pain_nrs|11-point|"),
)
NEW_FACTS = tuple(f"{side}_{name}" for name, _ in OUTCOMES for side in ("baseline", "latest"))

# Every score of a record as (key, value), the JOA 17-point and mJOA columns included.
_ENTRY_KEY = ("e->>'instrument' || '|' || coalesce(e->>'version', '') || '|' "
              "|| coalesce(e->>'site', e->>'value_set', '')")
_SCORES_OF_OPERATION = f"""
            SELECT 'joa|17-point|' AS key, o.preop_joa::float8 AS value WHERE o.preop_joa IS NOT NULL
            UNION ALL SELECT 'mjoa|18-point|', o.preop_mjoa::float8 WHERE o.preop_mjoa IS NOT NULL
            UNION ALL SELECT {_ENTRY_KEY}, (e->>'value')::float8 FROM jsonb_array_elements(o.baseline_scores) e"""
_SCORES_OF_FOLLOW_UP = f"""
            SELECT 'joa|17-point|' AS key, f.joa::float8 AS value WHERE f.joa IS NOT NULL
            UNION ALL SELECT 'mjoa|18-point|', f.mjoa::float8 WHERE f.mjoa IS NOT NULL
            UNION ALL SELECT {_ENTRY_KEY}, (e->>'value')::float8 FROM jsonb_array_elements(f.scores) e"""
_PAIR_COLUMNS = ",\n        ".join(
    f"max(v.value) FILTER (WHERE v.side = '{side[0]}' AND v.key = '{key}') AS {side}_{name}"
    for name, key in OUTCOMES for side in ("baseline", "latest"))
# Per operation: its baseline values, and each outcome's value at its latest follow-up.
SCORES_JOIN = f"""
LEFT JOIN LATERAL (
    SELECT {_PAIR_COLUMNS}
    FROM (
        SELECT 'b' AS side, s.key, s.value FROM ({_SCORES_OF_OPERATION}) s
        UNION ALL (
        SELECT DISTINCT ON (s.key) 'l', s.key, s.value
        FROM follow_ups f CROSS JOIN LATERAL ({_SCORES_OF_FOLLOW_UP}) s
        WHERE f.centre_id = o.centre_id AND f.operation_id = o.id
        ORDER BY s.key, f.follow_up_date DESC, f.months_after DESC, f.id DESC)
    ) v
) sc ON true"""
NEW_FACT_COLUMNS = "".join(f",\n       sc.{column}" for column in NEW_FACTS)
NEW_MEASURE_COLUMNS = "".join(f",\n    f.{column}" for column in NEW_FACTS)
FUSION_JOIN = "\nLEFT JOIN LATERAL report_fusion_decision(o.centre_id, o.id, 12) fd ON true"  # 0003's


def _module(revision_id):
    """A revision's module as alembic loaded it (a module name starting with a digit has no import)."""
    return context.script.get_revision(revision_id).module


def _facts_view() -> str:
    """0014's facts view (one latest visit for JOA and mJOA) with the score pairs appended."""
    aggregates, undecided, clinical, one_visit = _module("0002"), _module("0010"), _module("0012"), _module("0014")
    facts_sql = aggregates.facts_view("fd.status", FUSION_JOIN + SCORES_JOIN,
                                      undecided.RECORD_KEY_FACT + undecided.UNDECIDED_COLUMN
                                      + clinical.NEW_FACT_COLUMNS + NEW_FACT_COLUMNS)
    for look_up in one_visit.OWN_LATEST.values():
        assert facts_sql.count(look_up) == 1, look_up
        facts_sql = facts_sql.replace(look_up, one_visit.ONE_VISIT)
    return facts_sql


def _rebuilt(fact_columns: tuple, measure_columns: str) -> str:
    """The measures view, log, compaction, refresh and rebuild over these columns, a rebuild,
    and the live measures over the new measures view."""
    aggregates, cell_keys, undecided, maintainer, clinical = (
        _module("0002"), _module("0007"), _module("0010"), _module("0011"), _module("0012"))
    measures = list(aggregates.MEASURES) + undecided.NEW_MEASURES + clinical.NEW_MEASURES
    extra = undecided.RECORD_KEY_MEASURE + undecided.NEW_MEASURE_COLUMNS + clinical.NEW_MEASURE_COLUMNS
    stored = (*aggregates.FACT_COLUMNS, "record_key", "fusion_undecided_12m", *clinical.NEW_FACTS, *fact_columns)
    return f"""
-- the rebuild reads every operation: about 15 min at a million on a loaded 2-core server,
-- past migrations/env.py's statement timeout (meant for a stuck lock, not for this)
SET LOCAL statement_timeout = 0;
{undecided._rebuilt_state(aggregates, cell_keys, measures, stored, extra + measure_columns)}
SET LOCAL statement_timeout = '10min';
{maintainer.live_measures_view(undecided._measures_view(aggregates, cell_keys, measures, extra + measure_columns))}
"""


def upgrade() -> None:
    new_columns = ",\n    ".join(f"ADD COLUMN {column} float8" for column in NEW_FACTS)
    op.execute(f"""
DROP VIEW report_live_measures;
DROP VIEW report_operation_measures;
ALTER TABLE report_operations
    {new_columns};
{_facts_view()}
{_rebuilt(NEW_FACTS, NEW_MEASURE_COLUMNS)}
""")


def downgrade() -> None:
    drop_columns = ",\n    ".join(f"DROP COLUMN {column}" for column in NEW_FACTS)
    op.execute(f"""
DROP VIEW report_live_measures;
DROP VIEW report_operation_measures;
DROP VIEW report_operation_facts;
{_module("0014")._facts_view_one_visit()}
ALTER TABLE report_operations
    {drop_columns};
{_rebuilt((), "")}
""")
