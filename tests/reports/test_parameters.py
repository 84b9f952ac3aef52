"""Query parameters are validated: bad values and unknown parameters give a 422 naming them."""

import pytest

from registry.reports.csv_output import neutralise, report_csv


@pytest.mark.parametrize("path, query, field", [
    ("complications", {"group_by": "colour"}, "group_by.0"),
    ("complications", {"group_by": "approach,region,year"}, "group_by"),
    ("complications", {"group_by": "approach,approach"}, "group_by"),
    ("complications", {"approach": "sideways"}, "approach.0"),
    ("complications", {"group_by": ""}, "group_by.0"),
    ("complications", {"approach": "anterior,"}, "approach.1"),
    ("complications", {"year": "2016,,2017"}, "year.1"),
    ("complications", {"levels": "many"}, "levels.0"),
    ("complications", {"date_from": "2020-13-01"}, "date_from"),
    ("complications", {"date_from": "2021-01-01", "date_to": "2020-01-01"}, "date_to"),
    ("complications", {"min_months": "12"}, "min_months"),
    ("complications", {"colour": "blue"}, "colour"),
    ("complications", {"centre": "A\x00B"}, "centre.0"),
    ("complications", {"format": "xml"}, "format"),
    ("fusion", {"min_months": "-1"}, "min_months"),
    ("centres", {"measure": "happiness"}, "measure"),
    ("centres", {"group_by": "centre"}, "group_by"),
    ("completeness", {"instrumented": "perhaps"}, "instrumented"),
])
def test_bad_parameter_is_refused_naming_it(client, tokens, path, query, field):
    response = client.get(f"/v1/reports/{path}", query_string=query, headers=tokens.header("analyst"))
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert field in [error["field"] for error in response.json["errors"]]
    assert all(error["location"] == "query" for error in response.json["errors"])


def test_unknown_centre_is_refused(client, tokens):
    response = client.get("/v1/reports/complications", query_string={"centre": "NOWHERE"},
                          headers=tokens.header("analyst"))
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "centre"


def test_repeated_and_comma_separated_lists_are_the_same(client, tokens):
    one = client.get("/v1/reports/complications?group_by=approach,region&region=cervical,lumbar",
                     headers=tokens.header("analyst"))
    two = client.get("/v1/reports/complications?group_by=approach&group_by=region&region=cervical&region=lumbar",
                     headers=tokens.header("analyst"))
    assert one.status_code == two.status_code == 200
    assert one.json == two.json


def test_csv_by_accept_header_and_by_format(client, tokens, registry):
    by_header = client.get("/v1/reports/complications?group_by=approach",
                           headers={**tokens.header("analyst"), "Accept": "text/csv"})
    by_format = client.get("/v1/reports/complications?group_by=approach&format=csv",
                           headers=tokens.header("analyst"))
    assert by_header.mimetype == by_format.mimetype == "text/csv"
    assert by_header.data == by_format.data
    header = by_header.data.decode().splitlines()[0].split(",")
    assert header[:3] == ["row", "approach", "suppressed"]
    assert "intraop_event_ci_low" in header and "blood_loss_ml_median" in header


@pytest.mark.parametrize("cell, expected", [
    ("=HYPERLINK(1)", "'=HYPERLINK(1)"), ("+1+1", "'+1+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("-12.5", "-12.5"), ("posterior", "posterior"), ("", ""),
])
def test_csv_cells_cannot_start_a_formula(cell, expected):
    assert neutralise(cell) == expected


def test_csv_neutralises_every_cell():
    report = {"group_by": ["centre"], "groups": [{"group": {"centre": "=cmd|' /C calc'!A0"}, "operations": 7}],
              "total": None}
    text = report_csv(report)
    assert "'=cmd" in text and "\n=cmd" not in text
