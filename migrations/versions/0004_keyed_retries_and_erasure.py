"""Keyed idempotency records, exact replays, and erasure that nothing brings back.

- `idempotency_keys` kept the client's key in clear, an unkeyed SHA-256 of the request (ref
  included: with the stored answer a backup confirmed a guessed ref) and the answer as jsonb
  (replayed re-serialised). It now keeps `key_hash` and `request_hash` as HMACs under keys
  derived from REGISTRY_SECRET, the answer's exact bytes with the patient refs cut out
  (`response_bytes`), the ids of the patients and operations the answer names (so an erasure
  finds it), and `erased_at` (an erasure dropped the answer: a retry is refused, never re-run).
  The existing rows cannot be converted (their keys and fingerprints are not keyed) and are
  short-lived retry records (purged after 24 h by `registry purge-idempotency-keys`): they are
  deleted. A client retrying across the upgrade has its request run again, which for every
  POST of the API is an upsert by ref or local_ref.
- `erased_patients`: one tombstone per erased patient, an HMAC (under its own derived key) of
  the erased patient's ref hash, so neither the ref nor the old patient row of an earlier backup
  can be found from it. A ref with a tombstone is refused until the centre lifts it.
- `submission_records.outcome` gains `erased`: the per-record result of an operation since
  erased keeps its position and outcome only (no local_ref, operation id or errors).
- The audit trail stays append-only except for one sanctioned change: `audit_redact()`, run by
  an erasure, resets to their defaults the columns of the erased records' events that hold
  values (every column but AUDIT_IDENTITY: who, when, which record, the action and the changed
  field names, which stay as they were). A column of values added later is covered without
  being named here: whatever is not in AUDIT_IDENTITY is reset.
- `report_forget_erased()`: run by an erasure after its operations' facts were refreshed: folds
  the report log at once (its rows hold the erased operations' clinical values) and deletes the
  tally and histogram cells left at zero (a zero cell still says some operation had the value).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OUTCOMES_BEFORE = ("created", "updated", "unchanged", "rejected", "not_stored")
OUTCOMES = OUTCOMES_BEFORE + ("erased",)

# Columns of an audit event that say who did what to which record, when: never changed.
AUDIT_IDENTITY = ("centre_id", "id", "occurred_at", "actor_token_id", "actor_role", "request_id", "action",
                  "entity", "entity_id", "changed_fields")

COMPACTION_LOCK_ID = 4_242_002  # 0002's: report_compact() and report_rebuild() take it

APPEND_ONLY_0001 = """
CREATE OR REPLACE FUNCTION audit_events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
"""


# Erasure: fold the report log now and drop the cells left at zero (see the docstring). The
# caller has flushed its dirty operations first (SET CONSTRAINTS report_dirty_flush IMMEDIATE).
# 0011 replaces it and restores this one on its downgrade.
FORGET_ERASED = f"""
CREATE OR REPLACE FUNCTION report_forget_erased(p_centre_id bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- wait for a running compactor rather than skip: report_compact() then re-takes the lock
    -- this session holds (advisory locks are re-entrant) and folds every pending row
    PERFORM pg_advisory_xact_lock({COMPACTION_LOCK_ID});
    PERFORM report_compact();
    DELETE FROM report_histograms WHERE centre_id IN (0, p_centre_id) AND n = 0;
    DELETE FROM report_tallies WHERE centre_id IN (0, p_centre_id) AND operations = 0;
END $$;
"""


def _outcomes_check(outcomes) -> str:
    return "outcome IN (" + ", ".join(f"'{outcome}'" for outcome in outcomes) + ")"


def upgrade() -> None:
    old = ", ".join(f"OLD.{column}" for column in AUDIT_IDENTITY)
    new = ", ".join(f"NEW.{column}" for column in AUDIT_IDENTITY)
    identity = ", ".join(f"'{column}'" for column in AUDIT_IDENTITY)
    op.execute(f"""
DELETE FROM idempotency_keys;
ALTER TABLE idempotency_keys
    DROP CONSTRAINT idempotency_keys_pkey,
    DROP COLUMN key,
    DROP COLUMN response_body,
    ADD COLUMN key_hash bytea NOT NULL CONSTRAINT ck_idempotency_keys_key_hash CHECK (length(key_hash) = 32),
    ADD COLUMN response_bytes bytea,
    ADD COLUMN patient_ids bigint[] NOT NULL DEFAULT '{{}}',
    ADD COLUMN operation_ids bigint[] NOT NULL DEFAULT '{{}}',
    ADD COLUMN erased_at timestamptz,
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (centre_id, key_hash);
-- an erasure finds the stored answers naming its patient or operations
CREATE INDEX idempotency_keys_patient_ids_idx ON idempotency_keys USING gin (patient_ids);
CREATE INDEX idempotency_keys_operation_ids_idx ON idempotency_keys USING gin (operation_ids);

-- Tombstones of erased patients: HMAC(derived key, ref hash); nothing else of the patient.
CREATE TABLE erased_patients (
    centre_id      bigint NOT NULL REFERENCES centres (id),
    ref_tombstone  bytea NOT NULL CONSTRAINT ck_erased_patients_ref_tombstone CHECK (length(ref_tombstone) = 32),
    erased_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT erased_patients_pkey PRIMARY KEY (centre_id, ref_tombstone)
);

ALTER TABLE submission_records DROP CONSTRAINT ck_submission_records_outcome,
    ADD CONSTRAINT ck_submission_records_outcome CHECK ({_outcomes_check(OUTCOMES)});
CREATE INDEX submission_records_operation_idx ON submission_records (centre_id, operation_id)
    WHERE operation_id IS NOT NULL;

CREATE OR REPLACE FUNCTION audit_events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An erasure may clear the values an event holds about the erased patient; who, when,
    -- which record, the action and the field names stay.
    IF TG_OP = 'UPDATE' AND current_setting('registry.audit_redaction', true) = 'erasure'
       AND ROW({old}) IS NOT DISTINCT FROM ROW({new}) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- Erasure: clear the values held by the events of the erased records (see the docstring).
CREATE FUNCTION audit_redact(p_centre_id bigint, p_entity text, p_entity_ids bigint[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    assignments text;
    redacted bigint;
BEGIN
    SELECT string_agg(format('%I = DEFAULT', a.attname), ', ') INTO assignments
    FROM pg_attribute a
    WHERE a.attrelid = 'audit_events'::regclass AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attidentity = '' AND a.attgenerated = ''
      AND a.attname <> ALL (ARRAY[{identity}]);
    IF assignments IS NULL THEN
        RETURN 0;                      -- no column holds values
    END IF;
    PERFORM set_config('registry.audit_redaction', 'erasure', true);
    EXECUTE format('UPDATE audit_events SET %s WHERE centre_id = $1 AND entity = $2 AND entity_id = ANY($3)',
                   assignments) USING p_centre_id, p_entity, p_entity_ids;
    GET DIAGNOSTICS redacted = ROW_COUNT;
    PERFORM set_config('registry.audit_redaction', '', true);
    RETURN redacted;
END $$;
""")
    op.execute(FORGET_ERASED)


def downgrade() -> None:
    op.execute("DROP FUNCTION report_forget_erased(bigint)")
    op.execute("DROP FUNCTION audit_redact(bigint, text, bigint[])")
    op.execute(APPEND_ONLY_0001)
    op.execute(f"""
DROP INDEX submission_records_operation_idx;
DELETE FROM submission_records WHERE outcome = 'erased';
ALTER TABLE submission_records DROP CONSTRAINT ck_submission_records_outcome,
    ADD CONSTRAINT ck_submission_records_outcome CHECK ({_outcomes_check(OUTCOMES_BEFORE)});
DROP TABLE erased_patients;
DELETE FROM idempotency_keys;
DROP INDEX idempotency_keys_patient_ids_idx;
DROP INDEX idempotency_keys_operation_ids_idx;
ALTER TABLE idempotency_keys
    DROP CONSTRAINT idempotency_keys_pkey,
    DROP COLUMN key_hash,
    DROP COLUMN response_bytes,
    DROP COLUMN patient_ids,
    DROP COLUMN operation_ids,
    DROP COLUMN erased_at,
    ADD COLUMN key text NOT NULL CONSTRAINT ck_idempotency_keys_key CHECK (length(key) BETWEEN 1 AND 255),
    ADD COLUMN response_body jsonb,
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (centre_id, key);
""")
