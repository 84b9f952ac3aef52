"""Every report as a FHIR MeasureReport (Accept: application/fhir+json or format=fhir): valid R4,
built from the same report document as the JSON, so analysts get the same perturbed figures and
the same withheld cells (no count, a data-absent-reason), submitters their own exact figures."""

import json
import re
from pathlib import Path

import pytest
import yaml
from fhir.resources.R4B.measurereport import MeasureReport

from registry.centres.store import add_centre
from registry.fhir import measure_report as mr
from tests.conftest import make_settings
from tests.reports import dataset
from tests.reports.test_suppression import add_operations

FHIR_JSON = "application/fhir+json"
REPORTS = ["complications", "fusion", "outcomes", "centres", "completeness"]


@pytest.fixture
def settings():
    return make_settings(suppression_threshold=5)


@pytest.fixture
def registry(db, tokens):
    """A seeded random registry in centres A, B and C."""
    centre_c = add_centre(db, "CENTRE-C", "Centre C")
    dataset.generate(db, [tokens.centre_a["id"], tokens.centre_b["id"], centre_c["id"]], seed=11, operations=160)


def get(client, tokens, report, who="analyst", accept=None, **query):
    headers = tokens.header(who) if who else {}
    if accept:
        headers["Accept"] = accept
    return client.get(f"/v1/reports/{report}", query_string=query, headers=headers)


def measure_report_of(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == FHIR_JSON
    body = json.loads(response.get_data())
    MeasureReport.model_validate(body)   # raises on anything R4 does not allow
    assert body["status"] == "complete" and body["type"] == "summary"
    return body


def population(part: dict, code: str):
    """The count of a population, or 'withheld' when it carries data-absent-reason masked."""
    [found] = [p for p in part["population"] if p["code"]["coding"][0]["code"] == code]
    if "count" in found:
        return found["count"]
    [absent] = found["_count"]["extension"]
    assert absent == {"url": mr.DATA_ABSENT_REASON, "valueCode": "masked"}
    return "withheld"


def extension(part: dict, url: str):
    found = [e for e in part.get("extension", []) if e["url"] == url]
    return found[0] if found else None


def score(part: dict):
    if "measureScore" not in part:
        return None
    if "value" not in part["measureScore"]:
        assert part["measureScore"]["extension"][0]["valueCode"] == "masked"
        return "withheld"
    return part["measureScore"]["value"]


def expected_figures(figure) -> dict:
    """What the MeasureReport must show of one JSON figure (withheld as 'withheld')."""
    if isinstance(figure, dict) and "numerator" in figure:
        withheld = figure["suppressed"]
        return {"numerator": "withheld" if withheld else figure["numerator"],
                "denominator": "withheld" if withheld else figure["denominator"],
                "score": "withheld" if withheld else figure["rate"],
                "interval": None if figure["ci_low"] is None else (figure["ci_low"], figure["ci_high"])}
    if isinstance(figure, dict):
        withheld = figure["suppressed"]
        return {"n": "withheld" if figure["n"] is None else figure["n"],
                "score": "withheld" if withheld else figure["median"]}
    return {"count": "withheld" if figure is None else figure}


def shown_figures(part: dict, kind: dict) -> dict:
    if "numerator" in kind:
        interval = extension(part, mr.WILSON_INTERVAL)
        return {"numerator": population(part, "numerator"), "denominator": population(part, "denominator"),
                "score": score(part),
                "interval": interval and (interval["valueRange"]["low"]["value"],
                                          interval["valueRange"]["high"]["value"])}
    if "n" in kind:
        return {"n": population(part, "measure-population"), "score": score(part)}
    return {"count": population(part, "initial-population")}


def figure_of(row: dict, name: str):
    for part in name.split("."):
        row = row[part]
    return row


def stratum_values(stratum: dict) -> list:
    values = [stratum["value"]] if "value" in stratum else [c["value"] for c in stratum["component"]]
    return [None if v["text"] == "not recorded" else v["text"] for v in values]


def json_values(document: dict, row: dict) -> list:
    return [None if row["group"][d] is None else str(row["group"][d]).lower()
            if isinstance(row["group"][d], bool) else str(row["group"][d]) for d in document["group_by"]]


def assert_same_figures(resource: dict, document: dict) -> None:
    """Every figure of the JSON document, in every row, shown the same in the MeasureReport."""
    names = mr._figure_names(document["total"] or document["groups"][0])
    by_code = {group["code"]["coding"][0]["code"]: group for group in resource["group"]}
    assert len(by_code) == len(resource["group"]) == len(names)   # one group per figure
    for name in names:
        group = by_code[document["measure"] if name == "measure" else name]
        assert group["code"]["coding"][0]["system"] == mr.REPORT_MEASURE
        if document["total"] is not None:
            figure = figure_of(document["total"], name)
            assert shown_figures(group, expected_figures(figure)) == expected_figures(figure), name
        else:
            assert "population" not in group
        if not document["group_by"]:
            assert "stratifier" not in group
            continue
        [stratifier] = group["stratifier"]
        assert [c["coding"][0]["code"] for c in stratifier["code"]] == document["group_by"]
        assert len(stratifier["stratum"]) == len(document["groups"])
        for stratum, row in zip(stratifier["stratum"], document["groups"]):
            assert stratum_values(stratum) == json_values(document, row)
            figure = figure_of(row, name)
            assert shown_figures(stratum, expected_figures(figure)) == expected_figures(figure), (name, row["group"])


@pytest.mark.parametrize("who", ["analyst", "submitter_a"])
def test_every_report_grouped_by_one_and_two_dimensions_is_the_jsons_figures_as_a_valid_measure_report(
        client, tokens, registry, who):
    for report in REPORTS:
        groupings = [None, "region"] if report == "centres" else [None, "approach", "region,instrumented"]
        for index, group_by in enumerate(groupings):
            query = {"group_by": group_by} if group_by else {}
            document = get(client, tokens, report, who=who, **query).json
            # half asked by Accept, half by format=
            if index % 2:
                answer = get(client, tokens, report, who=who, format="fhir", **query)
            else:
                answer = get(client, tokens, report, who=who, accept=FHIR_JSON, **query)
            resource = measure_report_of(answer)
            assert resource["measure"] == f"https://registry.example.org/fhir/Measure/{report}"
            assert extension(resource, mr.REPORT_SCOPE)["valueString"] == \
                ("all centres" if who == "analyst" else "CENTRE-A")
            # analysts' figures are protected (and the MeasureReport says how), submitters' exact
            assert (extension(resource, mr.DISCLOSURE_CONTROL) is not None) == (who == "analyst")
            assert_same_figures(resource, document)


def test_a_withheld_cell_has_no_value_anywhere_and_says_masked(db, client, tokens):
    a, b = tokens.centre_a["id"], tokens.centre_b["id"]
    add_operations(db, a, "posterior", "lumbar", 40, blood_loss=300)
    add_operations(db, b, "anterior", "cervical", 30, blood_loss=200)
    add_operations(db, b, "lateral", "lumbar", 3, blood_loss=987)  # 3 < 5: withheld however perturbed
    document = get(client, tokens, "complications", group_by="approach").json
    lateral_row = next(g for g in document["groups"] if g["group"]["approach"] == "lateral")
    assert lateral_row["suppressed"] == "primary"

    answer = get(client, tokens, "complications", accept=FHIR_JSON, group_by="approach")
    resource = measure_report_of(answer)
    assert_same_figures(resource, document)
    for group in resource["group"]:
        [stratifier] = group["stratifier"]
        [lateral] = [s for s in stratifier["stratum"] if s["value"]["coding"][0]["code"] == "lateral"]
        assert lateral["value"]["coding"][0]["system"] == "https://registry.example.org/fhir/CodeSystem/approach"
        assert all("count" not in p for p in lateral["population"])
        assert extension(lateral, mr.WILSON_INTERVAL) is None
        assert extension(lateral, mr.SUMMARY_STATISTICS) is None
        assert extension(lateral, mr.WITHHELD)["valueCode"] == "primary"
        assert score(lateral) in ("withheld", None)
    # nor anything of its records: 987 mL as a number of its own (a total's mean may hold the digits)
    assert not re.search(rb"(?<![\d.])987(?!\d)", answer.data)

    # the submitter of centre B sees the same group exact
    own = measure_report_of(get(client, tokens, "complications", who="submitter_b", format="fhir",
                                group_by="approach"))
    [operations] = [g for g in own["group"] if g["code"]["coding"][0]["code"] == "operations"]
    counts = {s["value"]["text"]: population(s, "initial-population") for s in operations["stratifier"][0]["stratum"]}
    assert counts == {"anterior": 30, "lateral": 3}
    [blood_loss] = [g for g in own["group"] if g["code"]["coding"][0]["code"] == "blood_loss_ml"]
    # the median of 30 operations at 200 mL and 3 at 987 mL, in UCUM mL
    assert blood_loss["measureScore"] == {"value": 200, "unit": "mL", "system": "http://unitsofmeasure.org",
                                          "code": "mL"}


def test_period_and_parameters_come_from_the_filters(client, tokens, registry):
    resource = measure_report_of(get(client, tokens, "fusion", format="fhir", date_from="2015-01-01",
                                     date_to="2020-12-31", approach="posterior,anterior", min_months=24))
    assert resource["period"] == {"start": "2015-01-01", "end": "2020-12-31"}
    parameters = {e["extension"][0]["valueCode"]: e["extension"][1]["valueString"]
                  for e in resource["extension"] if e["url"] == mr.REPORT_PARAMETER}
    assert parameters == {"approach": "posterior,anterior", "date_from": "2015-01-01",
                          "date_to": "2020-12-31", "min_months": "24"}
    by_year = measure_report_of(get(client, tokens, "complications", format="fhir", year="2018,2019"))
    assert by_year["period"] == {"start": "2018-01-01", "end": "2019-12-31"}


def test_the_centres_report_carries_the_funnel_on_each_centres_stratum(client, tokens, registry):
    document = get(client, tokens, "centres", measure="postop_complication").json
    resource = measure_report_of(get(client, tokens, "centres", accept=FHIR_JSON, measure="postop_complication"))
    [compared] = [g for g in resource["group"] if g["code"]["coding"][0]["code"] == "postop_complication"]
    for stratum, row in zip(compared["stratifier"][0]["stratum"], document["groups"]):
        funnel = {e["url"]: e.get("valueDecimal", e.get("valueCode")) for e in extension(stratum, mr.FUNNEL)["extension"]}
        assert funnel["pooledRate"] == row["pooled_rate"]
        assert funnel["upper_99.8"] == row["limits"]["upper_99.8"]
        assert funnel["position"] == row["position"]


def test_fhir_is_asked_by_accept_with_a_fhir_version_and_json_stays_the_default(client, tokens, registry):
    for accept in (FHIR_JSON, "application/fhir+json; fhirVersion=4.0", "application/json+fhir",
                   "text/csv;q=0.5, application/fhir+json"):
        assert get(client, tokens, "outcomes", accept=accept).mimetype == FHIR_JSON, accept
    for accept in (None, "*/*", "application/json", "application/fhir+json; fhirVersion=5.0",
                   "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"):
        assert get(client, tokens, "outcomes", accept=accept).mimetype == "application/json", accept
    # format= wins over Accept
    assert get(client, tokens, "outcomes", accept=FHIR_JSON, format="csv").mimetype == "text/csv"


def test_every_negotiated_answer_varies_on_accept(client, tokens):
    for query in ({}, {"format": "csv"}, {"format": "fhir"}, {"format": "svg"}):
        response = get(client, tokens, "completeness", **query)
        assert response.status_code == 200
        assert "Accept" in response.headers.get("Vary", ""), query


@pytest.mark.parametrize("who, query, status", [
    (None, {"format": "fhir"}, 401),
    ("metrics", {"format": "fhir"}, 403),
    ("analyst", {"format": "fhir", "group_by": "colour"}, 422),
    ("submitter_a", {"format": "fhir", "centre": "CENTRE-B"}, 403),
])
def test_errors_stay_problem_json_when_fhir_is_asked_for(client, tokens, who, query, status):
    response = get(client, tokens, "fusion", who=who, accept=FHIR_JSON, **query)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_openapi_documents_the_measure_report_answer():
    document = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())
    for report in REPORTS:
        operation = document["paths"][f"/v1/reports/{report}"]["get"]
        assert FHIR_JSON in operation["responses"]["200"]["content"]
        format_parameter = next(p for p in operation["parameters"] if p["name"] == "format")
        assert "fhir" in format_parameter["schema"]["enum"]
