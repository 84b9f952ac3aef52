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
