"""The `registry` command line, run as a user would."""

import psycopg

from registry import migrate
from registry.cli import cli


def test_centres_add_then_list(runner):
    added = runner.invoke(cli, ["centres", "add", "TJH", "Tianjin Hospital"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["centers", "list"])
    assert "TJH\tTianjin Hospital" in listed.output


def test_centres_add_refuses_a_duplicate_code(runner):
    runner.invoke(cli, ["centres", "add", "TJH", "Tianjin Hospital"])
    again = runner.invoke(cli, ["centres", "add", "TJH", "Another"])
    assert again.exit_code != 0
    assert "already exists" in again.output


def test_centres_add_refuses_a_malformed_code(runner):
    result = runner.invoke(cli, ["centres", "add", "not a code", "X"])
    assert result.exit_code != 0
    assert "code" in result.output


def test_issued_token_authenticates_and_only_its_hash_is_stored(runner, client, db):
    runner.invoke(cli, ["centres", "add", "TJH", "Tianjin Hospital"])
    issued = runner.invoke(cli, ["tokens", "issue", "--center", "TJH", "--role", "operator"])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[0]
    assert token.startswith("reg_")

    stored = db.execute("SELECT token_hash FROM tokens").fetchall()
    assert all(token.encode() not in bytes(row["token_hash"]) for row in stored)
    response = client.get("/v1/centres/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert [centre["code"] for centre in response.json["items"]] == ["TJH"]


def test_revoked_token_gets_401(runner, client):
    runner.invoke(cli, ["centres", "add", "TJH", "Tianjin Hospital"])
    token = runner.invoke(cli, ["tokens", "issue", "--centre", "TJH", "--role", "operator"]).stdout.split()[0]
    token_id = runner.invoke(cli, ["tokens", "list"]).output.split("\t")[0]
    revoked = runner.invoke(cli, ["tokens", "revoke", token_id])
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/v1/centres/", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_tokens_issue_for_unknown_centre_fails(runner):
    result = runner.invoke(cli, ["tokens", "issue", "--centre", "NOPE", "--role", "submitter"])
    assert result.exit_code != 0
    assert "no centre with code NOPE" in result.output


def test_db_upgrade_and_downgrade_commands(runner, empty_database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    monkeypatch.setenv("REGISTRY_DATA_DIR", str(tmp_path))
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    with psycopg.connect(empty_database_url) as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
    assert runner.invoke(cli, ["db", "downgrade", "base"]).exit_code == 0
    with psycopg.connect(empty_database_url) as conn:
        assert migrate.current_revision(conn) is None


def test_openapi_command_writes_the_document(runner, tmp_path):
    target = tmp_path / "openapi.yaml"
    result = runner.invoke(cli, ["openapi", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text().startswith("components:")


def test_purge_forgets_only_old_idempotency_keys(runner, db, tokens):
    centre = tokens.centre_a["id"]
    old, new = b"o" * 32, b"n" * 32  # keys are stored as HMACs of 32 bytes
    db.execute("INSERT INTO idempotency_keys (centre_id, key_hash, request_hash, status_code, created_at)"
               " VALUES (%s, %s, 'x', 201, now() - interval '2 days'), (%s, %s, 'y', 201, now())",
               (centre, old, centre, new))
    result = runner.invoke(cli, ["purge-idempotency-keys", "--hours", "24"])
    assert result.exit_code == 0, result.output
    assert "purged 1" in result.output
    assert [bytes(row["key_hash"]) for row in db.execute("SELECT key_hash FROM idempotency_keys")] == [new]
