"""Withdrawn consent counts nowhere; a submitter sees its own centre and nothing of others."""

from tests.reports import dataset
from tests.reports.maintenance import fold_queued


def figures(client, tokens, who="analyst", **query):
    response = client.get("/v1/reports/complications", query_string=query, headers=tokens.header(who))
    assert response.status_code == 200, response.json
    return response.json


def test_withdrawn_consent_removes_a_patient_from_every_report(db, client, tokens, registry):
    """At once, with the report maintainer stopped (its backlog holds the withdrawal), and after."""
    fold_queued(db)
    patient = db.execute("SELECT p.centre_id, p.id, count(*) AS operations FROM patients p JOIN operations o"
                         " ON o.centre_id = p.centre_id AND o.patient_id = p.id WHERE p.consent = 'active'"
                         " AND p.centre_id = %s GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1",
                         (tokens.centre_a["id"],)).fetchone()
    counted_before = dataset.counted(dataset.load(db))
    before = {report: client.get(f"/v1/reports/{report}", headers=tokens.header("analyst")).json["total"]
              for report in ("complications", "fusion", "outcomes", "completeness")}
    db.execute("UPDATE patients SET consent = 'withdrawn' WHERE centre_id = %s AND id = %s",
               (patient["centre_id"], patient["id"]))
    # an analyst's totals are perturbed: they are those of the operations still counted
    remaining = dataset.counted(dataset.load(db))
    assert len(remaining) == len(counted_before) - patient["operations"]
    for report in before:
        after = client.get(f"/v1/reports/{report}", headers=tokens.header("analyst")).json["total"]
        assert after["operations"] == dataset.perturbed(remaining), report
    own = client.get("/v1/reports/complications", headers=tokens.header("submitter_a")).json["total"]
    assert own["operations"] == sum(1 for o in remaining if o["centre_id"] == patient["centre_id"])
    for scan in (figures(client, tokens, group_by="approach,region"), figures(client, tokens, date_from="1900-01-01")):
        assert scan["total"]["operations"] == dataset.perturbed(remaining)
    # all of that before the maintainer ran: the stored facts still say counted
    stored = "SELECT bool_or(counted) AS any FROM report_operations WHERE centre_id = %s AND patient_id = %s"
    assert db.execute(stored, (patient["centre_id"], patient["id"])).fetchone()["any"] is True
    fold_queued(db)
    assert db.execute(stored, (patient["centre_id"], patient["id"])).fetchone()["any"] is False
    for report in before:
        after = client.get(f"/v1/reports/{report}", headers=tokens.header("analyst")).json["total"]
        assert after["operations"] == dataset.perturbed(remaining), report


def test_submitter_sees_only_its_own_centre(db, client, tokens, registry):
    own = figures(client, tokens, "submitter_a", group_by="centre")
    assert [g["group"]["centre"] for g in own["groups"]] == ["CENTRE-A"]
    assert own["scope"] == "CENTRE-A" and own["suppression"]["applied"] is False
    expected = [o for o in dataset.counted(dataset.load(db)) if o["centre"] == "CENTRE-A"]
    assert own["total"]["operations"] == len(expected)
    by_approach = figures(client, tokens, "submitter_a", group_by="approach,year")
    assert sum(g["operations"] for g in by_approach["groups"]) == len(expected)


def test_submitter_cannot_name_another_centre(client, tokens, registry):
    response = client.get("/v1/reports/complications", query_string={"centre": "CENTRE-B"},
                          headers=tokens.header("submitter_a"))
    assert response.status_code == 403
    assert response.json["errors"][0]["field"] == "centre"


def test_submitter_funnel_shows_its_own_row_only(client, tokens, registry):
    body = client.get("/v1/reports/centres", headers=tokens.header("submitter_a")).json
    assert [g["group"]["centre"] for g in body["groups"]] == ["CENTRE-A"]
    assert body["total"] is None
    # two other centres only: the pool would reveal them, so it is withheld
    assert body["groups"][0]["pooled_rate"] is None
    assert body["groups"][0]["pooled_withheld"]


def test_analyst_funnel_has_every_centre_with_limits(client, tokens, db, registry):
    body = client.get("/v1/reports/centres", query_string={"measure": "postop_complication"},
                      headers=tokens.header("analyst")).json
    assert [g["group"]["centre"] for g in body["groups"]] == ["CENTRE-A", "CENTRE-B", "CENTRE-C"]
    ops = dataset.counted(dataset.load(db))
    # the pooled rate of the published (perturbed) counts of all centres, over the operations
    # whose complications were recorded
    recorded = [o for o in ops if o["postop_complications_recorded"]]
    pooled = dataset.perturbed([o for o in recorded if o["complications"]]) / dataset.perturbed(recorded)
    for row in body["groups"]:
        assert abs(row["pooled_rate"] - pooled) < 1e-12
        limits = row["limits"]
        assert limits["lower_99.8"] <= limits["lower_95"] <= pooled <= limits["upper_95"] <= limits["upper_99.8"]
        assert row["position"] in ("within", "above_95", "below_95", "above_99.8", "below_99.8")


def test_reports_need_a_token(client, registry):
    assert client.get("/v1/reports/complications").status_code == 401
