"""`registry demo` loads the seed case and the cases it cites, and prints working tokens."""

import re

from registry.cli import cli
from tests.records.helpers import seed_case


def test_demo_loads_the_cases_in_two_centres_and_prints_tokens(runner, client, db):
    result = runner.invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT count(*) AS n FROM operations").fetchone()["n"] == 5
    assert db.execute("SELECT count(DISTINCT centre_id) AS n FROM operations").fetchone()["n"] == 2
    submitter = re.search(r"submitter token \(SEED\): (\S+)", result.output).group(1)
    analyst = re.search(r"analyst token: (\S+)", result.output).group(1)

    operations = client.get("/v1/operations/", headers={"Authorization": f"Bearer {submitter}"}).json["items"]
    assert [operation["local_ref"] for operation in operations] == [seed_case()["local_ref"]]
    assert operations[0]["intraop_events"][0]["instrument"] == "drill_bit"
    assert client.get("/v1/operations/", headers={"Authorization": f"Bearer {analyst}"}).status_code == 403


def test_demo_cases_cover_the_cited_operations(runner, db):
    runner.invoke(cli, ["demo"])
    implants = {row["kind"] for row in db.execute("SELECT kind FROM implants")}
    assert {"transarticular_screw", "interspinous_wire", "rod", "sublaminar_wire", "lateral_mass_screw"} <= implants
    fusion = {row["fusion_status"] for row in db.execute("SELECT fusion_status FROM follow_ups")}
    assert {"fused", "not_fused"} <= fusion
    young = db.execute("SELECT age_at_surgery, vertebra_count, instrumented FROM operations"
                       " WHERE 'decompression_without_fusion' = ANY(procedures)").fetchone()
    assert young == {"age_at_surgery": 15, "vertebra_count": 2, "instrumented": False}


def test_running_the_demo_twice_changes_no_record(runner, db):
    runner.invoke(cli, ["demo"])
    versions = db.execute("SELECT id, version FROM operations ORDER BY id").fetchall()
    tokens = db.execute("SELECT id, revoked_at FROM tokens ORDER BY id").fetchall()
    second = runner.invoke(cli, ["demo"])
    assert second.output.count(": unchanged") == 5
    assert db.execute("SELECT id, version FROM operations ORDER BY id").fetchall() == versions
    assert db.execute("SELECT id, revoked_at FROM tokens ORDER BY id").fetchall() == tokens
    assert "issued by an earlier run, still valid" in second.output


def test_demo_new_tokens_replaces_the_earlier_ones(runner, client, db):
    first = runner.invoke(cli, ["demo"])
    old = re.search(r"submitter token \(SEED\): (\S+)", first.output).group(1)
    second = runner.invoke(cli, ["demo", "--new-tokens"])
    new = re.search(r"submitter token \(SEED\): (\S+)", second.output).group(1)
    assert new != old
    assert client.get("/v1/operations/", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/v1/operations/", headers={"Authorization": f"Bearer {new}"}).status_code == 200
