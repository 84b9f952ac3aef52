"""No token reaches another centre's patients through the tokens it may issue, and every
token issued or revoked is on record: who, for which centre, which role, when."""

import psycopg
import pytest

from registry import migrate
from tests.records.helpers import seed_case


def issue(client, tokens, issuer, centre, role, label=None):
    return client.post("/v1/tokens/", json={"centre_id": centre["id"], "role": role, "label": label},
                       headers=tokens.header(issuer))


def test_a_centre_admin_cannot_issue_a_token_for_another_centre(client, tokens, db):
    client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_b"))
    for role in ("submitter", "centre_admin", "analyst", "operator", "metrics"):
        response = issue(client, tokens, "centre_admin_a", tokens.centre_b, role)
        assert response.status_code == 403, role
        assert response.mimetype == "application/problem+json"
    assert db.execute("SELECT count(*) AS n FROM tokens WHERE centre_id = %s",
                      (tokens.centre_b["id"],)).fetchone()["n"] == 1  # submitter_b only


def test_a_centre_admin_issues_its_own_centres_submitters_and_centre_admins_only(client, tokens):
    assert issue(client, tokens, "centre_admin_a", tokens.centre_a, "submitter").status_code == 201
    assert issue(client, tokens, "centre_admin_a", tokens.centre_a, "centre_admin").status_code == 201
    for role in ("analyst", "operator", "metrics"):
        refused = issue(client, tokens, "centre_admin_a", tokens.centre_a, role)
        assert refused.status_code == 403, role
        assert refused.json["errors"][0]["field"] == "role"


def test_an_operator_issues_no_token_that_reaches_a_centres_patients(client, tokens):
    for role in ("submitter", "centre_admin"):
        refused = issue(client, tokens, "operator", tokens.centre_b, role)
        assert refused.status_code == 403, role
        assert refused.json["errors"][0]["field"] == "role"
    for role in ("analyst", "operator", "metrics"):
        assert issue(client, tokens, "operator", tokens.centre_b, role).status_code == 201, role


def test_submitters_analysts_and_metrics_tokens_issue_nothing(client, tokens):
    for issuer in ("submitter_a", "analyst", "metrics"):
        assert issue(client, tokens, issuer, tokens.centre_a, "submitter").status_code == 403, issuer


def test_a_centre_admin_lists_and_revokes_its_own_centres_tokens_only(client, tokens):
    listed = client.get("/v1/tokens/", headers=tokens.header("centre_admin_a")).json["items"]
    assert sorted(row["label"] for row in listed) == ["centre_admin_a", "submitter_a"]
    other = client.get(f"/v1/tokens/?centre_id={tokens.centre_b['id']}", headers=tokens.header("centre_admin_a"))
    assert other.status_code == 403
    assert other.json["errors"][0]["field"] == "centre_id"
    for name in ("submitter_b", "analyst", "operator"):  # another centre's, or not a centre token
        assert client.delete(f"/v1/tokens/{tokens.id(name)}",
                             headers=tokens.header("centre_admin_a")).status_code == 404, name
    assert client.delete(f"/v1/tokens/{tokens.id('submitter_a')}",
                         headers=tokens.header("centre_admin_a")).status_code == 200
    assert client.get("/v1/operations/", headers=tokens.header("submitter_a")).status_code == 401


def test_an_operator_revokes_any_token(client, tokens):
    assert client.delete(f"/v1/tokens/{tokens.id('submitter_b')}",
                         headers=tokens.header("operator")).status_code == 200
    assert client.get("/v1/operations/", headers=tokens.header("submitter_b")).status_code == 401


def test_issuing_and_revoking_are_audited_with_issuer_centre_and_role(client, tokens, db):
    issued = issue(client, tokens, "centre_admin_a", tokens.centre_a, "submitter", "ward 7").json
    revoked = client.delete(f"/v1/tokens/{issued['id']}", headers=tokens.header("operator")).json
    events = db.execute(
        "SELECT centre_id, action, actor_token_id, actor_role FROM audit_events"
        " WHERE entity = 'token' AND entity_id = %s ORDER BY id", (issued["id"],)).fetchall()
    assert events == [
        {"centre_id": tokens.centre_a["id"], "action": "create", "actor_token_id": tokens.id("centre_admin_a"),
         "actor_role": "centre_admin"},
        {"centre_id": tokens.centre_a["id"], "action": "revoke", "actor_token_id": tokens.id("operator"),
         "actor_role": "operator"},
    ]
    # the token's own record says the rest: its role and centre never change, rows are never deleted
    assert (revoked["role"], revoked["centre_id"]) == ("submitter", tokens.centre_a["id"])
    assert revoked["issued_by_token_id"] == tokens.id("centre_admin_a")
    assert revoked["revoked_by_token_id"] == tokens.id("operator")
    assert revoked["created_at"] <= revoked["revoked_at"]


def test_token_issuance_is_reportable_by_issuer(client, tokens):
    for label in ("one", "two"):
        issue(client, tokens, "centre_admin_a", tokens.centre_a, "submitter", label)
    issue(client, tokens, "operator", tokens.centre_b, "analyst", "three")
    by_centre_admin = client.get(f"/v1/tokens/?issued_by_token_id={tokens.id('centre_admin_a')}",
                                 headers=tokens.header("operator")).json["items"]
    assert [(row["label"], row["role"], row["centre_id"]) for row in by_centre_admin] == [
        ("one", "submitter", tokens.centre_a["id"]), ("two", "submitter", tokens.centre_a["id"])]
    assert all(row["created_at"] and row["revoked_at"] is None for row in by_centre_admin)
    from_the_command_line = client.get("/v1/tokens/?role=submitter", headers=tokens.header("operator")).json
    assert {row["label"]: row["issued_by_token_id"] for row in from_the_command_line["items"]} == {
        "submitter_a": None, "submitter_b": None, "one": tokens.id("centre_admin_a"),
        "two": tokens.id("centre_admin_a")}


@pytest.mark.parametrize("role", ["centre_admin", "metrics"])
def test_centre_admin_and_metrics_tokens_read_no_cross_centre_data(client, tokens, role):
    name = "centre_admin_a" if role == "centre_admin" else role
    assert client.get("/v1/centres/", headers=tokens.header(name)).status_code == 403
    assert client.get(f"/v1/centres/{tokens.centre_b['id']}", headers=tokens.header(name)).status_code == 404
    assert client.get("/v1/reports/complications", headers=tokens.header(name)).status_code == 403
    assert client.post("/v1/centres/", json={"code": "NEW", "name": "New"},
                       headers=tokens.header(name)).status_code == 403


def test_admin_tokens_become_operators_at_migration_0005(empty_database_url):
    migrate.upgrade(empty_database_url, "0003")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        # 0001 builds its CHECKs from today's vocabulary; a registry migrated before 0005 had these
        conn.execute("ALTER TABLE tokens DROP CONSTRAINT ck_tokens_role, ADD CONSTRAINT ck_tokens_role"
                     " CHECK (role IN ('submitter', 'analyst', 'admin'))")
        centre = conn.execute("INSERT INTO centres (code, name) VALUES ('OLD', 'Old') RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO tokens (centre_id, role, token_hash) VALUES (%s, 'admin', 'h1'),"
                     " (%s, 'submitter', 'h2')", (centre, centre))
    migrate.upgrade(empty_database_url, "0005")
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT token_hash, role FROM tokens ORDER BY id").fetchall() == [
            (b"h1", "operator"), (b"h2", "submitter")]
    migrate.downgrade(empty_database_url, "0003")
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT role FROM tokens ORDER BY id").fetchall() == [("admin",), ("submitter",)]


def test_a_centres_first_centre_admin_comes_from_the_command_line(runner, client, db):
    from registry.cli import cli

    runner.invoke(cli, ["centres", "add", "TJH", "Tianjin Hospital"])
    issued = runner.invoke(cli, ["tokens", "issue", "--centre", "TJH", "--role", "centre_admin"])
    assert issued.exit_code == 0, issued.output
    centre_admin = {"Authorization": f"Bearer {issued.stdout.split()[0]}"}
    centre = db.execute("SELECT id FROM centres WHERE code = 'TJH'").fetchone()["id"]
    submitter = client.post("/v1/tokens/", json={"centre_id": centre, "role": "submitter"}, headers=centre_admin)
    assert submitter.status_code == 201
    listed = [line.split("\t") for line in runner.invoke(cli, ["tokens", "list"]).output.splitlines()]
    # id, centre, role, label, revoked at, issued at, issued by, revoked by
    assert [(columns[2], columns[6]) for columns in listed] == [("centre_admin", "cli"), ("submitter", "1")]
