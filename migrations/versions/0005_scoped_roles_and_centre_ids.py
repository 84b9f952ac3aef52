"""Scoped roles, reportable token issuance, and ids that count only their own centre's records.

Roles. `admin` managed centres and every token of every centre, so an admin of one centre
could issue itself a submitter token for another and read its patients. It is split in two:
- `operator` (registry-wide): adds centres, issues analyst, operator and metrics tokens,
  lists and revokes any token; it issues no token that reaches a centre's patients;
- `centre_admin` (one centre): issues, lists and revokes its own centre's submitter and
  centre_admin tokens, and nothing else.
`metrics` tokens read /metrics only (Prometheus). Existing `admin` tokens become `operator`
tokens: they keep managing centres and tokens, minus submitter tokens. `tokens` gains who
issued and who revoked each token (a token id; NULL for the command line).

Per-centre ids. Patients, operations, follow-ups, submissions and audit events had ids from one
identity sequence per table, shared by all centres, so a centre could count the others' writes
from the gaps between its own ids. Each centre now has its own sequence per table (schema
`centre_ids`, named `<table>_<centre id>`), created with the centre, and a BEFORE INSERT trigger
takes the row's id from it (COPY included). Sequences are not transactional: concurrent writers
of one centre never wait for each other, and a rolled-back insert leaves a gap that reveals only
the centre's own activity. The primary keys were (centre_id, id) already. Implants, events and
complications keep their shared sequences: their ids are never shown.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The role codes before and after this revision (not read from registry.vocabulary, which
# moves on: a migration states what it did).
OLD_ROLES = ("submitter", "analyst", "admin")
NEW_ROLES = ("submitter", "centre_admin", "analyst", "operator", "metrics")

# Tables whose ids are public (URLs, answers, the audit trail) and so are numbered per centre.
PER_CENTRE_TABLES = ("patients", "operations", "follow_ups", "submissions", "audit_events")


def _roles_check(roles) -> str:
    return "role IN (" + ", ".join(f"'{role}'" for role in roles) + ")"


def upgrade() -> None:
    tables = "ARRAY[" + ", ".join(f"'{table}'" for table in PER_CENTRE_TABLES) + "]"
    op.execute(f"""
ALTER TABLE tokens DROP CONSTRAINT ck_tokens_role;
UPDATE tokens SET role = 'operator' WHERE role = 'admin';
ALTER TABLE tokens ADD CONSTRAINT ck_tokens_role CHECK ({_roles_check(NEW_ROLES)});
-- Who issued and who revoked each token: a token id, NULL when done from the command line.
ALTER TABLE tokens
    ADD COLUMN issued_by_token_id bigint CONSTRAINT tokens_issued_by_fkey REFERENCES tokens (id),
    ADD COLUMN revoked_by_token_id bigint CONSTRAINT tokens_revoked_by_fkey REFERENCES tokens (id);

CREATE SCHEMA centre_ids;
COMMENT ON SCHEMA centre_ids IS 'One id sequence per centre and table: <table>_<centre id>';

-- Create the centre's id sequences that are missing, each starting after the centre's highest
-- id in its table, and never move one backwards: safe to run again, on any centre.
CREATE FUNCTION centre_ids_ensure(p_centre_id bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
    seq text;
    highest bigint;
    issued bigint;
BEGIN
    FOREACH t IN ARRAY {tables} LOOP
        seq := t || '_' || p_centre_id;
        EXECUTE format('CREATE SEQUENCE IF NOT EXISTS centre_ids.%I AS bigint', seq);
        EXECUTE format('SELECT max(id) FROM %I WHERE centre_id = $1', t) INTO highest USING p_centre_id;
        EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM centre_ids.%I',
                       seq) INTO issued;
        IF highest > issued THEN
            PERFORM setval(format('centre_ids.%I', seq)::regclass, highest);
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION centre_ids_for_new_centre() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM centre_ids_ensure(NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER centres_id_sequences AFTER INSERT ON centres
    FOR EACH ROW EXECUTE FUNCTION centre_ids_for_new_centre();

-- An id given explicitly is kept (a restore from pg_dump, which also restores the sequences).
CREATE FUNCTION centre_id_assign() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS NULL THEN
        NEW.id := nextval(format('centre_ids.%I', TG_TABLE_NAME || '_' || NEW.centre_id)::regclass);
    END IF;
    RETURN NEW;
END $$;
""")
    for table in PER_CENTRE_TABLES:
        op.execute(f"""
ALTER TABLE {table} ALTER COLUMN id DROP IDENTITY;
CREATE TRIGGER {table}_centre_id BEFORE INSERT ON {table}
    FOR EACH ROW EXECUTE FUNCTION centre_id_assign();
""")
    op.execute("SELECT centre_ids_ensure(id) FROM centres")


def downgrade() -> None:
    for table in PER_CENTRE_TABLES:
        # A shared sequence again, starting after every centre's ids.
        op.execute(f"""
DROP TRIGGER {table}_centre_id ON {table};
ALTER TABLE {table} ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;
SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table};
""")
    op.execute(f"""
DROP TRIGGER centres_id_sequences ON centres;
DROP FUNCTION centre_ids_for_new_centre();
DROP FUNCTION centre_id_assign();
DROP FUNCTION centre_ids_ensure(bigint);
DROP SCHEMA centre_ids CASCADE;

ALTER TABLE tokens DROP COLUMN revoked_by_token_id, DROP COLUMN issued_by_token_id;
ALTER TABLE tokens DROP CONSTRAINT ck_tokens_role;
UPDATE tokens SET role = 'admin' WHERE role = 'operator';
-- centre_admin and metrics tokens have no equivalent before this revision: they are revoked
-- (the code of 0003 refuses them everything anyway) and kept, so their history stays.
UPDATE tokens SET revoked_at = coalesce(revoked_at, now()) WHERE role IN ('centre_admin', 'metrics');
ALTER TABLE tokens ADD CONSTRAINT ck_tokens_role
    CHECK ({_roles_check(OLD_ROLES + ('centre_admin', 'metrics'))});
""")
