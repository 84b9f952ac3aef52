"""Every figure of every report equals an independent computation over the raw rows: for an
analyst, each count perturbed by the cell key of the operations it counts (the oracle sums
their record keys itself), and the rates, intervals and means computed from those counts."""

import datetime as dt

import pytest

from tests.reports import dataset
from tests.reports.conftest import assert_same

GROUPINGS = [[], ["approach"], ["procedure"], ["centre"], ["levels"], ["year"], ["instrumented"],
             ["approach", "region"], ["procedure", "diagnosis"], ["indication", "centre"]]


def label(value):
    return value


def expected_rows(operations, report, dims, count, **options):
    compute = dataset.REFERENCE[report]
    rows = {}
    for key, ops in dataset.published_groups(operations, dims, count).items():
        rows[key] = compute(ops, count=count, **options)
    return rows, compute(dataset.counted(operations), count=count, **options)


def compare(body, operations, report, dims, count=dataset.perturbed, **options):
    rows, total = expected_rows(operations, report, dims, count, **options)
    got = {tuple(g["group"][d] for d in dims): g for g in body["groups"]}
    assert set(got) == set(rows)
    for key, expected in rows.items():
        assert_same(got[key], expected, f"{report}{key}")
    assert_same(body["total"], total, f"{report} total")


@pytest.mark.parametrize("dims", GROUPINGS, ids=lambda d: ",".join(d) or "none")
@pytest.mark.parametrize("report", ["complications", "fusion", "outcomes", "completeness"])
def test_report_matches_reference(client, tokens, db, registry, report, dims):
    if report == "completeness" and not dims:
        dims = ["centre"]
    response = client.get(f"/v1/reports/{report}", query_string={"group_by": ",".join(dims)} if dims else {},
                          headers=tokens.header("analyst"))
    assert response.status_code == 200, response.json
    compare(response.json, dataset.load(db), report, dims)


@pytest.mark.parametrize("dims", GROUPINGS, ids=lambda d: ",".join(d) or "none")
@pytest.mark.parametrize("report", ["complications", "fusion", "outcomes", "completeness"])
def test_submitter_report_is_exact(client, tokens, db, registry, report, dims):
    """A submitter's own centre: every figure exact, no perturbation."""
    if report == "completeness" and not dims:
        dims = ["centre"]
    response = client.get(f"/v1/reports/{report}", query_string={"group_by": ",".join(dims)} if dims else {},
                          headers=tokens.header("submitter_a"))
    assert response.status_code == 200, response.json
    assert response.json["disclosure_control"] is None
    own = [o for o in dataset.load(db) if o["centre"] == "CENTRE-A"]
    compare(response.json, own, report, dims, count=dataset.exact)


def test_filters_match_reference(client, tokens, db, registry):
    query = {"group_by": "approach", "region": "cervical,lumbar", "date_from": "2014-01-01",
             "date_to": "2019-12-31", "procedure": "fusion"}
    response = client.get("/v1/reports/complications", query_string=query, headers=tokens.header("analyst"))
    assert response.status_code == 200
    assert response.json["method"] == "scan"
    operations = [o for o in dataset.load(db)
                  if o["region"] in ("cervical", "lumbar") and "fusion" in o["procedures"]
                  and dt.date(2014, 1, 1) <= o["operation_date"] <= dt.date(2019, 12, 31)]
    compare(response.json, operations, "complications", ["approach"])


def test_fusion_threshold_is_a_parameter(client, tokens, db, registry):
    for months in (0, 12, 24):
        response = client.get("/v1/reports/fusion", query_string={"group_by": "approach", "min_months": months},
                              headers=tokens.header("analyst"))
        assert response.status_code == 200
        assert response.json["min_months"] == months
        compare(response.json, dataset.load(db), "fusion", ["approach"], min_months=months)


def test_fast_and_scan_paths_agree(client, tokens, registry):
    fast = client.get("/v1/reports/complications", query_string={"group_by": "region"},
                      headers=tokens.header("analyst")).json
    scan = client.get("/v1/reports/complications", query_string={"group_by": "region", "date_from": "1900-01-01"},
                      headers=tokens.header("analyst")).json
    assert fast["method"] == "fast" and scan["method"] == "scan"
    assert fast["groups"] == scan["groups"] and fast["total"] == scan["total"]
