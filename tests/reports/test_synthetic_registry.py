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
    expected = {key: dataset.complications(ops) for key, ops in dataset.groups(operations, ["approach"]).items()}
    assert {(g["group"]["approach"],) for g in body["groups"]} == set(expected)
    for group in body["groups"]:
        assert_same(group, expected[(group["group"]["approach"],)])
