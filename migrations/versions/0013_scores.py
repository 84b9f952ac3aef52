"""Outcome scores with their instrument and version (issue 15).

- `operations.baseline_scores` and `follow_ups.scores` (jsonb, a list, '[]' when none): the
  scores of an operation before surgery and of a follow-up, each {instrument, version, value,
  maximum, value_set}, besides the JOA 17-point and mJOA scores, which keep their columns
  (`preop_joa`, `preop_mjoa`, `joa`, `mjoa`; the reports read them). The API reads both as one
  list (registry.validation.rules.scores_from_storage). Rows stored before have no other score:
  '[]'; their JOA and mJOA stay where they are, read as the 17-point JOA and the 18-point mJOA
  they were sent as.

The report facts are unchanged (the per-instrument outcome figures are computed by a scan of
these columns).

Downgrade drops the two columns: the JOA 17-point and mJOA scores survive in their columns;
the other instruments' scores (JOA 29-point, NDI, ODI, EQ-5D-5L, pain NRS) are lost.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28
"""
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE operations ADD COLUMN baseline_scores jsonb NOT NULL DEFAULT '[]'
            CONSTRAINT operations_baseline_scores_list CHECK (jsonb_typeof(baseline_scores) = 'array');
        ALTER TABLE follow_ups ADD COLUMN scores jsonb NOT NULL DEFAULT '[]'
            CONSTRAINT follow_ups_scores_list CHECK (jsonb_typeof(scores) = 'array');
    """)


def downgrade() -> None:
    op.execute("""
        ALTER TABLE operations DROP COLUMN baseline_scores;
        ALTER TABLE follow_ups DROP COLUMN scores;
    """)
