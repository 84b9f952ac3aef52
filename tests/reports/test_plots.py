"""Every report as a plot: SVG and PNG drawn from the same report document as the JSON, under
the same roles and disclosure control, every mark titled, a withheld group never drawn."""

import re
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import pytest
import yaml
from altair.vegalite.v6.schema.core import load_schema
from jsonschema import validate

from registry.centres.store import add_centre
from registry.reports import plots
from tests.conftest import make_settings
from tests.reports.test_suppression import add_operations

SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPORTS = ["complications", "fusion", "outcomes", "centres", "completeness"]


@pytest.fixture
def settings():
    # this module's own threshold: 5, so a group of 3 operations is always withheld
    return make_settings(suppression_threshold=5)


def titles(svg: bytes) -> list[str]:
    return [t.text for t in ET.fromstring(svg).iter(f"{SVG}title")]


def marks(svg: bytes) -> list[ET.Element]:
    """The drawn marks: Vega labels each item of a mark as role graphics-symbol."""
    return [e for e in ET.fromstring(svg).iter() if e.get("role") == "graphics-symbol"]


def get(client, tokens, path, who="analyst", accept=None, **query):
    headers = tokens.header(who) if who else {}
    if accept:
        headers["Accept"] = accept
    return client.get(f"/v1/reports/{path}", query_string=query, headers=headers)


def test_each_report_answers_svg_and_png_by_format_and_by_accept(client, tokens, registry):
    for index, report in enumerate(REPORTS):
        # half the reports ask by format=, half by Accept, each way for SVG and PNG
        by_format = index % 2 == 0
        svg = get(client, tokens, report, **({"format": "svg"} if by_format else {"accept": "image/svg+xml"}))
        png = get(client, tokens, report, **({"accept": "image/png"} if by_format else {"format": "png"}))
        assert svg.status_code == 200, svg.data[:500]
        assert svg.mimetype == "image/svg+xml"
        assert png.status_code == 200 and png.mimetype == "image/png"
        assert png.data.startswith(PNG_MAGIC)
        root = ET.fromstring(svg.data)
        # the document is named: title, and the caption with filters, n and date
        assert root.find(f"{SVG}title").text
        description = root.find(f"{SVG}desc").text
        assert "Filters: none" in description and "n = " in description
        assert re.search(r"drawn \d{4}-\d\d-\d\d", description)
        # every mark carries its own <title> with its label and figures
        drawn = marks(svg.data)
        assert drawn, report
        for mark in drawn:
            title = mark.find(f"{SVG}title")
            assert title is not None and title.text == mark.get("aria-label"), ET.tostring(mark)[:200]


def test_browser_and_wildcard_accept_get_json_and_image_accept_gets_svg(client, tokens, registry):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert get(client, tokens, "fusion", accept=browser).mimetype == "application/json"
    assert get(client, tokens, "fusion", accept="*/*").mimetype == "application/json"
    assert get(client, tokens, "fusion", accept="image/*").mimetype == "image/svg+xml"
    # format= wins over Accept
    assert get(client, tokens, "fusion", accept="image/png", format="json").mimetype == "application/json"


def test_analysts_plot_shows_the_same_perturbed_figures_as_the_json(client, tokens, registry):
    document = get(client, tokens, "complications", group_by="centre").json
    assert document["disclosure_control"]["method"] == "cell-key perturbation"
    svg = get(client, tokens, "complications", group_by="centre", format="svg").data
    shown = titles(svg)
    for row in document["groups"] + [document["total"]]:
        label = row["group"].get("centre", "All operations")
        p = row["intraop_event"]
        expected = (f"{label}, Intraoperative event: {100 * p['rate']:.1f} % "
                    f"({p['numerator']} of {p['denominator']}), "
                    f"95 % CI {100 * p['ci_low']:.1f} % to {100 * p['ci_high']:.1f} %")
        assert expected in shown
    assert f"n = {document['total']['operations']} operations" in ET.fromstring(svg).find(f"{SVG}desc").text

    funnel = get(client, tokens, "centres", measure="postop_complication").json
    funnel_svg = get(client, tokens, "centres", measure="postop_complication", format="svg").data
    points = [t for t in titles(funnel_svg) if t.startswith("CENTRE-")]
    assert len(points) == len(funnel["groups"]) == 3   # one mark per visible centre
    for row in funnel["groups"]:
        p = row["measure"]
        assert any(t.startswith(f"{row['group']['centre']}: {100 * p['rate']:.1f} % "
                                f"({p['numerator']} of {p['denominator']})") for t in points)


def test_a_submitters_funnel_plot_shows_its_own_centre_only(client, tokens, registry):
    svg = get(client, tokens, "centres", who="submitter_a", measure="instrument_breakage", format="svg").data
    shown = " ".join(titles(svg)) + ET.tostring(ET.fromstring(svg), encoding="unicode")
    assert "CENTRE-A" in shown
    assert "CENTRE-B" not in shown and "CENTRE-C" not in shown


def test_a_withheld_group_is_labelled_withheld_and_its_figures_are_nowhere(db, client, tokens):
    a, b = tokens.centre_a["id"], tokens.centre_b["id"]
    add_operations(db, a, "posterior", "lumbar", 40, blood_loss=300)
    add_operations(db, b, "anterior", "cervical", 30, blood_loss=200)
    add_operations(db, b, "lateral", "lumbar", 3, blood_loss=987)  # 3 < 5: withheld however perturbed
    document = get(client, tokens, "complications", group_by="approach").json
    lateral = next(g for g in document["groups"] if g["group"]["approach"] == "lateral")
    assert lateral["suppressed"] == "primary"

    svg = get(client, tokens, "complications", group_by="approach", format="svg").data
    withheld = [t for t in titles(svg) if t.startswith("lateral")]
    assert withheld and all(t.endswith(": withheld") for t in withheld)
    assert not any(re.search(r"\d", t) for t in withheld)   # no count, rate or interval
    texts = [e for e in ET.fromstring(svg).iter(f"{SVG}text") if e.get("aria-label", "").startswith("lateral")]
    assert texts and all("withheld" in "".join(e.itertext()) for e in texts)
    assert b"987" not in svg   # nor anything of its records

    # the funnel plot lists a withheld centre under the plot, with no point for it
    small = add_centre(db, "CENTRE-S", "Small centre")
    add_operations(db, small["id"], "posterior", "lumbar", 3)
    funnel = get(client, tokens, "centres", format="svg").data
    about_small = [t for t in titles(funnel) if t.startswith("CENTRE-S")]
    assert about_small == ["CENTRE-S: withheld"]


@pytest.mark.parametrize("who, query, status", [
    (None, {"format": "svg"}, 401),
    ("metrics", {"format": "png"}, 403),
    ("analyst", {"format": "gif"}, 422),
    ("analyst", {"format": "svg", "group_by": "colour"}, 422),
])
def test_errors_stay_problem_json_when_a_plot_is_asked_for(client, tokens, who, query, status):
    response = get(client, tokens, "centres", who=who, accept="image/svg+xml", **query)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_openapi_documents_the_image_answers():
    document = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())
    for report in REPORTS:
        operation = document["paths"][f"/v1/reports/{report}"]["get"]
        content = operation["responses"]["200"]["content"]
        assert {"application/json", "text/csv", "image/svg+xml", "image/png"} <= set(content)
        format_parameter = next(p for p in operation["parameters"] if p["name"] == "format")
        assert {"svg", "png"} <= set(format_parameter["schema"]["enum"])


def test_every_plot_specification_is_valid_vega_lite(client, tokens, registry):
    # the service skips Altair's schema validation for speed; the tests do it instead
    schema = load_schema()
    for report, query in (("complications", {"group_by": "approach,region"}), ("fusion", {"group_by": "centre"}),
                          ("outcomes", {"group_by": "region"}), ("completeness", {}),
                          ("centres", {"group_by": "region"})):
        document = get(client, tokens, report, **query).json
        validate(plots.spec(document, date.today()), schema)


def test_a_report_with_nothing_to_show_draws_a_notice(client, tokens):
    # no operations at all: every report still answers a plot (an empty facet has no size and
    # could not be drawn as PNG)
    for index, report in enumerate(REPORTS):
        answer = get(client, tokens, report, format="png" if index % 2 else "svg")
        assert answer.status_code == 200, answer.data[:300]
        if answer.mimetype == "image/svg+xml":
            assert "No operations to show for these filters." in titles(answer.data)
        else:
            assert answer.data.startswith(PNG_MAGIC)


def test_the_measures_asked_for_are_the_panels_of_the_plot(client, tokens, registry):
    def panels(svg):
        return {t.split(", ")[1].split(":")[0] for t in titles(svg)
                if t.startswith(("anterior", "posterior", "lateral", "combined", "percutaneous", "not recorded"))
                and ": " in t}

    query = {"group_by": "approach", "measure": "instrument_breakage,major_complication"}
    document = get(client, tokens, "complications", **query).json
    svg = get(client, tokens, "complications", format="svg", **query).data
    assert panels(svg) == {"Instrument breakage", "Major complication"}
    row = next(r for r in document["groups"] if r["instrument_breakage"]["rate"] is not None)
    label = plots.value_label("approach", row["group"]["approach"])
    assert f"{label}, Instrument breakage: {plots._proportion_text(row['instrument_breakage'])}" in titles(svg)
    # a group of measures is a panel per member; a summary is a box
    svg = get(client, tokens, "complications", format="svg", group_by="approach",
              measure="intraop_event_types,blood_loss_ml").data
    assert {"Dural tear", "Instrument breakage", "Blood loss (mL)"} <= panels(svg)
    fusion = get(client, tokens, "fusion", format="svg", group_by="approach", measure="revision,indeterminate").data
    assert panels(fusion) == {"Revision", "Fusion indeterminate"}
