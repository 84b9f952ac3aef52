"""Scores in a CSV row: the columns follow the schema (`baseline_scores.0.instrument`,
`follow_ups.0.scores.0.value`, ...), judged by the same rules as JSON."""

from tests.submissions.helpers import CSV_HEADER, csv_body, csv_row

SCORE_COLUMNS = ["baseline_scores.0.instrument", "baseline_scores.0.version", "baseline_scores.0.value",
                 "baseline_scores.1.instrument", "baseline_scores.1.value", "baseline_scores.1.value_set",
                 "follow_ups.0.scores.0.instrument", "follow_ups.0.scores.0.value", "follow_ups.0.scores.0.site"]
HEADER = CSV_HEADER + SCORE_COLUMNS


def _row(number, **cells):
    return csv_row(number, **{"baseline_scores.0.instrument": "joa", "baseline_scores.0.version": "17-point",
                              "baseline_scores.0.value": "10", "baseline_scores.1.instrument": "eq5d5l_index",
                              "baseline_scores.1.value": "0.61", "baseline_scores.1.value_set": "japan",
                              "follow_ups.0.scores.0.instrument": "pain_nrs",
                              "follow_ups.0.scores.0.value": "2",
                              "follow_ups.0.scores.0.site": "arm"} | cells)


def test_scores_in_csv_columns_are_stored_and_judged(client, tokens):
    rows = [_row(1), _row(2, **{"baseline_scores.1.value_set": ""}),
            _row(3, **{"follow_ups.0.scores.0.value": "11"}), _row(4, **{"follow_ups.0.scores.0.site": ""})]
    report = client.post("/v1/submissions/", data=csv_body(rows, HEADER), content_type="text/csv",
                         headers=tokens.header("submitter_a")).json
    assert [r["outcome"] for r in report["records"]] == ["created", "rejected", "rejected", "rejected"]
    assert [e["column"] for e in report["records"][1]["errors"]] == ["baseline_scores.1.value_set"]
    assert [e["column"] for e in report["records"][2]["errors"]] == ["follow_ups.0.scores.0.value"]
    assert [e["column"] for e in report["records"][3]["errors"]] == ["follow_ups.0.scores.0.site"]
    operation = client.get(f"/v1/operations/{report['records'][0]['operation_id']}",
                           headers=tokens.header("submitter_a")).json
    assert [(e["instrument"], e["value"], e["value_set"]) for e in operation["baseline_scores"]] == [
        ("joa", 10, None), ("eq5d5l_index", 0.61, "japan")]
    assert operation["preop_scores"]["joa"] == 10
    (follow_up,) = client.get(f"/v1/operations/{operation['id']}/follow-ups",
                              headers=tokens.header("submitter_a")).json["items"]
    # the legacy joa column and the list: 14 on the 17-point JOA, and the pain NRS
    assert [(e["instrument"], e["value"], e["site"]) for e in follow_up["scores"]] == [
        ("joa", 14, None), ("pain_nrs", 2, "arm")]
