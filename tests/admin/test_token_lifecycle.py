"""Tokens do not live forever: each expires (a configurable default and maximum), can be rotated
(a successor, the old one ending after a grace period), records when it was last used, and an
expired or replaced token is a 401 saying so."""

import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from registry import migrate
from registry.cli import cli
from registry.config import ConfigurationError, Settings
from tests.conftest import make_settings
from tests.records.helpers import seed_case

DEFAULT_DAYS, MAX_DAYS = 30, 60  # not the shipped 90 and 365: the tests show the settings are read


@pytest.fixture
def settings():
    return make_settings(token_default_days=DEFAULT_DAYS, token_max_days=MAX_DAYS)


def issue(client, tokens, issuer, centre, role, **fields):
    return client.post("/v1/tokens/", json={"centre_id": centre["id"], "role": role, **fields},
                       headers=tokens.header(issuer))


def rotate(client, tokens, issuer, token_id, **fields):
    return client.post(f"/v1/tokens/{token_id}/rotate", json=fields, headers=tokens.header(issuer))


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def about(moment: str, expected: datetime) -> bool:
    return abs(parse(moment) - expected) < timedelta(minutes=1)


def now() -> datetime:
    return datetime.now(timezone.utc)


def expire(db, token_id):
    db.execute("UPDATE tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day'"
               " WHERE id = %s", (token_id,))


# --- expiry ---------------------------------------------------------------------------------

def test_a_token_issued_without_a_lifetime_gets_the_configured_default(client, tokens):
    issued = issue(client, tokens, "centre_admin_a", tokens.centre_a, "submitter")
    assert issued.status_code == 201
    assert about(issued.json["expires_at"], parse(issued.json["created_at"]) + timedelta(days=DEFAULT_DAYS))
    shorter = issue(client, tokens, "centre_admin_a", tokens.centre_a, "submitter", expires_in_days=7).json
    assert about(shorter["expires_at"], parse(shorter["created_at"]) + timedelta(days=7))


@pytest.mark.parametrize("days", [MAX_DAYS + 1, 0, 3651, "30", 1.5, True, None])
def test_a_lifetime_is_a_whole_number_of_days_up_to_the_maximum(client, tokens, db, days):
    refused = issue(client, tokens, "operator", tokens.centre_b, "analyst", expires_in_days=days)
    assert refused.status_code == 422, refused.json
    assert refused.mimetype == "application/problem+json"
    assert [error["field"] for error in refused.json["errors"]] == ["expires_in_days"]
    assert db.execute("SELECT count(*) AS n FROM tokens WHERE centre_id = %s",
                      (tokens.centre_b["id"],)).fetchone()["n"] == 1  # submitter_b only: nothing stored
    issued = issue(client, tokens, "operator", tokens.centre_b, "metrics", expires_in_days=MAX_DAYS).json
    assert about(issued["expires_at"], parse(issued["created_at"]) + timedelta(days=MAX_DAYS))


def test_an_expired_token_is_a_401_saying_when_it_expired(client, tokens, db):
    expire(db, tokens.id("submitter_a"))
    expired = client.get("/v1/operations/", headers=tokens.header("submitter_a"))
    assert expired.status_code == 401
    assert expired.mimetype == "application/problem+json"
    assert expired.headers["WWW-Authenticate"].startswith("Bearer")
    assert expired.json["detail"].startswith("The token expired at ")
    stated = parse(expired.json["detail"].removeprefix("The token expired at ").rstrip("."))
    assert abs(stated - (now() - timedelta(days=1))) < timedelta(minutes=1)
    # distinct from a token the registry never issued, and from a revoked one
    unknown = client.get("/v1/operations/", headers=bearer("reg_never-issued"))
    assert unknown.status_code == 401 and "expired" not in unknown.json["detail"]
    client.delete(f"/v1/tokens/{tokens.id('submitter_b')}", headers=tokens.header("operator"))
    revoked = client.get("/v1/operations/", headers=tokens.header("submitter_b"))
    assert revoked.status_code == 401 and "expired" not in revoked.json["detail"]


def test_an_expired_token_writes_nothing(client, tokens, db):
    expire(db, tokens.id("submitter_a"))
    refused = client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a"))
    assert refused.status_code == 401
    assert db.execute("SELECT count(*) AS n FROM operations").fetchone()["n"] == 0


def test_tokens_list_shows_expiry_last_use_and_successor_and_filters_expired(client, tokens, db):
    expire(db, tokens.id("analyst"))
    listed = client.get("/v1/tokens/", headers=tokens.header("operator")).json["items"]
    assert all({"expires_at", "last_used_at", "successor_token_id"} <= row.keys() for row in listed)
    expired = client.get("/v1/tokens/?expired=true", headers=tokens.header("operator")).json["items"]
    assert [row["label"] for row in expired] == ["analyst"]
    unexpired = client.get("/v1/tokens/?expired=false", headers=tokens.header("operator")).json["items"]
    assert "analyst" not in [row["label"] for row in unexpired] and len(unexpired) == len(listed) - 1


# --- rotation -------------------------------------------------------------------------------

def test_rotation_issues_a_successor_and_both_work_during_the_grace_period(client, tokens, db):
    old_id = tokens.id("submitter_a")
    rotated = rotate(client, tokens, "centre_admin_a", old_id, grace_hours=2)
    assert rotated.status_code == 201, rotated.json
    new = rotated.json
    assert new["token"].startswith("reg_")
    assert (new["centre_id"], new["role"], new["label"]) == (tokens.centre_a["id"], "submitter", "submitter_a")
    assert new["issued_by_token_id"] == tokens.id("centre_admin_a")
    assert about(new["expires_at"], now() + timedelta(days=DEFAULT_DAYS))
    assert new["replaced"]["id"] == old_id and new["replaced"]["successor_token_id"] == new["id"]
    assert about(new["replaced"]["expires_at"], now() + timedelta(hours=2))
    assert client.get("/v1/operations/", headers=tokens.header("submitter_a")).status_code == 200
    assert client.get("/v1/operations/", headers=bearer(new["token"])).status_code == 200
    listed = {row["id"]: row for row in client.get("/v1/tokens/", headers=tokens.header("centre_admin_a")).json["items"]}
    assert listed[old_id]["successor_token_id"] == new["id"]
    events = db.execute("SELECT action, entity_id, actor_token_id FROM audit_events WHERE entity = 'token'"
                        " AND entity_id IN (%s, %s) ORDER BY id", (old_id, new["id"])).fetchall()
    assert events[-2:] == [{"action": "create", "entity_id": new["id"], "actor_token_id": tokens.id("centre_admin_a")},
                           {"action": "rotate", "entity_id": old_id, "actor_token_id": tokens.id("centre_admin_a")}]


def test_after_the_grace_period_the_old_token_is_a_401_saying_it_was_replaced(client, tokens, db):
    new = rotate(client, tokens, "centre_admin_a", tokens.id("submitter_a")).json
    assert about(new["replaced"]["expires_at"], now() + timedelta(hours=24))  # the default grace
    db.execute("UPDATE tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 second'"
               " WHERE id = %s", (new["replaced"]["id"],))
    replaced = client.get("/v1/operations/", headers=tokens.header("submitter_a"))
    assert replaced.status_code == 401
    assert "replaced" in replaced.json["detail"] and "grace period ended at" in replaced.json["detail"]
    assert client.get("/v1/operations/", headers=bearer(new["token"])).status_code == 200


def test_a_rotation_without_grace_stops_the_old_token_at_once(client, tokens):
    new = rotate(client, tokens, "operator", tokens.id("analyst"), grace_hours=0).json
    stopped = client.get("/v1/reports/complications", headers=tokens.header("analyst"))
    assert stopped.status_code == 401 and "replaced" in stopped.json["detail"]
    assert client.get("/v1/reports/complications", headers=bearer(new["token"])).status_code == 200


@pytest.mark.parametrize("fields, field", [({"grace_hours": 7 * 24 + 1}, "grace_hours"),
                                           ({"grace_hours": -1}, "grace_hours"),
                                           ({"grace_hours": "24"}, "grace_hours"),
                                           ({"expires_in_days": MAX_DAYS + 1}, "expires_in_days"),
                                           ({"successor": True}, "successor")])
def test_a_rotation_with_a_grace_or_lifetime_out_of_bounds_is_refused_naming_the_field(
        client, tokens, db, fields, field):
    refused = rotate(client, tokens, "centre_admin_a", tokens.id("submitter_a"), **fields)
    assert refused.status_code == 422
    assert [error["field"] for error in refused.json["errors"]] == [field]
    assert db.execute("SELECT successor_token_id FROM tokens WHERE id = %s",
                      (tokens.id("submitter_a"),)).fetchone()["successor_token_id"] is None


def test_rotation_follows_the_issuing_policy(client, tokens):
    # an operator does not issue submitter tokens, so does not rotate them
    assert rotate(client, tokens, "operator", tokens.id("submitter_a")).status_code == 403
    # a centre_admin does not see another centre's tokens, nor registry-wide ones
    for name in ("submitter_b", "analyst", "operator"):
        assert rotate(client, tokens, "centre_admin_a", tokens.id(name)).status_code == 404, name
    # a token that issues nothing rotates only itself
    for issuer in ("submitter_a", "analyst", "metrics"):
        refused = rotate(client, tokens, issuer, tokens.id("submitter_b"))
        assert refused.status_code == 403, issuer
    renewed = rotate(client, tokens, "operator", tokens.id("metrics"), expires_in_days=5).json
    assert about(renewed["expires_at"], now() + timedelta(days=5))


def test_a_token_rotates_itself_but_does_not_extend_its_life(client, tokens):
    listed = {row["label"]: row for row in client.get("/v1/tokens/", headers=tokens.header("operator")).json["items"]}
    rotated = rotate(client, tokens, "submitter_a", tokens.id("submitter_a"))
    assert rotated.status_code == 201
    assert rotated.json["expires_at"] == listed["submitter_a"]["expires_at"]
    assert rotated.json["issued_by_token_id"] == tokens.id("submitter_a")
    assert client.get("/v1/operations/", headers=bearer(rotated.json["token"])).status_code == 200
    longer = rotate(client, tokens, "metrics", tokens.id("metrics"), expires_in_days=10)
    assert longer.status_code == 403
    assert longer.json["errors"][0]["field"] == "expires_in_days"
    # a centre_admin issues centre_admin tokens, so its own rotation may renew its lifetime
    own = rotate(client, tokens, "centre_admin_a", tokens.id("centre_admin_a"), expires_in_days=3).json
    assert about(own["expires_at"], now() + timedelta(days=3))


def test_a_token_is_rotated_once_and_a_revoked_or_expired_one_not_at_all(client, tokens, db):
    first = rotate(client, tokens, "centre_admin_a", tokens.id("submitter_a"))
    assert first.status_code == 201
    again = rotate(client, tokens, "centre_admin_a", tokens.id("submitter_a"))
    assert again.status_code == 409
    assert f"token {first.json['id']}" in again.json["detail"]
    client.delete(f"/v1/tokens/{tokens.id('analyst')}", headers=tokens.header("operator"))
    assert rotate(client, tokens, "operator", tokens.id("analyst")).status_code == 409
    expire(db, tokens.id("metrics"))
    assert rotate(client, tokens, "operator", tokens.id("metrics")).status_code == 409


def test_a_successor_may_be_relabelled(client, tokens):
    relabelled = rotate(client, tokens, "centre_admin_a", tokens.id("submitter_a"), label="ward 7 feed, 2027").json
    assert relabelled["label"] == "ward 7 feed, 2027" and relabelled["replaced"]["label"] == "submitter_a"


def test_two_concurrent_rotations_of_one_token_issue_one_successor(app, tokens, db):
    results, barrier = [], threading.Barrier(4)

    def send():
        client = app.test_client()
        barrier.wait()
        results.append(rotate(client, tokens, "centre_admin_a", tokens.id("submitter_a")))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(response.status_code for response in results) == [201, 409, 409, 409]
    assert db.execute("SELECT count(*) AS n FROM tokens WHERE label = 'submitter_a'").fetchone()["n"] == 2


@pytest.mark.parametrize("body", [None, {}], ids=["no body", "empty object"])
def test_a_rotation_without_fields_takes_the_defaults(client, tokens, body):
    rotated = client.post(f"/v1/tokens/{tokens.id('analyst')}/rotate", json=body, headers=tokens.header("operator"))
    assert rotated.status_code == 201
    assert about(rotated.json["replaced"]["expires_at"], now() + timedelta(hours=24))
    assert about(rotated.json["expires_at"], now() + timedelta(days=DEFAULT_DAYS))


# --- last use -------------------------------------------------------------------------------

def last_used(db, tokens, name):
    return db.execute("SELECT last_used_at FROM tokens WHERE id = %s", (tokens.id(name),)).fetchone()["last_used_at"]


def test_last_use_is_recorded_at_most_once_a_minute(client, tokens, db):
    assert last_used(db, tokens, "submitter_a") is None
    assert client.get("/v1/operations/", headers=tokens.header("submitter_a")).status_code == 200
    first = last_used(db, tokens, "submitter_a")
    assert first is not None and abs(first - now()) < timedelta(minutes=1)
    client.get("/v1/operations/", headers=tokens.header("submitter_a"))
    assert last_used(db, tokens, "submitter_a") == first  # the second read wrote nothing
    db.execute("UPDATE tokens SET last_used_at = now() - interval '61 seconds' WHERE id = %s",
               (tokens.id("submitter_a"),))
    client.get("/v1/operations/", headers=tokens.header("submitter_a"))
    assert abs(last_used(db, tokens, "submitter_a") - now()) < timedelta(seconds=30)
    listed = {row["label"]: row for row in client.get("/v1/tokens/", headers=tokens.header("centre_admin_a")).json["items"]}
    assert listed["submitter_a"]["last_used_at"] is not None


def test_a_write_records_its_use_even_when_refused(client, tokens, db):
    assert client.post("/v1/operations/", json=seed_case(), headers=tokens.header("submitter_a")).status_code == 201
    assert last_used(db, tokens, "submitter_a") is not None
    refused = client.post("/v1/operations/", json={"local_ref": 5}, headers=tokens.header("submitter_b"))
    assert refused.status_code == 422
    assert last_used(db, tokens, "submitter_b") is not None


def test_recording_a_use_inside_a_write_neither_waits_for_it_nor_holds_the_token(app, tokens, database_url):
    """A bulk submission's transaction lasts minutes: the use is committed apart, at once, and the
    token's row is not left locked (its revocation or rotation would wait for the write)."""
    from registry.auth import authenticate
    from registry.db import database

    with app.test_request_context("/v1/operations/", method="POST", headers=tokens.header("submitter_a")):
        with database().request_transaction():
            authenticate()
            with psycopg.connect(database_url) as other:
                other.execute("SET lock_timeout = '1s'")
                used = other.execute("SELECT last_used_at FROM tokens WHERE id = %s",
                                     (tokens.id("submitter_a"),)).fetchone()[0]
                assert used is not None
                other.execute("UPDATE tokens SET revoked_at = now() WHERE id = %s", (tokens.id("submitter_a"),))
                other.rollback()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_does_not_wait_while_its_tokens_row_is_locked(app, tokens, database_url, method):
    """A revocation or rotation in progress (or another request recording a use) holds the row."""
    results = []

    def send():
        client = app.test_client()
        results.append(client.open("/v1/operations/", method=method, json=seed_case() if method == "POST" else None,
                                   headers=tokens.header("submitter_a")))

    with psycopg.connect(database_url) as manager:
        manager.execute("SELECT 1 FROM tokens WHERE id = %s FOR UPDATE", (tokens.id("submitter_a"),))
        request = threading.Thread(target=send)
        request.start()
        request.join(timeout=5)
        assert results and results[0].status_code in (200, 201)


def test_an_expired_or_revoked_token_records_no_use(client, tokens, db):
    expire(db, tokens.id("submitter_a"))
    client.get("/v1/operations/", headers=tokens.header("submitter_a"))
    assert last_used(db, tokens, "submitter_a") is None


# --- command line ---------------------------------------------------------------------------

def test_cli_issues_with_a_lifetime_rotates_and_lists(runner, client, db):
    runner.invoke(cli, ["centres", "add", "TJH", "Tianjin Hospital"])
    too_long = runner.invoke(cli, ["tokens", "issue", "--centre", "TJH", "--role", "operator",
                                   "--expires-in-days", str(MAX_DAYS + 1)])
    assert too_long.exit_code != 0 and "--expires-in-days" in too_long.output
    issued = runner.invoke(cli, ["tokens", "issue", "--centre", "TJH", "--role", "operator", "--expires-in-days", "3"])
    assert issued.exit_code == 0, issued.output
    old = issued.stdout.split()[0]
    old_id = db.execute("SELECT id FROM tokens").fetchone()["id"]
    rotated = runner.invoke(cli, ["tokens", "rotate", str(old_id), "--grace-hours", "1", "--label", "second"])
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.split()[0]
    assert new.startswith("reg_") and new != old
    for secret in (old, new):
        assert client.get("/v1/centres/", headers=bearer(secret)).status_code == 200
    again = runner.invoke(cli, ["tokens", "rotate", str(old_id)])
    assert again.exit_code != 0 and "rotated already" in again.output
    listed = [line.split("\t") for line in runner.invoke(cli, ["tokens", "list"]).output.splitlines()]
    # ..., expires at, last used at, successor
    (old_row, new_row) = listed
    assert about(old_row[8], now() + timedelta(hours=1)) and old_row[9] != "-" and old_row[10] == new_row[0]
    assert about(new_row[8], now() + timedelta(days=DEFAULT_DAYS)) and new_row[10] == "-"
    assert new_row[6] == "cli" and (old_row[3], new_row[3]) == ("-", "second")


def test_cli_rotation_grace_is_bounded(runner, tokens):
    refused = runner.invoke(cli, ["tokens", "rotate", str(tokens.id("analyst")), "--grace-hours", "169"])
    assert refused.exit_code != 0 and "--grace-hours" in refused.output


# --- configuration and migration ------------------------------------------------------------

def test_token_lifetimes_are_configured_and_validated():
    assert (Settings.from_environment({}).token_default_days, Settings.from_environment({}).token_max_days) == (90, 365)
    configured = Settings.from_environment({"TOKEN_DEFAULT_DAYS": "7", "TOKEN_MAX_DAYS": "30"})
    assert (configured.token_default_days, configured.token_max_days) == (7, 30)
    for environ, named in (({"TOKEN_DEFAULT_DAYS": "100", "TOKEN_MAX_DAYS": "30"}, "TOKEN_DEFAULT_DAYS"),
                           ({"TOKEN_MAX_DAYS": "forever"}, "TOKEN_MAX_DAYS"),
                           ({"TOKEN_MAX_DAYS": "0"}, "TOKEN_MAX_DAYS"),
                           ({"TOKEN_DEFAULT_DAYS": "3651"}, "TOKEN_DEFAULT_DAYS")):
        with pytest.raises(ConfigurationError, match=named):
            Settings.from_environment(environ)


def test_tokens_issued_before_0008_expire_90_days_after_it_and_a_downgrade_revokes_ended_ones(empty_database_url):
    migrate.upgrade(empty_database_url, "0007")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        centre = conn.execute("INSERT INTO centres (code, name) VALUES ('OLD', 'Old') RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO tokens (centre_id, role, token_hash, created_at) VALUES"
                     " (%s, 'submitter', 'h1', now() - interval '3 years'), (%s, 'operator', 'h2', now())",
                     (centre, centre))
    migrate.upgrade(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        ends = conn.execute("SELECT expires_at - now() FROM tokens ORDER BY id").fetchall()
        assert all(abs(end - timedelta(days=90)) < timedelta(minutes=1) for (end,) in ends)
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute("INSERT INTO tokens (centre_id, role, token_hash) VALUES (%s, 'analyst', 'h3')", (centre,))
        # one token expired, one replaced by a successor still in its grace period
        conn.execute("UPDATE tokens SET expires_at = now() - interval '1 day' WHERE token_hash = 'h1'")
        conn.execute("INSERT INTO tokens (centre_id, role, token_hash, expires_at) VALUES"
                     " (%s, 'operator', 'h4', now() + interval '90 days')", (centre,))
        conn.execute("UPDATE tokens SET successor_token_id = (SELECT id FROM tokens WHERE token_hash = 'h4')"
                     " WHERE token_hash = 'h2'")
    migrate.downgrade(empty_database_url, "0007")
    with psycopg.connect(empty_database_url) as conn:
        revoked = dict(conn.execute("SELECT token_hash, revoked_at IS NOT NULL FROM tokens").fetchall())
    assert revoked == {b"h1": True, b"h2": True, b"h4": False}
