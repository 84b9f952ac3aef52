"""An analyst never sees a figure about fewer operations than the threshold: any report, any
filter combination, grouped or not, JSON or CSV, groups and totals alike."""

import csv
import io
import itertools

import pytest

from registry.reports.suppression import perturb
from tests.conftest import make_settings
from tests.records.helpers import operation

THRESHOLD = 5
REPORTS = ["complications", "fusion", "outcomes", "completeness", "centres"]
# Filters that narrow a small registry to one, a few, or many operations.
FILTERS = [{}, {"approach": "anterior"}, {"approach": "posterior"}, {"region": "lumbar"},
           {"approach": "anterior", "region": "cervical"}, {"diagnosis": "ado_ii"},
           {"date_from": "2016-01-01", "date_to": "2016-01-31"}, {"year": "2016"}, {"centre": "CENTRE-B"},
           {"instrumented": "true"}, {"levels": "4"}, {"procedure": "fusion", "approach": "anterior"}]
GROUPINGS = [None, "region", "approach,region"]


@pytest.fixture
def settings():
    return make_settings(suppression_threshold=THRESHOLD)


@pytest.fixture
def small_registry(client, tokens):
    """One anterior operation (the seed case, with its four-year follow-up) and six posterior
    lumbar ones in centre A; two operations in centre B."""
    def submit(who, **changes):
        response = client.post("/v1/operations/", json=operation(**changes), headers=tokens.header(who))
        assert response.status_code == 201, response.json
        return response.json

    seed = submit("submitter_a", local_ref="ANT-1", approach="anterior")
    follow_up = client.post(f"/v1/operations/{seed['id']}/follow-ups",
                            json={"months_after": 48, "fusion_status": "fused", "implant_status": "intact", "joa": 14},
                            headers=tokens.header("submitter_a"))
    assert follow_up.status_code == 201, follow_up.json
    for n in range(6):
        submit("submitter_a", local_ref=f"POST-{n}", approach="posterior", region="lumbar",
               levels={"from": "L3", "to": "L5"}, operation_date=f"201{n}-03-01",
               patient={"ref": f"P-{n}", "sex": "female", "birth_year": 1960, "diagnosis": "pycnodysostosis"})
    for n in range(2):
        submit("submitter_b", local_ref=f"B-{n}", patient={"ref": f"B-{n}", "diagnosis": "ado_ii"})


def small_figures(node, path="report"):
    """Every published figure (not withheld) that describes 1..threshold-1 operations or values."""
    found = []
    if isinstance(node, dict):
        if {"numerator", "denominator"} <= set(node):
            if node["denominator"] is not None and 0 < node["denominator"] < THRESHOLD:
                found.append((path, node["denominator"]))
        elif "n" in node and "median" in node:
            if node["n"] is not None and 0 < node["n"] < THRESHOLD:
                found.append((path, node["n"]))
        for key, value in node.items():
            if key in ("operations", "fusion_operations") and isinstance(value, int) and 0 < value < THRESHOLD:
                found.append((f"{path}.{key}", value))
            found += small_figures(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += small_figures(item, f"{path}[{index}]")
    return found


def test_no_filter_or_grouping_shows_an_analyst_a_small_cell(client, tokens, small_registry):
    checked = 0
    for report, filters, group_by in itertools.product(REPORTS, FILTERS, GROUPINGS):
        if report == "centres" and group_by and "," in group_by:
            continue
        query = dict(filters, **({"group_by": group_by} if group_by else {}))
        response = client.get(f"/v1/reports/{report}", query_string=query, headers=tokens.header("analyst"))
        assert response.status_code == 200, (report, query, response.json)
        body = response.json
        assert small_figures(body["groups"]) + small_figures(body["total"]) == [], (report, query)
        checked += 1
    assert checked > 150


def set_record_key(db, local_ref, key):
    """Give an operation a chosen record key (the report aggregates follow, as for any write)."""
    db.execute("UPDATE operations SET record_key = %s WHERE local_ref = %s", (key, local_ref))


# Record keys that make the cell key of one operation perturb its count of 1 to 0, 1 and 3.
ONE_OPERATION_KEYS = {0: 0, 100: 1, 250: 3}


@pytest.mark.parametrize("key", ONE_OPERATION_KEYS)
def test_the_filtered_ungrouped_report_of_one_operation_shows_nothing(db, client, tokens, small_registry, key):
    set_record_key(db, "ANT-1", key)
    for report in ("complications", "outcomes"):
        body = client.get(f"/v1/reports/{report}", query_string={"approach": "anterior"},
                          headers=tokens.header("analyst")).json
        if ONE_OPERATION_KEYS[key] == 0:
            # published as 0 operations: not listed, as when no operation matches
            assert body["groups"] == [] and body["total"] is None
            continue
        [group] = body["groups"]
        assert group["suppressed"] == "primary" and group["operations"] is None
        assert body["total"]["suppressed"] == "primary" and body["total"]["operations"] is None
        if report == "complications":
            assert group["blood_loss_ml"]["median"] is None and group["duration_min"]["mean"] is None
        else:
            assert group["joa_preop"]["median"] is None


@pytest.mark.parametrize("true_count", [3, 4])
def test_a_group_of_fewer_than_the_threshold_perturbed_up_to_it_shows_nothing(db, client, tokens, small_registry,
                                                                               true_count):
    """Perturbation adds up to 2: a true 3 or 4 may be published as 5 or 6, and must still be withheld."""
    years = [str(2010 + n) for n in range(true_count)]
    refs = [f"POST-{n}" for n in range(true_count)]
    for n, ref in enumerate(refs):
        set_record_key(db, ref, 0)
    # choose the last operation's key so the group's cell key perturbs its count above the threshold
    key = next(k for k in range(256) if perturb(true_count, k) >= THRESHOLD)
    set_record_key(db, refs[-1], key)
    operations_key = db.execute("SELECT sum(record_key) AS s FROM operations WHERE local_ref = ANY(%s)",
                                (refs,)).fetchone()["s"]
    assert perturb(true_count, operations_key) >= THRESHOLD
    for report in REPORTS:
        body = client.get(f"/v1/reports/{report}", query_string={"year": ",".join(years), "approach": "posterior"},
                          headers=tokens.header("analyst")).json
        for row in body["groups"] + [body["total"]]:
            if row is None:
                continue
            assert row["suppressed"] == "primary" and row["operations"] is None, (report, row)


def test_csv_of_a_narrow_filter_holds_no_figures(db, client, tokens, small_registry):
    set_record_key(db, "ANT-1", 100)  # published as 1 operation: withheld
    response = client.get("/v1/reports/complications", query_string={"approach": "anterior", "format": "csv"},
                          headers=tokens.header("analyst"))
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["row"] for row in rows] == ["group", "total"]
    for row in rows:
        figures = {name: value for name, value in row.items() if name != "row" and not name.endswith("suppressed")}
        assert set(figures.values()) == {""}, row


def test_a_submitter_still_sees_its_own_small_cells(client, tokens, small_registry):
    body = client.get("/v1/reports/complications", query_string={"approach": "anterior"},
                      headers=tokens.header("submitter_a")).json
    assert body["groups"][0]["operations"] == 1
    assert body["groups"][0]["blood_loss_ml"]["median"] == 300


@pytest.mark.parametrize("query, field", [
    ({"centre": "CENTRE-A,CENTRE-B"}, "centre"),
    ({"date_from": "2016-01-02"}, "date_from"),
    ({"date_to": "2016-01-30"}, "date_to"),
    ({"date_from": "2016-01-01", "date_to": "2017-02-28"}, None),
    ({"date_to": "2016-02-28"}, "date_to"),
    ({"date_to": "2016-02-29"}, None),
])
def test_analysts_filter_by_one_centre_or_all_and_by_whole_months(client, tokens, small_registry, query, field):
    # two centres minus one, or date ranges a day apart, would isolate a few operations
    for report in REPORTS:
        response = client.get(f"/v1/reports/{report}", query_string=query, headers=tokens.header("analyst"))
        if field is None:
            assert response.status_code == 200, response.json
        else:
            assert response.status_code == 422
            assert [error["field"] for error in response.json["errors"]] == [field]


def test_a_submitter_may_filter_its_own_figures_by_any_day(client, tokens, small_registry):
    response = client.get("/v1/reports/complications", query_string={"date_from": "2016-01-01", "date_to": "2016-01-01"},
                          headers=tokens.header("submitter_a"))
    assert response.status_code == 200 and response.json["total"]["operations"] == 1
