"""The registry's data model: centres, tokens, patients, operations and their parts,
follow-ups, the audit trail and idempotency records.

Every table holding a centre's data carries `centre_id` first in its primary and unique keys
and in its foreign keys, so the tables can be distributed by centre (Citus) without a redesign.
Enumeration CHECKs are built from `registry.vocabulary` as it stood when this ran; a later
vocabulary change needs its own migration (`test_database_checks_match_vocabulary` says when).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
from alembic import op

from registry import vocabulary as v

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _quoted(codes) -> str:
    return ", ".join("'" + code.replace("'", "''") + "'" for code in codes)


def one_of(column: str, codes) -> str:
    """CHECK body: the column is NULL or one of the codes."""
    return f"{column} IN ({_quoted(codes)})"


def all_of(column: str, codes) -> str:
    """CHECK body: every element of the array column is one of the codes."""
    return f"{column} <@ ARRAY[{_quoted(codes)}]::text[]"


LEVELS = f"ARRAY[{_quoted(v.SPINAL_LEVELS)}]::text[]"


def upgrade() -> None:
    op.execute(f"""
CREATE TABLE centres (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL CONSTRAINT centres_code_key UNIQUE
                CONSTRAINT ck_centres_code CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{{1,31}}$'),
    name        text NOT NULL CONSTRAINT ck_centres_name CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Bearer tokens: only the SHA-256 of the secret is kept. Every token belongs to a centre
-- (an analyst's or admin's home centre), which scopes its idempotency keys and audit entries.
CREATE TABLE tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    centre_id   bigint NOT NULL REFERENCES centres (id),
    role        text NOT NULL CONSTRAINT ck_tokens_role CHECK ({one_of('role', v.ROLE)}),
    token_hash  bytea NOT NULL CONSTRAINT tokens_token_hash_key UNIQUE,
    label       text CONSTRAINT ck_tokens_label CHECK (length(label) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX tokens_centre_id_idx ON tokens (centre_id);

-- Pseudonymous patients: the centre's own ref is kept only as an HMAC.
CREATE TABLE patients (
    centre_id       bigint NOT NULL REFERENCES centres (id),
    id              bigint GENERATED ALWAYS AS IDENTITY,
    ref_hash        bytea NOT NULL,
    sex             text CONSTRAINT ck_patients_sex CHECK ({one_of('sex', v.SEX)}),
    birth_year      smallint CONSTRAINT ck_patients_birth_year CHECK (birth_year BETWEEN 1880 AND 2200),
    diagnosis       text NOT NULL CONSTRAINT ck_patients_diagnosis CHECK ({one_of('diagnosis', v.DIAGNOSIS)}),
    diagnosis_note  text CONSTRAINT ck_patients_diagnosis_note CHECK (length(diagnosis_note) <= 500),
    genes           text[] NOT NULL DEFAULT '{{}}' CONSTRAINT ck_patients_genes CHECK ({all_of('genes', v.GENES)}),
    inheritance     text CONSTRAINT ck_patients_inheritance CHECK ({one_of('inheritance', v.INHERITANCE)}),
    family_history  boolean,
    consent         text NOT NULL DEFAULT 'active'
                    CONSTRAINT ck_patients_consent CHECK ({one_of('consent', v.CONSENT)}),
    version         integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT patients_pkey PRIMARY KEY (centre_id, id),
    CONSTRAINT patients_ref_key UNIQUE (centre_id, ref_hash)
);

CREATE TABLE operations (
    centre_id               bigint NOT NULL REFERENCES centres (id),
    id                      bigint GENERATED ALWAYS AS IDENTITY,
    patient_id              bigint NOT NULL,
    local_ref               text NOT NULL CONSTRAINT ck_operations_local_ref CHECK (length(local_ref) BETWEEN 1 AND 100),
    operation_date          date NOT NULL,
    -- published cases often give only the year or month; the date then holds its first day
    date_precision          text NOT NULL DEFAULT 'day'
                            CONSTRAINT ck_operations_date_precision CHECK (date_precision IN ('day', 'month', 'year')),
    age_at_surgery          smallint CONSTRAINT ck_operations_age CHECK (age_at_surgery BETWEEN 0 AND 130),
    indication              text CONSTRAINT ck_operations_indication CHECK ({one_of('indication', v.INDICATION)}),
    indication_note         text CONSTRAINT ck_operations_indication_note CHECK (length(indication_note) <= 500),
    region                  text NOT NULL CONSTRAINT ck_operations_region CHECK ({one_of('region', v.REGION)}),
    approach                text CONSTRAINT ck_operations_approach CHECK ({one_of('approach', v.APPROACH)}),
    procedures              text[] NOT NULL
                            CONSTRAINT ck_operations_procedures CHECK (cardinality(procedures) >= 1 AND {all_of('procedures', v.PROCEDURE)}),
    level_from              text CONSTRAINT ck_operations_level_from CHECK ({one_of('level_from', v.SPINAL_LEVELS)}),
    level_to                text CONSTRAINT ck_operations_level_to CHECK ({one_of('level_to', v.SPINAL_LEVELS)}),
    vertebra_count          smallint,
    segment_count           smallint,
    instrumented            boolean NOT NULL DEFAULT false,
    instrumentation_system  text CONSTRAINT ck_operations_instrumentation_system CHECK (length(instrumentation_system) <= 200),
    instrumentation_manufacturer text CONSTRAINT ck_operations_instrumentation_manufacturer CHECK (length(instrumentation_manufacturer) <= 200),
    bone_graft              text[] NOT NULL DEFAULT '{{}}'
                            CONSTRAINT ck_operations_bone_graft CHECK ({all_of('bone_graft', v.BONE_GRAFT)}),
    duration_min            integer CONSTRAINT ck_operations_duration CHECK (duration_min BETWEEN 1 AND 2880),
    blood_loss_ml           integer CONSTRAINT ck_operations_blood_loss CHECK (blood_loss_ml BETWEEN 0 AND 50000),
    transfusion             boolean,
    preop_joa               numeric(3,1) CONSTRAINT ck_operations_preop_joa CHECK (preop_joa BETWEEN 0 AND 17 AND preop_joa * 2 = trunc(preop_joa * 2)),
    preop_mjoa              smallint CONSTRAINT ck_operations_preop_mjoa CHECK (preop_mjoa BETWEEN 0 AND 18),
    immobilization_type     text CONSTRAINT ck_operations_immobilization CHECK ({one_of('immobilization_type', v.IMMOBILIZATION)}),
    immobilization_weeks    smallint CONSTRAINT ck_operations_immobilization_weeks CHECK (immobilization_weeks BETWEEN 0 AND 104),
    notes                   text CONSTRAINT ck_operations_notes CHECK (length(notes) <= 4000),
    version                 integer NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT operations_pkey PRIMARY KEY (centre_id, id),
    CONSTRAINT operations_local_ref_key UNIQUE (centre_id, local_ref),
    CONSTRAINT operations_patient_fkey FOREIGN KEY (centre_id, patient_id)
        REFERENCES patients (centre_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_operations_levels_paired CHECK ((level_from IS NULL) = (level_to IS NULL)),
    CONSTRAINT ck_operations_levels_ordered
        CHECK (array_position({LEVELS}, level_from) <= array_position({LEVELS}, level_to))
);
CREATE INDEX operations_patient_idx ON operations (centre_id, patient_id);
CREATE INDEX operations_date_idx ON operations (centre_id, operation_date, id);
CREATE INDEX operations_updated_idx ON operations (centre_id, updated_at, id);

CREATE TABLE implants (
    centre_id     bigint NOT NULL,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    operation_id  bigint NOT NULL,
    position      smallint NOT NULL,
    kind          text NOT NULL CONSTRAINT ck_implants_kind CHECK ({one_of('kind', v.IMPLANT_KIND)}),
    level         text CONSTRAINT ck_implants_level CHECK ({one_of('level', v.SPINAL_LEVELS)}),
    side          text CONSTRAINT ck_implants_side CHECK ({one_of('side', v.SIDE)}),
    count         smallint NOT NULL DEFAULT 1 CONSTRAINT ck_implants_count CHECK (count BETWEEN 1 AND 100),
    diameter_mm   numeric(4,1) CONSTRAINT ck_implants_diameter CHECK (diameter_mm > 0 AND diameter_mm <= 50),
    length_mm     numeric(5,1) CONSTRAINT ck_implants_length CHECK (length_mm > 0 AND length_mm <= 1000),
    note          text CONSTRAINT ck_implants_note CHECK (length(note) <= 500),
    CONSTRAINT implants_pkey PRIMARY KEY (centre_id, id),
    CONSTRAINT implants_operation_fkey FOREIGN KEY (centre_id, operation_id)
        REFERENCES operations (centre_id, id) ON DELETE CASCADE
);
CREATE INDEX implants_operation_idx ON implants (centre_id, operation_id);

CREATE TABLE intraop_events (
    centre_id          bigint NOT NULL,
    id                 bigint GENERATED ALWAYS AS IDENTITY,
    operation_id       bigint NOT NULL,
    position           smallint NOT NULL,
    type               text NOT NULL CONSTRAINT ck_intraop_events_type CHECK ({one_of('type', v.INTRAOP_EVENT)}),
    instrument         text CONSTRAINT ck_intraop_events_instrument CHECK ({one_of('instrument', v.INSTRUMENT)}),
    instrument_detail  text CONSTRAINT ck_intraop_events_instrument_detail CHECK (length(instrument_detail) <= 500),
    retained_fragment  boolean,
    level              text CONSTRAINT ck_intraop_events_level CHECK ({one_of('level', v.SPINAL_LEVELS)}),
    side               text CONSTRAINT ck_intraop_events_side CHECK ({one_of('side', v.SIDE)}),
    site               text CONSTRAINT ck_intraop_events_site CHECK ({one_of('site', v.ANATOMIC_SITE)}),
    grade              text CONSTRAINT ck_intraop_events_grade CHECK ({one_of('grade', v.CLASSINTRA_GRADE)}),
    management         text CONSTRAINT ck_intraop_events_management CHECK (length(management) <= 2000),
    description        text CONSTRAINT ck_intraop_events_description CHECK (length(description) <= 2000),
    CONSTRAINT intraop_events_pkey PRIMARY KEY (centre_id, id),
    CONSTRAINT intraop_events_operation_fkey FOREIGN KEY (centre_id, operation_id)
        REFERENCES operations (centre_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_intraop_events_breakage_instrument
        CHECK (type <> 'instrument_breakage' OR instrument IS NOT NULL)
);
CREATE INDEX intraop_events_operation_idx ON intraop_events (centre_id, operation_id);

CREATE TABLE postop_complications (
    centre_id     bigint NOT NULL,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    operation_id  bigint NOT NULL,
    position      smallint NOT NULL,
    type          text NOT NULL CONSTRAINT ck_postop_complications_type CHECK ({one_of('type', v.POSTOP_COMPLICATION)}),
    days_after    smallint CONSTRAINT ck_postop_complications_days_after CHECK (days_after BETWEEN 0 AND 3650),
    grade         text NOT NULL CONSTRAINT ck_postop_complications_grade CHECK ({one_of('grade', v.CLAVIEN_DINDO_GRADE)}),
    management    text CONSTRAINT ck_postop_complications_management CHECK (length(management) <= 2000),
    description   text CONSTRAINT ck_postop_complications_description CHECK (length(description) <= 2000),
    CONSTRAINT postop_complications_pkey PRIMARY KEY (centre_id, id),
    CONSTRAINT postop_complications_operation_fkey FOREIGN KEY (centre_id, operation_id)
        REFERENCES operations (centre_id, id) ON DELETE CASCADE
);
CREATE INDEX postop_complications_operation_idx ON postop_complications (centre_id, operation_id);

CREATE TABLE follow_ups (
    centre_id        bigint NOT NULL,
    id               bigint GENERATED ALWAYS AS IDENTITY,
    operation_id     bigint NOT NULL,
    local_ref        text CONSTRAINT ck_follow_ups_local_ref CHECK (length(local_ref) BETWEEN 1 AND 100),
    follow_up_date   date NOT NULL,
    months_after     smallint NOT NULL CONSTRAINT ck_follow_ups_months_after CHECK (months_after BETWEEN 0 AND 1200),
    fusion_status    text CONSTRAINT ck_follow_ups_fusion_status CHECK ({one_of('fusion_status', v.FUSION_STATUS)}),
    assessment       text CONSTRAINT ck_follow_ups_assessment CHECK ({one_of('assessment', v.ASSESSMENT)}),
    implant_status   text CONSTRAINT ck_follow_ups_implant_status CHECK ({one_of('implant_status', v.IMPLANT_STATUS)}),
    joa              numeric(3,1) CONSTRAINT ck_follow_ups_joa CHECK (joa BETWEEN 0 AND 17 AND joa * 2 = trunc(joa * 2)),
    mjoa             smallint CONSTRAINT ck_follow_ups_mjoa CHECK (mjoa BETWEEN 0 AND 18),
    revision_surgery boolean NOT NULL DEFAULT false,
    revision_reason  text CONSTRAINT ck_follow_ups_revision_reason CHECK (length(revision_reason) <= 500),
    notes            text CONSTRAINT ck_follow_ups_notes CHECK (length(notes) <= 4000),
    version          integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT follow_ups_pkey PRIMARY KEY (centre_id, id),
    CONSTRAINT follow_ups_local_ref_key UNIQUE (centre_id, local_ref),
    CONSTRAINT follow_ups_operation_fkey FOREIGN KEY (centre_id, operation_id)
        REFERENCES operations (centre_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_follow_ups_revision_reason_needs_revision
        CHECK (revision_reason IS NULL OR revision_surgery)
);
CREATE INDEX follow_ups_operation_idx ON follow_ups (centre_id, operation_id, follow_up_date);

-- A follow-up never precedes its operation, whichever of the two is written last.
CREATE FUNCTION follow_up_not_before_operation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'follow_ups' THEN
        IF NEW.follow_up_date < (SELECT operation_date FROM operations
                                 WHERE centre_id = NEW.centre_id AND id = NEW.operation_id) THEN
            RAISE EXCEPTION 'follow-up dated before its operation'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ck_follow_ups_after_operation';
        END IF;
    ELSIF EXISTS (SELECT 1 FROM follow_ups
                  WHERE centre_id = NEW.centre_id AND operation_id = NEW.id
                    AND follow_up_date < NEW.operation_date) THEN
        RAISE EXCEPTION 'operation dated after one of its follow-ups'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ck_operations_before_follow_ups';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER follow_ups_after_operation BEFORE INSERT OR UPDATE OF follow_up_date ON follow_ups
    FOR EACH ROW EXECUTE FUNCTION follow_up_not_before_operation();
CREATE TRIGGER operations_before_follow_ups BEFORE UPDATE OF operation_date ON operations
    FOR EACH ROW EXECUTE FUNCTION follow_up_not_before_operation();

-- Append-only audit trail: who, when, which record and which fields. It never holds clinical
-- values or patient refs, so erasing a patient leaves nothing of theirs behind in it.
CREATE TABLE audit_events (
    centre_id       bigint NOT NULL REFERENCES centres (id),
    id              bigint GENERATED ALWAYS AS IDENTITY,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    actor_token_id  bigint,
    actor_role      text,
    request_id      text,
    action          text NOT NULL,
    entity          text NOT NULL,
    entity_id       bigint,
    changed_fields  text[] NOT NULL DEFAULT '{{}}',
    CONSTRAINT audit_events_pkey PRIMARY KEY (centre_id, id)
);
CREATE INDEX audit_events_time_idx ON audit_events (centre_id, occurred_at, id);

CREATE FUNCTION audit_events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_are_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_are_append_only();

-- Bulk submissions: who sent what, when, and what became of each record, so a data manager
-- can fix the rejected rows and resend only those.
CREATE TABLE submissions (
    centre_id     bigint NOT NULL REFERENCES centres (id),
    id            bigint GENERATED ALWAYS AS IDENTITY,
    token_id      bigint,
    received_at   timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    format        text NOT NULL CONSTRAINT ck_submissions_format CHECK (format IN ('json', 'csv')),
    mode          text NOT NULL CONSTRAINT ck_submissions_mode CHECK (mode IN ('partial', 'atomic')),
    status        text NOT NULL CONSTRAINT ck_submissions_status
                  CHECK (status IN ('processing', 'accepted', 'partially_accepted', 'rejected')),
    total         integer NOT NULL DEFAULT 0,
    created       integer NOT NULL DEFAULT 0,
    updated       integer NOT NULL DEFAULT 0,
    unchanged     integer NOT NULL DEFAULT 0,
    rejected      integer NOT NULL DEFAULT 0,
    CONSTRAINT submissions_pkey PRIMARY KEY (centre_id, id)
);

CREATE TABLE submission_records (
    centre_id      bigint NOT NULL,
    submission_id  bigint NOT NULL,
    position       integer NOT NULL,          -- index in the JSON array, or CSV data row number (1 = first)
    local_ref      text,
    outcome        text NOT NULL CONSTRAINT ck_submission_records_outcome
                   CHECK (outcome IN ('created', 'updated', 'unchanged', 'rejected', 'not_stored')),
    operation_id   bigint,
    errors         jsonb,
    CONSTRAINT submission_records_pkey PRIMARY KEY (centre_id, submission_id, position),
    CONSTRAINT submission_records_submission_fkey FOREIGN KEY (centre_id, submission_id)
        REFERENCES submissions (centre_id, id) ON DELETE CASCADE
);

-- The first answer to a POST with an Idempotency-Key, replayed for retries of the same request.
-- The key row is inserted in the same transaction as the write it guards, so two racing
-- requests with one key serialise on it and the second sees the first's answer.
CREATE TABLE idempotency_keys (
    centre_id       bigint NOT NULL REFERENCES centres (id),
    key             text NOT NULL CONSTRAINT ck_idempotency_keys_key CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL,
    status_code     smallint,           -- NULL only inside the transaction that writes it
    response_body   jsonb,
    response_headers jsonb NOT NULL DEFAULT '{{}}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (centre_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
""")


def downgrade() -> None:
    op.execute("""
DROP TABLE idempotency_keys;
DROP TABLE submission_records;
DROP TABLE submissions;
DROP TABLE audit_events;
DROP FUNCTION audit_events_are_append_only();
DROP TABLE follow_ups;
DROP TABLE postop_complications;
DROP TABLE intraop_events;
DROP TABLE implants;
DROP TABLE operations;
DROP FUNCTION follow_up_not_before_operation();
DROP TABLE patients;
DROP TABLE tokens;
DROP TABLE centres;
""")
