"""The benchmark's generator loads a consistent registry whose rebuilt aggregates are exact."""

from registry.reports.synthetic import generate
from tests.reports import dataset
from tests.reports.conftest import assert_same


def test_generated_registry_reports_match_the_reference(db, client, tokens):
    summary = generate(db, 3000, seed=2, log=lambda line: None)
    assert summary["operations"] == 3000 and summary["centres"] == 10
    assert db.execute("SELECT count(*) AS n FROM report_operations").fetchone()["n"] == 3000
    facts = db.execute("SELECT * FROM report_operations ORDER BY 1, 2").fetchall()
    assert facts == db.execute("SELECT * FROM report_operation_facts ORDER BY 1, 2").fetchall()
    body = client.get("/v1/reports/complications", query_string={"group_by": "approach"},
                      headers=tokens.header("analyst")).json
    operations = dataset.load(db)
    # an analyst's figures: perturbed by the record keys the generator's COPY drew
    expected = {key: dataset.complications(ops, count=dataset.perturbed)
                for key, ops in dataset.published_groups(operations, ["approach"], dataset.perturbed).items()}
    assert {(g["group"]["approach"],) for g in body["groups"]} == set(expected)
    for group in body["groups"]:
        assert_same(group, expected[(group["group"]["approach"],)])
