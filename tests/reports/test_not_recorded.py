"""Issue 15: an item not recorded is left out of its rate's denominator and counted apart, and
completeness reports the share recorded. Submitter figures (exact) on operations built by hand;
the fast path (tallies) and a scan (a filter) give the same figures."""

import pytest

from tests.records.helpers import operation, seed_case

BREAKAGE = seed_case()["intraop_events"]
MAJOR = [{"type": "deep_infection", "days_after": 10, "grade": "IIIb"}]


@pytest.fixture
def recorded_and_not(client, tokens):
    """Five operations: events occurred / none / not recorded; complications likewise."""
    documents = [
        operation(local_ref="OP-1", intraop_events=BREAKAGE, postop_complications=MAJOR),
        operation(local_ref="OP-2", intraop_events=[], postop_complications=[]),
        operation(local_ref="OP-3", intraop_events=None, postop_complications=None),
        operation(local_ref="OP-4", intraop_events_status="not_recorded", intraop_events=[],
                  postop_complications=[], transfusion=False),
        operation(local_ref="OP-5", intraop_events=[], postop_complications_status="not_recorded",
                  postop_complications=[], transfusion=True),
    ]
    for document in documents:
        document["patient"]["ref"] = document["local_ref"]
        response = client.post("/v1/operations/", json=document, headers=tokens.header("submitter_a"))
        assert response.status_code == 201, response.json


def _report(client, tokens, name, **query):
    response = client.get(f"/v1/reports/{name}", query_string=query, headers=tokens.header("submitter_a"))
    assert response.status_code == 200, response.json
    return response.json["total"]


def _counts(proportion):
    return proportion["numerator"], proportion["denominator"]


@pytest.mark.parametrize("query", [{}, {"approach": "posterior"}], ids=["fast", "scan"])
def test_rates_are_over_the_operations_where_the_item_was_recorded(client, tokens, recorded_and_not, query):
    total = _report(client, tokens, "complications", **query)
    assert total["operations"] == 5
    assert _counts(total["intraop_event"]) == (1, 3)          # OP-1 of OP-1, 2, 5
    assert _counts(total["instrument_breakage"]) == (1, 3)
    assert _counts(total["intraop_event_types"]["dural_tear"]) == (0, 3)
    assert _counts(total["intraop_events_not_recorded"]) == (2, 5)
    assert _counts(total["postop_complication"]) == (1, 3)    # OP-1 of OP-1, 2, 4
    assert _counts(total["major_complication"]) == (1, 3)
    assert _counts(total["postop_complications_not_recorded"]) == (2, 5)


def test_major_with_classintra_stays_over_the_complications_recorded(client, tokens, recorded_and_not):
    total = _report(client, tokens, "complications", major="clavien_or_classintra")
    assert _counts(total["major_complication"]) == (1, 3)


def test_a_window_leaves_the_unrecorded_out_of_its_denominator(client, tokens, recorded_and_not):
    total = _report(client, tokens, "complications", window="30")
    assert _counts(total["postop_complication"]) == (1, 3)
    assert _counts(total["postop_complications_not_recorded"]) == (2, 5)


def test_completeness_reports_the_share_recorded(client, tokens, recorded_and_not):
    total = _report(client, tokens, "completeness", group_by="region")
    assert _counts(total["intraop_events"]) == (3, 5)
    assert _counts(total["postop_complications"]) == (3, 5)
    assert _counts(total["transfusion"]) == (2, 5)


def test_the_funnel_rate_is_over_the_operations_recorded(client, tokens, recorded_and_not):
    response = client.get("/v1/reports/centres", query_string={"measure": "postop_complication"},
                          headers=tokens.header("submitter_a"))
    (row,) = response.json["groups"]
    assert _counts(row["measure"]) == (1, 3)


def test_revision_is_over_the_operations_with_a_follow_up_that_recorded_it(client, tokens):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json
    other = seed_case() | {"local_ref": "OP-2"}
    second = client.post("/v1/operations/", json=other, headers=tokens.header("submitter_a")).json
    header = tokens.header("submitter_a")
    client.post(f"/v1/operations/{created['id']}/follow-ups", json={"months_after": 12, "revision_surgery": True,
                                                                  "revision_reason": "loosening"}, headers=header)
    client.post(f"/v1/operations/{second['id']}/follow-ups", json={"months_after": 12}, headers=header)
    total = _report(client, tokens, "fusion")
    assert _counts(total["revision"]) == (1, 1)
    completeness = _report(client, tokens, "completeness")
    assert _counts(completeness["revision_surgery"]) == (1, 2)


@pytest.fixture
def reported(client, tokens):
    """Four operations, complications reported by the surgeon, by the patient, by both, by nobody named."""
    sources = [["surgeon"], ["patient_reported"], ["surgeon", "patient_reported"], [None], []]
    for number, reporters in enumerate(sources, start=1):
        complications = [{"type": "dysphagia", "grade": "I", "reported_by": source} for source in reporters]
        events = [dict(BREAKAGE[0], reported_by=reporters[0])] if number == 1 else []
        document = operation(local_ref=f"OP-{number}", postop_complications=complications, intraop_events=events)
        document["patient"]["ref"] = f"P-{number}"
        assert client.post("/v1/operations/", json=document, headers=tokens.header("submitter_a")).status_code == 201


@pytest.mark.parametrize("query", [{}, {"approach": "posterior"}], ids=["fast", "scan"])
def test_rates_by_who_reported_them(client, tokens, reported, query):
    total = _report(client, tokens, "complications", **query)
    by_source = total["postop_complication_by_reporter"]
    assert _counts(by_source["surgeon"]) == (2, 5)
    assert _counts(by_source["patient_reported"]) == (2, 5)
    assert _counts(by_source["not_recorded"]) == (1, 5)
    assert _counts(by_source["claims"]) == (0, 5)
    assert _counts(total["intraop_event_by_reporter"]["surgeon"]) == (1, 5)
    assert _counts(total["postop_complication"]) == (4, 5)


def test_reported_by_counts_only_those_sources(client, tokens, reported):
    surgeon = _report(client, tokens, "complications", reported_by="surgeon")
    assert _counts(surgeon["postop_complication"]) == (2, 5)      # the denominator is unchanged
    assert _counts(surgeon["intraop_event"]) == (1, 5)
    others = _report(client, tokens, "complications", reported_by="patient_reported,chart_review,claims")
    assert _counts(others["postop_complication"]) == (2, 5)
    assert _counts(others["intraop_event"]) == (0, 5)
    windowed = _report(client, tokens, "complications", reported_by="patient_reported", window="30")
    assert windowed["postop_complication"]["numerator"] == 0     # no days_after: timing not recorded
    assert _counts(windowed["postop_timing_not_recorded"]) == (2, 5)


def test_reported_by_is_refused_by_other_reports(client, tokens):
    response = client.get("/v1/reports/fusion", query_string={"reported_by": "surgeon"},
                          headers=tokens.header("submitter_a"))
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["reported_by"]
