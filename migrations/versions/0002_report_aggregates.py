"""Report aggregates: a per-operation fact table kept exact by triggers, and pre-aggregated
tallies and histograms so reports never rescan every operation.

How it fits together (README "Reports" has the user-facing version):

- `report_operations`: one compact row per operation with its grouping dimensions and the
  flags and values every report needs (intraoperative event types, postoperative and major
  complications, fusion status at >= 12 months, follow-up flags, latest JOA/mJOA).
  `report_operation_facts` (a view over the base tables) is its one definition.
- Statement-level triggers on operations, patients (consent, diagnosis), implants,
  intraop_events, postop_complications and follow_ups only note the touched operation in
  `report_dirty`. A deferred constraint trigger refreshes all of a transaction's dirty
  operations at commit, set-based, so a batch that writes an operation and its children in
  many statements refreshes each operation once.
- A refresh locks the operations' fact rows first (in key order) and recomputes them from a
  snapshot taken after the locks are granted, so two writers of one operation serialise and
  neither works from stale data; the row is rewritten in place (an UPDATE, never a DELETE and
  INSERT), so a refresh queued on the lock gets the newest version. It appends the change as
  signed rows (-old, +new) to `report_log`: an append-only log, so concurrent writers never
  update a shared row and cannot deadlock on aggregates.
- `report_compact()` folds the log into `report_tallies` (additive measures per centre and
  dimension value; centre_id 0 is all centres) and `report_histograms` (exact value counts,
  from which quartiles are exact). One compactor at a time (advisory lock); a writer runs it
  at commit when its log rows take an id past a multiple of COMPACT_WHEN_PENDING. Reports read
  tallies + pending log rows, so figures are exact whether or not the log was folded.
- `report_rebuild()` recomputes everything from the base tables (bulk loads, repairs).

Only operations of patients with consent = 'active' reach the log, tallies and histograms.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen with this migration (a later vocabulary change needs a migration of its own).
INTRAOP_EVENT_TYPES = (
    "instrument_breakage", "iatrogenic_fracture", "dural_tear", "excessive_bleeding",
    "neuromonitoring_change", "nerve_injury", "vascular_injury", "implant_malposition",
    "wrong_level", "other",
)
MAJOR_GRADES = ("IIIa", "IIIb", "IVa", "IVb", "V")
IMPLANT_FAILURE = ("loosening", "migration", "breakage")
SPINAL_REGIONS = ("craniocervical", "cervical", "cervicothoracic", "thoracic", "thoracolumbar",
                  "lumbar", "lumbosacral", "sacropelvic")
CERVICAL_REGIONS = ("craniocervical", "cervical", "cervicothoracic")

# Additive measures of the tallies, as (name, SQL type): one definition for the table, the
# compaction and the rebuild. Each is a per-operation 0/1 flag or value in
# report_operation_measures, summed over a cell.
MEASURES = (
    [("operations", "bigint"), ("intraop_event", "bigint")]
    + [(f"ev_{t}", "bigint") for t in INTRAOP_EVENT_TYPES]
    + [("postop_complication", "bigint"), ("major_complication", "bigint"),
       ("blood_loss_n", "bigint"), ("blood_loss_sum", "bigint"),
       ("duration_n", "bigint"), ("duration_sum", "bigint"),
       ("fusion_operations", "bigint"), ("fusion_assessed", "bigint"), ("fusion_fused", "bigint"),
       ("followed", "bigint"), ("revision", "bigint"),
       ("instrumented_followed", "bigint"), ("implant_failure", "bigint"),
       ("joa_pre_n", "bigint"), ("joa_pre_sum", "numeric"), ("joa_post_n", "bigint"),
       ("joa_post_sum", "numeric"), ("recovery_n", "bigint"),
       ("mjoa_pre_n", "bigint"), ("mjoa_pre_sum", "bigint"), ("mjoa_post_n", "bigint"),
       ("mjoa_post_sum", "bigint"),
       ("indication_recorded", "bigint"), ("approach_recorded", "bigint"),
       ("spinal", "bigint"), ("levels_recorded", "bigint"),
       ("cervical", "bigint"), ("joa_recorded", "bigint"), ("followed_12m", "bigint")]
)

# The columns of report_operations after its key (the refresh rewrites them in place).
FACT_COLUMNS = (
    "patient_id", "counted", "operation_date", "year", "approach", "region", "indication", "diagnosis",
    "instrumented", "vertebra_count", "procedures", "duration_min", "blood_loss_ml", "intraop_types",
    "postop_any", "postop_major", "fusion_status_12m", "followed", "followed_12m", "implant_failure",
    "revision", "preop_joa", "latest_joa", "preop_mjoa", "latest_mjoa",
)

# The tables whose rows feed an operation's facts, and the operation key of each row.
SOURCES = {
    "operations": "centre_id, id",
    "implants": "centre_id, operation_id",
    "intraop_events": "centre_id, operation_id",
    "postop_complications": "centre_id, operation_id",
    "follow_ups": "centre_id, operation_id",
}

COMPACTION_LOCK_ID = 4_242_002
COMPACT_WHEN_PENDING = 2000   # log rows pending before a writer folds them at commit


def _quoted(codes) -> str:
    return ", ".join("'" + code + "'" for code in codes)


# 0003 replaces this function and restores it on downgrade, hence a template of its own.
COMPACT_FUNCTION = """
-- Fold the pending log into the tallies and histograms. One compactor at a time; returns the
-- number of log rows folded (0 when another session holds the compaction lock).
CREATE FUNCTION report_compact() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock({lock_id}) THEN
        RETURN 0;
    END IF;
    WITH moved AS (
        DELETE FROM report_log RETURNING *
    ), cells AS (
        SELECT s.scope, d.dim, d.value,
            {signed_sums}
        FROM moved m
        CROSS JOIN LATERAL report_dimension_values(m.centre_id, m.approach, m.region, m.procedures,
            m.diagnosis, m.indication, m.instrumented, m.levels, m.year) d
        CROSS JOIN LATERAL (VALUES (0::bigint), (m.centre_id)) s (scope)
        GROUP BY s.scope, d.dim, d.value
    ), tallied AS (
        INSERT INTO report_tallies AS t (centre_id, dim, value, {column_list})
        SELECT * FROM cells
        ON CONFLICT (centre_id, dim, value) DO UPDATE SET
            {add_excluded}
    ), counted AS (
        SELECT s.scope, d.dim, d.value, h.metric, h.x, h.y, sum(m.sign) AS n
        FROM moved m
        CROSS JOIN LATERAL report_dimension_values(m.centre_id, m.approach, m.region, m.procedures,
            m.diagnosis, m.indication, m.instrumented, m.levels, m.year) d
        CROSS JOIN LATERAL (VALUES (0::bigint), (m.centre_id)) s (scope)
        CROSS JOIN LATERAL report_metric_values(m.blood_loss_ml, m.duration_min, m.preop_joa,
            m.latest_joa, m.preop_mjoa, m.latest_mjoa) h
        GROUP BY s.scope, d.dim, d.value, h.metric, h.x, h.y
        HAVING sum(m.sign) <> 0
    ), histogrammed AS (
        INSERT INTO report_histograms AS t (centre_id, dim, value, metric, x, y, n)
        SELECT * FROM counted
        ON CONFLICT (centre_id, dim, metric, value, x, y) DO UPDATE SET n = t.n + excluded.n
    )
    SELECT count(*) INTO folded FROM moved;
    RETURN folded;
END $$;
"""


def compact_function() -> str:
    names = [name for name, _ in MEASURES]
    return COMPACT_FUNCTION.format(
        lock_id=COMPACTION_LOCK_ID,
        signed_sums=",\n            ".join(f"sum(m.sign * m.{n})" for n in names),
        column_list=", ".join(names),
        add_excluded=",\n            ".join(f"{n} = t.{n} + excluded.{n}" for n in names))


def facts_view(fusion_status: str = "report_fusion_status(o.centre_id, o.id, 12)", fusion_join: str = "",
               extra_columns: str = "") -> str:
    """The facts view; 0003 gives the fusion status another form, and restores this one on
    downgrade; 0007 appends `extra_columns` (the record key)."""
    return f"""
-- The one definition of an operation's facts, computed from the base tables.
CREATE OR REPLACE VIEW report_operation_facts AS
SELECT o.centre_id, o.id AS operation_id, o.patient_id,
       p.consent = 'active' AS counted,
       o.operation_date, extract(year FROM o.operation_date)::smallint AS year,
       o.approach, o.region, o.indication, p.diagnosis,
       o.instrumented OR EXISTS (SELECT 1 FROM implants i
                                 WHERE i.centre_id = o.centre_id AND i.operation_id = o.id) AS instrumented,
       o.vertebra_count, o.procedures, o.duration_min, o.blood_loss_ml,
       coalesce((SELECT array_agg(DISTINCT e.type ORDER BY e.type) FROM intraop_events e
                 WHERE e.centre_id = o.centre_id AND e.operation_id = o.id), '{{}}') AS intraop_types,
       coalesce(pc.any_complication, false) AS postop_any,
       coalesce(pc.major, false) AS postop_major,
       {fusion_status} AS fusion_status_12m,
       coalesce(fu.followed, false) AS followed,
       coalesce(fu.followed_12m, false) AS followed_12m,
       coalesce(fu.implant_failure, false) AS implant_failure,
       coalesce(fu.revision, false) AS revision,
       o.preop_joa,
       (SELECT f.joa FROM follow_ups f WHERE f.centre_id = o.centre_id AND f.operation_id = o.id
          AND f.joa IS NOT NULL ORDER BY f.follow_up_date DESC, f.months_after DESC, f.id DESC LIMIT 1) AS latest_joa,
       o.preop_mjoa,
       (SELECT f.mjoa FROM follow_ups f WHERE f.centre_id = o.centre_id AND f.operation_id = o.id
          AND f.mjoa IS NOT NULL ORDER BY f.follow_up_date DESC, f.months_after DESC, f.id DESC LIMIT 1) AS latest_mjoa{extra_columns}
FROM operations o
JOIN patients p ON p.centre_id = o.centre_id AND p.id = o.patient_id
LEFT JOIN LATERAL (
    SELECT true AS any_complication, bool_or(c.grade IN ({_quoted(MAJOR_GRADES)})) AS major
    FROM postop_complications c WHERE c.centre_id = o.centre_id AND c.operation_id = o.id
    HAVING count(*) > 0
) pc ON true
LEFT JOIN LATERAL (
    SELECT true AS followed, bool_or(f.months_after >= 12) AS followed_12m,
           bool_or(f.implant_status IN ({_quoted(IMPLANT_FAILURE)})) AS implant_failure,
           bool_or(f.revision_surgery) AS revision
    FROM follow_ups f WHERE f.centre_id = o.centre_id AND f.operation_id = o.id
    HAVING count(*) > 0
) fu ON true{fusion_join};
"""


def measures_select(extra_columns: str = "") -> str:
    """The SELECT of the measures view; 0007 appends `extra_columns` (record keys) and restores
    this one on downgrade."""
    event_flags = ",\n    ".join(
        f"('{t}' = ANY(f.intraop_types))::int AS ev_{t}" for t in INTRAOP_EVENT_TYPES)
    return f"""SELECT f.centre_id, f.operation_id, f.counted, f.operation_date, f.year,
    f.approach, f.region, f.indication, f.diagnosis, f.instrumented,
    f.vertebra_count AS levels, f.procedures,
    1 AS operations,
    (cardinality(f.intraop_types) > 0)::int AS intraop_event,
    {event_flags},
    f.postop_any::int AS postop_complication,
    f.postop_major::int AS major_complication,
    (f.blood_loss_ml IS NOT NULL)::int AS blood_loss_n,
    coalesce(f.blood_loss_ml, 0)::bigint AS blood_loss_sum,
    (f.duration_min IS NOT NULL)::int AS duration_n,
    coalesce(f.duration_min, 0)::bigint AS duration_sum,
    ('fusion' = ANY(f.procedures))::int AS fusion_operations,
    ('fusion' = ANY(f.procedures) AND f.fusion_status_12m IS NOT NULL)::int AS fusion_assessed,
    ('fusion' = ANY(f.procedures) AND f.fusion_status_12m IS NOT DISTINCT FROM 'fused')::int AS fusion_fused,
    f.followed::int AS followed,
    (f.followed AND f.revision)::int AS revision,
    (f.instrumented AND f.followed)::int AS instrumented_followed,
    (f.instrumented AND f.implant_failure)::int AS implant_failure,
    (f.preop_joa IS NOT NULL)::int AS joa_pre_n,
    coalesce(f.preop_joa, 0)::numeric AS joa_pre_sum,
    (f.latest_joa IS NOT NULL)::int AS joa_post_n,
    coalesce(f.latest_joa, 0)::numeric AS joa_post_sum,
    coalesce(f.preop_joa < 17 AND f.latest_joa IS NOT NULL, false)::int AS recovery_n,
    (f.preop_mjoa IS NOT NULL)::int AS mjoa_pre_n,
    coalesce(f.preop_mjoa, 0)::bigint AS mjoa_pre_sum,
    (f.latest_mjoa IS NOT NULL)::int AS mjoa_post_n,
    coalesce(f.latest_mjoa, 0)::bigint AS mjoa_post_sum,
    (f.indication IS NOT NULL)::int AS indication_recorded,
    (f.approach IS NOT NULL)::int AS approach_recorded,
    (f.region IN ({_quoted(SPINAL_REGIONS)}))::int AS spinal,
    (f.region IN ({_quoted(SPINAL_REGIONS)}) AND f.vertebra_count IS NOT NULL)::int AS levels_recorded,
    (f.region IN ({_quoted(CERVICAL_REGIONS)}))::int AS cervical,
    (f.region IN ({_quoted(CERVICAL_REGIONS)}) AND f.preop_joa IS NOT NULL)::int AS joa_recorded,
    f.followed_12m::int AS followed_12m,
    f.blood_loss_ml, f.duration_min, f.preop_joa, f.latest_joa, f.preop_mjoa, f.latest_mjoa{extra_columns}
FROM report_operations f"""


def refresh_function(fact_columns=FACT_COLUMNS, create: str = "CREATE FUNCTION") -> str:
    """report_refresh_operations; 0007 adds a fact column and restores this one on downgrade."""
    fact_updates = ",\n            ".join(f"{n} = excluded.{n}" for n in fact_columns)
    return f"""-- Recompute the facts of these operations and log the change of their measures; returns the
-- number of log rows written.
{create} report_refresh_operations(p_centre_ids bigint[], p_operation_ids bigint[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    changed_centres bigint[];
    changed_operations bigint[];
    logged_before bigint;
    logged_after bigint := 0;
BEGIN
    -- Lock first, in key order; the statements below take their snapshot after the locks
    -- are granted, so a concurrent refresh of the same operation has committed by then.
    -- A fact row is updated in place while its operation exists (never deleted and inserted
    -- again), so a refresh queued on the lock is handed the newest version of the row.
    PERFORM 1 FROM report_operations f
    WHERE (f.centre_id, f.operation_id) IN (SELECT * FROM unnest(p_centre_ids, p_operation_ids))
    ORDER BY f.centre_id, f.operation_id
    FOR UPDATE;

    -- One statement: the facts view is evaluated once; the old measures are logged from the
    -- rows as they were (every part of a statement sees the same snapshot).
    WITH fresh AS MATERIALIZED (
        SELECT * FROM report_operation_facts
        WHERE (centre_id, operation_id) IN (SELECT * FROM unnest(p_centre_ids, p_operation_ids))
    ), stored AS MATERIALIZED (
        SELECT * FROM report_operations
        WHERE (centre_id, operation_id) IN (SELECT * FROM unnest(p_centre_ids, p_operation_ids))
    ), changed AS MATERIALIZED (
        SELECT coalesce(n.centre_id, f.centre_id) AS centre_id,
               coalesce(n.operation_id, f.operation_id) AS operation_id,
               n.operation_id IS NULL AS gone
        FROM fresh n FULL JOIN stored f ON f.centre_id = n.centre_id AND f.operation_id = n.operation_id
        WHERE ROW(n.*) IS DISTINCT FROM ROW(f.*)
    ), logged_old AS (
        INSERT INTO report_log
        SELECT -1, m.* FROM report_operation_measures m
        JOIN changed c ON c.centre_id = m.centre_id AND c.operation_id = m.operation_id
        WHERE m.counted
        RETURNING 1
    ), removed AS (
        DELETE FROM report_operations r USING changed c
        WHERE c.gone AND r.centre_id = c.centre_id AND r.operation_id = c.operation_id
    ), written AS (
        INSERT INTO report_operations
        SELECT n.* FROM fresh n
        JOIN changed c ON c.centre_id = n.centre_id AND c.operation_id = n.operation_id
        ON CONFLICT (centre_id, operation_id) DO UPDATE SET
            {fact_updates}
        RETURNING centre_id, operation_id
    )
    SELECT (SELECT array_agg(centre_id) FROM written), (SELECT array_agg(operation_id) FROM written),
           (SELECT count(*) FROM logged_old)
    INTO changed_centres, changed_operations, logged_before;

    -- The new measures, from the rows just written.
    IF changed_centres IS NOT NULL THEN
        INSERT INTO report_log
        SELECT 1, m.* FROM report_operation_measures m
        WHERE m.counted
          AND (m.centre_id, m.operation_id) IN (SELECT * FROM unnest(changed_centres, changed_operations));
        GET DIAGNOSTICS logged_after = ROW_COUNT;
    END IF;
    RETURN logged_before + logged_after;
END $$;"""


def rebuild_function(measures=MEASURES, create: str = "CREATE FUNCTION") -> str:
    """report_rebuild; 0007 adds measures and restores this one on downgrade."""
    names = [name for name, _ in measures]
    plain_sums = ",\n            ".join(f"sum(m.{n})" for n in names)
    column_list = ", ".join(names)
    return f"""-- Recompute every fact, tally and histogram from the base tables. Each centre's cells are
-- aggregated from the facts; the all-centres cells (centre_id 0) are then summed from them,
-- not aggregated again from every operation (half the rows to group). Histogram rows are
-- written in primary-key order, so their index is filled left to right.
{create} report_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    operations_counted bigint;
BEGIN
    PERFORM pg_advisory_xact_lock({COMPACTION_LOCK_ID});
    TRUNCATE report_operations, report_log, report_tallies, report_histograms;
    DELETE FROM report_dirty WHERE txid = pg_current_xact_id();
    INSERT INTO report_operations SELECT * FROM report_operation_facts;
    INSERT INTO report_tallies (centre_id, dim, value, {column_list})
    SELECT m.centre_id, d.dim, d.value,
            {plain_sums}
    FROM report_operation_measures m
    CROSS JOIN LATERAL report_dimension_values(m.centre_id, m.approach, m.region, m.procedures,
        m.diagnosis, m.indication, m.instrumented, m.levels, m.year) d
    WHERE m.counted
    GROUP BY m.centre_id, d.dim, d.value;
    INSERT INTO report_tallies (centre_id, dim, value, {column_list})
    SELECT 0, m.dim, m.value,
            {plain_sums}
    FROM report_tallies m
    GROUP BY m.dim, m.value;
    INSERT INTO report_histograms (centre_id, dim, value, metric, x, y, n)
    SELECT m.centre_id, d.dim, d.value, h.metric, h.x, h.y, count(*)
    FROM report_operation_measures m
    CROSS JOIN LATERAL report_dimension_values(m.centre_id, m.approach, m.region, m.procedures,
        m.diagnosis, m.indication, m.instrumented, m.levels, m.year) d
    CROSS JOIN LATERAL report_metric_values(m.blood_loss_ml, m.duration_min, m.preop_joa,
        m.latest_joa, m.preop_mjoa, m.latest_mjoa) h
    WHERE m.counted
    GROUP BY m.centre_id, d.dim, h.metric, d.value, h.x, h.y
    ORDER BY m.centre_id, d.dim, h.metric, d.value, h.x, h.y;
    INSERT INTO report_histograms (centre_id, dim, value, metric, x, y, n)
    SELECT 0, h.dim, h.value, h.metric, h.x, h.y, sum(h.n)
    FROM report_histograms h
    GROUP BY h.dim, h.metric, h.value, h.x, h.y
    ORDER BY h.dim, h.metric, h.value, h.x, h.y;
    SELECT count(*) INTO operations_counted FROM report_operations WHERE counted;
    RETURN operations_counted;
END $$;"""


def upgrade() -> None:
    measure_columns = ",\n    ".join(f"{name} {kind} NOT NULL DEFAULT 0" for name, kind in MEASURES)
    compact_sql = compact_function()
    facts_sql = facts_view()
    measures_sql = measures_select()
    refresh_sql = refresh_function()
    rebuild_sql = rebuild_function()

    op.execute(f"""
-- One row per operation: its dimensions and what the reports count about it.
CREATE TABLE report_operations (
    centre_id          bigint NOT NULL,
    operation_id       bigint NOT NULL,
    patient_id         bigint NOT NULL,
    counted            boolean NOT NULL,      -- the patient's consent is active
    operation_date     date NOT NULL,
    year               smallint NOT NULL,
    approach           text,
    region             text NOT NULL,
    indication         text,
    diagnosis          text NOT NULL,
    instrumented       boolean NOT NULL,      -- flagged instrumented, or has implants
    vertebra_count     smallint,
    procedures         text[] NOT NULL,
    duration_min       integer,
    blood_loss_ml      integer,
    intraop_types      text[] NOT NULL,       -- distinct intraoperative event types, sorted
    postop_any         boolean NOT NULL,
    postop_major       boolean NOT NULL,      -- Clavien-Dindo IIIa or worse
    fusion_status_12m  text,                  -- fused / not_fused at the latest follow-up >= 12 months
    followed           boolean NOT NULL,      -- has any follow-up
    followed_12m       boolean NOT NULL,      -- has a follow-up at >= 12 months
    implant_failure    boolean NOT NULL,      -- any follow-up reports loosening, migration, breakage
    revision           boolean NOT NULL,      -- any follow-up reports revision surgery
    preop_joa          numeric(3,1),
    latest_joa         numeric(3,1),          -- JOA at the latest follow-up that recorded one
    preop_mjoa         smallint,
    latest_mjoa        smallint,
    CONSTRAINT report_operations_pkey PRIMARY KEY (centre_id, operation_id)
);
CREATE INDEX report_operations_date_idx ON report_operations (operation_date);

-- The fusion status that decides an operation's fusion outcome: the latest follow-up at
-- >= min_months months that says fused or not fused (ties: later months, then later id).
-- A table function (zero or one row) so that a report scan joining it LATERAL gets it inlined
-- into its plan, as if written there; PARALLEL SAFE (it only reads), so such a scan (fusion at
-- another min_months) can run in parallel workers. report_fusion_status is the scalar form.
CREATE FUNCTION report_fusion_decision(p_centre_id bigint, p_operation_id bigint, p_min_months integer)
RETURNS TABLE (status text) LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT f.fusion_status FROM follow_ups f
    WHERE f.centre_id = p_centre_id AND f.operation_id = p_operation_id
      AND f.months_after >= p_min_months AND f.fusion_status IN ('fused', 'not_fused')
    ORDER BY f.follow_up_date DESC, f.months_after DESC, f.id DESC
    LIMIT 1
$$;
CREATE FUNCTION report_fusion_status(p_centre_id bigint, p_operation_id bigint, p_min_months integer)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT status FROM report_fusion_decision(p_centre_id, p_operation_id, p_min_months)
$$;

{facts_sql}
-- Every additive measure of an operation, as the tallies sum them.
CREATE VIEW report_operation_measures AS
{measures_sql};

-- The groups an operation belongs to, one (dimension, value) per row; '' is "not recorded".
-- An operation is in one group per procedure.
CREATE FUNCTION report_dimension_values(
    p_centre_id bigint, p_approach text, p_region text, p_procedures text[], p_diagnosis text,
    p_indication text, p_instrumented boolean, p_levels smallint, p_year smallint)
RETURNS TABLE (dim text, value text) LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT d.dim, d.value FROM (VALUES
        ('all', ''),
        ('approach', coalesce(p_approach, '')),
        ('region', p_region),
        ('diagnosis', p_diagnosis),
        ('indication', coalesce(p_indication, '')),
        ('instrumented', p_instrumented::text),
        ('levels', coalesce(p_levels::text, '')),
        ('year', p_year::text),
        ('centre', p_centre_id::text)) AS d (dim, value)
    UNION ALL
    SELECT 'procedure', code FROM unnest(p_procedures) AS code
$$;

-- The values an operation adds to the histograms: (metric, x, y), y used by joa_pair only
-- (pre-operative, latest JOA of operations whose Hirabayashi recovery rate is defined).
CREATE FUNCTION report_metric_values(
    p_blood_loss_ml integer, p_duration_min integer, p_preop_joa numeric, p_latest_joa numeric,
    p_preop_mjoa smallint, p_latest_mjoa smallint)
RETURNS TABLE (metric text, x float8, y float8) LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT h.metric, h.x, h.y FROM (VALUES
        ('blood_loss', p_blood_loss_ml::float8, 0::float8),
        ('duration', p_duration_min::float8, 0::float8),
        ('joa_pre', p_preop_joa::float8, 0::float8),
        ('joa_post', p_latest_joa::float8, 0::float8),
        ('joa_pair', CASE WHEN p_preop_joa < 17 AND p_latest_joa IS NOT NULL THEN p_preop_joa::float8 END,
                     p_latest_joa::float8),
        ('mjoa_pre', p_preop_mjoa::float8, 0::float8),
        ('mjoa_post', p_latest_mjoa::float8, 0::float8)) AS h (metric, x, y)
    WHERE h.x IS NOT NULL
$$;

-- Signed changes of counted operations' measures, not yet folded into the tallies.
CREATE TABLE report_log (
    sign  smallint NOT NULL,
    LIKE report_operation_measures,
    id    bigint GENERATED ALWAYS AS IDENTITY,
    CONSTRAINT report_log_pkey PRIMARY KEY (centre_id, id)
);

-- Sums of the measures per centre (0: all centres), dimension and value.
CREATE TABLE report_tallies (
    centre_id  bigint NOT NULL,
    dim        text NOT NULL,
    value      text NOT NULL,
    {measure_columns},
    CONSTRAINT report_tallies_pkey PRIMARY KEY (centre_id, dim, value)
);

-- How many operations had value x (and y) of a metric, per centre (0: all), dimension and value.
CREATE TABLE report_histograms (
    centre_id  bigint NOT NULL,
    dim        text NOT NULL,
    value      text NOT NULL,
    metric     text NOT NULL,
    x          float8 NOT NULL,          -- integers and half points: exact in a double
    y          float8 NOT NULL,
    n          bigint NOT NULL,
    -- metric before value: a report reads one or two metrics of every value of a dimension,
    -- by an index-only scan
    CONSTRAINT report_histograms_pkey PRIMARY KEY (centre_id, dim, metric, value, x, y) INCLUDE (n)
);

-- Operations touched by a transaction and not yet refreshed; emptied at its commit. Its rows
-- never outlive their transaction, so the table is UNLOGGED (no WAL to write at each commit).
CREATE UNLOGGED TABLE report_dirty (
    txid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    centre_id     bigint NOT NULL,
    operation_id  bigint NOT NULL,
    CONSTRAINT report_dirty_pkey PRIMARY KEY (txid, centre_id, operation_id)
);

-- One row per writing transaction: it carries the deferred flush, so the flush runs once per
-- transaction however many operations it touched (a trigger per dirty row would rescan the
-- transaction's rows once per row: quadratic in the size of a bulk load). UNLOGGED too.
CREATE UNLOGGED TABLE report_flush_pending (
    txid  xid8 NOT NULL DEFAULT pg_current_xact_id() CONSTRAINT report_flush_pending_pkey PRIMARY KEY
);

{compact_sql}
-- Called by a writer at commit with the number of log rows it just wrote: fold the log when
-- those rows took an id past a multiple of {COMPACT_WHEN_PENDING}, so about once per that many
-- rows, without counting the log at every commit. Only under READ COMMITTED: a compactor's
-- snapshot must postdate the previous compactor's commit.
CREATE FUNCTION report_maybe_compact(p_logged bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    last_id bigint;
BEGIN
    IF p_logged = 0 OR current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN;
    END IF;
    last_id := currval(pg_get_serial_sequence('report_log', 'id'));
    IF last_id / {COMPACT_WHEN_PENDING} > (last_id - p_logged) / {COMPACT_WHEN_PENDING} THEN
        PERFORM report_compact();
    END IF;
END $$;

{refresh_sql}

-- At commit (deferred): refresh every operation this transaction touched, once.
CREATE FUNCTION report_flush_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    centre_ids bigint[];
    operation_ids bigint[];
    logged bigint;
BEGIN
    DELETE FROM report_flush_pending WHERE txid = pg_current_xact_id();
    WITH taken AS (
        DELETE FROM report_dirty WHERE txid = pg_current_xact_id() RETURNING centre_id, operation_id
    )
    SELECT array_agg(centre_id ORDER BY centre_id, operation_id),
           array_agg(operation_id ORDER BY centre_id, operation_id)
    INTO centre_ids, operation_ids FROM taken;
    IF centre_ids IS NOT NULL THEN
        logged := report_refresh_operations(centre_ids, operation_ids);
        PERFORM report_maybe_compact(logged);
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER report_dirty_flush AFTER INSERT ON report_flush_pending
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION report_flush_dirty();

-- Statement triggers on the base tables: note which operations a statement touched.
CREATE FUNCTION report_mark_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_flush_pending DEFAULT VALUES ON CONFLICT DO NOTHING;
    IF TG_TABLE_NAME = 'patients' THEN
        INSERT INTO report_dirty (centre_id, operation_id)
        SELECT DISTINCT o.centre_id, o.id
        FROM new_rows n
        JOIN old_rows b ON b.centre_id = n.centre_id AND b.id = n.id
        JOIN operations o ON o.centre_id = n.centre_id AND o.patient_id = n.id
        WHERE n.consent IS DISTINCT FROM b.consent OR n.diagnosis IS DISTINCT FROM b.diagnosis
        ON CONFLICT DO NOTHING;
    ELSIF TG_TABLE_NAME = 'operations' THEN
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO report_dirty (centre_id, operation_id)
            SELECT DISTINCT centre_id, id FROM new_rows ON CONFLICT DO NOTHING;
        END IF;
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            INSERT INTO report_dirty (centre_id, operation_id)
            SELECT DISTINCT centre_id, id FROM old_rows ON CONFLICT DO NOTHING;
        END IF;
    ELSE
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO report_dirty (centre_id, operation_id)
            SELECT DISTINCT centre_id, operation_id FROM new_rows ON CONFLICT DO NOTHING;
        END IF;
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            INSERT INTO report_dirty (centre_id, operation_id)
            SELECT DISTINCT centre_id, operation_id FROM old_rows ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END $$;

{rebuild_sql}

CREATE FUNCTION report_rebuild_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM report_rebuild();
    RETURN NULL;
END $$;
""")
    for table in ("patients", *SOURCES):
        events = [("update", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows")]
        if table != "patients":  # a new patient has no operations; a deleted one cascades
            events += [("insert", "REFERENCING NEW TABLE AS new_rows"),
                       ("delete", "REFERENCING OLD TABLE AS old_rows")]
        for event, referencing in events:
            op.execute(f"""
CREATE TRIGGER report_{event}_{table} AFTER {event.upper()} ON {table}
    {referencing} FOR EACH STATEMENT EXECUTE FUNCTION report_mark_dirty();""")
        op.execute(f"""
CREATE TRIGGER report_truncate_{table} AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION report_rebuild_after_truncate();""")


def downgrade() -> None:
    for table in ("patients", *SOURCES):
        for event in ("update", "insert", "delete", "truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS report_{event}_{table} ON {table}")
    op.execute("""
DROP FUNCTION report_rebuild_after_truncate();
DROP FUNCTION report_rebuild();
DROP FUNCTION report_mark_dirty();
DROP TABLE report_flush_pending;
DROP TABLE report_dirty;
DROP FUNCTION report_flush_dirty();
DROP FUNCTION report_refresh_operations(bigint[], bigint[]);
DROP FUNCTION report_maybe_compact(bigint);
DROP FUNCTION report_compact();
DROP TABLE report_histograms;
DROP TABLE report_tallies;
DROP TABLE report_log;
DROP FUNCTION report_metric_values(integer, integer, numeric, numeric, smallint, smallint);
DROP FUNCTION report_dimension_values(bigint, text, text, text[], text, text, boolean, smallint, smallint);
DROP VIEW report_operation_measures;
DROP VIEW report_operation_facts;
DROP FUNCTION report_fusion_status(bigint, bigint, integer);
DROP FUNCTION report_fusion_decision(bigint, bigint, integer);
DROP TABLE report_operations;
""")
