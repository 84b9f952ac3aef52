"""The published case the registry grew from reads back field for field."""

from tests.records.helpers import seed_case, seed_follow_up

JOA_17 = {"instrument": "joa", "version": "17-point", "maximum": 17.0, "value_set": None, "site": None}


def test_seed_case_reads_back_field_for_field(client, tokens):
    sent = seed_case()
    created = client.post("/v1/operations/", json=sent, headers=tokens.header("submitter_a"))
    assert created.status_code == 201, created.json
    read = client.get(created.headers["Location"], headers=tokens.header("submitter_a")).json

    for field, value in sent.items():
        if field == "patient":
            continue
        if field == "instrumentation":
            assert read["instrumentation"]["system"] == value["system"]
            assert read["instrumentation"]["manufacturer"] == value["manufacturer"]
            for stored, given in zip(read["instrumentation"]["implants"], value["implants"], strict=True):
                assert {key: stored[key] for key in given} == given
            continue
        if field == "baseline_scores":
            # JOA 10 on the 17-point version, also read in the legacy form
            assert read["baseline_scores"] == [JOA_17 | {"value": 10.0}]
            assert read["preop_scores"] == {"joa": 10.0, "mjoa": None}
            continue
        if field == "intraop_events":
            assert read["intraop_events"] == value
            continue
        assert read[field] == value, field
    patient = {key: value for key, value in sent["patient"].items() if key != "ref"}
    assert {key: read["patient"][key] for key in patient} == patient


def test_the_broken_drill_bit_is_kept_where_it_broke(client, tokens):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json
    (event,) = created["intraop_events"]
    assert (event["type"], event["instrument"], event["retained_fragment"]) == ("instrument_breakage", "drill_bit", True)
    assert (event["level"], event["side"], event["site"]) == ("C4", "left", "lateral_mass")
    assert "2 mm" in event["instrument_detail"]


def test_derived_values_are_computed(client, tokens):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json
    assert created["vertebra_count"] == 4
    assert created["segment_count"] == 3
    assert created["instrumented"] is True
    assert created["age_at_surgery"] == 43


def test_seed_follow_up_at_four_years(client, tokens):
    operation = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).json
    response = client.post(f"/v1/operations/{operation['id']}/follow-ups", json=seed_follow_up(),
                           headers=tokens.header("submitter_a"))
    assert response.status_code == 201, response.json
    follow_up = client.get(response.headers["Location"], headers=tokens.header("submitter_a")).json
    assert follow_up["months_after"] == 48
    assert follow_up["date"] == "2020-01-01"
    assert (follow_up["joa"], follow_up["implant_status"]) == (14.0, "intact")
    assert follow_up["scores"] == [JOA_17 | {"value": 14.0}]  # JOA 10 -> 14 on the 17-point version
    assert follow_up["patient_id"] == operation["patient_id"]


def test_patient_ref_is_echoed_once_and_never_stored(client, tokens, db):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    assert created.json["patient"]["ref"] == "TJH-P-0001"
    read = client.get(created.headers["Location"], headers=tokens.header("submitter_a"))
    assert "TJH-P-0001" not in read.text
    for table in ("patients", "audit_events", "idempotency_keys"):
        dump = str(db.execute(f"SELECT * FROM {table}").fetchall())
        assert "TJH-P-0001" not in dump, table


def test_patient_ref_never_reaches_the_logs(client, tokens, caplog):
    caplog.set_level("DEBUG")
    client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    client.post("/v1/operations/", json=seed_case() | {"approach": "sideways"}, headers=tokens.header("submitter_a"))
    client.get("/v1/patients/?ref=TJH-P-0001", headers=tokens.header("submitter_a"))
    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert all("TJH-P-0001" not in record.getMessage() and "TJH-P-0001" not in str(record.__dict__)
               for record in caplog.records)


def test_the_creation_reply_is_what_a_read_returns(client, tokens):
    created = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    read = client.get(created.headers["Location"], headers=tokens.header("submitter_a"))
    reply = created.json
    reply["patient"].pop("ref")
    assert reply == read.json
    assert created.headers["ETag"] == read.headers["ETag"]
