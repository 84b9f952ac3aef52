"""Report maintenance leaves the writer's transaction (issue 14, decision 2).

Until 0010 a writer refreshed its operations' facts at commit (a deferred trigger) and wrote
the signed log rows itself. Now:

- Writer: the statement triggers on operations, patients (consent, diagnosis), implants,
  intraop_events, postop_complications and follow_ups append the touched (centre_id,
  operation_id) to `report_changes`, a logged table (so it survives a crash and reaches the
  standbys, whose reports read it too). Nothing else happens at commit.
- Maintainer (`registry maintain-reports`, registry/reports/maintainer.py): `report_maintain()`
  takes a batch of queued changes, refreshes those operations with 0002's
  `report_refresh_operations` (unchanged), deletes exactly the queue rows it took, and folds the
  log (`report_compact()`), all in one transaction. It holds 0002's compaction lock for the
  transaction (tried, not waited for): maintainers, compaction, erasure and `report_rebuild()`
  take turns, so two maintainers never refresh one new operation twice.
- Reports (registry/reports/store.py): in the report's one snapshot, an operation with queued
  changes counts by its live facts (`report_live_measures`: the measures view over the facts
  view), not by its stored row, on the fast path and the scan alike. A withdrawn consent or an
  erasure leaves every report at once, maintainer or not.
- Erasure: `report_forget_erased()` now refreshes the centre's queued operations that no longer
  exist before folding the log, so the erased operations' facts leave the report tables in the
  erasure's transaction, as before.

Kept though no longer written: `report_dirty`, `report_flush_pending` and the deferred
`report_dirty_flush` trigger (0002's `report_rebuild()` template clears `report_dirty`, and
an erasure names the trigger in SET CONSTRAINTS); with no writer they cost nothing.

Downgrade refreshes whatever is still queued, then restores 0010's writer triggers and erasure.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28
"""
from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COMPACTION_LOCK_ID = 4_242_002  # 0002's: report_compact() and report_rebuild() take it


def _module(revision_id):
    """A revision's module as alembic loaded it (a module name starting with a digit has no import)."""
    return context.script.get_revision(revision_id).module


def live_measures_view(measures_view_sql: str) -> str:
    """`report_live_measures` from the SQL that creates `report_operation_measures`: the same
    measures, computed from the facts view instead of the stored facts. A migration that
    changes the measures view recreates this one from its new SQL."""
    assert "FROM report_operations f" in measures_view_sql
    return (measures_view_sql
            .replace("CREATE VIEW report_operation_measures", "CREATE VIEW report_live_measures", 1)
            .replace("FROM report_operations f", "FROM report_operation_facts f", 1))


def _measures_view_0010() -> str:
    aggregates, cell_keys, fusion = _module("0002"), _module("0007"), _module("0010")
    return fusion._measures_view(aggregates, cell_keys, list(aggregates.MEASURES) + fusion.NEW_MEASURES,
                                 fusion.RECORD_KEY_MEASURE + fusion.NEW_MEASURE_COLUMNS)


def _writer_triggers(function: str) -> str:
    """0002's statement triggers on the base tables, calling `function`."""
    statements = []
    for table in ("patients", *_module("0002").SOURCES):
        events = [("update", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows")]
        if table != "patients":  # a new patient has no operations; a deleted one cascades
            events += [("insert", "REFERENCING NEW TABLE AS new_rows"),
                       ("delete", "REFERENCING OLD TABLE AS old_rows")]
        for event, referencing in events:
            statements.append(f"""
DROP TRIGGER report_{event}_{table} ON {table};
CREATE TRIGGER report_{event}_{table} AFTER {event.upper()} ON {table}
    {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {function}();""")
    return "\n".join(statements)


UPGRADE = f"""
-- Operations whose facts changed since the maintainer last refreshed them. Append-only for
-- writers (one row per operation a statement touched); the maintainer deletes the rows it
-- refreshed. Logged, unlike 0002's report_dirty: the queue outlives the writer's transaction.
CREATE TABLE report_changes (
    centre_id     bigint NOT NULL,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    operation_id  bigint NOT NULL,
    queued_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT report_changes_pkey PRIMARY KEY (centre_id, id)
);

-- The writer's whole share of report maintenance: note which operations a statement touched.
CREATE FUNCTION report_queue_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'patients' THEN
        INSERT INTO report_changes (centre_id, operation_id)
        SELECT DISTINCT o.centre_id, o.id
        FROM new_rows n
        JOIN old_rows b ON b.centre_id = n.centre_id AND b.id = n.id
        JOIN operations o ON o.centre_id = n.centre_id AND o.patient_id = n.id
        WHERE n.consent IS DISTINCT FROM b.consent OR n.diagnosis IS DISTINCT FROM b.diagnosis;
    ELSIF TG_TABLE_NAME = 'operations' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO report_changes (centre_id, operation_id) SELECT centre_id, id FROM new_rows;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO report_changes (centre_id, operation_id) SELECT centre_id, id FROM old_rows;
        ELSE
            INSERT INTO report_changes (centre_id, operation_id)
            SELECT centre_id, id FROM new_rows UNION SELECT centre_id, id FROM old_rows;
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO report_changes (centre_id, operation_id)
        SELECT DISTINCT centre_id, operation_id FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO report_changes (centre_id, operation_id)
        SELECT DISTINCT centre_id, operation_id FROM old_rows;
    ELSE
        INSERT INTO report_changes (centre_id, operation_id)
        SELECT centre_id, operation_id FROM new_rows UNION SELECT centre_id, operation_id FROM old_rows;
    END IF;
    RETURN NULL;
END $$;

-- One batch of the maintainer, in the caller's transaction: take up to p_limit queued changes
-- after the key (p_after_centre, p_after_id), wrapping around (so every centre's changes are
-- reached however busy another centre is), refresh their operations, delete exactly those
-- rows, and fold the log. Nothing when another maintainer (or a compaction, an erasure, a
-- rebuild) holds the compaction lock: the caller tries again later.
CREATE FUNCTION report_maintain(p_limit integer, p_after_centre bigint DEFAULT 0, p_after_id bigint DEFAULT 0)
RETURNS TABLE (changes bigint, operations bigint, logged bigint, folded bigint, last_centre bigint, last_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    centre_ids bigint[];
    operation_ids bigint[];
BEGIN
    changes := 0; operations := 0; logged := 0; folded := 0;
    last_centre := p_after_centre; last_id := p_after_id;
    IF NOT pg_try_advisory_xact_lock({COMPACTION_LOCK_ID}) THEN
        RETURN NEXT;
        RETURN;
    END IF;
    WITH picked AS MATERIALIZED (
        SELECT q.centre_id, q.id, row_number() OVER () AS n FROM (
            (SELECT centre_id, id FROM report_changes WHERE (centre_id, id) > (p_after_centre, p_after_id)
             ORDER BY centre_id, id LIMIT p_limit)
            UNION ALL
            (SELECT centre_id, id FROM report_changes WHERE (centre_id, id) <= (p_after_centre, p_after_id)
             ORDER BY centre_id, id LIMIT p_limit)
        ) q LIMIT p_limit
    ), taken AS (
        DELETE FROM report_changes r USING picked p
        WHERE r.centre_id = p.centre_id AND r.id = p.id
        RETURNING r.centre_id, r.operation_id
    ), touched AS (
        SELECT DISTINCT centre_id, operation_id FROM taken
    )
    SELECT (SELECT count(*) FROM taken),
           array_agg(centre_id ORDER BY centre_id, operation_id),
           array_agg(operation_id ORDER BY centre_id, operation_id),
           (SELECT centre_id FROM picked ORDER BY n DESC LIMIT 1),
           (SELECT id FROM picked ORDER BY n DESC LIMIT 1)
    INTO changes, centre_ids, operation_ids, last_centre, last_id
    FROM touched;
    IF centre_ids IS NOT NULL THEN
        operations := cardinality(operation_ids);
        logged := report_refresh_operations(centre_ids, operation_ids);
    END IF;
    folded := report_compact();
    last_centre := coalesce(last_centre, p_after_centre);
    last_id := coalesce(last_id, p_after_id);
    RETURN NEXT;
END $$;

-- An erasure, after deleting the patient: refresh the centre's queued operations that are gone
-- (the erased ones among them), so their facts leave report_operations now, then fold the log
-- (its rows hold their clinical values) and delete the cells left at zero (a zero cell still
-- says some operation had the value). Their queue rows stay; the maintainer finds nothing left.
CREATE OR REPLACE FUNCTION report_forget_erased(p_centre_id bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    centre_ids bigint[];
    operation_ids bigint[];
BEGIN
    -- wait for a running maintainer rather than skip: report_compact() then re-takes the lock
    -- this session holds (advisory locks are re-entrant) and folds every pending row
    PERFORM pg_advisory_xact_lock({COMPACTION_LOCK_ID});
    SELECT array_agg(g.centre_id ORDER BY g.operation_id), array_agg(g.operation_id ORDER BY g.operation_id)
    INTO centre_ids, operation_ids
    FROM (SELECT DISTINCT q.centre_id, q.operation_id FROM report_changes q
          WHERE q.centre_id = p_centre_id
            AND NOT EXISTS (SELECT FROM operations o WHERE o.centre_id = q.centre_id AND o.id = q.operation_id)) g;
    IF centre_ids IS NOT NULL THEN
        PERFORM report_refresh_operations(centre_ids, operation_ids);
    END IF;
    PERFORM report_compact();
    DELETE FROM report_histograms WHERE centre_id IN (0, p_centre_id) AND n = 0;
    DELETE FROM report_tallies WHERE centre_id IN (0, p_centre_id) AND operations = 0;
END $$;
"""

def upgrade() -> None:
    op.execute(UPGRADE)
    op.execute(live_measures_view(_measures_view_0010()))
    op.execute(_writer_triggers("report_queue_changes"))


def downgrade() -> None:
    # what is still queued goes into the aggregates first (the commit-time refresh takes over)
    op.execute(f"""
SELECT pg_advisory_xact_lock({COMPACTION_LOCK_ID});
SELECT report_refresh_operations(array_agg(centre_id ORDER BY centre_id, operation_id),
                                 array_agg(operation_id ORDER BY centre_id, operation_id))
FROM (SELECT DISTINCT centre_id, operation_id FROM report_changes) g
HAVING count(*) > 0;
SELECT report_compact();
""")
    op.execute(_writer_triggers("report_mark_dirty"))
    op.execute(_module("0004").FORGET_ERASED)
    op.execute("""
DROP VIEW report_live_measures;
DROP FUNCTION report_maintain(integer, bigint, bigint);
DROP FUNCTION report_queue_changes();
DROP TABLE report_changes;
""")
