"""Reports as plots: the report document the JSON answer is built from, drawn as SVG or PNG.

Each plot is a Vega-Lite specification built with Vega-Altair and rendered by vl-convert
(Vega compiled into a Rust library: no browser, no Node, no native graphics stack to install).
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
- completeness: heatmap of the share of operations with each field, group by field.

Every mark has a `description` (its label and figures). Vega puts it in the mark's
`aria-label` with role="graphics-symbol", but emits no `<title>` element in SVG (checked with
vl-convert 1.9 / Vega 6: tooltips are a browser-side handler), so `_add_titles` copies each
mark's aria-label into a `<title>` child, which browsers show as a tooltip; the document itself
gets a `<title>` and `<desc>` (the plot's title and caption).
"""

import math
import os
import tempfile
import threading
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import altair as alt
import vl_convert

from registry.reports import stats

SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")

WITHHELD = "withheld"
# Channels are given as objects, not shorthand strings: Altair turns a string or dict into its
# channel class through a lookup that costs milliseconds per channel.
DESCRIPTION = alt.Description("description:N")
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
FUNNEL_TITLES = {
    "intraop_event": "intraoperative event", "instrument_breakage": "instrument breakage",
    "dural_tear": "dural tear", "iatrogenic_fracture": "iatrogenic fracture",
    "postop_complication": "postoperative complication", "major_complication": "major complication",
    "pseudarthrosis": "pseudarthrosis", "implant_failure": "implant failure", "revision": "revision",
}
FUNNEL_DENOMINATORS = {  # as service.FUNNEL_MEASURES counts them; the others are per operation
    "pseudarthrosis": "operations assessed for fusion", "implant_failure": "instrumented operations followed up",
    "revision": "operations followed up",
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
    "completeness": "Data completeness",
}


# --- labels and captions ---------------------------------------------------------------------

def _value_label(dim: str, value) -> str:
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
    return " · ".join(_value_label(d, row["group"].get(d)) for d in dims) or "All operations"


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


def _title(text: str, report: dict, today: date) -> alt.TitleParams:
    return alt.TitleParams(text=text, subtitle=_wrap(caption(report, today), 110), anchor="start",
                           subtitleColor="#444", subtitleFontSize=11)


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
    only at the end: Altair deep-copies inline values at every layer and facet, which cost more
    than drawing the plot."""

    def __call__(self, name: str, rows: list[dict]) -> alt.NamedData:
        self[name] = rows
        return alt.NamedData(name=name)


def _withheld_marks(y: alt.Y, extra: dict | None = None) -> alt.Chart:
    """The word "withheld" at the start of the row where a mark would be, titled with the group
    and the figure's name. Only rows flagged `withheld` get one."""
    return alt.Chart().transform_filter("datum.withheld").mark_text(
        align="left", dx=2, fontStyle="italic", color="#666").encode(
        y=y, x=alt.XValue(0), text=alt.TextValue(WITHHELD), description=DESCRIPTION, **(extra or {}))


def forest(report: dict, measures: dict, today: date, data: Datasets) -> alt.TopLevelMixin:
    """Rates with their Wilson intervals, one panel per measure."""
    dims = report["group_by"]
    rows_of_report = list(report["groups"])
    if len(dims) < 2 and report.get("total"):
        rows_of_report.append(report["total"])
    outer = dims[:1]
    inner = dims[1] if len(dims) == 2 else None
    shown, withheld = [], []
    for row in rows_of_report:
        label = _group_label(report, row, outer)
        inner_label = _value_label(inner, row["group"].get(inner)) if inner and row is not report.get("total") else ""
        for name, title in measures.items():
            p = row.get(name) or {}
            datum = {"group": label, "inner": inner_label, "measure": title}
            full = f"{label} · {inner_label}" if inner_label else label
            if p.get("rate") is None:
                if p.get("suppressed") or row.get("suppressed"):
                    withheld.append({**datum, "withheld": True, "description": f"{full}, {title}: {WITHHELD}"})
                continue
            shown.append({**datum, "rate": p["rate"], "low": p["ci_low"], "high": p["ci_high"],
                          "description": f"{full}, {title}: {_proportion_text(p)}"})
    order = list(dict.fromkeys([_group_label(report, r, outer) for r in rows_of_report]))
    y = alt.Y("group:N", sort=order, title=" · ".join(outer) or None)
    x = alt.X("low:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="rate (95 % CI)")
    offset = {"yOffset": alt.YOffset("inner:N"), "color": alt.Color("inner:N", title=inner)} if inner else {}
    whiskers = alt.Chart().transform_filter("!datum.withheld").mark_rule().encode(
        y=y, x=x, x2=alt.X2("high"), description=DESCRIPTION, **offset)
    dots = alt.Chart().transform_filter("!datum.withheld").mark_point(filled=True, size=40).encode(
        y=y, x=alt.X("rate:Q"), description=DESCRIPTION, **offset)
    layers = [whiskers, dots]
    if withheld:
        layers.append(_withheld_marks(y, {"yOffset": alt.YOffset("inner:N")} if inner else None))
    # one data source, one panel per measure (rows without a rate draw no dot or whisker)
    layered = alt.layer(*layers).properties(width=WIDTH, height=alt.Step(ROW_HEIGHT))
    chart = layered.facet(facet=alt.Facet("measure:N", sort=list(measures.values()), title=None), columns=2,
                          data=data("rows", shown + withheld))
    title = REPORT_TITLES[report["report"]] + (": rates by " + " and ".join(dims) if dims else ": rates")
    return chart.properties(title=_title(title, report, today))


def outcomes(report: dict, today: date, data: Datasets) -> alt.TopLevelMixin:
    """Boxes from the first to the third quartile, the median as a tick, the mean as a dot."""
    rows_of_report = list(report["groups"]) + ([report["total"]] if report.get("total") else [])
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
    y = alt.Y("group:N", sort=order, title=" · ".join(report["group_by"]) or None)
    timepoints = [timepoint for figures in OUTCOME_PANELS.values() for _, timepoint in figures]
    timepoints = list(dict.fromkeys(timepoints))
    offset = {"yOffset": alt.YOffset("timepoint:N", sort=timepoints),
              "color": alt.Color("timepoint:N", title=None, sort=timepoints)}
    boxes = alt.Chart().transform_filter("!datum.withheld").mark_bar(
        height={"band": 0.8}, opacity=0.55).encode(
        y=y, x=alt.X("q1:Q", title="score (box: quartiles, line: median)"), x2="q3:Q",
        description=DESCRIPTION, **offset)
    medians = alt.Chart().transform_filter("!datum.withheld").mark_tick(thickness=2, color="black").encode(
        y=y, x=alt.X("median:Q"), description=DESCRIPTION, yOffset=offset["yOffset"])
    layers = [boxes, medians]
    if withheld:
        layers.append(_withheld_marks(y, {"yOffset": offset["yOffset"]}))
    layered = alt.layer(*layers).properties(width=WIDTH, height=alt.Step(ROW_HEIGHT))
    chart = layered.facet(column=alt.Column("panel:N", sort=list(OUTCOME_PANELS), title=None),
                          data=data("rows", shown + withheld)
                          ).resolve_scale(x="independent")
    return chart.properties(title=_title(REPORT_TITLES["outcomes"], report, today))


def completeness(report: dict, today: date, data: Datasets) -> alt.TopLevelMixin:
    """Share of operations with each field: a group × field heatmap."""
    cells = []
    order = []
    for row in report["groups"] + ([report["total"]] if report.get("total") else []):
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
                          "description": f"{label}, {field} recorded: {_percent(p['rate'])} "
                                         f"({p['numerator']} of {p['denominator']})"})
    y = alt.Y("group:N", sort=order, title=" · ".join(report["group_by"]) or None)
    x = alt.X("field:N", sort=list(COMPLETENESS_FIELDS.values()), title=None, axis=alt.Axis(labelAngle=-30))
    tiles = alt.Chart().mark_rect(stroke="white").encode(
        y=y, x=x, description=DESCRIPTION,
        color=alt.condition("isValid(datum.share)",
                            alt.Color("share:Q", scale=alt.Scale(domain=[0, 1], scheme="blues"),
                                      legend=alt.Legend(format="%", title="share recorded")),
                            alt.value("#eee")))
    labels = alt.Chart().mark_text(fontSize=10).encode(
        y=y, x=x, text=alt.Text("text:N"), description=DESCRIPTION,
        color=alt.condition("datum.share > 0.6", alt.value("white"), alt.value("black")))
    chart = alt.layer(tiles, labels, data=data("cells", cells)).properties(
        width=alt.Step(62), height=alt.Step(ROW_HEIGHT))
    return chart.properties(title=_title(REPORT_TITLES["completeness"], report, today))


def funnel(report: dict, today: date, data: Datasets) -> alt.TopLevelMixin:
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
                       "position": (row.get("position") or "no limits").replace("_", " "),
                       "label": centre if outside else "",
                       "description": f"{centre}{'' if not strata else ', ' + stratum}: {_proportion_text(p)}; "
                                      f"{(row.get('position') or 'no limits').replace('_', ' ')}"})
        # the pool (and whether it is withheld) is the stratum's, the same on each of its rows
        pools.setdefault(stratum, (row.get("pooled_rate"), row.get("pooled_withheld")))
    largest = max([pt["n"] for pt in points] or [10])
    notes = []
    for stratum, (pooled, reason) in pools.items():
        if pooled is None:
            notes.append(f"pooled rate withheld ({reason})" if reason else "no pooled rate")
            continue
        where = "" if stratum == "all" else stratum + ", "
        pooled_lines.append({"stratum": stratum, "pooled": pooled,
                             "description": f"{where}pooled rate {_percent(pooled)}"})
        for n in _n_range(largest):
            limits = stats.funnel_limits(pooled, n)
            for bound, level in (("95", "95 %"), ("998", "99.8 %")):
                curves.append({"stratum": stratum, "n": n, "level": level,
                               "lower": limits[f"lower_{bound}"], "upper": limits[f"upper_{bound}"],
                               **{f"{side}_description": f"{'' if stratum == 'all' else stratum + ', '}{side} "
                                                         f"{level} control limit around the pooled rate "
                                                         f"{_percent(pooled)}" for side in ("lower", "upper")}})
    denominator = FUNNEL_DENOMINATORS.get(report["measure"], "operations")
    x = alt.X("n:Q", scale=alt.Scale(zero=True), title=f"denominator: {denominator}")
    y = alt.Y("rate:Q", axis=alt.Axis(format="%"), title=f"{measure} rate")
    layers = []
    if curves:
        for bound in ("lower", "upper"):
            layers.append(alt.Chart(data("curves", curves)).mark_line(strokeWidth=1, color="#777").encode(
                x=x, y=alt.Y(f"{bound}:Q"), description=alt.Description(f"{bound}_description:N"),
                strokeDash=alt.StrokeDash("level:N", title="control limits", sort=["95 %", "99.8 %"]),
                detail=alt.Detail("level:N")))
        layers.append(alt.Chart(data("pooled_lines", pooled_lines)).mark_rule(color="#333").encode(
            y=alt.Y("pooled:Q"), description=DESCRIPTION))
    layers.append(alt.Chart(data("points", points)).mark_point(filled=True, size=60).encode(
        x=x, y=y, description=DESCRIPTION,
        color=alt.Color("position:N", title="position", scale=alt.Scale(
            domain=["within", "above 95", "below 95", "above 99.8", "below 99.8", "no limits"],
            range=["#4c78a8", "#f58518", "#54a24b", "#e45756", "#2e7d32", "#888"]))))
    # the labels repeat their point's title: hidden from screen readers, which read the point
    layers.append(alt.Chart(data("points", points)).mark_text(
        align="left", dx=6, dy=-6, fontSize=10, aria=False).encode(x=x, y=y, text=alt.Text("label:N")))
    title = f"Funnel plot: {measure}" + (" by " + " and ".join(strata) if strata else "")
    title_params = _title(title, report, today)
    if notes:
        title_params.subtitle = title_params.subtitle + sorted(set(notes))
    if strata:
        # one panel per stratum, each with its own pool and limits
        panels = [_stratum(layers, s) for s in dict.fromkeys(pt["stratum"] for pt in points)]
    else:
        panels = [alt.layer(*layers).properties(width=420, height=300)]
    if withheld:
        # a withheld centre has no place on the plane: it is listed under the plot
        panels.append(alt.Chart(data("withheld", withheld)).mark_text(
            align="left", fontStyle="italic", color="#666").encode(
            y=alt.Y("label:N", axis=None), x=alt.XValue(0), text=alt.Text("label:N"), description=DESCRIPTION
        ).properties(width=420, height=alt.Step(16)))
    chart = panels[0] if len(panels) == 1 else alt.concat(*panels, columns=2)
    return chart.properties(title=title_params)


def _stratum(layers, stratum):
    return alt.layer(*[layer.transform_filter(alt.datum.stratum == stratum) for layer in layers]).properties(
        width=420, height=240, title=stratum)


def _n_range(largest: int) -> list[int]:
    """Denominators for the limit curves: every n up to 40, then 60 steps to 1.1 x the largest."""
    top = max(10, math.ceil(largest * 1.1))
    values = set(range(1, min(top, 40) + 1))
    if top > 40:
        values.update(round(40 * (top / 40) ** (i / 60)) for i in range(61))
    return sorted(values)


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
    """Start vl-convert (its JavaScript engine and Vega take about a second to load) and draw one
    plot of each kind, so that the first plot a worker serves costs what the others do. Call it
    once per process after fork (registry.gunicorn_conf.post_fork): the converter's threads do not
    survive a fork."""
    _ready_converter()
    today = date.today()
    for kind in ("centres", "complications", "fusion", "outcomes", "completeness"):
        render_svg(_example_report(kind), today)
    render_png(_example_report("centres"), today)


# --- rendering -------------------------------------------------------------------------------

def chart(report: dict, today: date, data: Datasets) -> alt.TopLevelMixin:
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
    return completeness(report, today, data)


def spec(report: dict, today: date) -> dict:
    """The Vega-Lite specification of the report's plot, its rows included."""
    data = Datasets()
    top = chart(report, today, data)
    if not any(data.values()):
        # nothing to draw (no operation matches, or none published): say so, under the same title
        data = Datasets()
        top = alt.Chart(data("message", [{"text": "No operations to show for these filters.",
                                          "description": "No operations to show for these filters."}])
                        ).mark_text(fontSize=13, color="#444").encode(
            text=alt.Text("text:N"), description=DESCRIPTION).properties(width=420, height=60, title=top.title)
    top = top.properties(description=caption(report, today))
    # Altair's schema validation costs more than the drawing; the tests validate instead
    specification = top.to_dict(validate=False)
    specification["datasets"] = dict(data)
    return specification


def render_svg(report: dict, today: date) -> bytes:
    _ready_converter()
    specification = spec(report, today)
    svg = vl_convert.vegalite_to_svg(specification)
    title = specification["title"]["text"]
    return _add_titles(svg, title, caption(report, today))


def render_png(report: dict, today: date) -> bytes:
    _ready_converter()
    return vl_convert.vegalite_to_png(spec(report, today), scale=PNG_SCALE)


def _add_titles(svg: str, title: str, description: str) -> bytes:
    """Give each mark (role graphics-symbol, labelled by Vega from its `description`) a <title>
    child, and the document a <title> and <desc>: tooltips on hover and names for screen readers."""
    root = ET.fromstring(svg)
    for element in root.iter():
        label = element.get("aria-label")
        if label and element.get("role") == "graphics-symbol":
            element.insert(0, _element("title", label))
    root.insert(0, _element("desc", description))
    root.insert(0, _element("title", title))
    root.set("role", "img")
    return ET.tostring(root, encoding="utf-8", xml_declaration=False)


def _element(tag: str, text: str) -> ET.Element:
    element = ET.Element(f"{{{SVG_NS}}}{tag}")
    element.text = text
    return element
