"""Audit values: each audit event keeps the values it changed, old → new.

- `audit_events.changes` (jsonb, NULL by default): `{"field": {"old": …, "new": …}}` with the
  API's field names and JSON values; a creation has only `new`, a deletion only `old`. Never a
  patient's ref or a token's secret, nor their hashes. It is not in 0004's AUDIT_IDENTITY, so
  `audit_redact()` (run by an erasure) resets it to NULL with every other column of values.
- Two partial indexes let an erasure find the events of records that are no longer the erased
  patient's (operations deleted or moved away, and their follow-ups): operation events by the
  `patient_id` they set, follow-up events by the `operation_id` they set.

Events written before this revision keep `changes` NULL and the field names they were written
with (the trail is append-only: nothing rewrites history); GET /v1/audit/ shows the follow-up
date of older events as `date`, the API's name, rather than the column's `follow_up_date`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
ALTER TABLE audit_events ADD COLUMN changes jsonb;
CREATE INDEX audit_events_operation_patient_idx ON audit_events
    (centre_id, ((changes #>> '{patient_id,new}')::bigint)) WHERE entity = 'operation';
CREATE INDEX audit_events_follow_up_operation_idx ON audit_events
    (centre_id, ((changes #>> '{operation_id,new}')::bigint)) WHERE entity = 'follow_up';
""")


def downgrade() -> None:
    # the values go: the code before this revision neither writes nor reads them
    op.execute("ALTER TABLE audit_events DROP COLUMN changes")
