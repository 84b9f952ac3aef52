"""Clinical depth (issue 15): "not recorded" kept apart from "none" and "no".

- `operations.intraop_events_recorded`, `operations.postop_complications_recorded`: whether the
  list was assessed (an operation with rows in the list counts as recorded whatever the flag).
  The wire's `<list>_status` (none / occurred / not_recorded) is derived from it and the rows.
  Operations stored before this migration read as recorded (true): the contract they were sent
  under took the lists as what happened (an empty list was "none", and every report counted it
  so), so their rates are unchanged.
- `follow_ups.revision_surgery` may be NULL (not recorded). Rows stored before keep their value
  (the old default `false` cannot be told apart from a stated "no": read as no, as before).

The report facts carry whether each was recorded, and four count measures join the aggregates,
each with its record-key sum (`key_<name>`, migration 0007): `intraop_recorded`,
`postop_recorded` (operations whose events / complications were assessed: the denominators of
their rates), `transfusion_recorded` and `revision_followed` (operations with a follow-up that
recorded revision surgery, true or false). The facts view, the measures view, the log,
compaction, refresh and rebuild are generated from 0002's, 0003's, 0007's and 0010's templates
with the new columns and measures added, and every aggregate is rebuilt from the base tables.
0011's `report_live_measures` (the measures over the live facts, which reports use for the
operations the maintainer has not reached) is recreated from the new measures view.

`intraop_events.reported_by` and `postop_complications.reported_by` say who reported each
(surgeon, other clinician, patient-reported, chart review, another registry, claims; NULL: not
recorded); stored ones are not recorded. The facts carry the sources of each operation's events
and complications, and a count measure per source (`ev_by_<source>`, `pc_by_<source>`,
`not_recorded` included) gives the rates by who reported them.

`intraop_events.saves_grade`, `postop_complications.saves_grade` (SAVES-V2, 1-6) and
`follow_ups.bridwell_grade` (I-IV, consistent with fusion_status: a CHECK beside the rule of
registry/validation/rules.py).

Downgrade restores 0010's state. What 0010 cannot hold is lost there: a `not_recorded` list
reads as none again, a revision not recorded as false, and who reported and the SAVES and
Bridwell grades are dropped; every value 0010 could hold survives the round trip.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""
from alembic import context, op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Frozen with this migration (a later vocabulary change needs a migration of its own).
REPORTED_BY = ("surgeon", "other_clinician", "patient_reported", "chart_review", "other_registry", "claims")
REPORTED_BY_CHECK = "reported_by IN (" + ", ".join(f"'{code}'" for code in REPORTED_BY) + ")"

SAVES_CHECK = "saves_grade IN ('1', '2', '3', '4', '5', '6')"
BRIDWELL_CHECK = "bridwell_grade IN ('I', 'II', 'III', 'IV')"
REPORTERS = (*REPORTED_BY, "not_recorded")  # the groups of who reported; not_recorded: reported_by NULL
NEW_FACTS = ("intraop_recorded", "postop_recorded", "transfusion", "revision_recorded", "intraop_reporters",
             "postop_reporters")
NEW_FACT_COLUMNS = """,
       o.intraop_events_recorded OR EXISTS (SELECT 1 FROM intraop_events e
           WHERE e.centre_id = o.centre_id AND e.operation_id = o.id) AS intraop_recorded,
       o.postop_complications_recorded OR pc.any_complication IS NOT NULL AS postop_recorded,
       o.transfusion,
       EXISTS (SELECT 1 FROM follow_ups f WHERE f.centre_id = o.centre_id AND f.operation_id = o.id
                 AND f.revision_surgery IS NOT NULL) AS revision_recorded,
       coalesce((SELECT array_agg(DISTINCT coalesce(e.reported_by, 'not_recorded')
                                 ORDER BY coalesce(e.reported_by, 'not_recorded'))
                 FROM intraop_events e
                 WHERE e.centre_id = o.centre_id AND e.operation_id = o.id), '{}') AS intraop_reporters,
       coalesce((SELECT array_agg(DISTINCT coalesce(c.reported_by, 'not_recorded')
                                 ORDER BY coalesce(c.reported_by, 'not_recorded'))
                 FROM postop_complications c
                 WHERE c.centre_id = o.centre_id AND c.operation_id = o.id), '{}') AS postop_reporters"""

NEW_MEASURES = ([("intraop_recorded", "bigint"), ("postop_recorded", "bigint"), ("transfusion_recorded", "bigint"),
                 ("revision_followed", "bigint")]
                + [(f"ev_by_{source}", "bigint") for source in REPORTERS]
                + [(f"pc_by_{source}", "bigint") for source in REPORTERS])
NEW_MEASURE_COLUMNS = """,
    f.intraop_recorded::int AS intraop_recorded,
    f.postop_recorded::int AS postop_recorded,
    (f.transfusion IS NOT NULL)::int AS transfusion_recorded,
    (f.followed AND f.revision_recorded)::int AS revision_followed""" + "".join(
    f",\n    ('{source}' = ANY(f.{facts}))::int AS {prefix}_{source}"
    for prefix, facts in (("ev_by", "intraop_reporters"), ("pc_by", "postop_reporters")) for source in REPORTERS)


def _module(revision_id):
    """A revision's module as alembic loaded it (a module name starting with a digit has no import)."""
    return context.script.get_revision(revision_id).module


def upgrade() -> None:
    aggregates, cell_keys, undecided, maintainer = _module("0002"), _module("0007"), _module("0010"), _module("0011")
    measures = list(aggregates.MEASURES) + undecided.NEW_MEASURES + NEW_MEASURES
    new_columns = ",\n    ".join(
        f"ADD COLUMN {name} {kind} NOT NULL DEFAULT 0"
        for name, kind in NEW_MEASURES + cell_keys.key_measures(NEW_MEASURES))
    facts_sql = cell_keys._facts_view(aggregates, undecided.RECORD_KEY_FACT + undecided.UNDECIDED_COLUMN
                                      + NEW_FACT_COLUMNS)
    rebuilt = undecided._rebuilt_state(
        aggregates, cell_keys, measures,
        (*aggregates.FACT_COLUMNS, "record_key", "fusion_undecided_12m", *NEW_FACTS),
        undecided.RECORD_KEY_MEASURE + undecided.NEW_MEASURE_COLUMNS + NEW_MEASURE_COLUMNS)
    measures_sql = undecided._measures_view(
        aggregates, cell_keys, measures,
        undecided.RECORD_KEY_MEASURE + undecided.NEW_MEASURE_COLUMNS + NEW_MEASURE_COLUMNS)
    op.execute(f"""
DROP VIEW report_live_measures;
-- Stored before: recorded (the old contract read an empty list as none).
ALTER TABLE operations
    ADD COLUMN intraop_events_recorded boolean NOT NULL DEFAULT true,
    ADD COLUMN postop_complications_recorded boolean NOT NULL DEFAULT true;
ALTER TABLE follow_ups ALTER COLUMN revision_surgery DROP NOT NULL, ALTER COLUMN revision_surgery DROP DEFAULT;
-- who reported each event and complication (NULL: not recorded)
ALTER TABLE intraop_events ADD COLUMN reported_by text
    CONSTRAINT ck_intraop_events_reported_by CHECK ({REPORTED_BY_CHECK});
ALTER TABLE postop_complications ADD COLUMN reported_by text
    CONSTRAINT ck_postop_complications_reported_by CHECK ({REPORTED_BY_CHECK});
-- SAVES-V2 grades beside ClassIntra and Clavien-Dindo; Bridwell grades beside fusion_status
ALTER TABLE intraop_events ADD COLUMN saves_grade text CONSTRAINT ck_intraop_events_saves_grade CHECK ({SAVES_CHECK});
ALTER TABLE postop_complications ADD COLUMN saves_grade text
    CONSTRAINT ck_postop_complications_saves_grade CHECK ({SAVES_CHECK});
ALTER TABLE follow_ups ADD COLUMN bridwell_grade text CONSTRAINT ck_follow_ups_bridwell_grade CHECK ({BRIDWELL_CHECK}),
    ADD CONSTRAINT ck_follow_ups_bridwell_fusion_status CHECK (bridwell_grade IS NULL
        OR (bridwell_grade IN ('I', 'II') AND fusion_status = 'fused')
        OR (bridwell_grade = 'III' AND fusion_status IN ('indeterminate', 'not_fused'))
        OR (bridwell_grade = 'IV' AND fusion_status = 'not_fused'));
ALTER TABLE follow_ups DROP CONSTRAINT ck_follow_ups_revision_reason_needs_revision,
    ADD CONSTRAINT ck_follow_ups_revision_reason_needs_revision
        CHECK (revision_reason IS NULL OR revision_surgery IS TRUE);
ALTER TABLE report_operations
    ADD COLUMN intraop_recorded boolean NOT NULL DEFAULT true,
    ADD COLUMN postop_recorded boolean NOT NULL DEFAULT true,
    ADD COLUMN transfusion boolean,
    ADD COLUMN revision_recorded boolean NOT NULL DEFAULT false,
    ADD COLUMN intraop_reporters text[] NOT NULL DEFAULT '{{}}',
    ADD COLUMN postop_reporters text[] NOT NULL DEFAULT '{{}}';
ALTER TABLE report_operations ALTER COLUMN intraop_recorded DROP DEFAULT,
    ALTER COLUMN postop_recorded DROP DEFAULT, ALTER COLUMN revision_recorded DROP DEFAULT,
    ALTER COLUMN intraop_reporters DROP DEFAULT, ALTER COLUMN postop_reporters DROP DEFAULT;
{facts_sql}
ALTER TABLE report_tallies
    {new_columns};
DROP VIEW report_operation_measures;
{rebuilt}
{maintainer.live_measures_view(measures_sql)}
""")


def downgrade() -> None:
    aggregates, cell_keys, undecided, maintainer = _module("0002"), _module("0007"), _module("0010"), _module("0011")
    drop_columns = ",\n    ".join(f"DROP COLUMN {name}"
                                   for name, _ in NEW_MEASURES + cell_keys.key_measures(NEW_MEASURES))
    facts_sql = cell_keys._facts_view(aggregates, undecided.RECORD_KEY_FACT + undecided.UNDECIDED_COLUMN)
    rebuilt = undecided._rebuilt_state(
        aggregates, cell_keys, list(aggregates.MEASURES) + undecided.NEW_MEASURES,
        (*aggregates.FACT_COLUMNS, "record_key", "fusion_undecided_12m"),
        undecided.RECORD_KEY_MEASURE + undecided.NEW_MEASURE_COLUMNS)
    drop_facts = ",\n    ".join(f"DROP COLUMN {name}" for name in NEW_FACTS)
    op.execute(f"""
DROP VIEW report_live_measures;
DROP VIEW report_operation_measures;
DROP VIEW report_operation_facts;
{facts_sql}
ALTER TABLE report_operations
    {drop_facts};
ALTER TABLE report_tallies
    {drop_columns};
ALTER TABLE operations DROP COLUMN intraop_events_recorded, DROP COLUMN postop_complications_recorded;
ALTER TABLE intraop_events DROP COLUMN reported_by;
ALTER TABLE postop_complications DROP COLUMN reported_by, DROP COLUMN saves_grade;
ALTER TABLE intraop_events DROP COLUMN saves_grade;
ALTER TABLE follow_ups DROP COLUMN bridwell_grade;
-- 0010 has no "not recorded" revision: it reads as no, as its default wrote it. Without the
-- report triggers: the rebuild below recomputes every fact, and a deferred refresh queued here
-- would outlive the tables a further downgrade drops.
ALTER TABLE follow_ups DISABLE TRIGGER USER;
UPDATE follow_ups SET revision_surgery = false WHERE revision_surgery IS NULL;
ALTER TABLE follow_ups ENABLE TRIGGER USER;
ALTER TABLE follow_ups ALTER COLUMN revision_surgery SET DEFAULT false, ALTER COLUMN revision_surgery SET NOT NULL;
ALTER TABLE follow_ups DROP CONSTRAINT ck_follow_ups_revision_reason_needs_revision,
    ADD CONSTRAINT ck_follow_ups_revision_reason_needs_revision CHECK (revision_reason IS NULL OR revision_surgery);
{rebuilt}
{maintainer.live_measures_view(maintainer._measures_view_0010())}
""")
