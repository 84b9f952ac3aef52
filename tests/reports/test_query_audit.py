"""Every report asked for is recorded (who, when, which report, which parameters), and only
operators read that record."""

import pytest


def test_each_report_request_is_recorded_with_its_parameters(client, tokens):
    asked = client.get("/v1/reports/complications", headers=tokens.header("analyst"),
                       query_string={"approach": "anterior", "group_by": "region", "date_from": "2016-01-01"})
    assert asked.status_code == 200
    client.get("/v1/reports/centres", headers=tokens.header("submitter_a"), query_string={"measure": "revision"})

    page = client.get("/v1/report-queries/", headers=tokens.header("operator"))
    assert page.status_code == 200, page.json
    first, second = page.json["items"]
    assert first["token_id"] == tokens.id("analyst") and first["role"] == "analyst"
    assert first["report"] == "complications"
    assert first["parameters"] == {"approach": ["anterior"], "group_by": ["region"], "date_from": "2016-01-01"}
    assert first["request_id"] == asked.headers["X-Request-ID"]
    assert second["report"] == "centres" and second["parameters"]["measure"] == "revision"
    assert second["token_id"] == tokens.id("submitter_a")


def test_a_report_request_refused_as_invalid_is_not_recorded(client, tokens):
    client.get("/v1/reports/complications", headers=tokens.header("analyst"), query_string={"approach": "sideways"})
    assert client.get("/v1/report-queries/", headers=tokens.header("operator")).json["items"] == []


def test_the_query_audit_filters_by_token_and_report(client, tokens):
    for report in ("fusion", "outcomes", "fusion"):
        client.get(f"/v1/reports/{report}", headers=tokens.header("analyst"))
    client.get("/v1/reports/fusion", headers=tokens.header("submitter_b"))
    page = client.get("/v1/report-queries/", headers=tokens.header("operator"),
                      query_string={"token_id": tokens.id("analyst"), "report": "fusion"}).json
    assert [item["report"] for item in page["items"]] == ["fusion", "fusion"]


@pytest.mark.parametrize("who", ["analyst", "submitter_a", "centre_admin_a"])
def test_only_operators_read_the_query_audit(client, tokens, who):
    assert client.get("/v1/report-queries/", headers=tokens.header(who)).status_code == 403
