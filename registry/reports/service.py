"""Build a report: fetch the cells, turn sums into proportions and statistics, and for
cross-centre readers protect what could identify a few patients.

Who sees what:
- a submitter sees its own centre only (every query is scoped to it), exact and unsuppressed;
  in the centres (funnel) report it gets its own row, and the pooled rate and control limits
  only when at least 3 other centres, each with at least `threshold` operations in the
  denominator, make up the pool, the pooled rate rounded to 0.1 % and never its counts;
- cross-centre readers (analysts, operators) see all centres through cell-key perturbation
  (`registry.reports.suppression`): every count is published perturbed, rates, intervals,
  funnel limits and means are computed from the published counts, and the primary rule
  withholds a figure whose published count (or its row's operations) is below the threshold.
  The same operations get the same published count in every report ("one figure, one
  decision"): a count that is a numerator here and a denominator there is one number.
"""

from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from fractions import Fraction

from registry.auth import SUBMITTER, Principal
from registry.problems import Problem, InvalidInput, field_error
from registry.reports import definitions, mcid, scores, stats, store, suppression
from registry.reports.definitions import Choices

FUNNEL_MEASURES = {
    # name: (numerator measure, denominator measure); pseudarthrosis is assessed - fused. A rate
    # is over the operations where its item was recorded (events, complications, revision).
    "intraop_event": ("intraop_event", "intraop_recorded"),
    "instrument_breakage": ("ev_instrument_breakage", "intraop_recorded"),
    "dural_tear": ("ev_dural_tear", "intraop_recorded"),
    "iatrogenic_fracture": ("ev_iatrogenic_fracture", "intraop_recorded"),
    "postop_complication": ("postop_complication", "postop_recorded"),
    "major_complication": ("major_complication", "postop_recorded"),
    "pseudarthrosis": ("fusion_not_fused", "fusion_assessed"),
    "implant_failure": ("implant_failure", "instrumented_followed"),
    "revision": ("revision", "revision_followed"),
}
# Counts derived from two stored ones, each keyed on its own operations: name -> (whole, part),
# the count being whole - part (pseudarthrosis: assessed and not fused; not recorded: the
# operations whose item was not recorded).
DERIVED_COUNTS = {
    "fusion_not_fused": ("fusion_assessed", "fusion_fused"),
    "intraop_not_recorded": ("operations", "intraop_recorded"),
    "postop_not_recorded": ("operations", "postop_recorded"),
}
SUBMITTER_POOL_MIN_OTHER_CENTRES = 3


@dataclass
class Figure:
    """One figure of a row: a proportion, a summary or a count, and the family it is suppressed with."""

    kind: str           # "proportion" | "summary" | "count"
    family: str         # the measure whose count decides its suppression
    value: object = None
    numerator: str | None = None   # a proportion's numerator measure


@dataclass
class Spec:
    name: str
    measures: list
    metrics: list = field(default_factory=list)


@dataclass
class PublishedCell:
    """A cell's counts as published (perturbed for cross-centre readers), and its histograms."""

    measures: dict
    histograms: dict
    perturbed: bool
    exact: dict = field(default_factory=dict)   # the true counts: the primary rule reads both


def published_cell(cell: store.Cell, perturbing: bool) -> PublishedCell:
    """The counts of a cell as this reader sees them; the DERIVED_COUNTS (pseudarthrosis, items
    not recorded) are added as counts of their own, keyed on their own operations."""
    measures = dict(cell.measures)
    for name, (whole, part) in DERIVED_COUNTS.items():
        if name not in measures and whole in measures and part in measures:
            measures[name] = measures[whole] - measures[part]
            measures[f"key_{name}"] = measures[f"key_{whole}"] - measures[f"key_{part}"]
    counts = {name: value for name, value in measures.items()
              if not name.startswith("key_") and f"key_{name}" in measures}
    exact = counts
    if perturbing:
        counts = {name: suppression.perturb(value, measures[f"key_{name}"]) for name, value in counts.items()}
    return PublishedCell(counts, cell.histograms, perturbing, exact)


def published_cells(cells: dict, perturbing: bool) -> dict:
    return {grouping: {key: published_cell(cell, perturbing) for key, cell in group.items()}
            for grouping, group in cells.items()}


def _measure(cell, name):
    return cell.measures[name]


def _proportion(cell, numerator: str, denominator: str) -> dict:
    """A proportion of two published counts. Perturbed, a numerator can exceed its denominator
    when the two are within a few operations: it is then shown as the denominator (rate 1)."""
    n = _measure(cell, denominator)
    return stats.proportion(min(_measure(cell, numerator), n), n)


def _rate(cell, numerator: str, denominator: str) -> Figure:
    return Figure("proportion", denominator, _proportion(cell, numerator, denominator), numerator)


def _summary(cell, counts: list, n_measure: str) -> dict:
    """n, mean, median and quartiles of a histogram of values.

    Perturbed, n is the published count of the values (`n_measure`), and the mean is that of
    the values with n' - n more values at the median (fewer when negative): the mean agrees
    with the published n, and a difference of two published means no longer isolates the sum
    of the values that tell them apart. A published n of 0 shows nothing, as an empty cell.
    """
    summary = stats.summary_from_counts(counts)
    if not cell.perturbed or summary["n"] == 0:
        return summary
    published_n = _measure(cell, n_measure)
    if published_n == 0:
        return stats.summary_from_counts([])
    shift = published_n - summary["n"]
    mean = (summary["mean"] * summary["n"] + shift * summary["median"]) / published_n
    return {**summary, "n": published_n, "mean": mean}


def _histogram(cell, metric):
    return [(x, n) for x, _, n in cell.histograms.get(metric, [])]


def _recovery_histogram(cell):
    counts = {}
    for pre, post, n in cell.histograms.get("joa_pair", []):
        rate = stats.hirabayashi_recovery(Fraction(pre), Fraction(post))
        counts[rate] = counts.get(rate, 0) + n
    return list(counts.items())


# --- the figures of each report ------------------------------------------------------------

def complications_figures(cell, choices: Choices = Choices()) -> dict:
    # Each rate is over the operations where its item was recorded (not_recorded is not none);
    # how many were not recorded is a figure of its own. Within a window, postoperative figures
    # are over the operations old enough for it.
    postop_base = "postop_eligible" if choices.window else "postop_recorded"
    figures = {
        "operations": Figure("count", "operations", _measure(cell, "operations")),
        "intraop_event": _rate(cell, "intraop_event", "intraop_recorded"),
        "instrument_breakage": _rate(cell, "ev_instrument_breakage", "intraop_recorded"),
        "intraop_events_not_recorded": _rate(cell, "intraop_not_recorded", "operations"),
    }
    for event_type in store.INTRAOP_EVENT_TYPES:
        figures[f"intraop_event_types.{event_type}"] = _rate(cell, f"ev_{event_type}", "intraop_recorded")
    figures["postop_complication"] = _rate(cell, "postop_complication", postop_base)
    figures["major_complication"] = _rate(cell, "major_complication", postop_base)
    figures["postop_complications_not_recorded"] = _rate(cell, "postop_not_recorded",
                                                         "postop_due" if choices.window else "operations")
    if not choices.window:
        # by who reported them: operations with >= 1 event (complication) reported by each source
        for source in store.REPORTERS:
            figures[f"intraop_event_by_reporter.{source}"] = _rate(cell, f"ev_by_{source}", "intraop_recorded")
            figures[f"postop_complication_by_reporter.{source}"] = _rate(cell, f"pc_by_{source}", "postop_recorded")
    if choices.window:
        figures["postop_timing_not_recorded"] = _rate(cell, "postop_untimed", postop_base)
        figures["major_timing_not_recorded"] = _rate(cell, "major_untimed", postop_base)
    figures["blood_loss_ml"] = Figure("summary", "blood_loss_n",
                                      _summary(cell, _histogram(cell, "blood_loss"), "blood_loss_n"))
    figures["duration_min"] = Figure("summary", "duration_n",
                                     _summary(cell, _histogram(cell, "duration"), "duration_n"))
    return figures


def _survival_figures(cell, event: str) -> dict:
    """Kaplan-Meier freedom from `event` (implant, revision) at each time point, each withheld
    with its number at risk; perturbed, the number at risk shown is the published count."""
    observations = [(x, bool(y), n) for x, y, n in cell.histograms.get(f"{event}_km", [])]
    estimates = stats.kaplan_meier(observations, definitions.SURVIVAL_MONTHS)
    figures = {}
    for t, estimate in estimates.items():
        at_risk = f"{event}_at_risk_{t}"
        value = {**estimate, "at_risk": _measure(cell, at_risk)}
        if cell.perturbed:
            # An exact estimate beside a published number at risk gives away the exact number of
            # events (and two such queries the events of one operation): cross-centre readers get
            # the perturbed number at risk only; the estimate is the submitter's, for its own centre.
            value.update(events=None, estimate=None, ci_low=None, ci_high=None)
        figures[f"{event}_survival.{t}"] = Figure("survival", at_risk, value)
    return figures


def fusion_figures(cell, choices: Choices = Choices()) -> dict:
    windowed = choices.failure_window is not None
    survival = {**_survival_figures(cell, "implant"), **_survival_figures(cell, "revision")} if choices.survival else {}
    return {
        "operations": Figure("count", "operations", _measure(cell, "operations")),
        "fusion_operations": Figure("count", "fusion_operations", _measure(cell, "fusion_operations")),
        "fusion": _rate(cell, "fusion_fused", "fusion_assessed"),
        "pseudarthrosis": _rate(cell, "fusion_not_fused", "fusion_assessed"),
        # beside the rate: fusion operations followed to min_months that no follow-up decided
        "indeterminate": _rate(cell, "fusion_indeterminate", "fusion_followed"),
        "not_assessed": _rate(cell, "fusion_not_assessed", "fusion_followed"),
        "implant_failure": _rate(cell, "implant_failure", "implant_known" if windowed else "instrumented_followed"),
        "revision": _rate(cell, "revision", "revision_known" if windowed else "revision_followed"),
        **survival,
    }


def outcomes_figures(cell, choices: Choices = Choices()) -> dict:
    def summary(metric, n_measure):
        return Figure("summary", n_measure, _summary(cell, _histogram(cell, metric), n_measure))

    return {
        "operations": Figure("count", "operations", _measure(cell, "operations")),
        "joa_preop": summary("joa_pre", "joa_pre_n"),
        "joa_latest": summary("joa_post", "joa_post_n"),
        "joa_recovery_rate": Figure("summary", "recovery_n",
                                    _summary(cell, _recovery_histogram(cell), "recovery_n")),
        "mjoa_preop": summary("mjoa_pre", "mjoa_pre_n"),
        "mjoa_latest": summary("mjoa_post", "mjoa_post_n"),
    }


def scores_figures(cell, choices: Choices = Choices()) -> dict:
    """Per outcome (registry.reports.scores): its pairs, the baseline and follow-up values and
    the change of each pair (positive: better), the share of pairs reaching the MCID, the
    baselines left unpaired, and for the JOA its recovery rate."""
    figures = {"operations": Figure("count", "operations", _measure(cell, "operations"))}
    for outcome in scores.OUTCOMES:
        name, pairs = outcome.name, f"{outcome.name}_pairs"
        histogram = cell.histograms.get(f"{name}_pair", [])
        baseline, follow_up, change, recovery = {}, {}, {}, {}
        for x, y, n in histogram:
            baseline[x] = baseline.get(x, 0) + n
            follow_up[y] = follow_up.get(y, 0) + n
            # rounded: 0.663 - 0.6 is 0.063, not 0.06299999999999994
            difference = round(mcid.change(outcome.instrument, outcome.version, x, y), 9)
            change[difference] = change.get(difference, 0) + n
            if outcome.recovery:
                rate = mcid.recovery_rate(outcome.instrument, outcome.version, Fraction(x), Fraction(y))
                if rate is not None:
                    recovery[float(rate)] = recovery.get(float(rate), 0) + n
        prefix = f"scores.{name}."
        figures[prefix + "pairs"] = Figure("count", pairs, _measure(cell, pairs))
        figures[prefix + "unpaired"] = Figure("count", f"{name}_unpaired", _measure(cell, f"{name}_unpaired"))
        for label, counts in (("baseline", baseline), ("follow_up", follow_up), ("change", change)):
            figures[prefix + label] = Figure("summary", pairs, _summary(cell, list(counts.items()), pairs))
        if outcome.mcid:
            figures[prefix + "reaches_mcid"] = _rate(cell, f"{name}_mcid", pairs)
        if outcome.recovery:
            figures[prefix + "recovery_rate"] = Figure(
                "summary", f"{name}_recovery_n", _summary(cell, list(recovery.items()), f"{name}_recovery_n"))
    return figures


def completeness_figures(cell, choices: Choices = Choices()) -> dict:
    return {
        "operations": Figure("count", "operations", _measure(cell, "operations")),
        "indication": _rate(cell, "indication_recorded", "operations"),
        "approach": _rate(cell, "approach_recorded", "operations"),
        "levels": _rate(cell, "levels_recorded", "spinal"),
        "duration_min": _rate(cell, "duration_n", "operations"),
        "blood_loss_ml": _rate(cell, "blood_loss_n", "operations"),
        "preop_joa": _rate(cell, "joa_recorded", "cervical"),
        "intraop_events": _rate(cell, "intraop_recorded", "operations"),
        "postop_complications": _rate(cell, "postop_recorded", "operations"),
        "transfusion": _rate(cell, "transfusion_recorded", "operations"),
        # follow-ups saying whether there was a revision (yes or no), over the operations followed
        "revision_surgery": _rate(cell, "revision_followed", "followed"),
        "follow_up": _rate(cell, "followed", "operations"),
        # over the operations at least 12 months old (definitions.COMPLETENESS_MONTHS)
        "follow_up_12m": _rate(cell, "followed_12m_of_due", "due_12m"),
    }


def funnel_figures(measure: str):
    numerator, denominator = FUNNEL_MEASURES[measure]

    def figures(cell) -> dict:
        return {
            "operations": Figure("count", "operations", _measure(cell, "operations")),
            "measure": _rate(cell, numerator, denominator),
        }
    return figures


SPECS = {
    "complications": (Spec("complications", ["operations", "intraop_event", "intraop_recorded",
                                             *(f"ev_{t}" for t in store.INTRAOP_EVENT_TYPES),
                                             "postop_complication", "major_complication", "postop_recorded",
                                             *(f"ev_by_{source}" for source in store.REPORTERS),
                                             *(f"pc_by_{source}" for source in store.REPORTERS),
                                             "blood_loss_n", "duration_n"],
                           ["blood_loss", "duration"]), complications_figures),
    "fusion": (Spec("fusion", ["operations", "fusion_operations", "fusion_assessed", "fusion_fused",
                               "fusion_followed", "fusion_indeterminate", "fusion_not_assessed",
                               "followed", "revision", "revision_followed", "instrumented_followed",
                               "implant_failure"]),
               fusion_figures),
    "outcomes": (Spec("outcomes", ["operations", "joa_pre_n", "joa_post_n", "recovery_n",
                                   "mjoa_pre_n", "mjoa_post_n"],
                      ["joa_pre", "joa_post", "joa_pair", "mjoa_pre", "mjoa_post"]), outcomes_figures),
    "scores": (Spec("scores", ["operations", *scores.measures()], scores.metrics()), scores_figures),
    "completeness": (Spec("completeness", ["operations", "indication_recorded", "approach_recorded", "spinal",
                                           "levels_recorded", "cervical", "joa_recorded", "duration_n",
                                           "blood_loss_n", "followed", "due_12m", "followed_12m_of_due",
                                           "intraop_recorded", "postop_recorded", "transfusion_recorded",
                                           "revision_followed"]),
                     completeness_figures),
}
# The parameters of the definitions, and the reports that take each (others refuse them).
DEFINITION_PARAMETERS = {
    "unit": {"complications", "fusion", "outcomes", "scores", "completeness"},
    "window": {"complications"},
    "reported_by": {"complications"},
    "major": {"complications"},
    "measure": {"complications", "fusion"},
    "timepoint": {"outcomes", "scores"},
    "assessment": {"fusion"},
    "failure_window": {"fusion"},
}


def measures_of(report: str, choices: Choices) -> list:
    """The count measures a report needs under these definitions."""
    measures = list(SPECS[report][0].measures)
    if report == "complications" and choices.window:
        measures += ["postop_eligible", "postop_untimed", "major_untimed", "postop_due", "postop_not_recorded"]
    if report == "fusion" and choices.failure_window is not None:
        measures += ["implant_known", "revision_known"]
    if report == "fusion" and choices.survival:
        measures += [f"{event}_at_risk_{t}" for event in ("implant", "revision") for t in definitions.SURVIVAL_MONTHS]
    return measures


def metrics_of(report: str, choices: Choices) -> list:
    """The value histograms a report needs under these definitions."""
    metrics = list(SPECS[report][0].metrics)
    if report == "fusion" and choices.survival:
        metrics += ["implant_km", "revision_km"]
    return metrics


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


# --- the primary rule --------------------------------------------------------------------

WITHHELD_PROPORTION = {"numerator": None, "denominator": None, "rate": None, "ci_low": None, "ci_high": None}
WITHHELD_SUMMARY = {"n": None, "mean": None, "median": None, "q1": None, "q3": None}
WITHHELD_SURVIVAL = {"at_risk": None, "events": None, "estimate": None, "ci_low": None, "ci_high": None}


@cache
def base_measures() -> frozenset:
    """The counts some report publishes as a base: a row's operations, a proportion's
    denominator, a summary's n. Where such a count is a numerator (completeness: operations
    with a follow-up, or with a blood loss recorded) it is withheld when small, as it is where
    it is the base: one figure, one decision."""
    probe = PublishedCell(dict.fromkeys([*store.COUNT_MEASURES, *definitions.EXTRA_MEASURES, *DERIVED_COUNTS,
                                         *scores.measures()], 10), {}, False)
    every_choice = [Choices(), Choices(window=30, failure_window=12), Choices(survival=True)]
    figure_sets = [figures_of(probe, choices) for _, figures_of in SPECS.values() for choices in every_choice]
    figure_sets += [funnel_figures(measure)(probe) for measure in FUNNEL_MEASURES]
    return frozenset(figure.family for figures in figure_sets for figure in figures.values())


def enforce_primary(cell, figures: dict, reasons: dict, threshold: int | None) -> dict:
    """The withheld reasons of a row, with the primary rule applied to every figure's family.

    Every row of every report (groups and totals, JSON, CSV) is published through this, so it
    is where the primary rule holds for cross-centre readers (`threshold` set): a row whose
    operations count is below the threshold, or a figure whose own count (a count, or a
    proportion's denominator, or a summary's n) is, is withheld — below it as published or as
    it truly is, so a group of 3 or 4 operations perturbed up to 5 shows nothing either. The
    decision reads only the counts of the operations counted, so it is the same wherever the
    same operations are counted. No grouping, filter or report shape can publish a small cell. Submitters
    (`threshold` None) see their own centre unsuppressed.

    A summary's statistics (mean, median, quartiles) describe its values one by one: a median
    and quartiles of 3 values are those values. They are shown when the published n is at
    least threshold + MAX_NOISE, so that they always describe at least `threshold` values
    (perturbation adds at most MAX_NOISE); below that the n is shown alone. The rule reads
    the published n only, so being withheld tells nothing the n does not.
    """
    if threshold is None:
        return reasons
    effective = dict(reasons)
    bases = base_measures()
    families = {"operations", *(figure.family for figure in figures.values()),
                *(figure.numerator for figure in figures.values() if figure.numerator in bases)}
    def small(name):
        return 0 < _measure(cell, name) < threshold or 0 < cell.exact.get(name, 0) < threshold

    small_row = small("operations")
    for family in families:
        if not effective.get(family) and (small_row or small(family)):
            effective[family] = "primary"
    for figure in figures.values():
        n = _measure(cell, figure.family)
        if figure.kind == "summary" and 0 < n < threshold + suppression.MAX_NOISE:
            effective[("statistics", figure.family)] = "primary"
    return effective


def _render(figures: dict, withheld: dict) -> dict:
    """Nest the figures of a row ("a.b" names go under a), blanking the withheld ones."""
    row = {}
    for name, figure in figures.items():
        reason = withheld.get(figure.family) or (withheld.get(figure.numerator) if figure.numerator else None)
        if figure.kind == "count":
            value = None if reason else figure.value
        elif figure.kind == "proportion":
            value = {**(WITHHELD_PROPORTION if reason else figure.value), "suppressed": reason}
        elif figure.kind == "survival":
            value = {**(WITHHELD_SURVIVAL if reason else figure.value), "suppressed": reason}
        elif reason:
            value = {**WITHHELD_SUMMARY, "suppressed": reason}
        elif withheld.get(("statistics", figure.family)):
            value = {**WITHHELD_SUMMARY, "n": figure.value["n"], "suppressed": withheld[("statistics", figure.family)]}
        else:
            value = {**figure.value, "suppressed": None}
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
    """The report `report` (complications, fusion, outcomes, scores, completeness) for this caller."""
    spec, all_figures_of = SPECS[report]
    _refuse_other_reports_parameters(report, query)
    dims = list(query.get("group_by") or (["centre"] if report == "completeness" else []))
    filters = resolve_filters(conn, query, principal)
    min_months = query.get("min_months", store.STORED_FUSION_MONTHS)
    perturbing = principal.role != SUBMITTER
    choices = definitions.choose(report, query, perturbing, definitions.today_utc())
    definition = definitions.scan_definition(report, choices)
    measures = measures_of(report, choices)
    chosen = _chosen_measures(report, query, all_figures_of, choices)

    def figures_of(cell):
        figures = all_figures_of(cell, choices)
        if chosen is None:
            return figures
        return {name: figure for name, figure in figures.items()
                if name == "operations" or name.split(".")[0] in chosen}

    metrics = metrics_of(report, choices)
    cells = published_cells(store.fetch_cells(conn, dims, filters, measures, metrics, min_months, definition),
                            perturbing)
    disclosure = threshold if perturbing else None
    codes = store.centre_codes(conn, _centre_ids(cells, dims))
    groups = []
    for key in _listed(cells[tuple(dims)], dims):
        cell = cells[tuple(dims)][key]
        row, _ = publish_row({d: _label(d, v, codes) for d, v in zip(dims, key)}, cell, figures_of(cell),
                             {}, disclosure)
        groups.append(row)
    total_cell = cells[()].get(())
    total = None
    if total_cell is not None and _measure(total_cell, "operations") > 0:
        total, _ = publish_row({}, total_cell, figures_of(total_cell), {}, disclosure)
    answer = {
        "report": report,
        "group_by": dims,
        "query": _echo_query(query),
        "definitions": definitions.describe(report, choices, perturbing),
        "filters": _echo_filters(query),
        "scope": principal.centre_code if principal.role == SUBMITTER else "all centres",
        "suppression": {"applied": perturbing, "threshold": threshold},
        "disclosure_control": suppression.description(threshold) if perturbing else None,
        "method": "fast" if store.uses_fast_path(dims, filters, measures, min_months, definition) else "scan",
        "groups": groups,
        "total": total,
    }
    if report == "fusion":
        answer["min_months"] = min_months
    return answer


def _refuse_other_reports_parameters(report: str, query: dict) -> None:
    """A definition parameter given to a report it does not apply to is refused, naming it."""
    errors = [field_error(name, f"Not a parameter of the {report} report (only of: {', '.join(sorted(reports))}).",
                          "query")
              for name, reports in DEFINITION_PARAMETERS.items()
              if query.get(name) not in (None, [], "") and report not in reports
              and not (report == "centres" and name == "measure")]
    if errors:
        raise InvalidInput(errors)


def _chosen_measures(report: str, query: dict, figures_of, choices: Choices) -> set | None:
    """The measures named by `measure=` (None: all), each checked against this report's rows."""
    names = query.get("measure")
    if not names:
        return None
    probe = PublishedCell(dict.fromkeys([*store.COUNT_MEASURES, *definitions.EXTRA_MEASURES, *DERIVED_COUNTS,
                                         *scores.measures()], 10), {}, False)
    known = {name.split(".")[0] for name in figures_of(probe, choices)} - {"operations"}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInput([field_error("measure", f"Not a measure of this {report} report: {', '.join(unknown)} "
                                                   f"(measures: {', '.join(sorted(known))}).", "query")])
    return set(names)


def _listed(group: dict, dims: list) -> list:
    """The keys of the rows to list, in order. A group whose published operations count is 0 is
    not listed, like a group with no operations: perturbation turns some counts of 1 or 2 into
    0, and listing them would tell those apart from true zeros."""
    return sorted((key for key, cell in group.items() if _measure(cell, "operations") > 0),
                  key=lambda k: _sort_key(dims, k))


def build_funnel(conn, query: dict, principal: Principal, threshold: int) -> dict:
    """Each centre's rate of `measure` against the pooled rate, with funnel limits."""
    _refuse_other_reports_parameters("centres", query)
    measure = query.get("measure", "intraop_event")
    numerator, denominator = FUNNEL_MEASURES[measure]
    strata = list(query.get("group_by") or [])
    dims = ["centre", *strata]
    filters = resolve_filters(conn, query, principal)
    submitter = principal.role == SUBMITTER
    if submitter:
        # the pool is every centre's; only the submitter's own row is shown (see module doc)
        filters.pop("centre_ids")
    measures = sorted({"operations", *(m for name in (numerator, denominator)
                                       for m in (DERIVED_COUNTS.get(name) or (name,)))})
    cells = published_cells(store.fetch_cells(conn, dims, filters, measures, []), not submitter)
    figures_of = funnel_figures(measure)
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
            rate = _proportion(cell, numerator, denominator)["rate"]
            return (None if rate is None else round(rate, 3)), None
        # cross-centre readers: the pool's published counts, under the primary rule like a row
        if any(0 < _measure(cell, name) < threshold for name in ("operations", denominator)):
            return None, "primary"
        return _proportion(cell, numerator, denominator)["rate"], None

    groups = []
    for key in _listed(cells[tuple(dims)], dims):
        if submitter and int(key[0]) != principal.centre_id:
            continue
        cell = cells[tuple(dims)][key]
        row, reasons = publish_row({d: _label(d, v, codes) for d, v in zip(dims, key)}, cell, figures_of(cell),
                                   {}, disclosure)
        pooled, pooled_reason = pooled_for(key[1:])
        visible = not (reasons.get("operations") or reasons.get(denominator))
        n = _measure(cell, denominator)
        limits = stats.funnel_limits(pooled, n) if visible and pooled is not None else \
            {k: None for k in ("lower_95", "upper_95", "lower_998", "upper_998")}
        row["pooled_rate"] = pooled
        row["pooled_withheld"] = pooled_reason
        row["limits"] = limits
        row["position"] = stats.funnel_position(row["measure"]["rate"], limits) if visible else None
        groups.append(row)
    total = None
    total_cell = cells[()].get(())
    if not submitter and total_cell is not None and _measure(total_cell, "operations") > 0:
        total, _ = publish_row({}, total_cell, figures_of(total_cell), {}, disclosure)
    return {
        "report": "centres",
        "measure": measure,
        "group_by": dims,
        "filters": _echo_filters(query),
        "scope": principal.centre_code if submitter else "all centres",
        "suppression": {"applied": not submitter, "threshold": threshold},
        "disclosure_control": None if submitter else suppression.description(threshold),
        "method": "fast" if store.uses_fast_path(dims, filters, measures) else "scan",
        "query": _echo_query(query),
        "funnel_method": "exact binomial with interpolation (Spiegelhalter 2005); normal approximation "
                         "when n·p·(1-p) > 2500",
        "groups": groups,
        "total": total,
    }


def _centre_ids(cells, dims):
    if "centre" not in dims:
        return []
    ids = set()
    for grouping, group in cells.items():
        if "centre" in grouping:
            index = grouping.index("centre")
            ids.update(int(key[index]) for key in group)
    return ids


def _echo_query(query: dict) -> dict:
    """Every parameter of the query as understood (defaults included), dates as ISO text."""
    return {name: value.isoformat() if hasattr(value, "isoformat") else value
            for name, value in query.items() if name != "format" and value not in (None, [], "")}


def _echo_filters(query: dict) -> dict:
    echoed = {}
    for name, value in query.items():
        if name in ("group_by", "format", "min_months", "measure", *DEFINITION_PARAMETERS) or value in (None, [], ""):
            continue
        echoed[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return echoed

