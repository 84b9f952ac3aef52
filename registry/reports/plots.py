"""Reports as plots: the report document the JSON answer is built from, drawn as SVG or PNG.

Each plot is a Vega-Lite specification, written as plain dictionaries, and rendered by
vl-convert (Vega compiled into a Rust library: no browser, no Node, no native graphics stack to
install). Plain dictionaries rather than Vega-Altair objects: Altair deep-copies and validates its
objects at every layer and facet, which cost 10 to 40 ms a plot, as much as drawing it.
The plot draws only what the document publishes, so it carries the same scope, perturbation and
withholding as the JSON: a withheld figure is None in the document and is drawn as the word
"withheld", never as a value.

- centres: funnel plot, each centre's rate against its denominator, the pooled rate and the
  95 % and 99.8 % limits as curves (`stats.funnel_limits` over a range of n), centres outside
  the 95 % limits labelled; one panel per stratum when grouped by one;
- complications, fusion: forest (dot) plots, one panel per measure, rate with its Wilson 95 %
  interval as whiskers; a second grouping dimension is the colour (and offset) within a row;
- outcomes: JOA and mJOA before surgery and at latest follow-up, and the JOA recovery rate,
  as boxes from the quartiles with the median marked (the report has no extremes to whisker);
- scores: for each outcome scored, its change from baseline as boxes and (with an MCID) the
  share of pairs reaching it, forest style;
- completeness: heatmap of the share of operations with each field, group by field.

Every mark has a `description` (its label and figures). Vega puts it in the mark's
`aria-label` with role="graphics-symbol", but emits no `<title>` element in SVG (checked with
vl-convert 1.9 / Vega 6: tooltips are a browser-side handler), so `_add_titles` copies each
mark's aria-label into a `<title>` child, which browsers show as a tooltip; the document itself
gets a `<title>` and `<desc>` (the plot's title and caption).
"""

import functools
import json
import math
import os
import re
import tempfile
import threading
from datetime import date
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import vl_convert

from registry import vocabulary
from registry.reports import scores as score_outcomes
from registry.reports import stats

WITHHELD = "withheld"
# the Vega-Lite version vl-convert compiles (the tests validate every specification against it)
VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.4.1.json"
DESCRIPTION = {"field": "description", "type": "nominal"}
WIDTH = 220          # one panel of a forest or box plot
ROW_HEIGHT = 22      # per group on a categorical axis
PNG_SCALE = 1        # CSS pixels: a third of the bytes of 2x; SVG is the sharp one at any size

COMPLICATIONS_MEASURES = {   # the measures a surgeon compares first; the rest are in the JSON/CSV
    "intraop_event": "Intraoperative event",
    "instrument_breakage": "Instrument breakage",
    "postop_complication": "Postoperative complication",
    "major_complication": "Major complication",
}
FUSION_MEASURES = {
    "fusion": "Fusion",
    "pseudarthrosis": "Pseudarthrosis",
    "implant_failure": "Implant failure",
    "revision": "Revision",
}
MEASURE_LABELS = {  # every measure a complications or fusion report can be asked to draw
    **{event: f"{label} (intraoperative)" if event == "other" else label
       for event, label in vocabulary.INTRAOP_EVENT.items()},
    **COMPLICATIONS_MEASURES, **FUSION_MEASURES,
    "blood_loss_ml": "Blood loss (mL)", "duration_min": "Duration (min)",
    "postop_timing_not_recorded": "Postoperative complication, timing not recorded",
    "major_timing_not_recorded": "Major complication, timing not recorded",
    "indeterminate": "Fusion indeterminate", "not_assessed": "Fusion not assessed",
    "intraop_events_not_recorded": "Intraoperative events not recorded",
    "postop_complications_not_recorded": "Postoperative complications not recorded",
}
FUNNEL_TITLES = {
    "intraop_event": "intraoperative event", "instrument_breakage": "instrument breakage",
    "dural_tear": "dural tear", "iatrogenic_fracture": "iatrogenic fracture",
    "postop_complication": "postoperative complication", "major_complication": "major complication",
    "pseudarthrosis": "pseudarthrosis", "implant_failure": "implant failure", "revision": "revision",
}
FUNNEL_DENOMINATORS = {  # as service.FUNNEL_MEASURES counts them
    **dict.fromkeys(("intraop_event", "instrument_breakage", "dural_tear", "iatrogenic_fracture"),
                    "operations with events recorded"),
    **dict.fromkeys(("postop_complication", "major_complication"), "operations with complications recorded"),
    "pseudarthrosis": "operations assessed for fusion", "implant_failure": "instrumented operations followed up",
    "revision": "operations followed up with revision recorded",
}
OUTCOME_PANELS = {  # panel: [(figure, timepoint)]
    "JOA (0–17)": [("joa_preop", "before surgery"), ("joa_latest", "latest follow-up")],
    "mJOA (0–18)": [("mjoa_preop", "before surgery"), ("mjoa_latest", "latest follow-up")],
    "JOA recovery rate (%)": [("joa_recovery_rate", "recovery (Hirabayashi)")],
}
COMPLETENESS_FIELDS = {
    "indication": "indication", "approach": "approach", "levels": "levels (spinal)",
    "duration_min": "duration", "blood_loss_ml": "blood loss", "preop_joa": "JOA before (cervical)",
    "follow_up": "any follow-up", "follow_up_12m": "12-month follow-up",
}
REPORT_TITLES = {
    "complications": "Complications", "fusion": "Fusion and revision", "outcomes": "JOA and mJOA outcomes",
    "scores": "Outcome scores",
    "completeness": "Data completeness",
}


# --- labels and captions ---------------------------------------------------------------------

def value_label(dim: str, value) -> str:
    """A group value as people read it, the same in plots and dashboard tables."""
    if value is None:
        return "not recorded"
    if dim == "instrumented":
        return "instrumented" if value else "uninstrumented"
    if dim == "levels":
        return f"{value} levels"
    return str(value).replace("_", " ")


def _group_label(report: dict, row: dict, dims: list | None = None) -> str:
    dims = report["group_by"] if dims is None else dims
    if row is report.get("total"):
        return "All operations"
    return " · ".join(value_label(d, row["group"].get(d)) for d in dims) or "All operations"


def _rows_and_total(report: dict) -> list[dict]:
    """The groups, then the total as "All operations"; ungrouped, the one group is that total."""
    rows = list(report["groups"])
    if report.get("total") and report.get("group_by"):
        rows.append(report["total"])
    return rows


def _percent(value) -> str:
    return f"{100 * value:.1f} %"


def _proportion_text(p: dict) -> str:
    return (f"{_percent(p['rate'])} ({p['numerator']} of {p['denominator']}), "
            f"95 % CI {_percent(p['ci_low'])} to {_percent(p['ci_high'])}")


def _n(report: dict) -> int | None:
    if report.get("total") and report["total"].get("operations") is not None:
        return report["total"]["operations"]
    visible = [row["operations"] for row in report["groups"] if row.get("operations") is not None]
    return sum(visible) if visible else None


def caption(report: dict, today: date) -> str:
    """The filters, the n, the scope and the date: what a reader needs to quote the plot."""
    filters = "; ".join(f"{name} = {', '.join(map(str, value)) if isinstance(value, list) else value}"
                        for name, value in sorted(report["filters"].items())) or "none"
    n = _n(report)
    parts = [f"Filters: {filters}", f"n = {n if n is not None else WITHHELD} operations",
             f"scope: {report['scope']}", f"drawn {today.isoformat()}"]
    if report.get("group_by"):
        parts.insert(1, "grouped by " + ", ".join(report["group_by"]))
    if report.get("min_months") is not None:
        parts.insert(1, f"fusion at ≥ {report['min_months']} months")
    control = report.get("disclosure_control")
    if control:
        parts.append(f"{control['method']}: counts moved by up to {control['max_noise']}, "
                     f"counts below {control['threshold']} withheld")
    return " · ".join(parts)


def _title(text: str, report: dict, today: date) -> dict:
    return {"text": text, "subtitle": _wrap(caption(report, today), 110), "anchor": "start",
            "subtitleColor": "#444", "subtitleFontSize": 11}


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line]


# --- the plots -------------------------------------------------------------------------------

class Datasets(dict):
    """The plot's rows by name. Charts refer to them by name and the rows join the specification
    only at the end, so that the compiled plot can be kept without them (see `_vega`)."""

    def __call__(self, name: str, rows: list[dict]) -> dict:
        self[name] = rows
        return {"name": name}


def _field(name: str, kind: str = "quantitative", **properties) -> dict:
    """An encoding channel reading field `name`."""
    return {"field": name, "type": kind, **properties}


def _layer(keep: str | None, mark: dict, **encoding) -> dict:
    """One layer: the rows passing the filter `keep` drawn as `mark`."""
    layer = {"mark": mark, "encoding": encoding}
    if keep:
        layer["transform"] = [{"filter": keep}]
    return layer


def _withheld_marks(y: dict, extra: dict | None = None) -> dict:
    """The word "withheld" at the start of the row where a mark would be, titled with the group
    and the figure's name. Only rows flagged `withheld` get one."""
    return _layer("datum.withheld", {"type": "text", "align": "left", "dx": 2, "fontStyle": "italic", "color": "#666"},
                  y=y, x={"value": 0}, text={"value": WITHHELD}, description=DESCRIPTION, **(extra or {}))


def measures_asked(report: dict, defaults: dict) -> dict:
    """The measures to draw, name: label: those the query asked for (`measure=`, echoed in the
    report's `query`), else the report's default set. A measure the plots do not know is
    labelled with its own name."""
    asked = (report.get("query") or {}).get("measure")
    if isinstance(asked, str):
        asked = [asked]
    if not asked:
        return dict(defaults)
    return {name: _measure_label(name) for name in asked}


def _measure_label(name: str) -> str:
    return MEASURE_LABELS.get(name, name.replace("_", " ").capitalize())


def _expanded(measures: dict, rows: list[dict]) -> dict:
    """A measure that is a group of figures (`intraop_event_types`: one rate per event type) as
    one measure per member, `group.member`."""
    expanded = {}
    for name, title in measures.items():
        members = next((figure for figure in (figure_of(row, name) for row in rows)
                        if figure and all(isinstance(value, dict) for value in figure.values())), None)
        if members:
            expanded.update({f"{name}.{member}": _measure_label(member) for member in members})
        else:
            expanded[name] = title
    return expanded


def figure_of(row: dict, name: str):
    """A row's figure `name`: at the top of the row (`intraop_event`), by a dotted path
    (`intraop_event_types.dural_tear`), or one level down (`dural_tear` under
    `intraop_event_types`). None when the row has no such figure."""
    value = row
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict):
        return value
    for nested in row.values():
        if isinstance(nested, dict) and isinstance(nested.get(name), dict):
            return nested[name]
    return None


def _is_summary(figure: dict) -> bool:
    return "median" in figure or "q1" in figure


def _summary_text(s: dict) -> str:
    return (f"n {s['n']}, median {s['median']:g} (quartiles {s['q1']:g} to {s['q3']:g}), "
            f"mean {s['mean']:.1f}")


def _withheld(figure: dict | None, row: dict) -> bool:
    return bool((figure or {}).get("suppressed") or row.get("suppressed"))


def forest(report: dict, defaults: dict, today: date, data: Datasets) -> dict:
    """Rates with their Wilson intervals, one panel per measure; a measure summarised by its
    quartiles (blood loss, duration) is a box in a panel of its own scale. Grouped by two
    dimensions, each value of the first is a row of panels and the second labels its lines."""
    dims = report["group_by"]
    measures = _expanded(measures_asked(report, defaults), report["groups"])
    outer, inner = dims[:1], (dims[1] if len(dims) == 2 else None)
    # by two dimensions the total would be a row of panels with one line of many: the caption has its n
    rows_of_report = _rows_and_total(report) if not inner else list(report["groups"])
    rates, boxes, withheld = [], [], []
    for row in rows_of_report:
        label = _group_label(report, row, outer)
        line = value_label(inner, row["group"].get(inner)) if inner else label
        full = f"{label} · {line}" if inner else label
        for name, title in measures.items():
            figure = figure_of(row, name)
            datum = {"group": label, "line": line, "measure": title}
            if figure is None or (figure.get("rate") is None and figure.get("median") is None):
                if _withheld(figure, row):
                    withheld.append({**datum, "withheld": True, "description": f"{full}, {title}: {WITHHELD}"})
                continue
            if _is_summary(figure):
                boxes.append({**datum, "q1": figure["q1"], "median": figure["median"], "q3": figure["q3"],
                              "description": f"{full}, {title}: {_summary_text(figure)}"})
            else:
                rates.append({**datum, "rate": figure["rate"], "low": figure["ci_low"], "high": figure["ci_high"],
                              "description": f"{full}, {title}: {_proportion_text(figure)}"})
    summary_measures = {b["measure"] for b in boxes}
    rate_rows = rates + [w for w in withheld if w["measure"] not in summary_measures]
    box_rows = boxes + [w for w in withheld if w["measure"] in summary_measures]
    lines = list(dict.fromkeys(value_label(inner, r["group"].get(inner)) if inner else
                               _group_label(report, r, outer) for r in rows_of_report))
    y = _field("line", "nominal", sort=lines, title=None if inner else " · ".join(outer) or None)
    panels = []
    if rate_rows:
        x = _field("low", scale={"domain": [0, 1]}, axis={"format": "%"}, title="rate (95 % CI)")
        layers = [_layer("!datum.withheld", {"type": "rule"}, y=y, x=x, x2={"field": "high"}, description=DESCRIPTION),
                  _layer("!datum.withheld", {"type": "point", "filled": True, "size": 40},
                         y=y, x=_field("rate"), description=DESCRIPTION)]
        order = [t for t in measures.values() if t not in summary_measures]
        panels.append(_measure_panels(layers, y, rate_rows, order, report, outer, inner, data, "rates"))
    if box_rows:
        layers = [_layer("!datum.withheld", {"type": "bar", "height": {"band": 0.7}, "opacity": 0.55},
                         y=y, x=_field("q1", title="value (box: quartiles, line: median)"), x2={"field": "q3"},
                         description=DESCRIPTION),
                  _layer("!datum.withheld", {"type": "tick", "thickness": 2, "color": "black"},
                         y=y, x=_field("median"), description=DESCRIPTION)]
        order = [t for t in measures.values() if t in summary_measures]
        panels.append(_measure_panels(layers, y, box_rows, order, report, outer, inner, data, "summaries",
                                      independent_x=True))
    chart = panels[0] if len(panels) == 1 else {"vconcat": panels}
    title = REPORT_TITLES[report["report"]] + (": rates by " + " and ".join(dims) if dims else ": rates")
    return {**chart, "title": _title(title, report, today)}


def _measure_panels(layers, y, rows, order, report, outer, inner, data, name, independent_x=False):
    """One panel per measure over `rows` (named `name`); by two dimensions, a row of panels per
    value of the first, each labelled, with its own lines."""
    if any(r.get("withheld") for r in rows):
        layers = layers + [_withheld_marks(y)]
    layered = {"layer": layers, "width": WIDTH, "height": {"step": ROW_HEIGHT}}
    column = _field("measure", "nominal", sort=order, title=None)
    if inner:
        groups = list(dict.fromkeys(r["group"] for r in rows))
        # the lines share one axis, drawn once per row: a line with no operations stays empty
        chart = {"data": data(name, rows), "spec": layered, "facet": {
            "row": _field("group", "nominal", sort=groups, title=f"{outer[0]} (rows) · {inner} (lines)",
                          header={"labelAngle": 0, "labelAlign": "left"}),
            "column": column}}
    else:
        chart = {"data": data(name, rows), "spec": layered, "facet": column, "columns": 2}
    if independent_x:
        chart["resolve"] = {"scale": {"x": "independent"}}
    return chart


def outcomes(report: dict, today: date, data: Datasets) -> dict:
    """Boxes from the first to the third quartile, the median as a tick, the mean as a dot."""
    rows_of_report = _rows_and_total(report)
    order = list(dict.fromkeys(_group_label(report, r) for r in rows_of_report))
    shown, withheld = [], []
    for row in rows_of_report:
        label = _group_label(report, row)
        for panel, figures in OUTCOME_PANELS.items():
            for name, timepoint in figures:
                s = row.get(name) or {}
                datum = {"group": label, "panel": panel, "timepoint": timepoint}
                if s.get("median") is None:
                    if s.get("suppressed") or row.get("suppressed"):
                        n = f"n {s['n']}, statistics " if s.get("n") is not None else ""
                        withheld.append({**datum, "withheld": True,
                                         "description": f"{label}, {panel} {timepoint}: {n}{WITHHELD}"})
                    continue
                shown.append({**datum, "q1": s["q1"], "median": s["median"], "q3": s["q3"], "mean": s["mean"],
                              "description": f"{label}, {panel} {timepoint}: n {s['n']}, median {s['median']:g} "
                                             f"(quartiles {s['q1']:g} to {s['q3']:g}), mean {s['mean']:.1f}"})
    y = _field("group", "nominal", sort=order, title=" · ".join(report["group_by"]) or None)
    timepoints = [timepoint for figures in OUTCOME_PANELS.values() for _, timepoint in figures]
    timepoints = list(dict.fromkeys(timepoints))
    offset = _field("timepoint", "nominal", sort=timepoints)
    boxes = _layer("!datum.withheld", {"type": "bar", "height": {"band": 0.8}, "opacity": 0.55},
                   y=y, x=_field("q1", title="score (box: quartiles, line: median)"), x2={"field": "q3"},
                   description=DESCRIPTION, yOffset=offset,
                   color=_field("timepoint", "nominal", title=None, sort=timepoints))
    medians = _layer("!datum.withheld", {"type": "tick", "thickness": 2, "color": "black"},
                     y=y, x=_field("median"), description=DESCRIPTION, yOffset=offset)
    layers = [boxes, medians]
    if withheld:
        layers.append(_withheld_marks(y, {"yOffset": offset}))
    return {"data": data("rows", shown + withheld),
            "facet": {"column": _field("panel", "nominal", sort=list(OUTCOME_PANELS), title=None)},
            "spec": {"layer": layers, "width": WIDTH, "height": {"step": ROW_HEIGHT}},
            "resolve": {"scale": {"x": "independent"}},
            "title": _title(REPORT_TITLES["outcomes"], report, today)}


def scores(report: dict, today: date, data: Datasets) -> dict:
    """The outcomes scored in this report (pairs in the total or a group): each one's change from
    baseline as a box and, with an MCID, the share reaching it with its interval."""
    rows = _rows_and_total(report)
    outcomes_of = [row.get("scores") or {} for row in rows]
    names = list(outcomes_of[0]) if outcomes_of else []
    scored = [name for name in names if any(outcome.get(name, {}).get("pairs") for outcome in outcomes_of)]
    if not scored:
        return {"title": _title(REPORT_TITLES["scores"], report, today)}
    labels = {outcome.name: outcome.label for outcome in score_outcomes.OUTCOMES}
    measures = {}
    for name in scored:
        label = labels.get(name, name)
        measures[f"scores.{name}.change"] = f"{label}: change"
        if "reaches_mcid" in outcomes_of[0][name]:
            measures[f"scores.{name}.reaches_mcid"] = f"{label}: reaching MCID"
    return forest(report, measures, today, data)


def completeness(report: dict, today: date, data: Datasets) -> dict:
    """Share of operations with each field: a group × field heatmap."""
    cells = []
    order = []
    for row in _rows_and_total(report):
        label = _group_label(report, row)
        order.append(label)
        for name, field in COMPLETENESS_FIELDS.items():
            p = row.get(name) or {}
            datum = {"group": label, "field": field}
            if p.get("rate") is None:
                if p.get("suppressed") or row.get("suppressed"):
                    cells.append({**datum, "text": WITHHELD, "description": f"{label}, {field}: {WITHHELD}"})
                else:
                    cells.append({**datum, "text": "–", "description": f"{label}, {field}: no operations"})
                continue
            cells.append({**datum, "share": p["rate"], "text": f"{100 * p['rate']:.0f} %",
                          "description": f"{label}, {field} recorded: {_proportion_text(p)}"})
    y = _field("group", "nominal", sort=order, title=" · ".join(report["group_by"]) or None)
    x = _field("field", "nominal", sort=list(COMPLETENESS_FIELDS.values()), title=None, axis={"labelAngle": -30})
    tiles = _layer(None, {"type": "rect", "stroke": "white"}, y=y, x=x, description=DESCRIPTION, color={
        "value": "#eee", "condition": {
            "test": "isValid(datum.share)", "field": "share", "type": "quantitative",
            "scale": {"domain": [0, 1], "scheme": "blues"}, "legend": {"format": "%", "title": "share recorded"}}})
    labels = _layer(None, {"type": "text", "fontSize": 10}, y=y, x=x, text=_field("text", "nominal"),
                    description=DESCRIPTION,
                    color={"value": "black", "condition": {"test": "datum.share > 0.6", "value": "white"}})
    return {"data": data("cells", cells), "layer": [tiles, labels], "width": {"step": 62},
            "height": {"step": ROW_HEIGHT}, "title": _title(REPORT_TITLES["completeness"], report, today)}


def funnel(report: dict, today: date, data: Datasets) -> dict:
    """Each centre's rate against its denominator, the pooled rate, 95 % and 99.8 % limits."""
    strata = [d for d in report["group_by"] if d != "centre"]
    measure = FUNNEL_TITLES.get(report["measure"], report["measure"])
    points, withheld, curves, pooled_lines = [], [], [], []
    pools = {}
    for row in report["groups"]:
        centre = row["group"]["centre"]
        stratum = _group_label(report, row, strata) if strata else "all"
        p = row["measure"]
        if p.get("rate") is None:
            if row.get("suppressed") or p.get("suppressed"):
                withheld.append({"label": f"{centre}{'' if not strata else ' (' + stratum + ')'}: {WITHHELD}",
                                 "description": f"{centre}{'' if not strata else ', ' + stratum}: {WITHHELD}"})
            continue
        outside = row.get("position") not in (None, "within")
        points.append({"stratum": stratum, "centre": centre, "n": p["denominator"], "rate": p["rate"],
                       "low": p["ci_low"], "high": p["ci_high"],
                       "interval": f"95 % CI of {centre}{'' if not strata else ', ' + stratum}: "
                                   f"{_percent(p['ci_low'])} to {_percent(p['ci_high'])}",
                       "position": (row.get("position") or "no limits").replace("_", " "),
                       "label": centre if outside else "",
                       "description": f"{centre}{'' if not strata else ', ' + stratum}: {_proportion_text(p)}; "
                                      f"{(row.get('position') or 'no limits').replace('_', ' ')}"})
        # the pool (and whether it is withheld) is the stratum's, the same on each of its rows
        pools.setdefault(stratum, (row.get("pooled_rate"), row.get("pooled_withheld")))
    largest = max([pt["n"] for pt in points] or [10])
    # the limits from half the smallest centre's n: below it they only widen towards 0 and 100 %,
    # squeezing the centres into a strip at the bottom
    smallest = min([pt["n"] for pt in points] or [1])
    notes = []
    for stratum, (pooled, reason) in pools.items():
        if pooled is None:
            notes.append(f"pooled rate withheld ({reason})" if reason else "no pooled rate")
            continue
        where = "" if stratum == "all" else stratum + ", "
        pooled_lines.append({"stratum": stratum, "pooled": pooled,
                             "description": f"{where}pooled rate {_percent(pooled)}"})
        for n in _n_range(largest, smallest):
            limits = stats.funnel_limits(pooled, n)
            for bound, level in (("95", "95 %"), ("998", "99.8 %")):
                curves.append({"stratum": stratum, "n": n, "level": level,
                               "lower": limits[f"lower_{bound}"], "upper": limits[f"upper_{bound}"],
                               **{f"{side}_description": f"{'' if stratum == 'all' else stratum + ', '}{side} "
                                                         f"{level} control limit around the pooled rate "
                                                         f"{_percent(pooled)}" for side in ("lower", "upper")}})
    denominator = FUNNEL_DENOMINATORS.get(report["measure"], "operations")
    # the axis reaches past the largest centre, as the limit curves do, even when no pool is drawn
    # the axis end is a parameter, not a number in the specification: a new operation at the
    # largest centre then still draws from the compiled plot kept for this query (see `_vega`)
    x = _field("n", scale={"domain": [0, {"expr": "n_top"}]}, title=f"denominator: {denominator}")
    y = _field("rate", axis={"format": "%"}, title=f"{measure} rate")
    # one dataset, each layer taking its kind of rows: a facet per stratum needs them together
    rows = ([{**c, "kind": "curve"} for c in curves] + [{**p, "kind": "pooled"} for p in pooled_lines]
            + [{**p, "kind": "point"} for p in points])
    layers = []
    if curves:
        for bound in ("lower", "upper"):
            layers.append(_layer("datum.kind == 'curve'", {"type": "line", "strokeWidth": 1, "color": "#777"},
                                 x=x, y=_field(bound), description=_field(f"{bound}_description", "nominal"),
                                 strokeDash=_field("level", "nominal", title="control limits",
                                                   sort=["95 %", "99.8 %"]),
                                 detail=_field("level", "nominal")))
        layers.append(_layer("datum.kind == 'pooled'", {"type": "rule", "color": "#333"},
                             y=_field("pooled"), description=DESCRIPTION))
    points_only = "datum.kind == 'point'"
    # each centre's own Wilson 95 % interval: a whisker through its point
    layers.append(_layer(points_only, {"type": "rule", "strokeWidth": 1.5, "opacity": 0.7},
                         x=x, y=_field("low"), y2={"field": "high"}, description=_field("interval", "nominal"),
                         color=_field("position", "nominal", title="position")))
    layers.append(_layer(points_only, {"type": "point", "filled": True, "size": 60},
                         x=x, y=y, description=DESCRIPTION,
                         color=_field("position", "nominal", title="position", scale={
                             "domain": ["within", "above 95", "below 95", "above 99.8", "below 99.8", "no limits"],
                             "range": ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#2e7d32", "#888"]})))
    # the labels repeat their point's title: hidden from screen readers, which read the point;
    # only the centres outside the limits have one (Vega measures every text, even an empty one)
    layers.append(_layer(points_only + " && datum.label",
                         {"type": "text", "align": "left", "dx": 6, "dy": -6, "fontSize": 10, "aria": False},
                         x=x, y=y, text=_field("label", "nominal")))
    title = f"Funnel plot: {measure}" + (" by " + " and ".join(strata) if strata else "")
    title_params = _title(title, report, today)
    if notes:
        title_params["subtitle"] = title_params["subtitle"] + sorted(set(notes))
    if strata:
        # one panel per stratum, each with its own pool and limits
        chart = {"data": data("funnel", rows), "spec": {"layer": layers, "width": 420, "height": 240},
                 "facet": _field("stratum", "nominal", sort=list(dict.fromkeys(pt["stratum"] for pt in points)),
                                 title=None), "columns": 2}
    else:
        chart = {"data": data("funnel", rows), "layer": layers, "width": 420, "height": 300}
    if withheld:
        # a withheld centre has no place on the plane: it is listed under the plot
        chart = {"vconcat": [chart, {
            "data": data("withheld", withheld), "width": 420, "height": {"step": 16},
            "mark": {"type": "text", "align": "left", "fontStyle": "italic", "color": "#666"},
            "encoding": {"y": _field("label", "nominal", axis=None), "x": {"value": 0},
                         "text": _field("label", "nominal"), "description": DESCRIPTION}}]}
    return {**chart, "params": [{"name": "n_top", "value": max(10, math.ceil(largest * 1.1))}],
            "title": title_params}


def _n_range(largest: int, smallest: int = 1, points: int = 40) -> list[int]:
    """Denominators for the limit curves, from half the smallest to 1.1 x the largest, evenly
    spaced on a log scale: the limits bend most at small n, and 40 points draw them as smoothly
    as every n did (the rows are the plot's largest dataset; Vega's cost grows with them)."""
    top = max(10, math.ceil(largest * 1.1))
    bottom = max(1, min(smallest // 2, top - 1))
    return sorted({round(bottom * (top / bottom) ** (i / (points - 1))) for i in range(points)})


# --- the converter ---------------------------------------------------------------------------

_converter_ready = False
_converter_lock = threading.Lock()


def _use_bundled_font() -> None:
    """Make vl-convert measure and draw text with the Liberation Sans it bundles in memory.

    Vega measures every piece of text it lays out (labels, titles, the caption), and vl-convert
    measures each by laying it out with its font database. Built from the system's fonts, that
    database maps the font file again for every glyph (3,000 open/mmap/munmap calls for 50 short
    labels), which made text 80 % of a plot's cost. Its bundled copy of the same Liberation Sans
    (the "sans-serif" it falls back to) is in memory: with the system's fonts hidden while the
    database is built, text costs a quarter as much. The database is built once per process,
    on first use; FONTCONFIG_FILE is read only then, and restored at once so that nothing else
    in the process (or a browser the tests start) loses its fonts.
    """
    with tempfile.TemporaryDirectory() as no_fonts:
        config = Path(no_fonts) / "fonts.conf"
        config.write_text(f"<fontconfig><dir>{no_fonts}</dir></fontconfig>")
        previous = os.environ.get("FONTCONFIG_FILE")
        os.environ["FONTCONFIG_FILE"] = str(config)
        try:
            # the call builds the font database now, from the (empty) directory given
            vl_convert.register_font_directory(no_fonts)
        finally:
            if previous is None:
                del os.environ["FONTCONFIG_FILE"]
            else:
                os.environ["FONTCONFIG_FILE"] = previous


def _ready_converter() -> None:
    global _converter_ready
    if _converter_ready:
        return
    with _converter_lock:
        if not _converter_ready:
            _use_bundled_font()
            _converter_ready = True


def _example_report(kind: str) -> dict:
    """A small report document of each kind (two groups, one withheld), drawn by warm_up."""
    proportion = {"numerator": 3, "denominator": 40, "rate": 0.075, "ci_low": 0.026, "ci_high": 0.199,
                  "suppressed": None}
    summary = {"n": 40, "mean": 11.5, "median": 12.0, "q1": 10.0, "q3": 14.0, "suppressed": None}
    figures = {"complications": dict.fromkeys(COMPLICATIONS_MEASURES, proportion),
               "fusion": dict.fromkeys(FUSION_MEASURES, proportion),
               "outcomes": {figure: summary for figures in OUTCOME_PANELS.values() for figure, _ in figures},
               "completeness": dict.fromkeys(COMPLETENESS_FIELDS, proportion),
               "centres": {"measure": proportion}}[kind]
    withheld = {name: {key: None for key in value} | {"suppressed": "primary"} for name, value in figures.items()}
    dims = ["centre"] if kind in ("centres", "completeness") else ["approach"]
    groups = [{"group": {dims[0]: "CENTRE-A" if dims == ["centre"] else "posterior"}, "suppressed": None,
               "operations": 40, **figures},
              {"group": {dims[0]: "CENTRE-B" if dims == ["centre"] else "anterior"}, "suppressed": "primary",
               "operations": None, **withheld}]
    if kind == "centres":
        limits = stats.funnel_limits(0.1, 40)
        groups[0].update(pooled_rate=0.1, pooled_withheld=None, limits=limits,
                         position=stats.funnel_position(0.075, limits))
        groups[1].update(pooled_rate=0.1, pooled_withheld=None, limits=dict.fromkeys(limits), position=None)
    return {"report": kind, "measure": "intraop_event", "group_by": dims, "filters": {}, "scope": "all centres",
            "disclosure_control": None, "groups": groups,
            "total": None if kind == "centres" else {"group": {}, "suppressed": None, "operations": 80, **figures}}


def warm_up() -> None:
    """Start vl-convert (its JavaScript engine and Vega take about a second to load) and draw a
    plot of each kind as SVG and one as PNG, so that the first plot a worker serves costs what the
    others do (a kind's first plot also compiles Vega's code for its marks: up to 200 ms). Call it
    once per process after fork (registry.gunicorn_conf.post_fork): the converter's threads do not
    survive a fork."""
    _ready_converter()
    today = date.today()
    for kind in ("complications", "fusion", "outcomes", "completeness", "centres"):
        render_svg(_example_report(kind), today)
    render_png(_example_report("centres"), today)


# --- rendering -------------------------------------------------------------------------------

def chart(report: dict, today: date, data: Datasets) -> dict:
    """The report's plot; its rows go into `data`."""
    kind = report["report"]
    if kind == "centres":
        return funnel(report, today, data)
    if kind == "complications":
        return forest(report, COMPLICATIONS_MEASURES, today, data)
    if kind == "fusion":
        return forest(report, FUSION_MEASURES, today, data)
    if kind == "outcomes":
        return outcomes(report, today, data)
    if kind == "scores":
        return scores(report, today, data)
    return completeness(report, today, data)


def spec(report: dict, today: date) -> dict:
    """The Vega-Lite specification of the report's plot, its rows included."""
    data = Datasets()
    top = chart(report, today, data)
    if not any(data.values()):
        # nothing to draw (no operation matches, or none published): say so, under the same title
        data = Datasets()
        message = "No operations to show for these filters."
        top = {"data": data("message", [{"text": message, "description": message}]),
               "mark": {"type": "text", "fontSize": 13, "color": "#444"},
               "encoding": {"text": _field("text", "nominal"), "description": DESCRIPTION},
               "width": 420, "height": 60, "title": top["title"]}
    # the service does not validate the specification (the tests do, against the Vega-Lite schema)
    return {"$schema": VEGA_LITE_SCHEMA, "config": {"view": {"continuousHeight": 300, "continuousWidth": 300}},
            **top, "description": caption(report, today), "datasets": dict(data)}


def render_svg(report: dict, today: date) -> bytes:
    _ready_converter()
    specification = spec(report, today)
    svg = vl_convert.vega_to_svg(_vega(specification))
    title = specification["title"]["text"]
    return _add_titles(svg, title, caption(report, today))


def render_png(report: dict, today: date) -> bytes:
    _ready_converter()
    return vl_convert.vega_to_png(_vega(spec(report, today)), scale=PNG_SCALE)


def _vega(specification: dict) -> dict:
    """The Vega specification of a Vega-Lite one, its rows filled in. Compiling Vega-Lite costs
    10 to 40 ms and depends only on the shape of the plot, so the compiled form is kept per
    specification without what changes with the figures: its rows, the title and caption (which
    carry the n and the date) and the values of its parameters, all of which Vega-Lite passes
    through to Vega unchanged. They are put back into each request's copy. A different grouping,
    measure or set of group labels is another entry."""
    rows = specification["datasets"]
    title = specification.get("title") or {}
    params = {param["name"]: param["value"] for param in specification.get("params", [])}
    skeleton = {**specification, "datasets": dict.fromkeys(rows, []), "description": "",
                "params": [{"name": name, "value": None} for name in params]}
    if title:
        skeleton["title"] = {**title, "text": "title", "subtitle": ["caption"]}   # empty, it would be dropped
    if not params:
        del skeleton["params"]
    vega = json.loads(_compiled(json.dumps(skeleton, sort_keys=True)))
    for dataset in vega["data"]:
        if dataset["name"] in rows:
            dataset["values"] = rows[dataset["name"]]
    vega["description"] = specification["description"]
    if title:
        vega["title"].update(text=title["text"], subtitle=title["subtitle"])
    for signal in vega.get("signals", []):
        if signal["name"] in params:
            signal["value"] = params[signal["name"]]
    return vega


@functools.lru_cache(maxsize=128)
def _compiled(skeleton: str) -> str:
    return json.dumps(vl_convert.vegalite_to_vega(json.loads(skeleton)))


# an opening tag whose attributes are all double-quoted (as Vega writes them), and a mark among them
_OPENING_TAG = re.compile(r'<([\w:-]+)((?:\s+[\w:-]+="[^"]*")*)\s*(/?)>')
_ARIA_LABEL = re.compile(r'\saria-label="([^"]*)"')


def _add_titles(svg: str, title: str, description: str) -> bytes:
    """Give each mark (role graphics-symbol, labelled by Vega from its `description`) a <title>
    child, and the document a <title> and <desc>: tooltips on hover and names for screen readers.

    One pass of a regular expression over Vega's output instead of parsing it into a tree and
    writing it back (a tree cost up to 40 ms on a plot of 250 KB). The aria-label is copied as
    Vega escaped it for an attribute, which is also valid character data."""
    def titled(tag: re.Match) -> str:
        name, attributes, self_closing = tag.groups()
        label = _ARIA_LABEL.search(attributes)
        if not label or ' role="graphics-symbol"' not in attributes:
            return tag.group(0)
        opened = f"<{name}{attributes}><title>{label.group(1)}</title>"
        return opened + f"</{name}>" if self_closing else opened

    svg = _OPENING_TAG.sub(titled, svg)
    root = _OPENING_TAG.match(svg)   # Vega's output starts with its <svg ...> tag
    head = (f'<svg{root.group(2)} role="img"><title>{xml_escape(title)}</title>'
            f"<desc>{xml_escape(description)}</desc>")
    return (head + svg[root.end():]).encode()
