"""Plots drawn from report documents alone (no database): every report kind, grouping and mix of
withheld cells gives a valid SVG whose marks are all titled, a withheld group is drawn as
withheld and never as a value, `measure=` draws the measures asked for, grouped by two both
dimensions are labelled, and fields a report gains later do not break the plot."""

import copy
import random
import re
import xml.etree.ElementTree as ET
from datetime import date

from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

from registry.reports import plots, stats
from registry.reports.store import DIMENSIONS
from registry.reports.suppression import description

SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TODAY = date(2026, 11, 28)
VALUES = {"approach": ["anterior", "posterior", "lateral", None], "region": ["cervical", "lumbar", "thoracic"],
          "procedure": ["fusion", "laminectomy"], "diagnosis": ["ado_ii", "pycnodysostosis"],
          "indication": ["myelopathy", "fracture"], "instrumented": [True, False], "levels": [1, 4],
          "year": [2019, 2020, 2021], "centre": ["CENTRE-A", "CENTRE-B", "CENTRE-C", "CENTRE-D"]}
PROPORTIONS = {"complications": ["intraop_event", "instrument_breakage", "postop_complication", "major_complication"],
               "fusion": ["fusion", "pseudarthrosis", "implant_failure", "revision"],
               "completeness": ["indication", "approach", "levels", "duration_min", "blood_loss_ml", "preop_joa",
                                "follow_up", "follow_up_12m"]}
SUMMARIES = {"complications": ["blood_loss_ml", "duration_min"],
             "outcomes": ["joa_preop", "joa_latest", "joa_recovery_rate", "mjoa_preop", "mjoa_latest"]}
# a rate's title: label, measure: rate (n of N), 95 % CI low to high
RATE_TITLE = re.compile(r"^.+: \d+\.\d % \(\d+ of \d+\), 95 % CI \d+\.\d % to \d+\.\d %")
SUMMARY_TITLE = re.compile(r"^.+: n \d+, median [\d.-]+ \(quartiles [\d.-]+ to [\d.-]+\), mean [\d.-]+$")


def proportion(rng, denominator):
    numerator = rng.randint(0, denominator)
    low, high = stats.wilson_interval(numerator, denominator)
    return {"numerator": numerator, "denominator": denominator, "rate": numerator / denominator,
            "ci_low": low, "ci_high": high, "suppressed": None}


def summary(rng, n):
    q1 = rng.randint(0, 10)
    return {"n": n, "mean": q1 + 2.5, "median": q1 + 2.0, "q1": float(q1), "q3": q1 + 5.0, "suppressed": None}


def withheld_figure(figure):
    return {**{key: None for key in figure}, "suppressed": "primary"}


def report_row(rng, kind, group, withheld):
    operations = rng.randint(20, 400)
    figures = {name: proportion(rng, operations) for name in PROPORTIONS.get(kind, [])}
    figures.update({name: summary(rng, operations) for name in SUMMARIES.get(kind, [])})
    if kind == "complications":
        figures["intraop_event_types"] = {"dural_tear": proportion(rng, operations),
                                          "iatrogenic_fracture": proportion(rng, operations)}
    if kind == "centres":
        figures = {"measure": proportion(rng, operations)}
    if withheld:
        figures = {name: ({k: withheld_figure(v) for k, v in figure.items()} if name == "intraop_event_types"
                          else withheld_figure(figure)) for name, figure in figures.items()}
    return {"group": group, "suppressed": "primary" if withheld else None,
            "operations": None if withheld else operations, **figures}


def report_document(kind, dims, seed=1, withheld_every=3, extra=False):
    """A report document as the service publishes it to an analyst: every combination of the
    dimensions' values a group, every `withheld_every`-th withheld."""
    rng = random.Random(seed)
    if kind == "centres":
        dims = ["centre", *[d for d in dims if d != "centre"][:1]]
    keys = [()]
    for dim in dims:
        keys = [key + (value,) for key in keys for value in VALUES[dim]]
    groups = []
    for index, key in enumerate(keys):
        row = report_row(rng, kind, dict(zip(dims, key)), withheld_every and index % withheld_every == 1)
        if kind == "centres":
            visible = row["measure"]["rate"] is not None
            limits = stats.funnel_limits(0.1, row["measure"]["denominator"]) if visible else \
                dict.fromkeys(["lower_95", "upper_95", "lower_998", "upper_998"])
            row.update(pooled_rate=0.1, pooled_withheld=None, limits=limits,
                       position=stats.funnel_position(row["measure"]["rate"], limits) if visible else None)
        if extra:   # what later reports may carry: the plots draw what they know and ignore the rest
            row["new_rate"] = proportion(rng, 50)
            row["comment"] = "a new field"
        groups.append(row)
    document = {"report": kind, "group_by": dims, "filters": {"approach": ["anterior", "posterior"]},
                "scope": "all centres", "suppression": {"applied": True, "threshold": 5},
                "disclosure_control": description(5), "method": "scan", "groups": groups,
                # ungrouped, the one group is the total, as the service publishes it
                "total": None if kind == "centres" else
                groups[0] if not dims else report_row(rng, kind, {}, False)}
    if kind == "centres":
        document["measure"] = "instrument_breakage"
    if kind == "fusion":
        document["min_months"] = 12
    if extra:
        document["definitions"] = {"intraop_event": {"numerator": "operations with an event"}}
        document["query"] = {"group_by": dims, "unknown": True}
    return document


def parse(svg: bytes) -> ET.Element:
    return ET.fromstring(svg)


def marks(root):
    return [e for e in root.iter() if e.get("role") == "graphics-symbol"]


NOT_DATA = ("X-axis", "Y-axis", "Title text", "Subtitle text", "Symbol legend", "Gradient legend")


def mark_titles(root):
    """The titles of the data marks (not the labels of axes, headers, legends and the caption)."""
    titles = (m.find(f"{SVG}title").text for m in marks(root))
    return [t for t in titles if not t.startswith(NOT_DATA)]


def group_labels(document):
    """How the plot names each group of the document (one or two dimensions joined by ' · ')."""
    return [" · ".join(plots.value_label(d, row["group"][d]) for d in document["group_by"]) or "All operations"
            for row in document["groups"]]


def assert_accessible(document, svg):
    root = parse(svg)
    # the document is named first: its title, then the caption (filters, n, date)
    assert [child.tag for child in root[:2]] == [f"{SVG}title", f"{SVG}desc"]
    assert root[0].text and "drawn 2026-11-28" in root[1].text and "approach = anterior, posterior" in root[1].text
    drawn = marks(root)
    assert drawn
    for mark in drawn:
        title = mark.find(f"{SVG}title")
        assert title is not None and title.text == mark.get("aria-label")
    titles = mark_titles(root)
    kind = document["report"]
    for label, row in zip(group_labels(document), document["groups"]):
        if kind == "centres":
            label = row["group"]["centre"] + (", " + plots.value_label(document["group_by"][1], row["group"][
                document["group_by"][1]]) if len(document["group_by"]) == 2 else "")
        own = [t for t in titles if t.startswith(label + ",") or t.startswith(label + ":")]
        assert own, (label, titles[:5])
        if row["suppressed"]:
            # a withheld group has marks saying so, and no figure at all
            assert all(t.endswith(WITHHELD_SUFFIX) for t in own), own
            assert not any(re.search(r"\d+ of \d+|\d %|\bn \d|median|mean", t) for t in own), own
        else:
            assert all(RATE_TITLE.match(t) or SUMMARY_TITLE.match(t) or kind == "centres" for t in own), own
    return titles


WITHHELD_SUFFIX = ": withheld"


# no shrinking: a plot takes tens of milliseconds, and a failing case prints its document's recipe
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@example(kind="complications", dims=["approach", "region"], seed=1, withheld_every=3, extra=True)
@example(kind="outcomes", dims=["centre", "year"], seed=2, withheld_every=2, extra=False)
@example(kind="completeness", dims=[], seed=3, withheld_every=0, extra=True)
@example(kind="centres", dims=["region"], seed=4, withheld_every=3, extra=False)
@given(kind=st.sampled_from(["complications", "fusion", "outcomes", "completeness", "centres"]),
       dims=st.lists(st.sampled_from(sorted(DIMENSIONS)), max_size=2, unique=True),
       seed=st.integers(0, 1000), withheld_every=st.sampled_from([0, 2, 3]), extra=st.booleans())
def test_every_report_kind_and_grouping_draws_a_valid_svg_with_every_mark_titled(kind, dims, seed,
                                                                                  withheld_every, extra):
    document = report_document(kind, dims, seed, withheld_every, extra)
    assert_accessible(document, plots.render_svg(document, TODAY))


def test_a_withheld_group_is_one_mark_saying_withheld_per_figure_and_draws_no_value():
    document = report_document("complications", ["approach"], withheld_every=2)
    svg = plots.render_svg(document, TODAY)
    root = parse(svg)
    withheld = [m for m in marks(root) if m.get("aria-label").startswith("posterior")]
    assert len(withheld) == 4   # one per panel: the four default measures, and no dot or whisker
    for mark in withheld:
        assert mark.tag == f"{SVG}text" and "".join(mark.itertext()).endswith("withheld")


def test_labels_with_markup_characters_are_titled_as_written_and_the_svg_stays_well_formed():
    document = report_document("centres", [], withheld_every=0)
    document["groups"][0]["group"]["centre"] = 'A<&">B'
    document["filters"] = {"centre": 'A<&">B'}
    root = parse(plots.render_svg(document, TODAY))
    assert any(t.startswith('A<&">B: ') for t in mark_titles(root))
    assert 'centre = A<&">B' in root.find(f"{SVG}desc").text


def test_two_reports_of_the_same_shape_each_draw_their_own_figures():
    # same groups, same n, same caption: the same compiled plot, filled with each report's rows
    first = report_document("complications", ["approach"], withheld_every=0)
    second = copy.deepcopy(first)
    row = next(r for r in second["groups"] if r["group"]["approach"] == "anterior")
    row["instrument_breakage"] = {"numerator": 1, "denominator": 9, "rate": 1 / 9, "ci_low": 0.02,
                                  "ci_high": 0.43, "suppressed": None}
    hits = plots._compiled.cache_info().hits
    for document in (first, second, first):
        anterior = next(r for r in document["groups"] if r["group"]["approach"] == "anterior")
        titles = mark_titles(parse(plots.render_svg(document, TODAY)))
        assert f"anterior, Instrument breakage: {plots._proportion_text(anterior['instrument_breakage'])}" in titles
    assert plots._compiled.cache_info().hits >= hits + 2   # the second and third came from the cache
    assert plots.render_png(second, TODAY).startswith(PNG_MAGIC)


def test_a_report_whose_n_and_largest_centre_changed_draws_its_own_caption_and_axis():
    # the compiled plot is kept without the caption and the funnel's axis end: each request's own go back in
    first = report_document("centres", [], withheld_every=0)
    second = copy.deepcopy(first)
    second["groups"][0]["measure"] = {"numerator": 400, "denominator": 4000, "rate": 0.1, "ci_low": 0.09,
                                      "ci_high": 0.11, "suppressed": None}
    second["filters"] = {"approach": ["anterior", "posterior"], "date_to": "2026-01-01"}
    plots.render_svg(first, TODAY)
    hits = plots._compiled.cache_info().hits
    for document, other in ((first, second), (second, first)):
        root = parse(plots.render_svg(document, TODAY))
        texts = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
        assert root.find(f"{SVG}desc").text == plots.caption(document, TODAY)
        assert any("date_to" in t for t in texts) == ("date_to" in document["filters"])
        # the x axis reaches past its own largest centre (4,000 operations in the second only)
        assert ("4,000" in texts) == (document is second)
    assert plots._compiled.cache_info().hits >= hits + 2


def test_the_measures_asked_for_are_the_panels():
    document = report_document("complications", ["approach"], withheld_every=0)
    document["query"] = {"measure": ["dural_tear", "major_complication"]}
    titles = mark_titles(parse(plots.render_svg(document, TODAY)))
    panels = {t.split(", ")[1].split(":")[0] for t in titles}
    assert panels == {"Dural tear", "Major complication"}
    anterior = next(row for row in document["groups"] if row["group"]["approach"] == "anterior")
    tear = anterior["intraop_event_types"]["dural_tear"]
    assert f"anterior, Dural tear: {plots._proportion_text(tear)}" in titles
    # without measure=, the default four
    del document["query"]
    titles = mark_titles(parse(plots.render_svg(document, TODAY)))
    assert {t.split(", ")[1].split(":")[0] for t in titles} == {
        "Intraoperative event", "Instrument breakage", "Postoperative complication", "Major complication"}


def test_a_measure_summarised_by_quartiles_is_a_box_in_its_own_panel():
    document = report_document("complications", [], withheld_every=0)
    document["query"] = {"measure": ["instrument_breakage", "blood_loss_ml"]}
    svg = plots.render_svg(document, TODAY)
    loss = document["total"]["blood_loss_ml"]
    titles = mark_titles(parse(svg))
    assert f"All operations, Blood loss (mL): {plots._summary_text(loss)}" in titles
    assert plots.render_png(document, TODAY).startswith(PNG_MAGIC)


def test_an_unknown_measure_is_drawn_under_its_own_name():
    document = report_document("fusion", ["approach"], withheld_every=0, extra=True)
    document["query"]["measure"] = ["revision", "new_rate"]
    titles = mark_titles(parse(plots.render_svg(document, TODAY)))
    new_rate = document["groups"][0]["new_rate"]
    assert f"anterior, New rate: {plots._proportion_text(new_rate)}" in titles
    # a measure no row carries draws nothing, and breaks nothing
    document["query"]["measure"] = ["revision", "not_in_any_row"]
    assert all("Revision" in t for t in mark_titles(parse(plots.render_svg(document, TODAY))))


def test_grouped_by_two_each_line_names_both_and_each_row_of_panels_names_the_first():
    document = report_document("fusion", ["approach", "region"], withheld_every=0)
    root = parse(plots.render_svg(document, TODAY))
    titles = mark_titles(root)
    for row in document["groups"]:
        label = f"{plots.value_label('approach', row['group']['approach'])} · {row['group']['region']}"
        assert f"{label}, Fusion: {plots._proportion_text(row['fusion'])}" in titles
    # visible labels: each approach heads a row of panels, each region labels a line
    texts = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    assert {"anterior", "posterior", "lateral", "not recorded"} <= texts
    assert {"cervical", "lumbar", "thoracic"} <= texts


def test_the_funnel_labels_each_centre_once_with_its_interval_and_the_limits_as_curves():
    document = report_document("centres", [], withheld_every=0)
    titles = mark_titles(parse(plots.render_svg(document, TODAY)))
    for row in document["groups"]:
        centre = row["group"]["centre"]
        assert len([t for t in titles if t.startswith(f"{centre}: ")]) == 1
        # its Wilson interval drawn as a whisker through the point
        p = row["measure"]
        assert (f"95 % CI of {centre}: {plots._percent(p['ci_low'])} to {plots._percent(p['ci_high'])}"
                in titles)
    assert any(t.startswith("upper 95 % control limit") for t in titles)
    assert any(t.startswith("lower 99.8 % control limit") for t in titles)


def test_a_group_of_measures_asked_for_is_a_panel_per_member():
    document = report_document("complications", ["region"], withheld_every=0)
    document["query"] = {"measure": ["intraop_event_types"]}
    titles = mark_titles(parse(plots.render_svg(document, TODAY)))
    assert {t.split(", ")[1].split(":")[0] for t in titles} == {"Dural tear", "Iatrogenic fracture"}


def test_each_gunicorn_worker_warms_the_renderer_after_fork_and_serves_even_if_that_fails(monkeypatch):
    from registry import gunicorn_conf

    class Server:
        class log:
            failures = []

            @classmethod
            def exception(cls, message):
                cls.failures.append(message)

    warmed = []
    monkeypatch.setattr(plots, "warm_up", lambda: warmed.append(True))
    gunicorn_conf.post_fork(Server, worker=None)
    assert warmed == [True] and not Server.log.failures

    def broken():
        raise RuntimeError("no JavaScript engine")

    monkeypatch.setattr(plots, "warm_up", broken)
    gunicorn_conf.post_fork(Server, worker=None)   # logged, not raised: JSON and CSV still answer
    assert Server.log.failures == ["Warming up the plot renderer failed"]


def test_warming_up_draws_every_example_report():
    plots.warm_up()
    for kind in ("complications", "fusion", "outcomes", "completeness", "centres"):
        assert marks(parse(plots.render_svg(plots._example_report(kind), TODAY)))
