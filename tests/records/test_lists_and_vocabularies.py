"""Lists page with cursors and filter; vocabularies list every code."""

from registry import vocabulary
from tests.records.helpers import seed_case


def _submit(client, tokens, local_ref, **changes):
    return client.post("/v1/operations/", json=seed_case() | {"local_ref": local_ref, **changes},
                       headers=tokens.header("submitter_a")).json


def test_operations_page_with_a_cursor(client, tokens):
    for number in range(5):
        _submit(client, tokens, f"OP-{number}")
    seen, cursor = [], None
    while True:
        url = "/v1/operations/?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=tokens.header("submitter_a")).json
        seen += [operation["local_ref"] for operation in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"OP-{number}" for number in range(5)]


def test_operations_filter_by_date_approach_region_procedure_and_diagnosis(client, tokens):
    _submit(client, tokens, "OLD", operation_date="2010-05-01")
    _submit(client, tokens, "ANT", approach="anterior", procedures=["discectomy", "fusion"])
    _submit(client, tokens, "FEMUR", region="femur", levels=None, procedures=["fracture_fixation"])
    headers = tokens.header("submitter_a")

    def refs(query):
        return sorted(op["local_ref"] for op in client.get(f"/v1/operations/?{query}", headers=headers).json["items"])

    assert refs("date_to=2012-01-01") == ["OLD"]
    assert refs("date_from=2012-01-01") == ["ANT", "FEMUR"]
    assert refs("approach=anterior") == ["ANT"]
    assert refs("region=femur") == ["FEMUR"]
    assert refs("procedure=discectomy") == ["ANT"]
    assert refs("diagnosis=ado_ii") == ["ANT", "FEMUR", "OLD"]
    assert refs("diagnosis=aro") == []
    assert refs("local_ref=OLD") == ["OLD"]


def test_updated_since_lists_only_recent_changes(client, tokens, db):
    _submit(client, tokens, "EARLY")
    db.execute("UPDATE operations SET updated_at = '2020-01-01T00:00:00Z'")
    _submit(client, tokens, "LATE")
    items = client.get("/v1/operations/?updated_since=2021-01-01T00:00:00Z",
                       headers=tokens.header("submitter_a")).json["items"]
    assert [operation["local_ref"] for operation in items] == ["LATE"]


def test_vocabularies_list_every_code_with_a_label(client):
    response = client.get("/v1/vocabularies/")
    assert response.status_code == 200
    body = response.json
    assert set(body) == set(vocabulary.ALL)
    assert {"code": "drill_bit", "label": "Drill bit"} in body["instrument"]
    assert [term["code"] for term in body["spinal_level"]][:3] == ["OC", "C1", "C2"]
    assert all(term["label"] for terms in body.values() for term in terms)
