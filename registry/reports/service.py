"""Build a report: fetch the cells, turn sums into proportions and statistics, and for
cross-centre readers withhold what could identify a few patients.

Who sees what:
- a submitter sees its own centre only (every query is scoped to it), unsuppressed; in the
  centres (funnel) report it gets its own row, and the pooled rate and control limits only
  when at least 3 other centres, each with at least `threshold` operations in the
  denominator, make up the pool, the pooled rate rounded to 0.1 % and never its counts;
- analysts and admins see all centres with primary and secondary suppression
  (`registry.reports.suppression`), family by family: a cell's operations count, and each
  figure whose own denominator (e.g. operations with a blood loss recorded) is small.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction

from registry.auth import SUBMITTER, Principal
from registry.problems import Problem, InvalidInput, field_error
from registry.reports import stats, store
from registry.reports.suppression import suppress_one_way, suppress_two_way

FUNNEL_MEASURES = {
    # name: (numerator measure, denominator measure); pseudarthrosis is assessed - fused
    "intraop_event": ("intraop_event", "operations"),
    "instrument_breakage": ("ev_instrument_breakage", "operations"),
    "dural_tear": ("ev_dural_tear", "operations"),
    "iatrogenic_fracture": ("ev_iatrogenic_fracture", "operations"),
    "postop_complication": ("postop_complication", "operations"),
    "major_complication": ("major_complication", "operations"),
    "pseudarthrosis": ("fusion_not_fused", "fusion_assessed"),
    "implant_failure": ("implant_failure", "instrumented_followed"),
    "revision": ("revision", "followed"),
}
SUBMITTER_POOL_MIN_OTHER_CENTRES = 3


@dataclass
class Figure:
    """One figure of a row: a proportion, a summary or a count, and the family it is suppressed with."""

    kind: str           # "proportion" | "summary" | "count"
    family: str         # the measure whose count decides its suppression
    value: object = None


@dataclass
class Spec:
    name: str
    measures: list
    metrics: list = field(default_factory=list)


def _measure(cell, name):
    if name == "fusion_not_fused":
        return cell.measures["fusion_assessed"] - cell.measures["fusion_fused"]
    return cell.measures[name]


def _histogram(cell, metric):
    return [(x, n) for x, _, n in cell.histograms.get(metric, [])]


def _recovery_histogram(cell):
    counts = {}
    for pre, post, n in cell.histograms.get("joa_pair", []):
        rate = stats.hirabayashi_recovery(Fraction(pre), Fraction(post))
        counts[rate] = counts.get(rate, 0) + n
    return list(counts.items())


# --- the figures of each report ------------------------------------------------------------

def complications_figures(cell) -> dict:
    ops = cell.measures["operations"]
    figures = {
        "operations": Figure("count", "operations", ops),
        "intraop_event": Figure("proportion", "operations", stats.proportion(cell.measures["intraop_event"], ops)),
        "instrument_breakage": Figure("proportion", "operations",
                                      stats.proportion(cell.measures["ev_instrument_breakage"], ops)),
    }
    for event_type in store.INTRAOP_EVENT_TYPES:
        figures[f"intraop_event_types.{event_type}"] = Figure(
            "proportion", "operations", stats.proportion(cell.measures[f"ev_{event_type}"], ops))
    figures["postop_complication"] = Figure("proportion", "operations",
                                            stats.proportion(cell.measures["postop_complication"], ops))
    figures["major_complication"] = Figure("proportion", "operations",
                                           stats.proportion(cell.measures["major_complication"], ops))
    figures["blood_loss_ml"] = Figure("summary", "blood_loss_n",
                                      stats.summary_from_counts(_histogram(cell, "blood_loss")))
    figures["duration_min"] = Figure("summary", "duration_n",
                                     stats.summary_from_counts(_histogram(cell, "duration")))
    return figures


def fusion_figures(cell) -> dict:
    m = cell.measures
    return {
        "operations": Figure("count", "operations", m["operations"]),
        "fusion_operations": Figure("count", "operations", m["fusion_operations"]),
        "fusion": Figure("proportion", "fusion_assessed", stats.proportion(m["fusion_fused"], m["fusion_assessed"])),
        "pseudarthrosis": Figure("proportion", "fusion_assessed",
                                 stats.proportion(m["fusion_assessed"] - m["fusion_fused"], m["fusion_assessed"])),
        "implant_failure": Figure("proportion", "instrumented_followed",
                                  stats.proportion(m["implant_failure"], m["instrumented_followed"])),
        "revision": Figure("proportion", "followed", stats.proportion(m["revision"], m["followed"])),
    }


def outcomes_figures(cell) -> dict:
    return {
        "operations": Figure("count", "operations", cell.measures["operations"]),
        "joa_preop": Figure("summary", "joa_pre_n", stats.summary_from_counts(_histogram(cell, "joa_pre"))),
        "joa_latest": Figure("summary", "joa_post_n", stats.summary_from_counts(_histogram(cell, "joa_post"))),
        "joa_recovery_rate": Figure("summary", "recovery_n", stats.summary_from_counts(_recovery_histogram(cell))),
        "mjoa_preop": Figure("summary", "mjoa_pre_n", stats.summary_from_counts(_histogram(cell, "mjoa_pre"))),
        "mjoa_latest": Figure("summary", "mjoa_post_n", stats.summary_from_counts(_histogram(cell, "mjoa_post"))),
    }


def completeness_figures(cell) -> dict:
    m = cell.measures
    ops = m["operations"]
    return {
        "operations": Figure("count", "operations", ops),
        "indication": Figure("proportion", "operations", stats.proportion(m["indication_recorded"], ops)),
        "approach": Figure("proportion", "operations", stats.proportion(m["approach_recorded"], ops)),
        "levels": Figure("proportion", "spinal", stats.proportion(m["levels_recorded"], m["spinal"])),
        "duration_min": Figure("proportion", "operations", stats.proportion(m["duration_n"], ops)),
        "blood_loss_ml": Figure("proportion", "operations", stats.proportion(m["blood_loss_n"], ops)),
        "preop_joa": Figure("proportion", "cervical", stats.proportion(m["joa_recorded"], m["cervical"])),
        "follow_up": Figure("proportion", "operations", stats.proportion(m["followed"], ops)),
        "follow_up_12m": Figure("proportion", "operations", stats.proportion(m["followed_12m"], ops)),
    }


def funnel_figures(measure: str):
    numerator, denominator = FUNNEL_MEASURES[measure]

    def figures(cell) -> dict:
        return {
            "operations": Figure("count", "operations", cell.measures["operations"]),
            "measure": Figure("proportion", denominator,
                              stats.proportion(_measure(cell, numerator), _measure(cell, denominator))),
        }
    return figures


SPECS = {
    "complications": (Spec("complications", ["operations", "intraop_event",
                                             *(f"ev_{t}" for t in store.INTRAOP_EVENT_TYPES),
                                             "postop_complication", "major_complication",
                                             "blood_loss_n", "duration_n"],
                           ["blood_loss", "duration"]), complications_figures),
    "fusion": (Spec("fusion", ["operations", "fusion_operations", "fusion_assessed", "fusion_fused",
                               "followed", "revision", "instrumented_followed", "implant_failure"]),
               fusion_figures),
    "outcomes": (Spec("outcomes", ["operations", "joa_pre_n", "joa_post_n", "recovery_n",
                                   "mjoa_pre_n", "mjoa_post_n"],
                      ["joa_pre", "joa_post", "joa_pair", "mjoa_pre", "mjoa_post"]), outcomes_figures),
    "completeness": (Spec("completeness", ["operations", "indication_recorded", "approach_recorded", "spinal",
                                           "levels_recorded", "cervical", "joa_recorded", "duration_n",
                                           "blood_loss_n", "followed", "followed_12m"]), completeness_figures),
}


# --- scope, filters, labels ------------------------------------------------------------------

def resolve_filters(conn, query: dict, principal: Principal) -> dict:
    """The store filters of a query: only those given, centre codes resolved to ids.

    A submitter's query is always scoped to its own centre; naming another centre is refused.
    """
    filters = {}
    for name in ("approach", "region", "procedure", "diagnosis", "indication", "levels", "year"):
        if query.get(name):
            filters[name] = list(query[name])
    if query.get("instrumented") is not None:
        filters["instrumented"] = query["instrumented"]
    for name in ("date_from", "date_to"):
        if query.get(name) is not None:
            filters[name] = query[name]
    codes = query.get("centre") or []
    if principal.role != SUBMITTER:
        _refuse_differencing_filters(query, codes)
    if principal.role == SUBMITTER:
        if any(code != principal.centre_code for code in codes):
            raise Problem(403, "A centre's token reads its own centre's figures only.", slug="forbidden",
                          errors=[field_error("centre", "Only your own centre.", "query")])
        filters["centre_ids"] = [principal.centre_id]
    elif codes:
        ids = store.centre_ids_by_code(conn, codes)
        unknown = [code for code in codes if code not in ids]
        if unknown:
            raise InvalidInput([field_error("centre", f"No centre with code {', '.join(unknown)}.", "query")])
        filters["centre_ids"] = sorted(set(ids.values()))
    return filters


def _refuse_differencing_filters(query: dict, codes: list) -> None:
    """Filters a cross-centre reader may not use, because two of them differ by a few operations.

    A set of centres minus one of them isolates a small centre, and date ranges a day apart
    isolate the operations of that day: analysts filter by one centre or all, and by whole
    months (date_from on a 1st, date_to on a month's last day).
    """
    errors = []
    if len(set(codes)) > 1:
        errors.append(field_error("centre", "Name one centre, or none for all centres.", "query"))
    date_from, date_to = query.get("date_from"), query.get("date_to")
    if date_from is not None and date_from.day != 1:
        errors.append(field_error("date_from", "Cross-centre reports filter by whole months: "
                                               f"use the 1st of the month ({date_from.replace(day=1)}).", "query"))
    if date_to is not None and (date_to + timedelta(days=1)).day != 1:
        last = (date_to.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        errors.append(field_error("date_to", "Cross-centre reports filter by whole months: "
                                             f"use the last day of the month ({last}).", "query"))
    if errors:
        raise InvalidInput(errors)


def _label(dim: str, value: str, centre_codes: dict):
    if value == "":
        return None
    if dim in ("levels", "year"):
        return int(value)
    if dim == "instrumented":
        return value == "true"
    if dim == "centre":
        return centre_codes.get(int(value), value)
    return value


def _sort_key(dims, key):
    return tuple((value == "", int(value) if d in ("levels", "year", "centre") and value else value)
                 for d, value in zip(dims, key))


# --- suppression ---------------------------------------------------------------------------

def _family_count(cell, family):
    return _measure(cell, "fusion_not_fused") if family == "fusion_not_fused" else cell.measures[family]


def withheld_by_family(cells: dict, dims: list, families: list, threshold: int) -> dict:
    """{family: ({cell key: reason}, total withheld reason or None)} for the main grouping set."""
    main = cells[tuple(dims)]
    total = cells[()].get(())
    result = {}
    base_cells, base_margins, base_total = {}, ({}, {}), None
    for family in ["operations", *[f for f in families if f != "operations"]]:
        def counts(group):
            return {key: _family_count(cell, family) for key, cell in group.items()}

        total_count = _family_count(total, family) if total else 0
        total_reason = base_total or ("primary" if 0 < total_count < threshold else None)
        if len(dims) == 0:
            # Ungrouped, the one group is the total: it is withheld exactly when the total is.
            result[family] = ({(): total_reason} if total_reason else {}, total_reason)
        elif len(dims) == 1:
            withheld = suppress_one_way(counts(main), threshold, forced=base_cells)
            result[family] = (withheld, total_reason)
        else:
            # The full grid: absent combinations are zero cells, so a withheld cell may be empty
            # and the listing does not tell which combinations exist.
            grid = {(a[0], b[0]): 0 for a in cells[(dims[0],)] for b in cells[(dims[1],)]}
            grid.update(counts(main))
            rows = suppress_one_way(counts(cells[(dims[0],)]), threshold,
                                    forced={k[0]: r for k, r in base_margins[0].items()})
            columns = suppress_one_way(counts(cells[(dims[1],)]), threshold,
                                       forced={k[0]: r for k, r in base_margins[1].items()})
            withheld = suppress_two_way(grid, threshold,
                                        row_withheld={k[0]: r for k, r in rows.items()},
                                        column_withheld={k[0]: r for k, r in columns.items()},
                                        total_withheld=total_reason is not None, forced=base_cells)
            result[family] = (withheld, total_reason)
            if family == "operations":
                base_margins = ({(k,): r for k, r in rows.items()}, {(k,): r for k, r in columns.items()})
        if family == "operations":
            base_cells, base_total = dict(result[family][0]), total_reason
    return result


WITHHELD_PROPORTION = {"numerator": None, "denominator": None, "rate": None, "ci_low": None, "ci_high": None}
WITHHELD_SUMMARY = {"n": None, "mean": None, "median": None, "q1": None, "q3": None}


def enforce_primary(cell, figures: dict, reasons: dict, threshold: int | None) -> dict:
    """The withheld reasons of a row, with the primary rule applied to every figure's family.

    Every row of every report (groups and totals, JSON, CSV) is published through this, so it
    is where the primary rule holds for cross-centre readers (`threshold` set) whatever the
    table's suppression decided: a row counting fewer operations than the threshold, or a
    figure whose own denominator is below it, is withheld. No grouping, filter or report shape
    can publish a small cell. Submitters (`threshold` None) see their own centre unsuppressed.
    """
    if threshold is None:
        return reasons
    effective = dict(reasons)
    families = {"operations", *(figure.family for figure in figures.values())}
    small_row = 0 < _family_count(cell, "operations") < threshold
    for family in families:
        if not effective.get(family) and (small_row or 0 < _family_count(cell, family) < threshold):
            effective[family] = "primary"
    return effective


def _render(figures: dict, withheld: dict) -> dict:
    """Nest the figures of a row ("a.b" names go under a), blanking the withheld ones."""
    row = {}
    for name, figure in figures.items():
        reason = withheld.get(figure.family)
        if figure.kind == "count":
            value = None if reason else figure.value
        elif figure.kind == "proportion":
            value = {**(WITHHELD_PROPORTION if reason else figure.value), "suppressed": reason}
        else:
            value = {**(WITHHELD_SUMMARY if reason else figure.value), "suppressed": reason}
        target = row
        *parents, leaf = name.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return row


def publish_row(group: dict, cell, figures: dict, reasons: dict, threshold: int | None) -> tuple[dict, dict]:
    """A published row of a report and the reasons it was published under (see enforce_primary)."""
    reasons = enforce_primary(cell, figures, reasons, threshold)
    return {"group": group, "suppressed": reasons.get("operations"), **_render(figures, reasons)}, reasons


# --- building reports ------------------------------------------------------------------------

def build_report(conn, report: str, query: dict, principal: Principal, threshold: int) -> dict:
    """The report `report` (complications, fusion, outcomes, completeness) for this caller."""
    spec, figures_of = SPECS[report]
    dims = list(query.get("group_by") or (["centre"] if report == "completeness" else []))
    filters = resolve_filters(conn, query, principal)
    min_months = query.get("min_months", store.STORED_FUSION_MONTHS)
    cells = store.fetch_cells(conn, dims, filters, spec.measures, spec.metrics, min_months)
    suppressing = principal.role != SUBMITTER
    families = sorted({figure.family for cell in cells[()].values() for figure in figures_of(cell).values()})
    withheld = withheld_by_family(cells, dims, families, threshold) if suppressing else {}
    disclosure = threshold if suppressing else None
    codes = store.centre_codes(conn, _centre_ids(cells, dims))

    def reasons_for(key):
        return {family: (w.get(key) if key != "total" else total) for family, (w, total) in withheld.items()}

    groups = []
    empty = store.Cell(dict.fromkeys(spec.measures, 0))
    listed = set(cells[tuple(dims)]) | set(withheld.get("operations", ({}, None))[0])
    for key in sorted(listed, key=lambda k: _sort_key(dims, k)):
        cell = cells[tuple(dims)].get(key, empty)
        row, _ = publish_row({d: _label(d, v, codes) for d, v in zip(dims, key)}, cell, figures_of(cell),
                             reasons_for(key), disclosure)
        groups.append(row)
    total_cell = cells[()].get(())
    total = None
    if total_cell is not None:
        total, _ = publish_row({}, total_cell, figures_of(total_cell), reasons_for("total"), disclosure)
    answer = {
        "report": report,
        "group_by": dims,
        "filters": _echo_filters(query),
        "scope": principal.centre_code if principal.role == SUBMITTER else "all centres",
        "suppression": {"applied": suppressing, "threshold": threshold},
        "method": "fast" if store.uses_fast_path(dims, filters, spec.measures, min_months) else "scan",
        "groups": groups,
        "total": total,
    }
    if report == "fusion":
        answer["min_months"] = min_months
    return answer


def build_funnel(conn, query: dict, principal: Principal, threshold: int) -> dict:
    """Each centre's rate of `measure` against the pooled rate, with funnel limits."""
    measure = query.get("measure", "intraop_event")
    numerator, denominator = FUNNEL_MEASURES[measure]
    strata = list(query.get("group_by") or [])
    dims = ["centre", *strata]
    filters = resolve_filters(conn, query, principal)
    if principal.role == SUBMITTER:
        # the pool is every centre's; only the submitter's own row is shown (see module doc)
        filters.pop("centre_ids")
    measures = sorted({"operations", "fusion_assessed", "fusion_fused",
                       *(m for m in (numerator, denominator) if m != "fusion_not_fused")})
    cells = store.fetch_cells(conn, dims, filters, measures, [])
    figures_of = funnel_figures(measure)
    submitter = principal.role == SUBMITTER
    family = denominator
    withheld = {} if submitter else withheld_by_family(cells, dims, ["operations", family], threshold)
    disclosure = None if submitter else threshold
    pools = cells[tuple(strata)] if strata else cells[()]
    codes = store.centre_codes(conn, _centre_ids(cells, dims))

    def pooled_for(stratum_key):
        cell = pools.get(stratum_key)
        if cell is None:
            return None, None
        if submitter:
            others = [c for k, c in cells[tuple(dims)].items()
                      if k[1:] == stratum_key and int(k[0]) != principal.centre_id]
            if len(others) < SUBMITTER_POOL_MIN_OTHER_CENTRES or \
                    any(_measure(c, denominator) < threshold for c in others):
                return None, "fewer than 3 other centres above the threshold"
            rate = stats.proportion(_measure(cell, numerator), _measure(cell, denominator))["rate"]
            return (None if rate is None else round(rate, 3)), None
        if strata:
            reason = _margin_reason(cells, strata, stratum_key, family, threshold)
        else:
            reason = withheld.get(family, ({}, None))[1] or withheld.get("operations", ({}, None))[1]
        if reason:
            return None, reason
        return stats.proportion(_measure(cell, numerator), _measure(cell, denominator))["rate"], None

    groups = []
    empty = store.Cell(dict.fromkeys(measures, 0))
    listed = set(cells[tuple(dims)]) | set(withheld.get("operations", ({}, None))[0])
    for key in sorted(listed, key=lambda k: _sort_key(dims, k)):
        if submitter and int(key[0]) != principal.centre_id:
            continue
        cell = cells[tuple(dims)].get(key, empty)
        row, reasons = publish_row({d: _label(d, v, codes) for d, v in zip(dims, key)}, cell, figures_of(cell),
                                   {f: w.get(key) for f, (w, _) in withheld.items()}, disclosure)
        pooled, pooled_reason = pooled_for(key[1:])
        visible = not (reasons.get("operations") or reasons.get(family))
        n = _measure(cell, denominator)
        limits = stats.funnel_limits(pooled, n) if visible and pooled is not None else \
            {k: None for k in ("lower_95", "upper_95", "lower_998", "upper_998")}
        row["pooled_rate"] = pooled
        row["pooled_withheld"] = pooled_reason
        row["limits"] = limits
        row["position"] = stats.funnel_position(row["measure"]["rate"], limits) if visible else None
        groups.append(row)
    total = None
    if not submitter and () in cells[()]:
        total_cell = cells[()][()]
        total, _ = publish_row({}, total_cell, figures_of(total_cell),
                               {f: t for f, (_, t) in withheld.items()}, disclosure)
    return {
        "report": "centres",
        "measure": measure,
        "group_by": dims,
        "filters": _echo_filters(query),
        "scope": principal.centre_code if submitter else "all centres",
        "suppression": {"applied": not submitter, "threshold": threshold},
        "method": "fast" if store.uses_fast_path(dims, filters, measures) else "scan",
        "funnel_method": "exact binomial with interpolation (Spiegelhalter 2005); normal approximation "
                         "when n·p·(1-p) > 2500",
        "groups": groups,
        "total": total,
    }


def _margin_reason(cells, strata, stratum_key, family, threshold):
    margins = cells[tuple(strata)]
    ops = suppress_one_way({k: c.measures["operations"] for k, c in margins.items()}, threshold)
    fam = suppress_one_way({k: _family_count(c, family) for k, c in margins.items()}, threshold, forced=ops)
    return fam.get(stratum_key)


def _centre_ids(cells, dims):
    if "centre" not in dims:
        return []
    ids = set()
    for grouping, group in cells.items():
        if "centre" in grouping:
            index = grouping.index("centre")
            ids.update(int(key[index]) for key in group)
    return ids


def _echo_filters(query: dict) -> dict:
    echoed = {}
    for name, value in query.items():
        if name in ("group_by", "format", "min_months", "measure") or value in (None, [], ""):
            continue
        echoed[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return echoed

