"""Report maintenance at a lower cost per write and per bulk load; the figures are unchanged.

- `report_operation_facts` finds an operation's deciding fusion follow-up through the table
  function `report_fusion_decision`, joined LATERAL, which the planner inlines. 0002 called
  the scalar `report_fusion_status`, a SQL function that is not inlined and so is planned
  again in every statement that calls it: 0.6 ms of the 0.8 ms that refreshing one operation
  took at each commit.
- `report_compact()` aggregates the folded log rows per centre once, then sums those cells
  into the all-centres cells (centre_id 0), as `report_rebuild()` does. 0002 aggregated every
  log row twice, once per scope: folding the 100,000 log rows of a bulk load took 13 s.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COMPACT_FUNCTION = """
CREATE OR REPLACE FUNCTION report_compact() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock({lock_id}) THEN
        RETURN 0;
    END IF;
    WITH moved AS (
        DELETE FROM report_log RETURNING *
    ), cells AS (             -- per centre; read twice below, computed once
        SELECT m.centre_id, d.dim, d.value,
            {signed_sums}
        FROM moved m
        CROSS JOIN LATERAL report_dimension_values(m.centre_id, m.approach, m.region, m.procedures,
            m.diagnosis, m.indication, m.instrumented, m.levels, m.year) d
        GROUP BY m.centre_id, d.dim, d.value
    ), tallied AS (
        INSERT INTO report_tallies AS t (centre_id, dim, value, {column_list})
        SELECT * FROM cells
        UNION ALL
        SELECT 0, c.dim, c.value,
            {cell_sums}
        FROM cells c GROUP BY c.dim, c.value
        ON CONFLICT (centre_id, dim, value) DO UPDATE SET
            {add_excluded}
    ), counted AS (           -- per centre, likewise
        SELECT m.centre_id, d.dim, d.value, h.metric, h.x, h.y, sum(m.sign) AS n
        FROM moved m
        CROSS JOIN LATERAL report_dimension_values(m.centre_id, m.approach, m.region, m.procedures,
            m.diagnosis, m.indication, m.instrumented, m.levels, m.year) d
        CROSS JOIN LATERAL report_metric_values(m.blood_loss_ml, m.duration_min, m.preop_joa,
            m.latest_joa, m.preop_mjoa, m.latest_mjoa) h
        GROUP BY m.centre_id, d.dim, d.value, h.metric, h.x, h.y
    ), histogrammed AS (
        INSERT INTO report_histograms AS t (centre_id, dim, value, metric, x, y, n)
        SELECT * FROM counted WHERE n <> 0
        UNION ALL
        SELECT 0, c.dim, c.value, c.metric, c.x, c.y, sum(c.n)
        FROM counted c GROUP BY c.dim, c.value, c.metric, c.x, c.y HAVING sum(c.n) <> 0
        ON CONFLICT (centre_id, dim, metric, value, x, y) DO UPDATE SET n = t.n + excluded.n
    )
    SELECT count(*) INTO folded FROM moved;
    RETURN folded;
END $$;
"""


def _aggregates_0002():
    """0002's module as alembic loaded it (a module name starting with a digit has no import)."""
    return context.script.get_revision("0002").module


def upgrade() -> None:
    aggregates = _aggregates_0002()
    op.execute(aggregates.facts_view(
        "fd.status", "\nLEFT JOIN LATERAL report_fusion_decision(o.centre_id, o.id, 12) fd ON true"))
    names = [name for name, _ in aggregates.MEASURES]
    op.execute(COMPACT_FUNCTION.format(
        lock_id=aggregates.COMPACTION_LOCK_ID,
        signed_sums=",\n            ".join(f"sum(m.sign * m.{n}) AS {n}" for n in names),
        cell_sums=",\n            ".join(f"sum(c.{n})" for n in names),
        column_list=", ".join(names),
        add_excluded=",\n            ".join(f"{n} = t.{n} + excluded.{n}" for n in names)))


def downgrade() -> None:
    aggregates = _aggregates_0002()
    op.execute(aggregates.facts_view())
    op.execute(aggregates.compact_function().replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
