"""Report queries: additive measures and value histograms per group, from the aggregates of
migration 0002.

Two ways to the same figures:
- fast: one dimension (or none), no filter but at most one centre -> `report_tallies` and
  `report_histograms` plus the pending rows of `report_log` (not yet folded by compaction);
  cost proportional to the number of groups and distinct values, not to the operations;
- scan: anything else (two dimensions, filters, a non-default fusion threshold) -> a GROUP BY
  over `report_operation_measures` (one compact row per operation, no joins).

Both are exact as of the report's snapshot (one REPEATABLE READ transaction, registry.replica)
whether or not the maintainer (registry.reports.maintainer, migration 0011) has reached the
latest writes: an operation with changes still queued in `report_changes` counts by its live
facts (`report_live_measures`, computed from the base tables), never by its stored row. Both
paths add, for those operations, minus the stored measures and plus the live ones (record keys
included, so cell keys stay the sums of the counted records' keys): the fast path to the
tallies, the scan to its GROUP BY over the stored rows. With nothing queued (the maintainer has
caught up) the queries are the plain ones.

Dimensions and filters come from the whitelists below and are composed with psycopg.sql;
values are always bound parameters. A group value of '' means "not recorded".
"""

from dataclasses import dataclass, field
from datetime import timedelta

from psycopg import sql
from psycopg.rows import tuple_row

# Additive measures: the columns of report_tallies and of report_operation_measures (0002, 0010, 0012).
INTRAOP_EVENT_TYPES = (
    "instrument_breakage", "iatrogenic_fracture", "dural_tear", "excessive_bleeding",
    "neuromonitoring_change", "nerve_injury", "vascular_injury", "implant_malposition",
    "wrong_level", "other",
)
# Who reported an event or complication (vocabulary.REPORTED_BY), and not_recorded (migration 0012).
REPORTERS = ("surgeon", "other_clinician", "patient_reported", "chart_review", "other_registry", "claims",
             "not_recorded")
MEASURES = (
    "operations", "intraop_event", *(f"ev_{t}" for t in INTRAOP_EVENT_TYPES),
    "postop_complication", "major_complication",
    "blood_loss_n", "blood_loss_sum", "duration_n", "duration_sum",
    "fusion_operations", "fusion_assessed", "fusion_fused",
    "fusion_followed", "fusion_indeterminate", "fusion_not_assessed",   # migration 0010
    "followed", "revision", "instrumented_followed", "implant_failure",
    "joa_pre_n", "joa_pre_sum", "joa_post_n", "joa_post_sum", "recovery_n",
    "mjoa_pre_n", "mjoa_pre_sum", "mjoa_post_n", "mjoa_post_sum",
    "indication_recorded", "approach_recorded", "spinal", "levels_recorded",
    "cervical", "joa_recorded", "followed_12m",
    "intraop_recorded", "postop_recorded", "transfusion_recorded", "revision_followed",   # migration 0012
    *(f"ev_by_{source}" for source in REPORTERS), *(f"pc_by_{source}" for source in REPORTERS),
)
# Cell keys (migration 0007): for each count measure x, key_x sums the record keys of the
# operations x counts; key_x mod 256 is the cell key that perturbs the count for analysts.
COUNT_MEASURES = tuple(m for m in MEASURES if not m.endswith("_sum"))
KEY_MEASURES = tuple(f"key_{m}" for m in COUNT_MEASURES)
METRICS = ("blood_loss", "duration", "joa_pre", "joa_post", "joa_pair", "mjoa_pre", "mjoa_post")

# What the fast path reads of a pending row besides its measures: the arguments of
# report_dimension_values and report_metric_values.
PENDING_COLUMNS = ("centre_id", "approach", "region", "procedures", "diagnosis", "indication", "instrumented",
                   "levels", "year", "blood_loss_ml", "duration_min", "preop_joa", "latest_joa", "preop_mjoa",
                   "latest_mjoa")

# Operations with changes the maintainer has not refreshed yet (in the report's snapshot).
QUEUED = sql.SQL("SELECT centre_id, operation_id FROM report_changes")

# What a scan adds to its GROUP BY over the stored measures for the operations with queued
# changes: each one's stored row taken out (sign -1) and its live row put in (+1). Summed with
# the sign, it turns the stored operations' sums into the current ones, whatever the measure
# expression, join or condition (each row of the correction meets them as its row of the plain
# scan does), while the plain scan over every operation stays as it is (parallel, no anti-join).
CORRECTION = sql.SQL("""(
        SELECT -1 AS sign, s.* FROM report_operation_measures s WHERE (s.centre_id, s.operation_id) IN ({queued})
        UNION ALL
        SELECT 1, l.* FROM report_live_measures l WHERE (l.centre_id, l.operation_id) IN ({queued}))""").format(
    queued=QUEUED)

# Group-by dimensions: name -> SQL over report_operation_measures `m` (procedure: `proc`).
DIMENSIONS = {
    "approach": sql.SQL("coalesce(m.approach, '')"),
    "region": sql.SQL("m.region"),
    "procedure": sql.SQL("proc.code"),
    "diagnosis": sql.SQL("m.diagnosis"),
    "indication": sql.SQL("coalesce(m.indication, '')"),
    "instrumented": sql.SQL("m.instrumented::text"),
    "levels": sql.SQL("coalesce(m.levels::text, '')"),
    "year": sql.SQL("m.year::text"),
    "centre": sql.SQL("m.centre_id::text"),
}
UNNEST_PROCEDURES = sql.SQL("CROSS JOIN LATERAL unnest(m.procedures) AS proc (code)")

# Filters: name -> condition over `m`, bound to the parameter of the same name.
FILTERS = {
    "approach": sql.SQL("m.approach = ANY(%(approach)s)"),
    "region": sql.SQL("m.region = ANY(%(region)s)"),
    "procedure": sql.SQL("m.procedures && %(procedure)s::text[]"),
    "diagnosis": sql.SQL("m.diagnosis = ANY(%(diagnosis)s)"),
    "indication": sql.SQL("m.indication = ANY(%(indication)s)"),
    "instrumented": sql.SQL("m.instrumented = %(instrumented)s"),
    "levels": sql.SQL("m.levels = ANY(%(levels)s::smallint[])"),
    "year": sql.SQL("m.year = ANY(%(year)s::smallint[])"),
    "centre_ids": sql.SQL("m.centre_id = ANY(%(centre_ids)s::bigint[])"),
    "date_from": sql.SQL("m.operation_date >= %(date_from)s"),
    "date_to": sql.SQL("m.operation_date <= %(date_to)s"),
}

# Fusion at a threshold other than the stored 12 months: recomputed from the follow-ups, for
# fusion operations only (report_fusion_decision is inlined into the scan's plan; OFFSET 0
# keeps the subquery whole, so its WHERE skips the look-up for other operations).
FUSION_AT_JOIN = sql.SQL("""LEFT JOIN LATERAL (
        SELECT d.status FROM report_fusion_decision(m.centre_id, m.operation_id, %(min_months)s) d
        WHERE 'fusion' = ANY(m.procedures) OFFSET 0) fusion_at ON true""")
FUSION_AT = {
    "fusion_assessed": sql.SQL("(fusion_at.status IS NOT NULL)::int"),
    "fusion_fused": sql.SQL("(fusion_at.status IS NOT DISTINCT FROM 'fused')::int"),
    "key_fusion_assessed": sql.SQL("m.record_key * (fusion_at.status IS NOT NULL)::int"),
    "key_fusion_fused": sql.SQL("m.record_key * (fusion_at.status IS NOT DISTINCT FROM 'fused')::int"),
}
STORED_FUSION_MONTHS = 12


@dataclass
class Definition:
    """What a report definition other than the stored one adds to a scan (registry.reports.definitions):
    LATERAL joins over `m`, count measures computed per operation as SQL 0/1 expressions (new
    ones, or replacing a stored one of the same name), histogram values replacing the stored
    ones ({metric: (x, y)}), conditions on the operations counted, and their bound parameters.
    The record-key sum of every count measure it computes is summed with it (`key_<name>`).

    `before` ({name: stored measure}) counts a stored measure over the operations on or before
    `cutoff` only. It needs no scan of its own: the fast path takes the stored tallies and
    subtracts the operations after the cutoff (a scan of the recent operations only)."""

    joins: list = field(default_factory=list)
    measures: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    where: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    before: dict = field(default_factory=dict)
    cutoff: object = None
    # histogram values computed in one pass ({metric: (x, y)}, each operation expanded into a
    # row per metric): for many metrics over a costly join, where a scan per metric would
    # repeat the join (the scores report's outcomes)
    metric_rows: dict = field(default_factory=dict)

    def __bool__(self):
        """True when the fast path cannot serve it (`before` alone it can)."""
        return bool(self.joins or self.measures or self.metrics or self.where or self.metric_rows)


@dataclass
class Cell:
    """The sums of the measures of one group, and its value histograms {metric: [(x, y, n)]}."""

    measures: dict
    histograms: dict = field(default_factory=dict)


def fetch_cells(conn, dims: list[str], filters: dict, measures: list[str], metrics: list[str],
                min_months: int = STORED_FUSION_MONTHS, definition: Definition | None = None) -> dict:
    """Cells of every grouping set the report needs.

    Returns {grouping set: {values: Cell}}: for group_by (a, b) the sets (a, b), (a,), (b,) and
    (); for (a,) the sets (a,) and (); for none, (). `filters` holds only the filters given
    (centre_ids for a centre scope). Withdrawn-consent patients are never counted. Each cell
    also holds key_x, the record-key sum, of each count measure x asked for. A `definition`
    (other windows, time points, units) is computed by the scan.
    """
    definition = Definition() if definition is None else definition
    measures = [*measures, *(f"key_{m}" for m in measures
                             if m in COUNT_MEASURES or m in definition.measures or m in definition.before)]
    sets = _grouping_sets(dims)
    # most of the time the maintainer has caught up: the plain forms then (no correction to plan)
    queued = conn.cursor(row_factory=tuple_row).execute("SELECT EXISTS (SELECT FROM report_changes)").fetchone()[0]
    if _fast_path_applies(dims, filters, measures, min_months, definition):
        scope = filters["centre_ids"][0] if "centre_ids" in filters else 0
        bases = sorted({definition.before[m] for m in measures if m in definition.before})
        stored = [m for m in measures if m not in definition.before
                  and not (m.startswith("key_") and m[4:] in definition.before)]
        stored += [m for base in bases for m in (base, f"key_{base}") if m not in stored]
        result = _fetch_from_tallies(conn, dims, scope, stored, metrics, queued)
        if bases:
            _count_before_cutoff(conn, dims, filters, definition, bases, result, queued)
        return result
    result = {grouping: {} for grouping in sets}
    # An operation counts in each of its procedures' groups, so sets with and without the
    # procedure dimension are summed by separate scans (the unnest would repeat the others).
    for with_procedure in (True, False):
        part = [g for g in sets if ("procedure" in g) == with_procedure]
        if part:
            _scan(conn, part, filters, measures, metrics, min_months, with_procedure, result, definition, queued)
    return result


def _count_before_cutoff(conn, dims, filters, definition, bases, result, queued) -> None:
    """The `before` measures of the cells of `result` (read from the tallies): each stored
    count minus the same count over the operations after the cutoff, record-key sums alike."""
    recent_filters = {**filters, "date_from": definition.cutoff + timedelta(days=1)}
    recent = {grouping: {} for grouping in result}
    for with_procedure in (True, False):
        part = [g for g in result if ("procedure" in g) == with_procedure]
        if part:
            _scan(conn, part, recent_filters, ["operations", *bases, *(f"key_{b}" for b in bases)], [],
                  STORED_FUSION_MONTHS, with_procedure, recent, Definition(), queued)
    for grouping, cells in result.items():
        for key, cell in cells.items():
            later = recent[grouping].get(key)
            for name, base in definition.before.items():
                for count, stored in ((name, base), (f"key_{name}", f"key_{base}")):
                    cell.measures[count] = cell.measures[stored] - (later.measures[stored] if later else 0)


def uses_fast_path(dims, filters, measures, min_months=STORED_FUSION_MONTHS, definition=None) -> bool:
    return _fast_path_applies(dims, filters, measures, min_months, definition)


def _fast_path_applies(dims, filters, measures, min_months, definition=None) -> bool:
    if definition:
        return False
    other_filters = set(filters) - {"centre_ids"}
    one_centre = "centre_ids" not in filters or len(filters["centre_ids"]) == 1
    fusion_default = min_months == STORED_FUSION_MONTHS or not set(FUSION_AT) & set(measures)
    return len(dims) <= 1 and not other_filters and one_centre and fusion_default


def _grouping_sets(dims: list[str]) -> list[tuple]:
    if len(dims) == 2:
        return [tuple(dims), (dims[0],), (dims[1],), ()]
    if len(dims) == 1:
        return [tuple(dims), ()]
    return [()]


def _to_number(value):
    """Sums arrive as Decimal; counts become int, JOA sums stay Decimal."""
    if value is None:
        return 0
    return int(value) if value == int(value) else value


def _pending(measures, queued: bool) -> sql.Composable:
    """The signed rows not in the tallies yet, as of the snapshot, in `scope` (0: all centres):
    the log, and (when anything is `queued`) for each operation with queued changes its stored
    measures taken out (-1) and its live ones put in (+1). Only counted operations reach the
    tallies, so only those count."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in (*PENDING_COLUMNS, *measures))
    if not queued:
        return sql.SQL("(SELECT sign, {columns} FROM report_log WHERE %(scope)s = 0 OR centre_id = %(scope)s)"
                       ).format(columns=columns)
    return sql.SQL("""(
            SELECT sign, {columns} FROM report_log WHERE %(scope)s = 0 OR centre_id = %(scope)s
            UNION ALL
            SELECT -1, {columns} FROM report_operation_measures
            WHERE counted AND (centre_id, operation_id) IN ({queued} WHERE %(scope)s = 0 OR centre_id = %(scope)s)
            UNION ALL
            SELECT 1, {columns} FROM report_live_measures
            WHERE counted AND (centre_id, operation_id) IN ({queued} WHERE %(scope)s = 0 OR centre_id = %(scope)s)
        )""").format(columns=columns, queued=QUEUED)


def _fetch_from_tallies(conn, dims, scope, measures, metrics, queued) -> dict:
    wanted = ["all", *dims]
    sums = sql.SQL(", ").join(sql.SQL("sum({0}) AS {0}").format(sql.Identifier(m)) for m in measures)
    plain = sql.SQL(", ").join(sql.Identifier(m) for m in measures)
    signed = sql.SQL(", ").join(sql.SQL("l.sign * l.{0}").format(sql.Identifier(m)) for m in measures)
    query = sql.SQL("""
        SELECT dim, value, {sums} FROM (
            SELECT dim, value, {plain} FROM report_tallies
            WHERE centre_id = %(scope)s AND dim = ANY(%(dims)s)
            UNION ALL
            SELECT d.dim, d.value, {signed} FROM {pending} l
            CROSS JOIN LATERAL report_dimension_values(l.centre_id, l.approach, l.region, l.procedures,
                l.diagnosis, l.indication, l.instrumented, l.levels, l.year) d
            WHERE d.dim = ANY(%(dims)s)
        ) cells
        GROUP BY dim, value
        HAVING sum(operations) > 0""").format(sums=sums, plain=plain, signed=signed, pending=_pending(measures, queued))
    params = {"scope": scope, "dims": wanted}
    result = {grouping: {} for grouping in _grouping_sets(dims)}
    for row in conn.execute(query, params):
        grouping, key = ((), ()) if row["dim"] == "all" else ((row["dim"],), (row["value"],))
        result[grouping][key] = Cell({m: _to_number(row[m]) for m in measures})
    if metrics:
        rows = conn.cursor(row_factory=tuple_row).execute(sql.SQL("""
            SELECT dim, value, metric, x, y, sum(n)::bigint AS n FROM (
                SELECT dim, value, metric, x, y, n FROM report_histograms
                WHERE centre_id = %(scope)s AND dim = ANY(%(dims)s) AND metric = ANY(%(metrics)s)
                UNION ALL
                SELECT d.dim, d.value, h.metric, h.x, h.y, l.sign FROM {pending} l
                CROSS JOIN LATERAL report_dimension_values(l.centre_id, l.approach, l.region, l.procedures,
                    l.diagnosis, l.indication, l.instrumented, l.levels, l.year) d
                CROSS JOIN LATERAL report_metric_values(l.blood_loss_ml, l.duration_min, l.preop_joa,
                    l.latest_joa, l.preop_mjoa, l.latest_mjoa) h
                WHERE d.dim = ANY(%(dims)s) AND h.metric = ANY(%(metrics)s)
            ) counts
            GROUP BY dim, value, metric, x, y
            HAVING sum(n) <> 0""").format(pending=_pending([], queued)), {**params, "metrics": list(metrics)})
        for dim, value, metric, x, y, n in rows:  # thousands of rows: tuples, not dicts
            grouping, key = ((), ()) if dim == "all" else ((dim,), (value,))
            cell = result[grouping].get(key)
            if cell is not None:
                cell.histograms.setdefault(metric, []).append((x, y, n))
    return result


def _scan(conn, sets, filters, measures, metrics, min_months, with_procedure, result, definition, queued) -> None:
    """One plain GROUP BY at the finest of `sets` (PostgreSQL runs it in parallel), plus the
    same GROUP BY over the CORRECTION when changes are queued; the coarser sets are summed from
    it here, which is exact because the other dimensions partition."""
    measures = list(dict.fromkeys(measures))  # a measure asked twice is summed once
    finest = max(sets, key=len)
    columns = [DIMENSIONS[d] for d in finest]
    where = sql.SQL(" AND ").join([sql.SQL("m.counted"), *(FILTERS[name] for name in filters), *definition.where])
    join = sql.SQL(" ").join([UNNEST_PROCEDURES if with_procedure else sql.SQL(""), *definition.joins])
    fusion_at = min_months != STORED_FUSION_MONTHS and bool(set(FUSION_AT) & set(measures))
    select_dims = sql.SQL("").join(sql.SQL("{} AS {}, ").format(c, sql.Identifier(f"g_{d}"))
                                   for c, d in zip(columns, finest))
    group_by = sql.SQL(", ").join(sql.Identifier(f"g_{d}") for d in finest) if finest else None
    sources = [(sql.SQL("report_operation_measures"), False)] + ([(CORRECTION, True)] if queued else [])

    def measure(name, signed):
        keyed = name.startswith("key_") and name[4:] in definition.before
        if name in definition.before or keyed:
            stored = f"key_{definition.before[name[4:]]}" if keyed else definition.before[name]
            expression = sql.SQL("m.{} * (m.operation_date <= %(before_cutoff)s)::int").format(sql.Identifier(stored))
        elif name in definition.measures:
            expression = definition.measures[name]
        elif name.startswith("key_") and name[4:] in definition.measures:
            expression = sql.SQL("m.record_key * ({})").format(definition.measures[name[4:]])
        elif name in FUSION_AT and fusion_at:
            expression = FUSION_AT[name]
        else:
            expression = sql.SQL("m.{}").format(sql.Identifier(name))
        if signed:
            expression = sql.SQL("m.sign * ({})").format(expression)
        return sql.SQL("sum({}) AS {}").format(expression, sql.Identifier(name))

    params = {**filters, "min_months": min_months, "before_cutoff": definition.cutoff, **definition.params}
    finest_sums = {}
    for source, signed in sources:
        query = sql.SQL("""
            SELECT {select_dims}{measures}
            FROM {source} m {join}
            WHERE {where}
            {group_by}""").format(
            select_dims=select_dims, source=source,
            measures=sql.SQL(", ").join(measure(name, signed) for name in measures),
            join=sql.SQL(" ").join([join, FUSION_AT_JOIN]) if fusion_at else join, where=where,
            group_by=sql.SQL("GROUP BY {}").format(group_by) if group_by else sql.SQL(""))
        for row in conn.execute(query, params):
            if row["operations"] is None:  # no row at all (a sum without GROUP BY)
                continue
            key = tuple(row[f"g_{d}"] for d in finest)
            sums = finest_sums.setdefault(key, dict.fromkeys(measures, 0))
            for name in measures:
                sums[name] += _to_number(row[name])
    finest_cells = {key: sums for key, sums in finest_sums.items() if sums["operations"]}
    for grouping in sets:
        positions = [finest.index(d) for d in grouping]
        cells = result[grouping]
        for key, sums in finest_cells.items():
            coarse = tuple(key[i] for i in positions)
            cell = cells.get(coarse)
            if cell is None:
                cells[coarse] = Cell(dict(sums))
            else:
                for name, value in sums.items():
                    cell.measures[name] += value
    if not metrics:
        return
    counts = {grouping: {} for grouping in sets}
    one_pass = [name for name in metrics if name in definition.metric_rows]
    per_metric = [name for name in metrics if name not in definition.metric_rows]
    for source, signed in sources:
        n = sql.SQL("sum(m.sign)") if signed else sql.SQL("count(*)")
        # one grouped scan per metric: cheaper than expanding every operation into metric rows
        parts = [sql.SQL("""
            SELECT {select_dims}{metric} AS metric, {x} AS x, {y} AS y, {n} AS n
            FROM {source} m {join}
            WHERE {where} AND {x} IS NOT NULL
            GROUP BY {group_by}x, y""").format(
            select_dims=select_dims, source=source, metric=sql.Literal(name),
            x=(definition.metrics.get(name) or METRIC_VALUES[name])[0],
            y=(definition.metrics.get(name) or METRIC_VALUES[name])[1],
            n=n, join=join, where=where, group_by=sql.SQL("{}, ").format(group_by) if group_by else sql.SQL(""))
            for name in per_metric]
        if one_pass:
            rows = sql.SQL("unnest(ARRAY[{}]::text[], ARRAY[{}]::float8[], ARRAY[{}]::float8[])").format(
                sql.SQL(", ").join(sql.Literal(name) for name in one_pass),
                sql.SQL(", ").join(definition.metric_rows[name][0] for name in one_pass),
                sql.SQL(", ").join(definition.metric_rows[name][1] for name in one_pass))
            # only the operations with a value reach the LATERAL rows (each row there costs
            # about a microsecond: most of the pass when most operations have none)
            any_value = sql.SQL(" OR ").join(sql.SQL("{} IS NOT NULL").format(definition.metric_rows[name][0])
                                             for name in one_pass)
            parts.append(sql.SQL("""
            SELECT {select_dims}mv.metric, mv.x, mv.y, {n} AS n
            FROM {source} m {join} CROSS JOIN LATERAL {rows} mv (metric, x, y)
            WHERE {where} AND ({any_value}) AND mv.x IS NOT NULL
            GROUP BY {group_by}mv.metric, mv.x, mv.y""").format(
                select_dims=select_dims, source=source, n=n, join=join, rows=rows, where=where, any_value=any_value,
                group_by=sql.SQL("{}, ").format(group_by) if group_by else sql.SQL("")))
        query = sql.SQL(" UNION ALL ").join(parts)
        for row in conn.execute(query, params):
            key = tuple(row[f"g_{d}"] for d in finest)
            for grouping in sets:
                coarse = tuple(key[finest.index(d)] for d in grouping)
                bucket = counts[grouping].setdefault(coarse, {})
                value = (row["metric"], row["x"], row["y"])
                bucket[value] = bucket.get(value, 0) + int(row["n"])
    for grouping, by_key in counts.items():
        for key, bucket in by_key.items():
            cell = result[grouping].get(key)
            if cell is not None:
                for (metric, x, y), n in bucket.items():
                    if n:
                        cell.histograms.setdefault(metric, []).append((x, y, n))


# What each metric contributes to the histograms, as (x, y) over `m` (report_metric_values
# is the same for the stored histograms).
METRIC_VALUES = {  # float8 hashes faster than numeric and holds these values exactly
    "blood_loss": (sql.SQL("m.blood_loss_ml::float8"), sql.SQL("0::float8")),
    "duration": (sql.SQL("m.duration_min::float8"), sql.SQL("0::float8")),
    "joa_pre": (sql.SQL("m.preop_joa::float8"), sql.SQL("0::float8")),
    "joa_post": (sql.SQL("m.latest_joa::float8"), sql.SQL("0::float8")),
    "joa_pair": (sql.SQL("CASE WHEN m.recovery_n = 1 THEN m.preop_joa::float8 END"), sql.SQL("m.latest_joa::float8")),
    "mjoa_pre": (sql.SQL("m.preop_mjoa::float8"), sql.SQL("0::float8")),
    "mjoa_post": (sql.SQL("m.latest_mjoa::float8"), sql.SQL("0::float8")),
}


def centre_codes(conn, centre_ids) -> dict:
    """{centre id: code} for labelling the centre dimension."""
    rows = conn.execute("SELECT id, code FROM centres WHERE id = ANY(%s)", (list(centre_ids),))
    return {row["id"]: row["code"] for row in rows}


def centre_ids_by_code(conn, codes) -> dict:
    rows = conn.execute("SELECT id, code FROM centres WHERE code = ANY(%s)", (list(codes),))
    return {row["code"]: row["id"] for row in rows}
