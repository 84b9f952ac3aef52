"""Bulk submissions (JSON and CSV) state whether events and complications were recorded, and
refuse a contradiction naming the field, as the record API does."""

from tests.submissions.helpers import CSV_HEADER, csv_body, csv_row, document


def _submit(client, tokens, **kwargs):
    return client.post("/v1/submissions/?mode=partial", headers=tokens.header("submitter_a"), **kwargs)


def _statuses(db):
    rows = db.execute("SELECT local_ref, intraop_events_recorded, postop_complications_recorded FROM operations"
                      " ORDER BY local_ref").fetchall()
    return {row["local_ref"]: (row["intraop_events_recorded"], row["postop_complications_recorded"]) for row in rows}


def test_json_records_follow_the_same_status_rules(client, tokens, db):
    records = [document(1), document(2, postop_complications=None),
               document(3, postop_complications_status="occurred"), document(4, intraop_events_status="none")]
    answer = _submit(client, tokens, json=records).json
    assert [r["outcome"] for r in answer["records"]] == ["created", "created", "rejected", "rejected"]
    assert [e["field"] for e in answer["records"][2]["errors"]] == ["postop_complications"]
    assert [e["field"] for e in answer["records"][3]["errors"]] == ["intraop_events_status"]
    assert _statuses(db) == {"OP-1": (True, True), "OP-2": (True, False)}


def test_a_csv_row_says_none_or_not_recorded_in_its_status_columns(client, tokens, db):
    header = [*CSV_HEADER, "intraop_events_status", "postop_complications_status", "follow_ups.0.revision_surgery"]
    no_event = {"intraop_events.0.type": "", "intraop_events.0.instrument": "", "intraop_events.0.level": "",
                "intraop_events.0.side": ""}
    rows = [csv_row(1, postop_complications_status="none", **{"follow_ups.0.revision_surgery": "false"}),
            csv_row(2, **no_event, intraop_events_status="none"),
            csv_row(3, **no_event),  # no status, no event: not recorded
            csv_row(4, intraop_events_status="not_recorded")]
    answer = _submit(client, tokens, data=csv_body(rows, header), content_type="text/csv").json
    assert [r["outcome"] for r in answer["records"]] == ["created", "created", "created", "rejected"]
    assert [(e["field"], e["column"]) for e in answer["records"][3]["errors"]] == [
        ("intraop_events_status", "intraop_events_status")]
    assert _statuses(db) == {"OP-1": (True, True), "OP-2": (True, False), "OP-3": (False, False)}
    revisions = db.execute("SELECT local_ref, revision_surgery FROM follow_ups ORDER BY local_ref").fetchall()
    assert [(r["local_ref"], r["revision_surgery"]) for r in revisions] == [
        ("OP-1-FU", False), ("OP-2-FU", None), ("OP-3-FU", None)]
